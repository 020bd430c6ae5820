"""The one entry-point registry: plug-ins of `tether.schedulers`, `tether.executors`,
`tether.sinks` (and any other group), built-ins registered exactly as third parties do.

Entry points are read from the `entry_points.txt` files of the installed distributions
directly (one directory listing per `sys.path` folder, 2.5-7 ms): `importlib.metadata` costs
64-114 ms to import and scan, more than the rest of a launch's own start-up. As with
`importlib.metadata`, a distribution found twice counts once (the first on the path); a name
that two distributions register goes to the first one on the path.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import import_module
from typing import Any

__all__ = ["EntryPoint", "by_name", "entry_points", "names"]


@dataclass(frozen=True)
class EntryPoint:
    name: str
    value: str  # module:attr
    dist: str

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj: Any = import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else []:
            obj = getattr(obj, part)
        return obj


def _dist_name(folder: str) -> str:
    stem = folder.rsplit(".", 1)[0]
    return stem.split("-", 1)[0].lower().replace("_", "-").replace(".", "-")


def _parse(text: str, group: str, dist: str) -> list[EntryPoint]:
    found: list[EntryPoint] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == group and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # drop extras: `mod:obj [extra]`
            found.append(EntryPoint(name.strip(), value, dist))
    return found


def entry_points(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """Entry points of `group` from the distributions on `path` (sys.path), in path order."""
    seen: set[str] = set()
    out: list[EntryPoint] = []
    for folder in sys.path if path is None else path:
        try:
            listing = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for name in listing:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            dist = _dist_name(name)
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(folder or ".", name, "entry_points.txt"), "rb") as fh:
                    text = fh.read().decode("utf-8", "replace")
            except OSError:
                continue
            if group in text:
                out.extend(_parse(text, group, dist))
    return out


def by_name(group: str, path: list[str] | None = None) -> dict[str, EntryPoint]:
    """name -> entry point of `group`; the first distribution on the path that names it wins."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group, path):
        found.setdefault(ep.name, ep)
    return found


def names(group: str) -> list[str]:
    """The sorted names registered in `group`."""
    return sorted(by_name(group))
