"""Which files a path stands for: one stat per file below it, no reads.

Symlinks are followed: a link to a file counts as that file under the link's name, a link to a
folder is walked; a link that leads back to one of its own parent folders (a loop), a broken
link, and fifos, sockets or devices are errors naming the path.

The listing of a folder is kept as bare stat tuples (`Folder.stats`), the cheapest thing
Python can build per file: when the stat cache recognises the whole tuple list, nothing else
is made for that folder's files (`Entry` objects only exist for folders it does not know).
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Callable
from dataclasses import dataclass, field

from .records import HashError

# One listed file: (name, device, inode, size, mtime_ns), in the folder's listing order.
Stat = tuple[str, int, int, int, int]
DirKey = tuple[int, int]


@dataclass(slots=True)
class Entry:
    """One file below a path: where to open it, its stat, and where the cache keeps it.

    It is also the unit of work of the reader: `links` are the other entries with the same
    stat (hard links, links to one file), read once through this one.
    """

    rel: str  # posix path relative to the root ('' when the root is the file)
    path: str  # path to open
    dev: int
    ino: int
    size: int
    mtime_ns: int
    dir_key: DirKey  # (dev, ino) of the folder that holds `name`
    name: str
    digest: bytes | None = None
    links: list[Entry] | None = None


@dataclass(slots=True, eq=False)
class Folder:
    """One listed folder: its files' stats, its sub-folders, and (once known) its manifest lines.

    `lines` are the manifest lines of the folder's own files with paths relative to the folder,
    sorted; `keys` the raw name bytes of those files, in the same order (see `compose`).
    """

    path: str
    key: DirKey
    stats: list[Stat]
    subdirs: list[tuple[str, Folder]] = field(default_factory=list)
    prefix: str = ""  # posix path of the folder relative to the root, '' or ending in '/'
    entries: list[Entry] | None = None  # set when the cache did not know the folder
    lines: bytes = b""
    keys: list[bytes] | None = None
    size: int = 0
    count: int = 0

    def make_entries(self) -> list[Entry]:
        path = self.path if self.path.endswith(os.sep) else self.path + os.sep
        prefix, key = self.prefix, self.key
        self.entries = [
            Entry(prefix + s[0], path + s[0], s[1], s[2], s[3], s[4], key, s[0]) for s in self.stats
        ]
        return self.entries


@dataclass
class Tree:
    root: str
    is_dir: bool
    entries: list[Entry] = field(default_factory=list)  # the file, for a file root
    top: Folder | None = None  # the root folder, for a folder root
    folders: list[Folder] = field(default_factory=list)  # every folder listed, in order


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


def _stat_other(e: os.DirEntry[str]) -> os.stat_result:
    """The stat of an entry that is not a plain file or folder: a link (followed) or special."""
    path = e.path
    try:
        if e.is_symlink():
            try:
                return os.stat(path)
            except FileNotFoundError:
                raise HashError(f"{path}: broken symlink (its target does not exist)")
        return e.stat(follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link to a link to itself
            raise HashError(f"{path}: symlink loop")
        raise oserror(path, exc)


def scan_file(root: str, st: os.stat_result) -> Entry:
    parent = os.path.dirname(os.path.abspath(root))
    try:
        pst = os.stat(parent)
    except OSError as exc:
        raise oserror(parent, exc)
    name = os.path.basename(os.path.abspath(root))
    return Entry(
        "", root, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, (pst.st_dev, pst.st_ino), name
    )


def scan(
    root: str,
    listed_file: Callable[[Entry], None],
    listed: Callable[[Folder], None],
) -> Tree:
    """List every file below `root` with its stat (one stat per file, no reads).

    A file root goes to `listed_file`; for a folder, `listed` gets each folder as soon as it is
    listed (its sub-folders are listed after it).
    """
    st = _stat_root(root)
    if statmod.S_ISREG(st.st_mode):
        entry = scan_file(root, st)
        listed_file(entry)
        return Tree(root, False, [entry])
    if not statmod.S_ISDIR(st.st_mode):
        raise HashError(f"{root}: cannot hash {_kind(st.st_mode)}")

    top_key = (st.st_dev, st.st_ino)
    top = Folder(root, top_key, [])
    tree = Tree(root, True, top=top)
    folders = tree.folders
    S_ISREG, S_ISDIR = statmod.S_ISREG, statmod.S_ISDIR
    # Folders still to list, with the keys of their ancestors (a key met again is a loop).
    stack: list[tuple[Folder, dict[DirKey, str]]] = [(top, {top_key: root})]
    while stack:
        folder, ancestors = stack.pop()
        dpath = folder.path
        stats = folder.stats
        append = stats.append
        subdirs = folder.subdirs
        try:
            it = os.scandir(dpath)
        except OSError as exc:
            raise oserror(dpath, exc, "cannot list folder")
        with it:
            for e in it:
                # The file type comes with the listing: only a stat per file, none per check.
                try:
                    if e.is_file(follow_symlinks=False):
                        est = e.stat(follow_symlinks=False)
                        append((e.name, est.st_dev, est.st_ino, est.st_size, est.st_mtime_ns))
                        continue
                    est = (
                        e.stat(follow_symlinks=False)
                        if e.is_dir(follow_symlinks=False)
                        else _stat_other(e)
                    )
                except OSError as exc:
                    raise oserror(e.path, exc)
                mode = est.st_mode
                if S_ISREG(mode):  # a link to a file
                    append((e.name, est.st_dev, est.st_ino, est.st_size, est.st_mtime_ns))
                elif S_ISDIR(mode):
                    key = (est.st_dev, est.st_ino)
                    path = e.path
                    if key in ancestors:
                        raise HashError(
                            f"{path}: symlink loop (it leads back to {ancestors[key]})",
                            "remove the link or hash a folder that does not contain it",
                        )
                    sub = Folder(path, key, [], prefix=folder.prefix + e.name + "/")
                    subdirs.append((e.name, sub))
                    stack.append((sub, {**ancestors, key: path}))
                else:
                    raise HashError(f"{e.path}: cannot hash {_kind(mode)}")
        folders.append(folder)
        listed(folder)
    return tree
