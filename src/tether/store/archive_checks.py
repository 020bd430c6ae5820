"""The checks an archive passes before `tether archive import` writes anything: each member's
name and kind, every link resolved as extraction will lay it out, and the size it unpacks to."""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import TetherError
from ..ids import is_run_id

FORMAT = "tether-archive"
MANIFEST = "manifest.json"
RUNS = "runs"
SNAPSHOTS = "snapshots"


class UnsafeArchive(TetherError):
    """An archive member that could write outside its place: nothing is extracted."""


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member that could write outside its place; names the member in the message."""
    name = member.name

    def refuse(why: str) -> UnsafeArchive:
        return UnsafeArchive(f"archive member {name!r} refused: {why}", "nothing was imported")

    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise refuse("absolute path")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise refuse("its path leaves the archive ('..')")
    if member.isdev() or member.ischr() or member.isblk() or member.isfifo():
        raise refuse("a device or FIFO")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise refuse("not a file, folder or link")
    top = parts[0]
    if top == MANIFEST and len(parts) == 1:
        if not member.isfile():
            raise refuse("the manifest is not a file")
        return
    if top == SNAPSHOTS:
        if member.isdir() and len(parts) == 1:
            return
        if len(parts) == 2 and member.isfile() and parts[1].endswith(".bundle"):
            return
        raise refuse("unexpected entry under snapshots/")
    if top != RUNS:
        raise refuse("not part of a tether archive (expected manifest.json, runs/, snapshots/)")
    if len(parts) == 1:
        if not member.isdir():
            raise refuse("runs is not a folder")
        return
    if not is_run_id(parts[1]):
        raise refuse(f"{parts[1]!r} is not a run id")
    run_top = f"{RUNS}/{parts[1]}"
    if len(parts) == 2 and not member.isdir():
        raise refuse("a run folder that is not a folder")
    if member.issym():
        link = member.linkname
        if link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
            raise refuse(f"a link to an absolute path ({link})")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
        if not (resolved == run_top or resolved.startswith(run_top + "/")):
            raise refuse(f"a link pointing outside its run folder ({link})")
    if member.islnk():
        resolved = posixpath.normpath(member.linkname)
        if not resolved.startswith(run_top + "/"):
            raise refuse(f"a hard link pointing outside its run folder ({member.linkname})")


def check_links(members: Iterable[tarfile.TarInfo]) -> None:
    """Resolve every link against the archive's own members, as extraction will lay them out.

    A link is followed component by component through the archive's links (`a -> .`, then
    `b -> a/..` is the run's parent, not `.`) and must end at a file or folder of the archive
    inside its own run folder; no member is written through a link, and no name comes twice.
    """
    kinds: dict[str, str] = {}  # name -> "dir" | "file" | "link"
    links: dict[str, str] = {}  # name -> link target (symbolic links)
    order: list[tuple[str, tarfile.TarInfo]] = []

    def refuse(name: str, why: str) -> UnsafeArchive:
        return UnsafeArchive(f"archive member {name!r} refused: {why}", "nothing was imported")

    def resolve(path: str, name: str) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        out: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not out:
                    raise refuse(name, "a link pointing outside the archive")
                out.pop()
                continue
            here = "/".join([*out, part])
            if here in links:
                hops += 1
                if hops > 40:
                    raise refuse(name, "a loop of links")
                target = [p for p in links[here].split("/") if p not in ("", ".")]
                parts = [*out, *target, *parts]  # relative to the link's folder
                out = []
                continue
            out.append(part)
        return "/".join(out)

    for member in members:
        name = posixpath.normpath(member.name.replace("\\", "/"))
        kind = "link" if member.issym() or member.islnk() else "dir" if member.isdir() else "file"
        if name in kinds and not (kind == "dir" and kinds[name] == "dir"):
            raise refuse(name, "it comes twice in the archive")
        kinds[name] = kind
        if member.issym():
            links[name] = member.linkname
        order.append((name, member))
    seen: set[str] = set()
    for name, member in order:
        parent = posixpath.dirname(name)
        if parent and resolve(parent, name) != parent:
            raise refuse(name, "its path goes through a link")
        parts = name.split("/")
        if member.issym() or member.islnk():
            run_top = "/".join(parts[:2])
            if member.issym():
                target = resolve(posixpath.join(parent, member.linkname), name)
            else:
                target = resolve(member.linkname, name)
            if not (target == run_top or target.startswith(run_top + "/")):
                raise refuse(name, f"a link pointing outside its run folder ({member.linkname})")
            if target != run_top and kinds.get(target) not in ("dir", "file"):
                raise refuse(name, f"a link to {member.linkname}, not a file or folder of the run")
            if member.islnk() and (kinds.get(target) != "file" or target not in seen):
                raise refuse(name, f"a hard link to {member.linkname}, not a file before it")
        seen.add(name)


# An archive without a declared size (written before tether recorded one) may unpack to at most
# this many times its own size, with a floor for small archives of incompressible files.
MAX_RATIO = 100
RATIO_FLOOR = 16 << 20
SLACK = 16 << 20  # files that grew while the export ran


def check_budget(
    members: Iterable[tarfile.TarInfo], manifest: dict[str, Any], source: Path, root: Path
) -> int:
    """Refuse, before anything is written, an archive that unpacks to more than it says or fits."""
    files = [m for m in members if m.isfile() and m.name != MANIFEST]
    runs = sum(m.size for m in files if m.name.startswith(f"{RUNS}/"))
    need = sum(m.size for m in files)  # the runs and the snapshot bundles
    declared = manifest.get("bytes")  # the runs' files only: bundles are made after it
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 0:
        limit = declared + max(declared // 10, SLACK)
        if runs > limit:
            raise UnsafeArchive(
                f"{source} unpacks to {runs} bytes but its {MANIFEST} says {declared}",
                "nothing was imported; the archive was altered or crafted",
            )
    else:
        limit = max(RATIO_FLOOR, MAX_RATIO * source.stat().st_size)
        if need > limit:
            raise UnsafeArchive(
                f"{source} unpacks to {need} bytes, {need // max(source.stat().st_size, 1)} "
                f"times its size, and its {MANIFEST} declares no size",
                "nothing was imported; export it again with this tether",
            )
    free = shutil.disk_usage(root).free
    if need > free:
        raise TetherError(
            f"{source} unpacks to {need} bytes; {root} has {free} free",
            "free space, or import into another runs root",
        )
    return need
