"""Network filesystems: telling them apart from a local disk, and the writes that are safe there.

A folder is on a *shared* (network) filesystem when the mount that holds it, the longest mount
point in /proc/mounts that is a prefix of its real path, has one of NETWORK_TYPES or a FUSE
type (`fuse.sshfs`, `fuse.s3fs`, ...). `TETHER_SHARED_FS=1` (or `0`) overrides the answer, for
tests and for setups /proc/mounts does not describe (another OS, a bind mount of NFS inside a
container). There several hosts may write the same files, and two things that are safe on a
local disk are not: SQLite (its WAL needs memory shared on one host, and file locks over NFS
are unreliable) and appending to one file from several hosts (O_APPEND is not atomic across
NFS clients). What is safe everywhere is creating a *new name* exclusively: `link(2)` and
`symlink(2)` fail with EEXIST when the name exists, in one request to the server, so exactly
one of many writers creates it. `create_exclusive` and `create_small` are built on that.

Everything here is the standard library only (the bottom layer of tether).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from pathlib import Path

SHARED_ENV = "TETHER_SHARED_FS"  # 1: treat the runs root as shared, 0: as a local disk
CACHE_DIR_ENV = "TETHER_CACHE_DIR"  # where tether keeps its local caches

# Filesystem types (the third field of /proc/mounts) that several hosts mount at once.
NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "afs",
        "panfs",
        "wekafs",
        "9p",
    }
)
MOUNTS_FILE = "/proc/mounts"

# Errors that say "this filesystem cannot make that kind of link" (so use another way).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _unescape(field: str) -> str:
    """/proc/mounts writes a space, tab, newline and backslash in a path as octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1)
def mount_table() -> tuple[tuple[str, str], ...]:
    """(mount point, fstype) of every mount, read once per process (`forget_mounts` re-reads)."""
    try:
        with open(MOUNTS_FILE, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ()
    table = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            point = _unescape(fields[1])
            table.append((point.rstrip("/") or "/", fields[2]))
    return tuple(table)


def forget_mounts() -> None:
    """Read /proc/mounts again at the next question (after mounting something)."""
    mount_table.cache_clear()
    _fstype.cache_clear()


def _existing(path: str) -> str:
    """The real path of `path`, or of its nearest existing parent (a runs root not made yet)."""
    here = os.path.abspath(path)
    while not os.path.exists(here):
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return os.path.realpath(here)


def fstype(path: str | os.PathLike[str]) -> str | None:
    """The filesystem type of the mount holding `path` (longest mount point wins)."""
    return _fstype(os.path.abspath(path))


@functools.lru_cache(maxsize=64)
def _fstype(path: str) -> str | None:
    real = _existing(path)
    best, kind = -1, None
    for point, fs in mount_table():
        if len(point) > best and (
            point == "/" or real == point or (real.startswith(point) and real[len(point)] == "/")
        ):
            best, kind = len(point), fs
    return kind


def is_network_type(kind: str | None) -> bool:
    return kind is not None and (kind in NETWORK_TYPES or kind.startswith("fuse."))


def is_shared(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is on a filesystem several hosts may write (TETHER_SHARED_FS overrides)."""
    override = os.environ.get(SHARED_ENV, "").strip().lower()
    if override in ("1", "true", "yes", "on"):
        return True
    if override in ("0", "false", "no", "off"):
        return False
    return is_network_type(fstype(path))


# -- local caches ---------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """`TETHER_CACHE_DIR`, else `$XDG_CACHE_HOME/tether`, else `~/.cache/tether`."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tether"


def local_cache_dir() -> Path:
    """A cache folder on this host's own disk: the default one, unless that is itself on a
    network filesystem (a home folder on NFS), then `<temp dir>/tether-<uid>` (node-local on
    clusters). An explicit `TETHER_CACHE_DIR` is taken as it is."""
    base = default_cache_dir()
    if os.environ.get(CACHE_DIR_ENV) or not is_network_type(fstype(base)):
        return base
    uid = os.getuid() if hasattr(os, "getuid") else 0
    # TMPDIR as tempfile would find it (tempfile itself costs more start-up than this).
    folder = Path(os.environ.get("TMPDIR") or "/tmp") / f"tether-{uid}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != uid):
        raise OSError(errno.EACCES, f"{folder} is not a folder of this user", str(folder))
    return folder / "cache"


# -- exclusive creation ---------------------------------------------------------------------------
def _tmp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"


def create_exclusive(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create `path` holding `data` unless the name exists; True when this call created it.

    The data goes to a temporary file first (fsynced), which is then hard-linked to `path`:
    readers never see a partial file, and of many writers exactly one wins. An NFS reply lost
    and retried can report EEXIST for a link that was made: the temporary file's link count
    (2 when the link exists) tells the truth. Where hard links are unsupported, the file is
    created with O_EXCL and written in place (readers then see it empty for a moment, so
    content should end with a marker such as a newline). FileNotFoundError: no such folder.
    """
    target = Path(path)
    tmp = _tmp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return os.stat(tmp).st_nlink == 2
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
        return _create_in_place(target, data)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _create_in_place(target: Path, data: bytes) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def create_small(path: str | os.PathLike[str], text: str) -> bool:
    """Create `path` holding a short `text` (under 1 KiB, no NUL) unless the name exists.

    A symbolic link whose target is the text: one request to the server, created with its
    content at once. Falls back to `create_exclusive` where symlinks are unsupported. Read it
    back with `read_small`.
    """
    try:
        os.symlink(text, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    return create_exclusive(path, text.encode("utf-8"))


def read_small(path: str | os.PathLike[str]) -> str | None:
    """What `create_small` wrote at `path`; None when there is nothing there."""
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a plain file (the fallback)
            raise
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
