"""The environment a run executes in, as recorded in run.lock's `env`."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from .. import __version__

# Scheduler job ids, in the order they are checked.
_JOB_VARS = (
    ("slurm", "SLURM_JOB_ID"),
    ("pbs", "PBS_JOBID"),
    ("lsf", "LSB_JOBID"),
    ("sge", "JOB_ID"),
)
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy"}
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")


@functools.lru_cache(maxsize=1)
def packages() -> tuple[str, ...]:
    """Installed distributions as `name==version`, read from the *.dist-info folder names:
    a directory listing, much cheaper than importlib.metadata's full scan."""
    found: set[str] = set()
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                stem = name[: -len(".dist-info")]
                dist, _, version = stem.partition("-")
                found.add(f"{dist.lower().replace('_', '-')}=={version}")
    return tuple(sorted(found))


@functools.lru_cache(maxsize=1)
def packages_digest() -> str:
    import blake3

    return blake3.blake3("\n".join(packages()).encode()).hexdigest()[:32]


def _user() -> str:
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd  # noqa: PLC0415 (POSIX only)

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"


def scheduler_job(env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    env = dict(os.environ) if env is None else env
    for name, var in _JOB_VARS:
        if env.get(var):
            return name, env[var]
    return None, None


def capture_environment() -> dict[str, Any]:
    scheduler, job_id = scheduler_job()
    world = next((os.environ[v] for v in _WORLD_VARS if os.environ.get(v)), None)
    env: dict[str, Any] = {
        # From sys and os.uname: the platform module costs milliseconds of start-up.
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "implementation": _IMPLEMENTATIONS.get(sys.implementation.name, sys.implementation.name),
        "platform": f"{sys.platform}-{os.uname().machine}",
        "host": os.uname().nodename,
        "user": _user(),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "tether": __version__,
        "packages": len(packages()),
        "packages_digest": packages_digest(),
    }
    if scheduler:
        env["scheduler"] = scheduler
        env["job_id"] = job_id
    if world:
        env["world_size"] = int(world) if world.isdigit() else world
    return env
