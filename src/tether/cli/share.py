"""`tether push|pull|sync REMOTE [RUNS]` and `tether checkout RUN`: sharing runs (docs/sharing.md).

Exit status: 0 something moved (or all is the same, for `sync --check`), 3 nothing to do (every
run the same on both sides; differences found, for `--check`), 1 some runs failed (the others
are done), 2 bad input.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .args import complete_runs
from .byte_progress import ByteBar, human_size
from .main import store_from

NOTHING = 3
PARTLY = 1


class _Bar(ByteBar):
    """Files (or runs) and bytes moved: the transfer callback of push and pull."""

    def __init__(self, label: str, enabled: bool, unit: str = "files") -> None:
        super().__init__(label, enabled=enabled)
        self.unit = unit

    def __call__(self, files: int, nbytes: int, total_files: int, total_bytes: int) -> None:
        self.update(nbytes, total_bytes, f"{files}/{total_files} {self.unit}")


def open_remote(name: str) -> Any:
    from ..sync.remotes import get_remote
    from ..sync.transport import open_transport

    remote = get_remote(name)
    return remote, open_transport(remote.url, remote.folder() if remote.is_folder else None)


def _rows(store: Any, runs: tuple[str, ...], where: str | None) -> list[Any]:
    from ..store.lifecycle import resolve_many

    if runs:
        rows = resolve_many(store, runs)
        if where:
            keep = {r.id for r in store.query(where)}
            rows = [r for r in rows if r.id in keep]
    else:
        rows = store.query(where) if where else store.list()
    return list(rows)


def _emit_runs(results: list[Any], verb: str) -> None:
    for r in results:
        if r.action in ("unchanged",):
            continue
        extra = f" ({r.files} files, {human_size(r.bytes)})" if r.files else ""
        detail = f": {r.detail}" if r.detail else ""
        click.echo(
            f"  {r.action:<10} {r.id[:13]} {r.name}{extra}{detail}", err=r.action == "failed"
        )


def _push(
    ctx: click.Context,
    remote_name: str,
    runs: tuple[str, ...],
    where: str | None,
    dry_run: bool,
    as_json: bool,
) -> tuple[Any, dict[str, Any]]:
    from ..sync.push import push

    store = store_from(ctx)
    remote, transport = open_remote(remote_name)
    rows = _rows(store, runs, where)
    bar = _Bar("pushing", not as_json)
    try:
        result = push(store, transport, rows, dry_run=dry_run, progress=bar)
    finally:
        bar.close()
    out = {
        "remote": remote.name,
        "url": remote.url,
        "runs": [vars(r) for r in result.runs],
        "files": result.moved.files,
        "bytes": result.moved.bytes,
        "bundles": result.bundles,
        "changed": result.changed,
        "failed": result.failed,
        "dry_run": dry_run,
    }
    return result, out


def _pull(
    ctx: click.Context,
    remote_name: str,
    runs: tuple[str, ...],
    where: str | None,
    dry_run: bool,
    as_json: bool,
) -> tuple[Any, dict[str, Any]]:
    from ..sync import listing
    from ..sync.bundles import local_repo
    from ..sync.pull import pull
    from ..sync.push import read_remote

    store = store_from(ctx)
    remote, transport = open_remote(remote_name)
    entries = read_remote(transport)
    chosen = listing.select(entries, runs, where)
    bar = _Bar("pulling", not as_json, unit="runs")
    try:
        result = pull(
            store, transport, chosen, entries, repo=local_repo(), dry_run=dry_run, progress=bar
        )
    finally:
        bar.close()
    out = {
        "remote": remote.name,
        "url": remote.url,
        "runs": [vars(r) for r in result.runs],
        "files": result.moved.files,
        "bytes": result.moved.bytes,
        "refs": result.refs,
        "notes": result.notes,
        "changed": result.changed,
        "failed": result.failed,
        "dry_run": dry_run,
    }
    return result, out


def _summary(verb: str, result: Any, out: dict[str, Any]) -> None:
    n = len(out["runs"])
    click.echo(
        f"{verb} {out['remote']}: {result.changed} of {n} run(s) "
        f"{'would change' if out['dry_run'] else 'changed'}, "
        f"{out['files']} files, {human_size(out['bytes'])} moved"
        + (f", {result.failed} failed" if result.failed else "")
    )


def _code(*results: Any) -> int:
    if any(r.failed for r in results):
        return PARTLY
    if not any(r.changed for r in results):
        return NOTHING
    return 0


_RUNS = click.argument("runs", metavar="[RUNS]...", nargs=-1, shell_complete=complete_runs)
_WHERE = click.option("--where", metavar="EXPR", help="Only the runs this query selects.")
_DRY = click.option("--dry-run", is_flag=True, help="List what would move; move nothing.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.command()
@click.argument("remote")
@_RUNS
@_WHERE
@_DRY
@_JSON
@click.pass_context
def push(
    ctx: click.Context,
    remote: str,
    runs: tuple[str, ...],
    where: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy runs (default: all) to REMOTE: files, then snapshot bundles, then each run's entry.

    Unchanged runs move nothing; a killed push is completed by the next one. Exit 3: nothing
    to push; 1: some runs failed.
    """
    result, out = _push(ctx, remote, runs, where, dry_run, as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        _emit_runs(result.runs, "push")
        _summary("push to", result, out)
    ctx.exit(_code(result))


@click.command()
@click.argument("remote")
@_RUNS
@_WHERE
@_DRY
@_JSON
@click.pass_context
def pull(
    ctx: click.Context,
    remote: str,
    runs: tuple[str, ...],
    where: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Bring runs (default: all) from REMOTE, verified by blake3, with their snapshot commits.

    RUNS are id or name prefixes of the remote's runs (`tether remote runs REMOTE`). Exit 3:
    nothing to pull; 1: some runs failed.
    """
    result, out = _pull(ctx, remote, runs, where, dry_run, as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        _emit_runs(result.runs, "pull")
        for note in result.notes:
            click.echo(f"  note: {note}", err=True)
        _summary("pull from", result, out)
        if result.refs:
            click.echo(f"{result.refs} snapshot ref(s) made in the repository")
    ctx.exit(_code(result))


@click.command()
@click.argument("remote")
@_RUNS
@_WHERE
@click.option(
    "--check",
    is_flag=True,
    help="Re-hash every file of the runs here and compare with the remote's entries; move nothing.",
)
@_JSON
@click.pass_context
def sync(
    ctx: click.Context,
    remote: str,
    runs: tuple[str, ...],
    where: str | None,
    check: bool,
    as_json: bool,
) -> None:
    """Push, then pull: both sides end with every run and every label, tag and note.

    With --check: exit 0 when every file matches, 3 when some differ.
    """
    if check:
        ctx.exit(_check(ctx, remote, runs, where, as_json))
    pushed, out_push = _push(ctx, remote, runs, where, False, as_json)
    pulled, out_pull = _pull(ctx, remote, runs, where, False, as_json)
    if as_json:
        click.echo(json.dumps({"push": out_push, "pull": out_pull}, indent=2))
    else:
        _emit_runs(pushed.runs, "push")
        _emit_runs(pulled.runs, "pull")
        for note in pulled.notes:
            click.echo(f"  note: {note}", err=True)
        _summary("push to", pushed, out_push)
        _summary("pull from", pulled, out_pull)
    ctx.exit(_code(pushed, pulled))


def _check(
    ctx: click.Context, remote_name: str, runs: tuple[str, ...], where: str | None, as_json: bool
) -> int:
    from ..sync import listing
    from ..sync.pull import check
    from ..sync.push import read_remote

    store = store_from(ctx)
    _, transport = open_remote(remote_name)
    entries = read_remote(transport)
    if runs or where:
        ids = [r.id for r in _rows(store, runs, where)]
    else:
        ids = sorted(
            {r.id for r in store.list()} | {e.run for e in listing.select(entries, (), None)}
        )
    found = check(store, entries, ids)
    if as_json:
        click.echo(json.dumps({k: v for k, v in found.items()}, indent=2))
    else:
        for run_id, problems in found.items():
            if problems:
                click.echo(f"{run_id[:13]}: {len(problems)} difference(s)")
                for p in problems:
                    click.echo(f"  {p}")
        bad = sum(1 for p in found.values() if p)
        click.echo(f"checked {len(found)} run(s): {bad} differ")
    return NOTHING if any(found.values()) else 0


@click.command()
@click.argument("run", shell_complete=complete_runs)
@click.option("--branch", metavar="NAME", help="The branch to make (default: tether/<name>-<id>).")
@click.pass_context
def checkout(ctx: click.Context, run: str, branch: str | None) -> None:
    """Make a branch of RUN's snapshot commit in the project repository (and one per
    upstream stage: NAME--<stage>), so you can work from exactly that code."""
    from ..sync.checkout import checkout_run

    store = store_from(ctx)
    record = store.resolve_one(run)
    made = checkout_run(store, record, branch)
    for name, commit in made:
        click.echo(f"branch {name} at {commit[:12]}")
    click.echo(f"`git switch {made[0][0]}` to work from run {record.id[:13]}'s code")
