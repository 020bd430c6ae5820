"""Labels, tags and notes as an append-only log: one small file per event, so that two machines
can add events to the same run and merge them by copying files, with no conflicts."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path
from typing import Any

from .. import git
from ..clock import now_iso
from ..fsio import atomic_write_json
from ..ids import new_id
from .layout import ATTRS
from .records import Attributes
from .state import hostname

KINDS = ("label", "tag", "untag", "note", "project")  # project: `tether runs adopt`


_AUTHOR: tuple[str, str] | None = None  # (who, file-name slug), looked up once per process


def author() -> tuple[str, str]:
    """Who adds events: `Name <email>` from git config when set, else `$USER@host`.

    Returns the author as written into the event and a slug safe for its file name. Looked up
    once per process (one `git config` call).
    """
    global _AUTHOR
    if _AUTHOR is None:
        name, email = _git_identity()
        if name or email:
            who = f"{name} <{email}>" if name and email else (name or email)
            slug_src = email or name
        else:
            user = os.environ.get("USER") or os.environ.get("USERNAME") or ""
            if not user:
                try:
                    user = getpass.getuser()
                except Exception:
                    user = "unknown"
            who = f"{user}@{hostname()}"
            slug_src = who
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", slug_src).strip("._") or "unknown"
        _AUTHOR = (who, slug[:64])
    return _AUTHOR


def _git_identity() -> tuple[str, str]:
    try:
        proc = git.run(
            None, "config", "--get-regexp", r"^user\.(name|email)$", check=False, timeout=10
        )
    except git.GitError:
        return "", ""
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        found[key.strip().lower()] = value.strip()
    return found.get("user.name", ""), found.get("user.email", "")


def add_event(run_dir: Path, kind: str, value: Any) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown attribute event {kind!r}")
    folder = run_dir / ATTRS
    folder.mkdir(exist_ok=True)
    who, slug = author()
    path = folder / f"{new_id()}-{slug}.json"
    atomic_write_json(path, {"kind": kind, "value": value, "t": now_iso(), "author": who})
    return path


def read_attributes(run_dir: Path) -> Attributes:
    folder = run_dir / ATTRS
    out = Attributes()
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return out
    tags: dict[str, None] = {}
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(folder / name, encoding="utf-8") as fh:
                event = json.load(fh)
        except (OSError, ValueError):
            continue
        kind, value = event.get("kind"), event.get("value")
        if kind == "label":
            out.label = value or None
        elif kind == "tag" and isinstance(value, str):
            tags[value] = None
        elif kind == "untag":
            tags.pop(value, None)
        elif kind == "project" and isinstance(value, str):
            out.project = value  # the latest adoption wins, as the latest label does
        elif kind == "note":
            out.notes.append({"t": event.get("t"), "author": event.get("author"), "text": value})
    out.tags = list(tags)
    return out
