"""`tether cat RUN FILE`: print a file of a run (output.log, run.lock, summary.json, ...)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .args import run_argument
from .main import store_from

SNIFF = 8192
CHUNK = 1 << 16


def looks_binary(head: bytes) -> bool:
    """NUL bytes, or bytes that are not UTF-8 (a cut multi-byte character at the end is fine)."""
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 3
    return False


def _listing(folder: Path) -> str:
    try:
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder))
    except OSError:
        return ""
    shown = ", ".join(names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


@click.command()
@run_argument()
@click.argument("file", metavar="FILE")
@click.option("--binary", is_flag=True, help="Write a binary file to stdout as it is.")
@click.pass_context
def cat(ctx: click.Context, run: str, file: str, binary: bool) -> None:
    """Print FILE of RUN: a path inside the run folder, such as output.log, run.lock,
    summary.json or metrics.jsonl.

    Paths that lead out of the run folder (absolute paths, `..`, links elsewhere) are refused, and
    so are binary files unless --binary.
    """
    from ..errors import TetherError

    store = store_from(ctx)
    record = store.resolve_one(run)
    base = Path(os.path.realpath(record.dir))
    short = record.id[:13]
    if os.path.isabs(file) or file.startswith("~"):
        raise TetherError(
            f"{file!r} is not a path inside run {short}", "give it relative to the run folder"
        )
    target = Path(os.path.realpath(base / file))
    if target != base and base not in target.parents:
        raise TetherError(f"{file!r} leads out of the folder of run {short}")
    if not target.exists():
        hint = _listing(base)
        raise TetherError(
            f"run {short} ({record.name}) has no {file}",
            f"it has: {hint}" if hint else "its folder is empty",
        )
    if target.is_dir():
        raise TetherError(f"{file} is a folder in run {short}", f"it holds: {_listing(target)}")
    out = sys.stdout.buffer
    try:
        fh = open(target, "rb")  # noqa: SIM115
    except OSError as exc:
        raise TetherError(f"cannot read {file} of run {short} ({exc.strerror})")
    with fh:
        head = fh.read(SNIFF)
        if not binary and looks_binary(head):
            size = os.fstat(fh.fileno()).st_size
            raise TetherError(
                f"{file} of run {short} is binary ({size} bytes)",
                "pass --binary to write it to stdout as it is",
            )
        out.write(head)
        while chunk := fh.read(CHUNK):
            out.write(chunk)
    out.flush()
