"""Moving files to and from a remote: a plain folder, or anything rclone reaches.

One owner of rclone: every rclone process starts here, through `tether.process.Child` (its own
process group, output pumped by threads), with `--use-json-log` so its statistics (bytes and
files moved) are read from its log, for the progress bar and for the counts a push reports.
A folder remote needs no rclone: files are copied to a temporary name beside their place and
renamed into it, so a killed copy never leaves a half file under a real name.

Paths on the remote are posix, relative to the remote's top (`runs/<id>/metrics.jsonl`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import TetherError
from ..process import Child

Progress = Callable[[int, int], None]  # (files done, bytes done) since the transfer began
RCLONE_HINT = "install rclone (Debian: `apt-get install rclone`; see docs/sharing.md)"


@dataclass
class Moved:
    files: int = 0
    bytes: int = 0

    def add(self, other: Moved) -> None:
        self.files += other.files
        self.bytes += other.bytes


class Transport(Protocol):
    url: str

    def read_texts(self, folder: str, suffix: str) -> list[str]:
        """The contents of every file of `folder` whose name ends with `suffix` ([] if none)."""
        ...

    def upload(
        self, local: Path, rels: list[str], dest: str, progress: Progress | None = None
    ) -> Moved:
        """Copy `local/rel` to `dest/rel` for each rel; what moved."""
        ...

    def download(
        self, src: str, rels: list[str], local: Path, progress: Progress | None = None
    ) -> Moved: ...


class FolderTransport:
    def __init__(self, url: str, top: Path) -> None:
        self.url = url
        self.top = top

    def read_texts(self, folder: str, suffix: str) -> list[str]:
        out: list[str] = []
        try:
            entries = sorted(os.scandir(self.top / folder), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise TetherError(f"remote folder {self.top / folder} cannot be read ({exc.strerror})")
        for entry in entries:
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                with (
                    contextlib.suppress(OSError, UnicodeDecodeError),
                    open(entry.path, encoding="utf-8") as fh,
                ):
                    out.append(fh.read())
        return out

    def upload(
        self, local: Path, rels: list[str], dest: str, progress: Progress | None = None
    ) -> Moved:
        return _copy_files(local, rels, self.top / dest, progress)

    def download(
        self, src: str, rels: list[str], local: Path, progress: Progress | None = None
    ) -> Moved:
        return _copy_files(self.top / src, rels, local, progress)


def _copy_files(src: Path, rels: list[str], dest: Path, progress: Progress | None) -> Moved:
    moved = Moved()
    for rel in rels:
        source, target = src / rel, dest / rel
        try:
            st = os.stat(source)
        except OSError as exc:
            raise TetherError(f"cannot read {source} ({exc.strerror})")
        with contextlib.suppress(OSError):
            there = os.stat(target)
            if there.st_size == st.st_size and there.st_mtime_ns == st.st_mtime_ns:
                continue  # copied whole by an earlier, interrupted transfer
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            shutil.copystat(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        moved.files += 1
        moved.bytes += st.st_size
        if progress is not None:
            progress(moved.files, moved.bytes)
    return moved


class _Collect:
    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.parts: list[str] = []
        self._pending = ""
        self._on_line = on_line

    def feed(self, data: bytes, text: str) -> None:
        self.parts.append(text)
        if self._on_line is not None:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._on_line(line)

    def close(self, text: str) -> None:
        self.parts.append(text)
        if self._on_line is not None and (self._pending + text).strip():
            self._on_line(self._pending + text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class RcloneTransport:
    def __init__(self, url: str) -> None:
        self.url = url

    def path(self, rel: str) -> str:
        base = self.url if self.url.endswith((":", "/")) else self.url + "/"
        return base + rel if rel else self.url

    def _run(
        self, args: list[str], progress: Progress | None = None, missing_ok: bool = False
    ) -> tuple[str, Moved]:
        moved = Moved()
        errors: list[str] = []

        def on_log(line: str) -> None:
            try:
                entry = json.loads(line)
            except ValueError:
                if line.strip():
                    errors.append(line.strip())
                return
            stats = entry.get("stats") if isinstance(entry, dict) else None
            if isinstance(stats, dict):
                moved.bytes = int(stats.get("bytes") or 0)
                moved.files = int(stats.get("transfers") or 0)
                if progress is not None:
                    progress(moved.files, moved.bytes)
            elif isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                errors.append(str(entry.get("msg", "")).strip())

        out = _Collect()
        sinks = {"stdout": out, "stderr": _Collect(on_log)}
        argv = ["rclone", *args, "--use-json-log", "-v", "--stats", "1s"]
        argv += ["--stats-log-level", "NOTICE"]
        child = Child(argv, lambda name: sinks[name], hint=RCLONE_HINT)
        child.start()
        code, _ = child.wait()
        if code != 0:
            text = "; ".join(e for e in errors if e)[:400]
            if missing_ok and re.search(r"directory not found|not found|doesn't exist", text):
                return "", moved
            raise TetherError(
                f"rclone {args[0]} failed (exit {code}): {text or 'no message'}",
                "check the remote with `rclone lsf REMOTE:path` (its config, the network)",
            )
        return out.text, moved

    def read_texts(self, folder: str, suffix: str) -> list[str]:
        text, _ = self._run(
            ["cat", self.path(folder), "--include", f"*{suffix}", "--max-depth", "1"],
            missing_ok=True,
        )
        # Each file is one line of JSON ending in a newline: their concatenation splits back.
        return [line for line in text.split("\n") if line.strip()]

    def _copy(self, src: str, dest: str, rels: list[str], progress: Progress | None) -> Moved:
        if not rels:
            return Moved()
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as fh:
            fh.write("".join(rel + "\n" for rel in rels))
            listing = fh.name
        try:
            _, moved = self._run(
                ["copy", src, dest, "--files-from-raw", listing, "--no-traverse"], progress
            )
        finally:
            os.unlink(listing)
        return moved

    def upload(
        self, local: Path, rels: list[str], dest: str, progress: Progress | None = None
    ) -> Moved:
        return self._copy(os.fspath(local), self.path(dest), rels, progress)

    def download(
        self, src: str, rels: list[str], local: Path, progress: Progress | None = None
    ) -> Moved:
        local.mkdir(parents=True, exist_ok=True)
        return self._copy(self.path(src), os.fspath(local), rels, progress)


def rclone_version() -> str | None:
    """rclone's version (`v1.60.1`), None when it is not on PATH (for `tether doctor`)."""
    if shutil.which("rclone") is None:
        return None
    out = _Collect()
    child = Child(["rclone", "version"], lambda name: out if name == "stdout" else _Collect())
    child.start()
    child.wait()
    words = out.text.split()
    return words[1] if len(words) > 1 else None


def open_transport(url: str, folder: Path | None) -> Transport:
    """The transport of a remote: `folder` for a folder remote, else rclone (which must be on
    PATH)."""
    if folder is not None:
        return FolderTransport(url, folder)
    if shutil.which("rclone") is None:
        raise TetherError(f"remote {url} needs rclone, which is not on PATH", RCLONE_HINT)
    return RcloneTransport(url)
