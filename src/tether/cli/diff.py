"""`tether diff OLD NEW`: what differs between two runs: config, code, data, upstream stages."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument("runs", metavar="OLD NEW", nargs=-1)
@click.option(
    "--where",
    metavar="EXPR",
    help="OLD and NEW count the runs matching EXPR, as `tether runs --where` numbers them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--no-code",
    is_flag=True,
    help="Leave out the code patch; the Code section still lists the changed files.",
)
@click.pass_context
def diff(
    ctx: click.Context, runs: tuple[str, ...], where: str | None, as_json: bool, no_code: bool
) -> None:
    """Show what differs between runs OLD and NEW (two RUN specs, or one slice of two: 1:2).

    Config: added, removed and changed keys (dotted). Code: `git diff` between the two source
    snapshot commits (or the files that differ between two source copies). Data: tracked paths
    whose digest changed. Stages: upstream runs that changed. Environment: Python, platform,
    GPU stack, container image, and packages added, removed or at another version. Always
    exits 0: it is a report.
    """
    from ..diffing import diff_runs
    from ..store.selection import select_runs

    store = store_from(ctx)
    picked = select_runs(store, runs, where=where)
    if len(picked) != 2:
        raise click.UsageError(f"diff takes two runs, OLD and NEW; these select {len(picked)}")
    a, b = (store.load(row.id) for row in picked)
    color = not as_json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    result = diff_runs(a, b, patch=not no_code, color=color)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from ..ids import short_ids

    shorts = short_ids(store.index.ids())
    _render(result, shorts, color)


def _arrow() -> str:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return "→" if encoding.startswith("utf") else "->"


def _value(v: Any) -> str:
    return json.dumps(v, default=str, ensure_ascii=False)


def _render(result: Any, shorts: dict[str, str], color: bool) -> None:
    arrow = _arrow()

    def out(text: str = "", **style: Any) -> None:
        click.echo(click.style(text, **style) if color and style else text)

    def short(run_id: str | None) -> str:
        return "-" if run_id is None else shorts.get(run_id, run_id[:13])

    def none() -> None:
        out("  no differences", dim=True)

    out(f"--- {short(result.old.id)}  {result.old.name}  {result.old.status}", bold=True)
    out(f"+++ {short(result.new.id)}  {result.new.name}  {result.new.status}", bold=True)

    out()
    out("Config", bold=True)
    if not result.config:
        none()
    width = max((len(c.key) for c in result.config), default=0)
    for c in result.config:
        if c.change == "added":
            out(f"  + {c.key:<{width}}  {_value(c.new)}", fg="green")
        elif c.change == "removed":
            out(f"  - {c.key:<{width}}  {_value(c.old)}", fg="red")
        else:
            out(f"  ~ {c.key:<{width}}  {_value(c.old)} {arrow} {_value(c.new)}", fg="yellow")

    out()
    out("Code", bold=True)
    if not result.code:
        none()
    patches = []
    for s in result.code:
        if s.change == "changed":
            what = "source copy" if s.kind == "copy" else "repository"
            out(f"  ~ {what} {s.path}: {len(s.files)} file(s) changed", fg="yellow")
            if s.stat:
                for line in s.stat.splitlines():
                    out(f"    {line}")
            else:
                for f in s.files:
                    out(f"    {f.status} {f.path}")
            if s.message:
                out(f"    {s.message}", dim=True)
            if s.patch:
                patches.append(s.patch)
        elif s.change in ("added", "removed"):
            if s.change == "added":
                out(f"  + {s.path}: tracked only by the new run", fg="green")
            else:
                out(f"  - {s.path}: tracked only by the old run", fg="red")
        else:
            out(f"  ? {s.path}: {s.message}", fg="magenta")

    out()
    out("Data", bold=True)
    if not result.data:
        none()
    for d in result.data:
        key = f" ({d.key})" if d.key else ""
        if d.change == "added":
            out(f"  + {d.path}{key}  {_digest(d.new_digest, d.new_status)}", fg="green")
        elif d.change == "removed":
            out(f"  - {d.path}{key}  {_digest(d.old_digest, d.old_status)}", fg="red")
        elif d.change == "pending":
            out(
                f"  ? {d.path}{key}  still hashing ({d.old_status} / {d.new_status}): "
                "compare again later",
                fg="magenta",
            )
        else:
            out(
                f"  ~ {d.path}{key}  {_digest(d.old_digest, d.old_status)} {arrow} "
                f"{_digest(d.new_digest, d.new_status)}",
                fg="yellow",
            )

    out()
    out("Stages", bold=True)
    if not result.stages:
        none()
    for st in result.stages:
        if st.change == "added":
            out(f"  + {st.name}  {short(st.new_run)}", fg="green")
        elif st.change == "removed":
            out(f"  - {st.name}  {short(st.old_run)}", fg="red")
        else:
            note = "  (same inputs)" if st.same_inputs else ""
            old_run, new_run = short(st.old_run), short(st.new_run)
            out(f"  ~ {st.name}  {old_run} {arrow} {new_run}{note}", fg="yellow")

    out()
    out("Environment", bold=True)
    if not (result.env or result.packages):
        none()
    for e in result.env:
        out(f"  ~ {e.key}  {_value(e.old)} {arrow} {_value(e.new)}", fg="yellow")
    for p in result.packages:
        if p.change == "added":
            out(f"  + {p.name} {p.new}", fg="green")
        elif p.change == "removed":
            out(f"  - {p.name} {p.old}", fg="red")
        else:
            out(f"  ~ {p.name} {p.old} {arrow} {p.new}", fg="yellow")

    for text in patches:
        out()
        click.echo(text, nl=not text.endswith("\n"), color=color)


def _digest(digest: str | None, status: str | None) -> str:
    if status and status != "done":
        return status
    return digest[:12] if digest else "-"
