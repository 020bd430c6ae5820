"""`tether show RUN`: a summary of one run (state, times, attempts, command, sources, the config
set on the command line, metrics, data, stages, lineage); `--lock` prints its run.lock whole."""

from __future__ import annotations

import json
from typing import Any

import click

from ..store.values import flatten
from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (everything, the lock included).")
@click.option("--lock", "as_lock", is_flag=True, help="Print the run's run.lock, whole.")
@click.option(
    "--full", is_flag=True, help="Numbers in full precision, and every key of the config."
)
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool, as_lock: bool, full: bool) -> None:
    """Show a summary of RUN: where it lives, its state and attempts, label, tags and notes, its
    command and sources, the config set on its command line (all of it when none was), metrics
    (last, min, max, step), dependencies (data digests, upstream stages) and lineage.

    --lock prints its run.lock as written; --json everything as one object."""
    from ..ids import short_ids
    from ..store.ranks import read_ranks
    from .render import duration

    if as_json and as_lock:
        raise click.UsageError("--json and --lock do not go together")
    store = store_from(ctx)
    record = store.resolve_one(run)
    if as_lock:
        from ..store.layout import LOCK

        click.echo((record.dir / LOCK).read_text(encoding="utf-8"), nl=False)
        return
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
    from ..search.summary import study_lines, study_summary  # a search batch: its study

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
        if (study := study_summary(record.dir)) is not None:
            out["study"] = study
        click.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.text import Text

    from .render import STATUS_STYLE, relative

    console = Console(highlight=False)
    head = Text()
    head.append(f"{record.id}  ", style="bold")
    head.append(f"{record.name}  ")
    head.append(record.status, style=STATUS_STYLE.get(record.status, ""))
    console.print(head)
    console.print(f"dir:      {record.dir}", soft_wrap=True)
    took = duration(state.get("started"), record.state.end(record.dir)) or "-"
    started = _when(state.get("started"))
    if started != "-":
        started += f" ({relative(state.get('started'))})"
    console.print(f"started:  {started}", markup=False, soft_wrap=True)
    console.print(
        f"stopped:  {_when(state.get('stopped'))}   duration: {took}", markup=False, soft_wrap=True
    )
    if state.get("exit_code") not in (None, 0):
        console.print(
            f"exit:     {state['exit_code']}   {state.get('error') or ''}",
            markup=False,
            soft_wrap=True,
        )
    if record.attrs.label or record.attrs.tags:
        console.print(
            f"label:    {record.attrs.label or '-'}   tags: {', '.join(record.attrs.tags) or '-'}"
        )
    for note in record.attrs.notes:
        console.print(f"note:     {note['text']} ({note['author']}, {note['t']})")
    for line in _run_lines(record.lock):
        console.print(line, markup=False, soft_wrap=True)
    flags = flatten(record.lock.flags)
    if flags:
        title, body = _settings_lines("flags", flags, record.lock.command, full)
        _section(console, title, "\n".join(body))
    config = {k: v for k, v in flatten(record.lock.config).items() if k != "save_dir"}
    if not flags or config != flags:  # an operation's config is mostly its flags again
        title, body = _settings_lines("config", config, record.lock.command, full)
        _section(console, title, "\n".join(body))
    if ranks:
        _section(console, "ranks", "\n".join(_rank_lines(ranks)))
    if len(state["attempts"]) > 1:
        _section(console, "attempts", "\n".join(_attempt_lines(state["attempts"])))
    if record.metrics():
        console.print("\n[bold]metrics[/bold]")
        for line in _metric_lines(record.metrics(), full):
            console.print(line, soft_wrap=True)
    if study_text := study_lines(record.dir):
        _section(console, "study", "\n".join(study_text))
    if deps["data"] or deps["stages"]:
        _section(console, "dependencies", "\n".join(_dependency_lines(deps)))
    if tree["children"] or used_by:
        lines = _tree_lines(tree["children"], 0)
        lines += [f"used by: {u['name']} {u['short_id']} (as {u['stage']})" for u in used_by]
        _section(console, "lineage", "\n".join(lines))
    console.print(
        f"\nrun.lock: {record.dir / 'run.lock'} (`tether show {run} --lock` prints it)",
        style="dim",
        markup=False,
        soft_wrap=True,
    )


