"""The files of a run folder, and only those: a path asked for over HTTP is checked word by
word (no `..`, no absolute path, no encoded slash) and then resolved, symlinks included, to a
file inside the run folder; how each kind of file is served so that none runs script in the
view's origin."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import TetherError

# Listing stops here: a run that wrote a million files still lists quickly.
MAX_LISTED = 5000

# Shown in the page as text (served text/plain whatever the file holds).
TEXT_SUFFIXES = frozenset(
    {
        *(".txt", ".log", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".lock", ".md"),
        *(".csv", ".tsv", ".py", ".cfg", ".ini", ".sh", ".out", ".err"),
    }
)
# Shown inline as images. SVG is not among them: it can hold script (served as a download).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


class FileRefused(TetherError):
    """A path that is not a file inside the run folder."""


@dataclass(frozen=True)
class Served:
    """How one file goes out: its media type and whether the browser must download it."""

    path: Path
    media_type: str
    attachment: bool


def check_words(rel: str) -> None:
    """Refuse a path that could leave the folder before touching the disk."""
    if not rel or "\x00" in rel or "\\" in rel:
        raise FileRefused(f"file path {rel!r} is not allowed", "give a path inside the run folder")
    if rel.startswith("/"):
        raise FileRefused(f"file path {rel!r} is absolute", "give a path inside the run folder")
    if any(word in ("", ".", "..") for word in rel.split("/")):
        raise FileRefused(
            f"file path {rel!r} has an empty, '.' or '..' part", "give a path inside the run folder"
        )


def resolve_file(run_dir: Path, rel: str) -> Path:
    """The file `rel` names inside `run_dir`, symlinks resolved; FileRefused when it is not a
    regular file inside the folder (a symlink pointing out of it included)."""
    check_words(rel)
    base = run_dir.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise FileRefused(
            f"file path {rel!r} leads out of the run folder", "only a run's own files are served"
        )
    if not target.is_file():
        raise FileRefused(f"no file {rel!r} in the run folder", "see the run's file listing")
    return target


def serving(path: Path) -> Served:
    """Text as text/plain, images inline, everything else (HTML and SVG included) a download."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_TYPES:
        return Served(path, IMAGE_TYPES[suffix], attachment=False)
    if suffix in TEXT_SUFFIXES or path.name in ("run.lock", "output.log"):
        return Served(path, "text/plain; charset=utf-8", attachment=False)
    return Served(path, "application/octet-stream", attachment=True)


def list_files(run_dir: Path) -> tuple[list[dict[str, object]], bool]:
    """([{path, size, kind}], truncated): the regular files under the run folder, sorted,
    symlinks that lead out of it left out."""
    base = run_dir.resolve()
    out: list[dict[str, object]] = []
    for folder, dirs, names in os.walk(base):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder) / name
            rel = full.relative_to(base).as_posix()
            try:
                target = resolve_file(base, rel)
            except FileRefused:
                continue
            served = serving(target)
            kind = (
                "image"
                if served.media_type.startswith("image/")
                else "text"
                if served.media_type.startswith("text/")
                else "download"
            )
            out.append({"path": rel, "size": target.stat().st_size, "kind": kind})
            if len(out) >= MAX_LISTED:
                return out, True
    return out, False
