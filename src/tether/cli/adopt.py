"""`tether runs adopt --project-id ID RUNS...`: runs moved with a project join its id; and
`--project ID|this` of `tether runs`, the listing of one project's runs.

run.lock records the `project-id` of the project a run was made in, and run.lock never changes
once the run has ended; an adoption is an event in the run's attrs/ (tether.store.attrs, the
latest one wins), and the index reads it as the run's project (the `project` field of
`--where`).
"""

from __future__ import annotations

import uuid

import click

from .args import complete_runs
from .main import store_from

THIS = "this"


def project_of(value: str, option: str) -> str:
    """A project id as the index holds it (a lower-case UUID): `value`, or the id of the
    current project's file for `this`."""
    from ..errors import TetherError

    text = value.strip()
    if text == THIS:
        from ..workspace import find_project_file, project_id

        path = find_project_file()
        if path is None:
            raise TetherError(
                f"{option} this: no project file in this folder or a parent folder",
                "give the project id itself, or run it inside the project",
            )
        found = project_id()
        if not found:
            raise TetherError(
                f"{option} this: {path.name} has no project-id",
                f'add project-id = "{uuid.uuid4()}" to {path}',
            )
        text = found
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise TetherError(
            f"{option}: expected a project id (a UUID, as tether.toml's project-id) or "
            f"'this', found {value!r}"
        ) from None


def _canonical(recorded: str) -> str:
    """A recorded project id as the index holds it (run.lock has it as tether.toml wrote it)."""
    try:
        return str(uuid.UUID(recorded))
    except ValueError:
        return recorded


def project_where(project: str | None, where: str | None) -> str | None:
    """`--where` narrowed to the runs of `project` (`--project ID|this`); the user's own
    expression is compiled alone first, so its mistakes point into what they wrote."""
    if project is None:
        return where
    pid = project_of(project, "--project")
    if where is None:
        return f'project = "{pid}"'
    from ..store.where import compile_where

    compile_where(where)
    return f'project = "{pid}" and ({where})'


@click.command()
@click.option(
    "--project-id",
    "project",
    required=True,
    metavar="ID|this",
    help="The project the runs belong to now: its id, or 'this' for the current project's.",
)
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...", shell_complete=complete_runs)
@click.pass_context
def adopt(ctx: click.Context, project: str, runs: tuple[str, ...]) -> None:
    """Make RUNS runs of the project with id ID (runs moved or copied with a project).

    run.lock keeps the project id the run was made with; the adoption is recorded beside it
    (attrs/) and `tether runs --project` and `--where 'project = ...'` follow it.
    """
    from ..ids import short_ids
    from ..store.lifecycle import resolve_many

    pid = project_of(project, "--project-id")
    store = store_from(ctx)
    rows = resolve_many(store, runs)
    shorts = short_ids(store.index.ids())
    for row in rows:
        record = store.load(row.id)
        who = f"{shorts.get(record.id, record.id[:13])} ({record.name})"
        recorded = record.attrs.project or record.lock.project_id
        before = _canonical(recorded) if recorded else None
        if before == pid:
            click.echo(f"{who}: already in project {pid}")
            continue
        store.add_attr(record, "project", pid)
        click.echo(f"{who}: project {pid} (was {before or 'none'})")
