"""Which files a path stands for: one stat per file below it, no reads.

Symlinks are followed: a link to a file counts as that file under the link's name, a link to a
folder is walked; a link that leads back to one of its own parent folders (a loop), a broken
link, and fifos, sockets or devices are errors naming the path.
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Callable
from dataclasses import dataclass, field

from .records import HashError


@dataclass(slots=True)
class Entry:
    """One file below a path: where to open it, its stat, and where the cache keeps it."""

    rel: str  # posix path relative to the root ('' when the root is the file)
    path: str  # path to open
    dev: int
    ino: int
    size: int
    mtime_ns: int
    dir_key: tuple[int, int]  # (dev, ino) of the folder that holds `name`
    name: str
    digest: bytes | None = None


@dataclass
class Tree:
    root: str
    is_dir: bool
    entries: list[Entry] = field(default_factory=list)


def oserror(path: str, exc: OSError, what: str = "cannot read") -> HashError:
    reason = exc.strerror or exc.__class__.__name__
    return HashError(f"{path}: {what} ({reason})")


def _stat_root(root: str) -> os.stat_result:
    try:
        return os.stat(root)
    except FileNotFoundError:
        if os.path.islink(root):
            raise HashError(f"{root}: broken symlink (its target does not exist)")
        raise HashError(f"{root}: no such file or folder")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HashError(f"{root}: symlink loop")
        raise oserror(root, exc)


def _kind(mode: int) -> str:
    if statmod.S_ISFIFO(mode):
        return "a fifo"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode):
        return "a device"
    return "not a regular file or folder"


def scan(root: str, listed: Callable[[list[Entry]], None]) -> Tree:
    """List every file below `root` with its stat (one stat per file, no reads).

    `listed` gets the files of each folder as soon as that folder is listed.
    """
    st = _stat_root(root)
    if statmod.S_ISREG(st.st_mode):
        parent = os.path.dirname(os.path.abspath(root))
        try:
            pst = os.stat(parent)
        except OSError as exc:
            raise oserror(parent, exc)
        name = os.path.basename(os.path.abspath(root))
        entry = Entry(
            "",
            root,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            (pst.st_dev, pst.st_ino),
            name,
        )
        listed([entry])
        return Tree(root, False, [entry])
    if not statmod.S_ISDIR(st.st_mode):
        raise HashError(f"{root}: cannot hash {_kind(st.st_mode)}")

    tree = Tree(root, True)
    entries = tree.entries
    top = (st.st_dev, st.st_ino)
    # Folders still to list: (path, relative prefix, its key, the keys of its ancestors).
    stack: list[tuple[str, str, tuple[int, int], dict[tuple[int, int], str]]] = [
        (root, "", top, {top: root})
    ]
    while stack:
        dpath, prefix, dkey, ancestors = stack.pop()
        before = len(entries)
        try:
            it = os.scandir(dpath)
        except OSError as exc:
            raise oserror(dpath, exc, "cannot list folder")
        with it:
            for e in it:
                name = e.name
                path = e.path
                try:
                    if e.is_symlink():
                        try:
                            est = os.stat(path)
                        except FileNotFoundError:
                            raise HashError(f"{path}: broken symlink (its target does not exist)")
                    else:
                        est = e.stat(follow_symlinks=False)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # a link to a link to itself
                        raise HashError(f"{path}: symlink loop")
                    raise oserror(path, exc)
                mode = est.st_mode
                if statmod.S_ISREG(mode):
                    entries.append(
                        Entry(
                            prefix + name,
                            path,
                            est.st_dev,
                            est.st_ino,
                            est.st_size,
                            est.st_mtime_ns,
                            dkey,
                            name,
                        )
                    )
                elif statmod.S_ISDIR(mode):
                    key = (est.st_dev, est.st_ino)
                    if key in ancestors:
                        raise HashError(
                            f"{path}: symlink loop (it leads back to {ancestors[key]})",
                            "remove the link or hash a folder that does not contain it",
                        )
                    stack.append((path, prefix + name + "/", key, {**ancestors, key: path}))
                else:
                    raise HashError(f"{path}: cannot hash {_kind(mode)}")
        if len(entries) > before:
            listed(entries[before:])
    return tree
