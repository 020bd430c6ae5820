"""The pieces every check of `tether doctor` uses: `Check` (a result), `Context` (what the
checks run against: the environment, the launch request, the hostfile, the runs root, the
thresholds, and the few facts tests replace: Python's version, the installed tether version,
how a program is found on PATH, the filesystem type of a path, the torch probe), and
`CheckList` (a module's checks, in order).

The checks run concurrently (tether.distributed.doctor.run_checks), so the facts several of
them need (the torch probe, `mpiexec --version`, the scheduler's hosts, the resolved launch)
are computed once, by whichever check asks first, through `Context.memo`.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...capture.environment import packages
from ...errors import TetherError
from ...mounts import fstype
from .. import mpi, schedulers
from ..resolver import resolve
from ..spec import LaunchSpec
from .probe import TORCH_TIMEOUT_S, probe_torch

# "skip": the check does not apply here (a remote MASTER_ADDR, no torch for a torch check).
STATUSES = ("skip", "ok", "warn", "fail")
PLACEHOLDER = "<command>"  # the job's command in the argv doctor shows


@dataclass
class Check:
    name: str
    status: str  # skip | ok | warn | fail
    summary: str
    remedy: str | None = None  # the one-line fix; None when ok or skipped
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
class Resolved:
    """The launch `tether launch` would start with the doctor's options, or why it cannot."""

    spec: LaunchSpec | None = None
    scheduler: Any = None
    argv: list[str] = field(default_factory=list)
    error: TetherError | None = None


@dataclass
class Context:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    hostfile: str | None = None
    runs_dir: str | None = None
    min_free_gb: float = 1.0
    # The request, as `tether launch` takes it (None: what launch would derive).
    nprocs: int | None = None
    ppn: int | None = None
    nhosts: int | None = None
    launcher: str | None = None
    mpi: str | None = None
    rank_prefix: bool = False
    torch_timeout: float = TORCH_TIMEOUT_S
    python: tuple[int, int, int] = (
        sys.version_info.major,
        sys.version_info.minor,
        sys.version_info.micro,
    )
    executable: str = sys.executable
    prefix: str = sys.prefix
    installed_version: Callable[[], str | None] = _installed_tether
    which: Callable[[str, Mapping[str, str]], str | None] | None = None
    torch_probe: Callable[[Context], dict[str, Any]] | None = None
    fstype: Callable[[str], str | None] = fstype
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per key; a check asking while another computes it waits."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    def find(self, program: str) -> str | None:
        """Where `tether launch` would find `program`: PATH, with this Python's bin/ first."""
        if self.which is not None:
            return self.which(program, self.env)
        path = os.pathsep.join([str(Path(self.executable).parent), self.env.get("PATH", "")])
        return shutil.which(program, path=path)

    def torch(self) -> dict[str, Any]:
        probe = self.torch_probe or _probe
        result: dict[str, Any] = self.memo("torch", lambda: probe(self))
        return result

    def detect_mpi(self, program: str = "mpiexec", env: Mapping[str, str] | None = None) -> Any:
        """`mpi.detect` once per PATH (the mpi check and the resolved launch both ask)."""
        env = self.env if env is None else env
        key = f"mpi:{program}:{env.get('PATH', '')}"
        return self.memo(key, lambda: mpi.detect(program, env))

    def hostfile_source(self) -> tuple[str | None, str]:
        """The hostfile `tether launch` would read, and where it was named."""
        if self.hostfile:
            return self.hostfile, "--hostfile"
        if self.env.get("TETHER_HOSTFILE"):
            return self.env["TETHER_HOSTFILE"], "TETHER_HOSTFILE"
        if self.env.get("PBS_NODEFILE"):
            return self.env["PBS_NODEFILE"], "PBS_NODEFILE"
        return None, ""

    def scheduler(self) -> tuple[Any, list[str] | None, TetherError | None]:
        """(plug-in, its hosts, the error reading them)."""

        def compute() -> tuple[Any, list[str] | None, TetherError | None]:
            sched = None
            try:
                sched = schedulers.select(self.env)
                return sched, list(sched.hosts(self.env)), None
            except TetherError as exc:
                return sched, None, exc
            except Exception as exc:  # a third-party plug-in's bug
                return (
                    sched,
                    None,
                    TetherError(
                        f"scheduler plug-in failed: {type(exc).__name__}: {exc}",
                        "fix or uninstall the plug-in, or set TETHER_SCHEDULER to another one",
                    ),
                )

        result: tuple[Any, list[str] | None, TetherError | None] = self.memo("sched", compute)
        return result

    def resolved(self) -> Resolved:
        """What `tether launch` would start here with the doctor's request."""
        resolved: Resolved = self.memo("resolved", self._resolve)
        return resolved

    def _resolve(self) -> Resolved:
        path, source = self.hostfile_source()
        try:
            spec = LaunchSpec(
                command=[PLACEHOLDER],
                nprocs=self.nprocs,
                ppn=self.ppn,
                nhosts=self.nhosts,
                hostfile=path if source != "PBS_NODEFILE" else None,
                launcher=self.launcher,
                mpi=self.mpi,
                rank_prefix=self.rank_prefix,
            )
            sched, _, error = self.scheduler()
            if error is not None and (sched is None or not spec.hostfile):
                raise error
            done, sched = resolve(
                spec,
                self.env,
                scheduler=sched,
                detect_mpi=lambda program, env: self.detect_mpi(program, env),
            )
            return Resolved(done, sched, list(sched.build(done)))
        except TetherError as exc:
            return Resolved(error=exc)


def _probe(ctx: Context) -> dict[str, Any]:
    return probe_torch(ctx.executable, ctx.env, ctx.torch_timeout)


CheckFn = Callable[[Context], Check]


class CheckList(list[tuple[str, CheckFn]]):
    """(name, check) pairs in the order they run; `@checks.register(name)` adds one."""

    def register(self, name: str) -> Callable[[CheckFn], CheckFn]:
        def add(fn: CheckFn) -> CheckFn:
            self.append((name, fn))
            return fn

        return add


def overall(checks: list[Check]) -> str:
    """The worst status; skipped checks count as ok."""
    worst = max((c.status for c in checks), key=STATUSES.index, default="ok")
    return "ok" if worst == "skip" else worst


def report(checks: list[Check]) -> dict[str, Any]:
    return {"status": overall(checks), "checks": [c.as_dict() for c in checks]}
