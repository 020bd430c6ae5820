"""`tether show RUN`: state, attrs, config, metrics, dependencies, lineage and run.lock."""

from __future__ import annotations

import json
from typing import Any

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show RUN: where it lives, its state, label, tags and notes, config, metrics (last, min,
    max, step), dependencies (data digests, upstream stages), lineage and run.lock."""
    from ..ids import short_ids
    from ..lock import dump_yaml
    from ..store.ranks import read_ranks
    from .render import duration

    store = store_from(ctx)
    record = store.resolve_one(run)
    ranks = [r.to_dict() for r in read_ranks(record.dir)]
    lock = record.lock.to_dict()
    state = record.state.to_dict()
    state["status"] = record.status
    shorts = short_ids(store.index.ids())
    deps = dependencies(store, record, shorts)
    tree = lineage(store, record, shorts)
    used_by = [
        {"id": rid, "short_id": shorts.get(rid, rid[:13]), "name": _name(store, rid), "stage": st}
        for rid, st in store.index.consumers(record.id)
    ]
    if as_json:
        out = {
            "id": record.id,
            "short_id": shorts.get(record.id, record.id[:13]),
            "name": record.name,
            "dir": str(record.dir),
            "state": state,
            "label": record.attrs.label,
            "tags": record.attrs.tags,
            "notes": record.attrs.notes,
            "attrs": {
                "label": record.attrs.label,
                "tags": record.attrs.tags,
                "notes": record.attrs.notes,
            },
            "metrics": record.metrics(),
            "summary": record.summary,
            "dependencies": deps,
            "lineage": tree,
            "consumers": used_by,
            "ranks": ranks,
            "lock": lock,
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.text import Text

    from .render import STATUS_STYLE

    console = Console(highlight=False)
    head = Text()
    head.append(f"{record.id}  ", style="bold")
    head.append(f"{record.name}  ")
    head.append(record.status, style=STATUS_STYLE.get(record.status, ""))
    console.print(head)
    console.print(f"dir:      {record.dir}", soft_wrap=True)
    console.print(
        f"started:  {state.get('started') or '-'}   stopped: {state.get('stopped') or '-'}"
        f"   duration: {duration(state.get('started'), record.state.end(record.dir)) or '-'}"
    )
    if state.get("exit_code") not in (None, 0):
        console.print(f"exit:     {state['exit_code']}   {state.get('error') or ''}")
    if record.attrs.label or record.attrs.tags:
        console.print(
            f"label:    {record.attrs.label or '-'}   tags: {', '.join(record.attrs.tags) or '-'}"
        )
    for note in record.attrs.notes:
        console.print(f"note:     {note['text']} ({note['author']}, {note['t']})")
    if record.lock.flags:
        _section(console, "flags", dump_yaml(record.lock.flags).rstrip())
    _section(
        console, "config", dump_yaml(record.lock.config).rstrip() if record.lock.config else "{}"
    )
    if ranks:
        _section(console, "ranks", "\n".join(_rank_lines(ranks)))
    if len(state["attempts"]) > 1:
        _section(console, "attempts", "\n".join(_attempt_lines(state["attempts"])))
    if record.metrics():
        rows = [
            f"{k}: last={v.get('last')} min={v.get('min')} max={v.get('max')}"
            + (f" step={v['step']}" if "step" in v else "")
            for k, v in record.metrics().items()
        ]
        _section(console, "metrics", "\n".join(rows))
    if deps["data"] or deps["stages"]:
        _section(console, "dependencies", "\n".join(_dependency_lines(deps)))
    if tree["children"] or used_by:
        lines = _tree_lines(tree["children"], 0)
        lines += [f"used by: {u['name']} {u['short_id']} (as {u['stage']})" for u in used_by]
        _section(console, "lineage", "\n".join(lines))
    rest = {k: v for k, v in lock.items() if k not in ("config", "flags")}
    env = dict(rest.get("env") or {})
    if isinstance(env.get("packages"), list):  # a long list: --json and run.lock hold it
        env["packages"] = f"{len(env['packages'])} distributions (listed by --json)"
        rest["env"] = env
    _section(console, "run.lock", dump_yaml(rest).rstrip())


def _attempt_lines(attempts: list[dict[str, Any]]) -> list[str]:
    """`2  node07  job 1234_0  2026-...Z  41.2s  terminated  exit 143  interrupted ...`: one line
    per process start of the run (a requeued task, `tether run --restart`)."""
    from .render import duration

    lines = []
    for i, a in enumerate(attempts, 1):
        parts = [str(i), a.get("host") or "-"]
        if a.get("job_id"):
            parts.append(f"job {a['job_id']}")
        parts.append(a.get("start") or "-")
        took = duration(a.get("start"), a.get("stop")) or "-"
        parts.append(took if a.get("stop") else f"{took} so far")
        if a.get("stop"):
            parts.append(a.get("status") or "-")
            if a.get("exit_code") is not None:
                parts.append(f"exit {a['exit_code']}")
            if a.get("error"):
                parts.append(str(a["error"]).splitlines()[0])
        lines.append("  ".join(parts))
    return lines


def _rank_lines(ranks: list[dict[str, Any]]) -> list[str]:
    """`rank 1  node07  failed  exit 3  ValueError: ...`, one line per rank."""
    lines = []
    for r in ranks:
        code = "-" if r.get("exit_code") is None else str(r["exit_code"])
        line = f"rank {r['rank']}  {r.get('host') or '-'}  {r['status']}  exit {code}"
        if r.get("error"):
            line += f"  {str(r['error']).splitlines()[0]}"
        lines.append(line)
    return lines


def _section(console: object, title: str, body: str) -> None:
    from rich.console import Console

    assert isinstance(console, Console)
    console.print(f"\n[bold]{title}[/bold]")
    console.print(body, markup=False, soft_wrap=True)


def _name(store: Any, run_id: str) -> str:
    rows = store.index.rows(where_sql="runs.id = ?", params=[run_id], limit=1)
    return str(rows[0].name) if rows else "?"


def dependencies(store: Any, record: Any, shorts: dict[str, str]) -> dict[str, Any]:
    """The run's tracked data (with digests) and the upstream runs it consumed as stages."""
    from ..errors import TetherError

    data = [
        {
            "path": d.path,
            "key": d.key,
            "algo": d.algo,
            "digest": d.digest,
            "files": d.files,
            "bytes": d.bytes,
            "status": d.status,
        }
        for d in record.lock.data
    ]
    stages = []
    for st in record.lock.stages:
        entry: dict[str, Any] = {
            "stage": st.name,
            "run": st.run,
            "short_id": shorts.get(st.run, st.run[:13]),
            "lock_digest": st.lock_digest,
            "name": None,
            "status": "missing",
            "missing": True,
            "lock_digest_matches": None,
        }
        try:
            upstream = store.load(st.run)
        except TetherError:
            pass
        else:
            entry.update(name=upstream.name, status=upstream.status, missing=False)
            if st.lock_digest:
                entry["lock_digest_matches"] = upstream.lock.digest() == st.lock_digest
        stages.append(entry)
    return {"data": data, "stages": stages}


