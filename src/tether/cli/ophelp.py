"""`tether run OP --help`: the operation's own help, its flags with defaults and descriptions.

The `run` command's class: a `--help` (or `-h`) after an operation (or a script) name shows that
operation's flags instead of the command's options; `tether run --help` is the usual help.
"""

from __future__ import annotations

import json
from typing import Any

import click

HELP_WORDS = ("-h", "--help")


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def op_help(project: Any, op: Any) -> str:
    lines = [f"Usage: tether run {op.name} [FLAG=VALUE]... [OPTIONS]", ""]
    about = op.description or op.listing_description
    if about:
        lines += [f"  {about}", ""]
    if op.version is not None:
        lines += [f"  version {op.version}", ""]
    if not op.flags:
        lines.append("Flags: none")
    else:
        lines.append("Flags:")
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
            lines.append(f"  {cell:<{left}}  {'; '.join(notes)}".rstrip())
    lines += ["", "`tether run --help` lists the options of tether run."]
    return "\n".join(lines)


class OpHelpCommand(click.Command):
    """`tether run`: `--help` after an op name is that op's help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words = args[: args.index("--")] if "--" in args else args
        if any(w in HELP_WORDS for w in words):
            name = next((w for w in words if not w.startswith("-") and "=" not in w), None)
            if name is not None:
                text = self._op_help(name)
                if text is not None:
                    click.echo(text)
                    ctx.exit(0)
        return super().parse_args(ctx, args)

    @staticmethod
    def _op_help(name: str) -> str | None:
        from ..errors import TetherError
        from ..project.script import load_for_run

        try:
            project = load_for_run(name)
        except TetherError:
            return None  # the usual help; `tether run OP` then says what is wrong
        op = project.ops.get(name)
        return op_help(project, op) if op is not None else None
