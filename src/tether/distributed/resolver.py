"""Resolving a launch: the user's `LaunchSpec` against this machine and its job.

`resolve(spec, env)` picks the scheduler plug-in, reads the hosts (hostfile, Slurm node list,
PBS nodefile), does the rank arithmetic (`spec.counts`), detects the MPI flavour from
`mpiexec --version` (on the PATH the job gets), and notes root and cores. The resolved spec
holds every fact `scheduler.build(spec)` needs, so building the argv is a pure function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import TetherError
from ..process import python_first
from . import mpi, schedulers
from .hostfile import read_hostfile
from .schedulers.local import this_host
from .spec import LaunchSpec, counts

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def job_path(env: Mapping[str, str]) -> str:
    """PATH as the ranks (and the launcher) get it: this Python's bin/ first."""
    return python_first(env.get("PATH", ""))


def resolve(
    spec: LaunchSpec,
    env: Mapping[str, str] | None = None,
    *,
    scheduler: Any = None,
    detect_mpi: Callable[..., Any] | None = None,
    as_root: bool | None = None,
    cores: int | None = None,
) -> tuple[LaunchSpec, Any]:
    """(resolved spec, scheduler plug-in). `env` defaults to os.environ; the keyword arguments
    replace facts of this machine (for tests and dry runs elsewhere)."""
    env = os.environ if env is None else env
    sched = scheduler or schedulers.select(env, spec.scheduler)
    hostfile_arg: str | None
    if spec.hostfile:
        parsed = read_hostfile(spec.hostfile)
        all_hosts, slots, hostfile_arg = parsed.hosts, parsed.slots, spec.hostfile
        values = set(slots.values()) if slots else set()
        hint = values.pop() if len(values) == 1 else None
    else:
        all_hosts = list(sched.hosts(env))
        hostfile_arg = sched.hostfile(env)
        slots = sched.slots(env)
        hint = sched.ranks_per_host(env)
    if not all_hosts:
        all_hosts = [this_host()]
    n, ppn, nhosts = counts(spec, len(all_hosts), hint, slots)
    hosts = all_hosts[:nhosts]
    subset = nhosts < len(all_hosts)
    launcher = spec.launcher or sched.default_launcher
    fanout = None
    if launcher == "torchrun" and nhosts > 1:
        fanout = sched.default_launcher if sched.default_launcher != "torchrun" else "mpiexec"
    flavour = None
    if "mpiexec" in (launcher, fanout):
        flavour = _flavour(spec, env, detect_mpi)
    here = {this_host(), *LOCAL_NAMES}
    resolved = spec.replace(
        nprocs=n,
        ppn=ppn,
        nhosts=nhosts,
        launcher=launcher,
        resolved=True,
        scheduler_name=getattr(sched, "name", None) or type(sched).__name__.lower(),
        job_id=sched.job_id(env),
        hosts=hosts,
        slots={h: slots[h] for h in hosts} if slots else None,
        hostfile_arg=None if subset else hostfile_arg,
        name_hosts=subset,
        flavour=flavour,
        as_root=is_root() if as_root is None else as_root,
        cores=usable_cores() if cores is None else cores,
        local=all(h in here for h in hosts),
        forward=[f for f in spec.forward if f in env or f in spec.env],
        fanout=fanout,
    )
    return resolved, sched


def _flavour(
    spec: LaunchSpec, env: Mapping[str, str], detect_mpi: Callable[..., Any] | None
) -> str:
    # The same PATH the job gets (this Python's bin/ first): a venv may hold its own mpiexec
    # (the mpich and impi-rt wheels install one), and that is the one that will run.
    job_env = {**env, "PATH": job_path(env)}
    found = detect_mpi("mpiexec", job_env) if detect_mpi else cached_detect("mpiexec", job_env)
    if found.flavour:
        return str(found.flavour)
    if spec.mpi:
        return spec.mpi
    raise TetherError(
        f"cannot tell which MPI runs the job: {found.error}",
        "install one (Debian: apt install openmpi-bin), give --mpi "
        + "|".join(mpi.FLAVOURS)
        + " for a dry run, or use --launcher srun|torchrun",
    )


VERSION_CACHE = "mpiexec-versions.json"  # in tether's cache folder (tether.mounts)


def cached_detect(program: str, env: Mapping[str, str]) -> Any:
    """`mpi.detect`, its answer kept per mpiexec file (path, size, mtime, inode): asking
    `mpiexec --version` is a process start (~5 ms) on every launch, for an answer that only
    changes when the file does. Only recognised flavours are kept; a cache that cannot be read
    or written is asked around."""
    import json  # noqa: PLC0415 (only when an mpiexec is involved)
    import shutil  # noqa: PLC0415

    from ..fsio import atomic_write_text  # noqa: PLC0415
    from ..mounts import default_cache_dir  # noqa: PLC0415

    path = shutil.which(program, path=env.get("PATH"))
    if path is None:
        return mpi.detect(program, env)
    try:
        info = os.stat(path)
    except OSError:
        return mpi.detect(program, env)
    key = f"{os.path.realpath(path)}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
    cache = default_cache_dir() / VERSION_CACHE
    known: dict[str, Any] = {}
    try:
        loaded = json.loads(cache.read_text(encoding="utf-8"))
        known = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("flavour") in mpi.FLAVOURS:
        return mpi.Detected(path, str(entry["flavour"]), str(entry.get("version", "")))
    found = mpi.detect(program, env)
    if found.flavour:
        known = {k: v for k, v in known.items() if not k.startswith(os.path.realpath(path) + ":")}
        known[key] = {"flavour": found.flavour, "version": found.version}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps(known, indent=1) + "\n", durable=False)
        except OSError:
            pass
    return found