def _when(text: str | None) -> str:
    """`2026-12-02 03:01:35 UTC`: a recorded time to the second (--json has it in full)."""
    from ..clock import parse_iso

    when = parse_iso(text)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


# A config with no key set on the command line is shown whole up to this many keys.
MAX_CONFIG_LINES = 20


def _run_lines(lock: Any) -> list[str]:
    """command, sources and environment: one line each."""
    import shlex

    lines = []
    if lock.command:
        lines.append(f"command:  {shlex.join(lock.command)}")
    for src in lock.sources:
        where = src.path or "."
        if src.commit:
            branch = f" on {src.branch}" if src.branch else ""
            dirty = ", with uncommitted changes" if src.dirty else ""
            lines.append(f"source:   {where}  commit {src.commit[:12]}{branch}{dirty}")
        elif src.manifest:
            lines.append(f"source:   {where}  (no git: files listed, manifest {src.manifest[:12]})")
        else:
            lines.append(f"source:   {where}  (no git commit recorded)")
    env = lock.env or {}
    if env:
        parts = []
        if env.get("python"):
            impl = f" ({env['implementation']})" if env.get("implementation") else ""
            parts.append(f"python {env['python']}{impl}")
        for key in ("platform", "host"):
            if env.get(key):
                parts.append(f"{key} {env[key]}")
        if env.get("tether"):
            parts.append(f"tether {env['tether']}")
        if isinstance(env.get("packages"), list):
            parts.append(f"{len(env['packages'])} packages")
        lines.append("env:      " + ", ".join(parts))
    return lines


def _overridden(command: list[str], keys: set[str]) -> list[str]:
    """The config keys a `key=value` (`+key=value`, `key=@file`) word of the command set, in
    the command's order: a decorated main's overrides. Only keys the config has count."""
    out: list[str] = []
    for word in command[1:]:
        key, eq, _ = word.partition("=")
        key = key.strip().lstrip("+")
        if not eq or not key or key.startswith("-"):
            continue
        # A mapping set whole (`model=@conf/model/wide.yaml`) stands for every key under it.
        under = [k for k in keys if k == key or k.startswith(key + ".")]
        out += [k for k in sorted(under) if k not in out]
    return out


def _settings_lines(
    what: str, values: dict[str, Any], command: list[str], full: bool
) -> tuple[str, list[str]]:
    """(title, lines) of the config (or an operation's flags), flattened: the keys set on the
    command line when some were (the rest are the script's or tether.toml's own), or all of
    them, up to MAX_CONFIG_LINES keys unless `full`. The config's save_dir is left out by the
    caller: it is the run's folder, shown above."""
    if not values:
        return what, ["{}"]
    set_here = _overridden(command, set(values))
    if set_here and not full:
        rest = len(values) - len(set_here)
        others = f"{rest} other key{'s' if rest != 1 else ''}: --full or --lock"
        title = f"{what} set on the command line ({others})" if rest else what
        return title, _value_lines({k: values[k] for k in set_here})
    if len(values) > MAX_CONFIG_LINES and not full:
        keys = list(values)[:MAX_CONFIG_LINES]
        title = f"{what} ({len(values) - len(keys)} more keys: --full or --lock)"
        return title, _value_lines({k: values[k] for k in keys})
    return what, _value_lines(values)


def _value_lines(values: dict[str, Any]) -> list[str]:
    """`model.lr: 0.01`: config values as written (numbers in full: they are inputs)."""
    out = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        out.append(f"{key}: {text}")
    return out


def _metric_lines(metrics: dict[str, Any], full: bool) -> list[Any]:
    """The metrics as a table (key, last, min, max, step), numbers to 4 significant digits
    (`0.9533`; `--full`: every digit), never cut."""
    from .render import format_metric
    from .tables import Column, fit, lines

    def num(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "" if value is None else str(value)
        if full or isinstance(value, int):
            return repr(value)
        return format_metric(value)

    stats = [m if isinstance(m, dict) else {"last": m} for m in metrics.values()]
    cols = [Column("", list(metrics))]
    for stat in ("last", "min", "max", "step"):
        cells = [num(m.get(stat)) for m in stats]
        if any(cells):
            cols.append(Column(stat, cells, numeric=True))
    shown, _ = fit(cols, None)
    return lines(shown)


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
