"""`tether ops [--json]`: the operations of the project file, with their flags and defaults."""

from __future__ import annotations

import json
from typing import Any

import click


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def op_json(op: Any) -> dict[str, Any]:
    return {
        "name": op.name,
        "description": op.description,
        "exec": op.exec,
        "flags": [
            {
                "name": f.name,
                "default": f.default,
                "description": f.description,
                "choices": f.choices,
                "source": f.source,
            }
            for f in op.flags.values()
        ],
        "config_files": [str(p) for p in op.config_files],
        "sourcecode": op.sourcecode,
        "depends": [
            {k: getattr(d, k) for k in ("type", "files", "op", "where", "name", "target")}
            for d in op.depends
        ],
        "output_scalars": op.output_scalars,
        "needed": op.needed,
        "default": op.default,
        "version": op.version,
        "available": op.unavailable is None,
        "unavailable": op.unavailable,  # why not, on this machine
    }


@click.command("ops")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of operations.")
def ops(as_json: bool) -> None:
    """List the operations of tether.toml with their descriptions and flags.

    Each flag shows its default, then its description and the config file it came from.
    `tether run OP name=value` sets a flag. An operation whose `exec` has no command for this
    platform is listed as unavailable here.
    """
    from ..project.parse import load_project

    project = load_project()
    for warning in project.warnings:
        click.echo(f"tether: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps([op_json(op) for op in project.ops.values()], indent=2, default=str))
        return
    if not project.ops:
        click.echo(f"no operations in {project.path.name}: add an [ops.NAME] table", err=True)
        return
    width = max(len(name) for name in project.ops)
    if project.namespace:  # gage's `$namespace`: recorded with each run (--where namespace = ...)
        click.echo(f"namespace: {project.namespace}\n")
    for i, op in enumerate(project.ops.values()):
        if i:
            click.echo("")
        about = op.listing_description or op.description  # gage's listing-description first
        mark = " (default)" if op.default else ""
        click.echo(f"{op.name:<{width}}  {about or ''}{mark}".rstrip())
        if op.unavailable is not None:
            click.echo(f"  unavailable here: {op.unavailable}")
        if not op.flags:
            click.echo("  (no flags)")
            continue
        cells = [(f"{f.name}={_shown(f.default)}", f) for f in op.flags.values()]
        left = max(len(c) for c, _ in cells)
        for cell, flag in cells:
            notes = []
            if flag.description:
                notes.append(flag.description)
            if flag.choices:
                notes.append("one of " + ", ".join(_shown(c) for c in flag.choices))
            if flag.source:
                notes.append(f"from {flag.source}")
            click.echo(f"  {cell:<{left}}  {'; '.join(notes)}".rstrip())
