"""Labels, tags and notes as an append-only log: one small file per event, so that two machines
can add events to the same run and merge them by copying files, with no conflicts."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_json
from ..ids import new_id
from .layout import ATTRS
from .records import Attributes
from .state import hostname, now_iso

KINDS = ("label", "tag", "untag", "note")


def _author() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{user}@{hostname()}")


def add_event(run_dir: Path, kind: str, value: Any) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown attribute event {kind!r}")
    folder = run_dir / ATTRS
    folder.mkdir(exist_ok=True)
    author = _author()
    path = folder / f"{new_id()}-{author}.json"
    atomic_write_json(path, {"kind": kind, "value": value, "t": now_iso(), "author": author})
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
        elif kind == "note":
            out.notes.append({"t": event.get("t"), "author": event.get("author"), "text": value})
    out.tags = list(tags)
    return out
