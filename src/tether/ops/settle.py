"""At a run's end, the links tether staged into its folder become hard links (or copies on
another filesystem), so archives and sync carry the inputs; links the command made or replaced
are left alone. `staged_links` finds what a killed earlier attempt left, for a restart."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .staging import STAGED_LIST, StagedPath, Staging


def settle(staging: Staging, run_dir: Path) -> list[str]:
    """The run ends: each symbolic link `stage` made (still pointing where it pointed it)
    becomes the file itself, a hard link on the same filesystem, else a copy; a linked folder
    becomes a folder of them. What the command made or replaced is left alone. Returns one
    warning per link kept (it could not be replaced)."""
    warnings = []
    for path in staging.paths:
        if path.copy:
            continue
        dest = run_dir / path.dest
        try:
            if not dest.is_symlink() or os.readlink(dest) != str(path.source):
                continue  # not staged by this run, or replaced by the command
            if not path.source.exists():
                continue  # its file is gone: the link stays as it was recorded
            _replace_link(dest, path.source)
        except OSError as exc:
            warnings.append(f"{path.dest}: kept as a link to {path.source} ({exc.strerror or exc})")
    return warnings


def staged_links(run_dir: Path) -> Staging:
    """The links an earlier attempt of a run staged and did not settle (it was killed): those
    STAGED_LIST names that are still absolute symlinks, for `settle` at the end of a restart."""
    try:
        listed = (run_dir / STAGED_LIST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return Staging()
    links = []
    for rel in listed:
        dest = run_dir / rel
        if rel and dest.is_symlink():
            target = Path(os.readlink(dest))
            if target.is_absolute():  # `stage` links absolute paths; anything else is not ours
                links.append(StagedPath(target, rel, False, STAGED_LIST))
    return Staging(sources=links)


def _replace_link(dest: Path, target: Path) -> None:
    """`dest`, a symlink to `target`, replaced by the file (or folder) itself: built beside it
    in a folder of tether's own, then renamed over it."""
    scratch = Path(tempfile.mkdtemp(prefix=".tether-settle-", dir=dest.parent))
    try:
        built = scratch / dest.name
        if target.is_dir():
            shutil.copytree(target, built, symlinks=True, copy_function=_link_or_copy)
            dest.unlink()  # a rename cannot put a folder over a symlink
            os.rename(built, dest)
        else:
            _link_or_copy(str(target), str(built))
            os.replace(built, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest, follow_symlinks=True)
    except OSError:  # another filesystem (EXDEV), or one without hard links
        shutil.copy2(source, dest)