def lineage(store: Any, record: Any, shorts: dict[str, str]) -> dict[str, Any]:
    """The upstream tree as nested dicts (the same shape as `tether lineage --json`)."""
    from ..capture.lineage import upstream_tree

    def as_dict(node: Any) -> dict[str, Any]:
        return {
            "id": node.id,
            "short_id": shorts.get(node.id, node.id[:13]),
            "name": None if node.missing else node.name,
            "status": node.status,
            "stage": node.stage,
            "missing": node.missing,
            "children": [as_dict(c) for c in node.children],
        }

    return as_dict(upstream_tree(store, record))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


def _dependency_lines(deps: dict[str, Any]) -> list[str]:
    lines = []
    for d in deps["data"]:
        digest = (
            "hashing..." if d["status"] == "pending" else f"{d['algo']}:{(d['digest'] or '-')[:16]}"
        )
        files = f"{d['files']} file{'s' if d['files'] != 1 else ''}"
        size = f"{files}, {_size(d['bytes'])}" if d["files"] else _size(d["bytes"])
        key = f"  (config {d['key']})" if d["key"] else ""
        lines.append(f"data   {d['path']}  {digest}  {size}{key}")
    for st in deps["stages"]:
        if st["missing"]:
            lines.append(f"stage  {st['stage']}: {st['short_id']} missing (not in this runs root)")
            continue
        changed = "  (its run.lock changed since)" if st["lock_digest_matches"] is False else ""
        lines.append(f"stage  {st['stage']}: {st['name']} {st['short_id']} {st['status']}{changed}")
    return lines


def _tree_lines(children: list[dict[str, Any]], depth: int) -> list[str]:
    lines = []
    for node in children:
        what = "missing" if node["missing"] else f"{node['name']} {node['status']}"
        lines.append(f"{'  ' * depth}<- {node['short_id']} {what} (as {node['stage']})")
        lines.extend(_tree_lines(node["children"], depth + 1))
    return lines
