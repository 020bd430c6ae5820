"""`tether hash PATH...`: blake3 digests of files and folders, as run.lock records them."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

# A progress bar appears once hashing has taken this long, or at once for this many bytes.
SHOW_AFTER_S = 0.5
SHOW_AT_BYTES = 1 << 30


class ProgressBar:
    """A `progress` callback for `hash_data` that draws a rich bar on stderr when it is worth it.

    Nothing is drawn when `enabled` is false (stderr is not a terminal) or for quick work.
    """

    def __init__(self, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self.console = console
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        if p.phase == "done":
            self.close()
            return
        if self.bar is None:
            slow = time.monotonic() - self.started >= SHOW_AFTER_S
            if not (slow or p.bytes_total >= SHOW_AT_BYTES):
                return
            self._start()
        if p.phase == "scan":
            self.bar.update(self.task, description=f"listing  {p.files_total:,} files", total=None)
        else:
            self.bar.update(
                self.task,
                description=f"hashing  {p.files_done:,}/{p.files_total:,} files",
                completed=p.bytes_done,
                total=p.bytes_total,
            )

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = self.console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("listing", total=None)
        self.bar.start()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--no-cache", is_flag=True, help="Read every file; do not use the stat cache.")
@click.option(
    "-j",
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Files read at once (default: the CPU count).",
)
def hash_cmd(paths: tuple[str, ...], as_json: bool, no_cache: bool, threads: int | None) -> None:
    """Print blake3 digests of files and folders: `digest  files  bytes  path` lines.

    A file's digest is the blake3 of its bytes (as `b3sum` prints it); a folder's is the
    blake3 of its sorted manifest of (path, digest, size) lines, the digest run.lock records
    for tracked data. Unchanged files are not read again (stat cache under
    $XDG_CACHE_HOME/tether; TETHER_CACHE_DIR moves it).
    """
    from ..capture.datahash.hashing import hash_data

    bar = ProgressBar(enabled=sys.stderr.isatty())
    try:
        digests = hash_data(list(paths), threads=threads, cache=not no_cache, progress=bar)
    finally:
        bar.close()
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps([dataclasses.asdict(d) for d in digests], indent=2))
        return
    wfiles = max(len(str(d.files)) for d in digests)
    wbytes = max(len(str(d.bytes)) for d in digests)
    for d in digests:
        click.echo(f"{d.digest}  {d.files:>{wfiles}}  {d.bytes:>{wbytes}}  {d.path}")
