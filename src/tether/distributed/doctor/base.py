"""The pieces every check of `tether doctor` uses: `Check` (a result), `Context` (what the
checks run against: the environment, the hostfile, the runs root, the thresholds, and the few
facts tests replace: Python's version, the installed tether version, how a program is found on
PATH, the torch probe), and `CheckList` (a module's checks, in order)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...capture.environment import packages
from .probe import probe_torch

STATUSES = ("ok", "warn", "fail")


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    summary: str
    remedy: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "remedy": self.remedy,
            "details": self.details,
        }


def _installed_tether() -> str | None:
    """The version pip installed (the dist-info folder's), without importlib.metadata."""
    return next((p.split("==", 1)[1] for p in packages() if p.startswith("tether==")), None)


@dataclass
class Context:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    hostfile: str | None = None
    runs_dir: str | None = None
    min_free_gb: float = 1.0
    python: tuple[int, int, int] = (
        sys.version_info.major,
        sys.version_info.minor,
        sys.version_info.micro,
    )
    executable: str = sys.executable
    installed_version: Callable[[], str | None] = _installed_tether
    which: Callable[[str, Mapping[str, str]], str | None] | None = None
    torch_probe: Callable[[Context], dict[str, Any]] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def find(self, program: str) -> str | None:
        """Where `tether launch` would find `program`: PATH, with this Python's bin/ first."""
        if self.which is not None:
            return self.which(program, self.env)
        path = os.pathsep.join([str(Path(self.executable).parent), self.env.get("PATH", "")])
        return shutil.which(program, path=path)

    def torch(self) -> dict[str, Any]:
        if "torch" not in self._cache:
            probe = self.torch_probe or _probe
            self._cache["torch"] = probe(self)
        result: dict[str, Any] = self._cache["torch"]
        return result


def _probe(ctx: Context) -> dict[str, Any]:
    return probe_torch(ctx.executable, ctx.env)


CheckFn = Callable[[Context], Check]


class CheckList(list[tuple[str, CheckFn]]):
    """(name, check) pairs in the order they run; `@checks.register(name)` adds one."""

    def register(self, name: str) -> Callable[[CheckFn], CheckFn]:
        def add(fn: CheckFn) -> CheckFn:
            self.append((name, fn))
            return fn

        return add


def overall(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=STATUSES.index, default="ok")


def report(checks: list[Check]) -> dict[str, Any]:
    return {"status": overall(checks), "checks": [c.as_dict() for c in checks]}
