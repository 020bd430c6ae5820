"""Atomic file writes: a killed process leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .patterns import LazyPattern

# The temp names of atomic writes (`.<name>.<pid>.<12 hex>.tmp`): only these are ever cleaned.
_TEMP = LazyPattern(r"^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$")
ORPHAN_AGE = 600.0  # seconds: older than any write in flight, on this host or another
_swept: set[str] = set()  # folders already cleaned by this process
_umask: int | None = None  # where /proc cannot tell it: read once (see current_umask)


def current_umask() -> int:
    """This process's umask, without changing it: Linux reports it in /proc/self/status (the
    set-and-restore of os.umask is not thread-safe: another thread creating a file in between
    would get umask 0). Elsewhere it is read that way once and kept."""
    global _umask
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return _umask


def follow_umask(path: str | os.PathLike[str], mode: int = 0o666) -> None:
    """Give a file tether created the mode a file made by the user would have: `mode` less the
    umask. For files created by code that picks its own mode (SQLite makes its databases 0644
    whatever the umask), so a group sharing a runs root under umask 002 can write them. A file
    of another owner is left as it is."""
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~current_umask())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid <= 0x7FFFFFFF
    return True


def sweep_orphans(folder: Path, *, now: float | None = None) -> list[str]:
    """Remove the temp files of atomic writes killed mid-way in `folder`: tether's own temp names
    only, older than ORPHAN_AGE and whose writer's pid is not alive here. Returns their names."""
    removed: list[str] = []
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or now - st.st_mtime < ORPHAN_AGE:
                continue
            if _alive(int(m.group(1))):
                continue
            os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            continue
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write to a temp file in the same folder, fsync, rename over `path`, fsync the folder.
    Not `durable`: open, write, close and rename only (a batch's child records, synced in bulk
    by their writer). The first write into a folder sweeps it for a killed write's temps, unless
    the caller made the folder itself (`made_folder`)."""
    target = os.fspath(path)
    folder, name = os.path.split(target)
    # A unique name in the same folder (so the rename is atomic), made without `tempfile`,
    # whose import costs more start-up than this whole write. 0o666 less the umask, like any
    # file the user makes (mkstemp's 0600 would hide run records from the team).
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write, not a file object: no fstat, ioctl or lseek
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(Path(folder or "."))
    key = folder or "."
    if key not in _swept:  # once per folder and process: the next write after a crash
        made_folder(key)
        sweep_orphans(Path(key))


def made_folder(folder: str | os.PathLike[str]) -> None:
    """`folder` was just made by this process: it holds no temp of a killed write, so atomic
    writes into it do not sweep it."""
    if len(_swept) > 10_000:
        _swept.clear()  # a long batch driver: bounded memory, an occasional second look
    _swept.add(os.fspath(folder))


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_text(path, text, durable=durable)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
