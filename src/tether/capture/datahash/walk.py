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

from .records import DataDigest, HashError

# One listed file: (name, device, inode, size, mtime_ns), in the folder's listing order.
Stat = tuple[str, int, int, int, int]
DirKey = tuple[int, int]

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_S_IFMT = 0o170000  # the file-type bits of st_mode (what stat.S_IFMT keeps)
_S_IFREG, _S_IFDIR, _S_IFLNK = statmod.S_IFREG, statmod.S_IFDIR, statmod.S_IFLNK


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
    `digests` (set when the cache did not know the folder) holds each file's digest, in
    `stats` order: no object per file on the way from the listing to the manifest.
    A file given as a root is a `partial` folder: its parent with that one file listed.
    """

    path: str
    key: DirKey
    stats: list[Stat]
    subdirs: list[tuple[str, Folder]] = field(default_factory=list)
    prefix: str = ""  # posix path of the folder relative to the root, '' or ending in '/'
    entries: list[Entry] | None = None  # `make_entries`, for the reference manifest
    lines: bytes = b""
    keys: list[bytes] | None = None
    size: int = 0
    count: int = 0
    digests: list[bytes | None] | None = None
    todo: list[int] | None = None  # indices of the files the caller reads itself
    linked: list[int] | None = None  # indices of hard links and links to files (maybe met twice)
    changed: bool = False  # some file's stat as read differs from the listing (stats updated)
    partial: str | None = None  # for a file root: the root, the path to open
    sig: bytes = b""  # `cache.signature(stats)`, once computed
    packed: bool = False  # `stats` emptied, held by `sig` alone (see `hashing`)
    whole: bool = False  # the cache holds (or will hold) the folder whole: lines and all

    def make_entries(self) -> list[Entry]:
        path = self.path if self.path.endswith(os.sep) else self.path + os.sep
        prefix, key = self.prefix, self.key
        self.entries = [
            Entry(prefix + s[0], path + s[0], s[1], s[2], s[3], s[4], key, s[0]) for s in self.stats
        ]
        return self.entries

    def file_path(self, i: int) -> str:
        if self.partial is not None:
            return self.partial
        name = self.stats[i][0]
        return self.path + name if self.path.endswith(os.sep) else self.path + os.sep + name


@dataclass
class Tree:
    root: str
    is_dir: bool
    top: Folder  # the root folder, or for a file root the partial folder that holds it
    folders: list[Folder] = field(default_factory=list)  # every folder listed, in order
    digest: DataDigest | None = None  # set when the cache knew the whole tree


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


def scan_file(root: str, st: os.stat_result) -> Folder:
    """A file given as a root: the partial listing of its parent folder, with only that file
    (under the root's own name, so a link given as a root reads what it leads to)."""
    full = os.path.abspath(root)
    parent = os.path.dirname(full)
    try:
        pst = os.stat(parent)
    except OSError as exc:
        raise oserror(parent, exc)
    name = os.path.basename(full)
    stats = [(name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)]
    return Folder(parent, (pst.st_dev, pst.st_ino), stats, partial=root)


def _mark(folder: Folder, i: int) -> None:
    if folder.linked is None:
        folder.linked = []
    folder.linked.append(i)


def _follow(dpath: str, name: str, fd: int) -> os.stat_result:
    """The stat of what the link `name` in the open folder `fd` leads to."""
    path = os.path.join(dpath, name)
    try:
        return os.stat(name, dir_fd=fd)
    except FileNotFoundError:
        raise HashError(f"{path}: broken symlink (its target does not exist)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link to a link to itself
            raise HashError(f"{path}: symlink loop")
        raise oserror(path, exc)


def scan(
    root: str,
    listed_file: Callable[[Folder], None],
    listed: Callable[[Folder], None],
) -> Tree:
    """List every file below `root` with its stat (one stat per file, no reads).

    A file root goes to `listed_file` (as a partial folder, see `scan_file`); for a folder,
    `listed` gets each folder as soon as it is listed (its sub-folders are listed after it).

    Each folder is opened once and its names stat'ed relative to it (`fstatat`): no path walk
    per file, and no `DirEntry` per file (`listdir` gives bare names; the type comes from the
    stat, which is needed anyway). That loop is most of a re-check's time (issue 19), so its
    body is kept to the stat and one tuple.
    """
    st = _stat_root(root)
    if statmod.S_ISREG(st.st_mode):
        single = scan_file(root, st)
        listed_file(single)
        return Tree(root, False, single)
    if not statmod.S_ISDIR(st.st_mode):
        raise HashError(f"{root}: cannot hash {_kind(st.st_mode)}")

    top_key = (st.st_dev, st.st_ino)
    top = Folder(root, top_key, [])
    tree = Tree(root, True, top=top)
    folders = tree.folders
    stat, listdir, close = os.stat, os.listdir, os.close
    sep = os.sep
    # Folders still to list, with the keys of their ancestors (a key met again is a loop).
    stack: list[tuple[Folder, dict[DirKey, str]]] = [(top, {top_key: root})]
    while stack:
        folder, ancestors = stack.pop()
        dpath = folder.path
        stats = folder.stats
        append = stats.append
        try:
            fd = os.open(dpath, _DIR_FLAGS)
            try:
                names = listdir(fd)
            except BaseException:
                close(fd)
                raise
        except OSError as exc:
            raise oserror(dpath, exc, "cannot list folder")
        try:
            for name in names:
                try:
                    est = stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    raise oserror(os.path.join(dpath, name), exc)
                mode = est.st_mode & _S_IFMT
                if mode == _S_IFREG:
                    append((name, est.st_dev, est.st_ino, est.st_size, est.st_mtime_ns))
                    if est.st_nlink > 1:  # a hard link: its other names may be listed too
                        _mark(folder, len(stats) - 1)
                    continue
                if mode == _S_IFLNK:
                    est = _follow(dpath, name, fd)
                    mode = est.st_mode & _S_IFMT
                    if mode == _S_IFREG:  # a link to a file: that file under the link's name
                        append((name, est.st_dev, est.st_ino, est.st_size, est.st_mtime_ns))
                        _mark(folder, len(stats) - 1)
                        continue
                path = dpath + name if dpath.endswith(sep) else dpath + sep + name
                if mode != _S_IFDIR:
                    raise HashError(f"{path}: cannot hash {_kind(est.st_mode)}")
                key = (est.st_dev, est.st_ino)
                if key in ancestors:
                    raise HashError(
                        f"{path}: symlink loop (it leads back to {ancestors[key]})",
                        "remove the link or hash a folder that does not contain it",
                    )
                sub = Folder(path, key, [], prefix=folder.prefix + name + "/")
                folder.subdirs.append((name, sub))
                stack.append((sub, {**ancestors, key: path}))
        finally:
            close(fd)
        folders.append(folder)
        listed(folder)
    return tree
