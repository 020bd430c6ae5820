"""`tether check [--json]`: validate the project file and report the health of the setup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..git import version as git_version


def _git() -> dict[str, Any]:
    exe, version = git_version(timeout=10)
    return {"found": version is not None, "version": version, "path": exe}


def _project() -> dict[str, Any]:
    from ..project.messages import ProjectError
    from ..project.parse import load_project
    from ..workspace import find_project_file

    info: dict[str, Any] = {
        "path": None,
        "valid": None,
        "project_id": None,
        "ops": [],
        "errors": [],
        "warnings": [],
    }
    path = find_project_file()
    if path is None:
        return info
    info["path"] = str(path)
    try:
        project = load_project(path=path)
    except ProjectError as exc:
        info["valid"] = False
        info["errors"] = exc.problems
        info["warnings"] = exc.warnings
        return info
    info.update(
        valid=True,
        project_id=project.project_id,
        ops=sorted(project.ops),
        warnings=project.warnings,
    )
    return info


def _runs_root(explicit: str | None) -> dict[str, Any]:
    import os

    from ..workspace import resolve_runs_root

    root = resolve_runs_root(explicit)
    info: dict[str, Any] = {
        "path": str(root),
        "exists": root.is_dir(),
        "writable": False,
        "problem": None,
    }
    if root.exists() and not root.is_dir():
        info["problem"] = f"runs root {root} is not a folder"
    elif root.is_dir():
        info["writable"] = os.access(root, os.W_OK | os.X_OK)
        if not info["writable"]:
            info["problem"] = f"runs root {root} is not writable"
    else:
        # Made on the first run: it must be creatable under its nearest existing parent.
        parent = next((p for p in root.parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            info["problem"] = f"runs root {root} cannot be created ({parent} is not a folder)"
        elif not os.access(parent, os.W_OK | os.X_OK):
            info["problem"] = f"runs root {root} cannot be created ({parent} is not writable)"
        else:
            info["writable"] = True
    return info


def _index(root: Path) -> dict[str, Any]:
    import sqlite3

    from ..mounts import fstype
    from ..store import Store
    from ..store.index_health import diagnose, trouble

    store = Store(root)
    path = store.index_path  # on a shared filesystem: this host's cache of the index
    info: dict[str, Any] = {
        "path": str(path),
        "exists": path.is_file(),
        "state": "missing",
        "ok": True,
        "check": None,
        "runs": None,
        "problem": None,
        "shared": store.shared,
        "filesystem": fstype(root),
    }
    if not info["exists"]:
        return info
    # The index's real state: what the next command would find (read-only: nothing changes).
    state, detail = diagnose(path, thorough=True)
    info["state"], info["check"] = state, detail
    reindex = "`tether runs reindex` rebuilds it from the run folders"
    if state == "ok":
        info["check"] = "ok"
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
            try:
                info["runs"] = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            state, info["check"] = "unavailable", str(exc)
        if info["runs"] == 0 and store.has_run_folder():
            state = "schema-only"
            info["problem"] = (
                f"index {path} lists no run while run folders exist; the next command or {reindex}"
            )
        elif state == "ok" and os.access(root, os.W_OK) and not os.access(path, os.W_OK):
            state = "read-only"  # chmod or chattr +i: reads work, every write would fail
            info["problem"] = (
                f"index {path} is not writable: runs cannot be created or changed "
                "(chmod u+w, or chattr -i, the file)"
            )
    elif state in ("empty", "incomplete"):
        info["problem"] = f"index {path} is {state} ({detail}); the next command or {reindex}"
    elif state == "damaged":
        info["problem"] = f"index {path} is damaged ({detail}); {reindex}"
    if state == "unavailable":
        info["problem"] = trouble(path, info["check"] or "unknown error")
    info["state"] = state
    info["ok"] = info["problem"] is None
    return info


def _orphans(root: Path) -> list[dict[str, object]]:
    """Run folders a killed creator left (store/orphans.py): reported, removed only by
    `tether purge --orphans`."""
    from ..store.orphans import find_orphans

    return [o.to_dict() for o in find_orphans(root)] if root.is_dir() else []


def build_report(runs_dir: str | None) -> dict[str, Any]:
    import platform
    import sys

    from .. import __version__

    root = _runs_root(runs_dir)
    report: dict[str, Any] = {
        "ok": True,
        "tether": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "git": _git(),
        "project": _project(),
        "runs_root": root,
        "index": _index(Path(root["path"])),
        "orphans": _orphans(Path(root["path"])),
    }
    report["ok"] = not (
        report["project"]["errors"] or root["problem"] or report["index"]["problem"]
    )
    return report


def exit_code(report: dict[str, Any]) -> int:
    if report["project"]["errors"]:
        return 2
    if report["runs_root"]["problem"] or report["index"]["problem"]:
        return 1
    return 0


def _print(report: dict[str, Any]) -> None:
    from ..project.messages import display_path

    project, root, index, git = (
        report["project"],
        report["runs_root"],
        report["index"],
        report["git"],
    )
    rows: list[tuple[str, str]] = [
        ("tether", report["tether"]),
        ("python", f"{report['python']['version']} ({report['python']['executable']})"),
        (
            "git",
            git["version"] if git["found"] else "missing (runs copy their source files instead)",
        ),
    ]
    if project["path"] is None:
        rows.append(("project", "none (`tether init` writes a tether.toml)"))
    else:
        shown = display_path(Path(project["path"]))
        if project["valid"]:
            rows.append(("project", shown))
            rows.append(("project-id", project["project_id"] or "none"))
            ops = project["ops"]
            rows.append(("ops", f"{len(ops)}" + (f": {', '.join(ops)}" if ops else "")))
        else:
            n = len(project["errors"])
            rows.append(("project", f"{shown} (invalid: {n} problem{'s' if n > 1 else ''})"))
    if root["problem"]:
        state = "problem"
    elif root["exists"]:
        state = "exists, writable"
    else:
        state = "not made yet; the first run makes it"
    rows.append(("runs root", f"{root['path']} ({state})"))
    if index["shared"]:
        rows.append(("shared", f"yes ({index['filesystem']}): the index is a cache on this host"))
    if not index["exists"]:
        rows.append(("index", "none yet (made by the first run)"))
    elif index["ok"]:
        n = index["runs"]
        rows.append(("index", f"{index['path']} (ok, {n} run{'' if n == 1 else 's'})"))
    else:
        rows.append(("index", f"{index['path']} ({index['state']})"))
    for key, value in rows:
        click.echo(f"{key:<10}  {value}")
    for warning in project["warnings"]:
        click.echo(f"tether: warning: {warning}", err=True)
    if report["orphans"]:
        n, first = len(report["orphans"]), report["orphans"][0]["path"]
        click.echo(
            f"tether: warning: {n} orphan run folder{'s' if n > 1 else ''} left by a killed "
            f"creator (e.g. {first}); `tether purge --orphans` removes them",
            err=True,
        )
    for problem in [*project["errors"], root["problem"], index["problem"]]:
        if problem:
            click.echo(f"tether: error: {problem}", err=True)
    if report["ok"]:
        click.echo("all good")


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--run",
    "run_spec",
    metavar="RUN",
    help="Re-verify a finished run: its files, data, snapshot refs and lock digest.",
)
@click.option("--no-cache", is_flag=True, help="With --run: read every file, even unchanged ones.")
@click.pass_context
def check(ctx: click.Context, as_json: bool, run_spec: str | None, no_cache: bool) -> None:
    """Validate the project file and report tether, Python, git, the runs root and its index.

    Exit status: 0 when all is well, 2 when the project file is wrong, 1 when the runs root or
    the index is unusable. With --run RUN: what drifted since the run ended (files modified,
    missing or added against its manifest.json, data digests, snapshot refs, lock digest), one
    line per problem, exit 1 when something did.
    """
    obj = ctx.find_root().obj or {}
    if run_spec is not None:
        from .check_run import check_run, report_run
        from .main import store_from

        ctx.exit(report_run(check_run(store_from(ctx), run_spec, cache=not no_cache), as_json))
    if no_cache:
        raise click.UsageError("--no-cache goes with --run RUN")
    report = build_report(obj.get("runs_dir"))
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    ctx.exit(exit_code(report))
