"""Checks of what `tether launch` needs: `launchers` (mpiexec, srun, torchrun on PATH), `mpi`
(which MPI `mpiexec --version` says), `scheduler` (the plug-in detected, its hosts, none of
them `(null)`) and `hostfile` (readable, with hosts and slots, each one the scheduler gave)."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import TetherError
from .. import mpi, schedulers
from ..hostfile import read_hostfile
from ..resolver import LOCAL_NAMES, is_root
from ..schedulers.local import this_host
from ..spec import LAUNCHERS
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register
NULL = "(null)"  # what Slurm and shells print for an unset node list


@check("launchers")
def check_launchers(ctx: Context) -> Check:
    found = {name: ctx.find(name) for name in LAUNCHERS}
    present = [n for n, p in found.items() if p]
    if not present:
        return Check(
            "launchers",
            "fail",
            "no launcher on PATH: none of mpiexec, srun, torchrun",
            "install Open MPI (Debian/Ubuntu: apt install openmpi-bin; macOS: brew install "
            "open-mpi), `module load` your site's MPI, or pip install torch for torchrun",
            {"found": found},
        )
    shown = ", ".join(f"{n} ({found[n]})" for n in present)
    return Check("launchers", "ok", f"found {shown}", None, {"found": found})


@check("mpi")
def check_mpi(ctx: Context) -> Check:
    path = ctx.find("mpiexec")
    if path is None:
        return Check(
            "mpi",
            "warn",
            "no mpiexec on PATH (--launcher mpiexec will not work)",
            "install Open MPI (apt install openmpi-bin libopenmpi-dev) or MPICH, or "
            "`module load` your site's MPI; srun and torchrun do not need it",
            {"path": None},
        )
    env = dict(ctx.env)
    env["PATH"] = os.pathsep.join([str(Path(path).parent), env.get("PATH", "")])
    found = ctx.detect_mpi("mpiexec", env)
    details = {"path": found.path, "flavour": found.flavour, "version": found.version}
    if found.flavour is None and found.version == "" and found.error:
        return Check(
            "mpi",
            "fail",
            f"{path} --version failed: {found.error}",
            "check the MPI installation (a broken module, a missing library: run "
            f"`{path} --version` to see)",
            details,
        )
    if found.flavour is None:
        return Check(
            "mpi",
            "warn",
            f"{path} is not a recognised MPI: {found.version!r}",
            "tell tether which it is with --mpi openmpi|mpich|pals|intel",
            details,
        )
    title = mpi.FLAVOURS[found.flavour].title
    summary = f"{title}: {found.version} ({path})"
    if found.flavour == "openmpi" and is_root():
        summary += "; running as root: launch adds --allow-run-as-root"
    return Check("mpi", "ok", summary, None, details)


@check("scheduler")
def check_scheduler(ctx: Context) -> Check:
    broken = schedulers.load_errors()
    names = [p.name for p in schedulers.available()]
    wanted = ctx.env.get(schedulers.ENV_VAR)
    if wanted and wanted not in names:
        try:
            schedulers.get(wanted)
        except TetherError as exc:
            return Check(
                "scheduler",
                "fail",
                f"{schedulers.ENV_VAR}={wanted}: {exc.message}",
                f"unset {schedulers.ENV_VAR}, or set it to one of: {', '.join(names)}",
                {"plugins": names, "broken_plugins": dict(broken)},
            )
    try:
        sched, _, error = ctx.scheduler()
        if error is not None:
            raise error
        info = sched.info(ctx.env)
    except TetherError as exc:
        return Check(
            "scheduler",
            "fail",
            str(exc.message),
            exc.hint or "check the scheduler's environment variables",
            {"plugins": names, "broken_plugins": dict(broken)},
        )
    except Exception as exc:  # info() of a third-party plug-in
        return Check(
            "scheduler",
            "fail",
            f"scheduler plug-in failed: {type(exc).__name__}: {exc}",
            "fix or uninstall the plug-in, or set TETHER_SCHEDULER to another one",
            {"plugins": names, "broken_plugins": dict(broken)},
        )
    details = {**info, "plugins": names, "broken_plugins": dict(broken)}
    job = f", job {info['job_id']}" if info.get("job_id") else ""
    hosts = info.get("hosts") or []
    shown = ", ".join(hosts[:4]) + (f" and {len(hosts) - 4} more" if len(hosts) > 4 else "")
    summary = f"{sched.name}{job}: {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({shown})"
    if NULL in hosts:
        return Check(
            "scheduler",
            "fail",
            f"{sched.name}{job} lists the host {NULL} (a node list read outside its allocation)",
            "run inside the allocation (salloc/sbatch, or srun --jobid JOB), not beside it",
            details,
        )
    if broken:
        first = broken[0]
        return Check(
            "scheduler",
            "warn",
            f"{summary}; plug-in {first[0]!r} failed to load",
            f"fix or uninstall it: {first[1]}",
            details,
        )
    return Check("scheduler", "ok", summary, None, details)


def _short(host: str) -> str:
    """A host's short name: `nid001.cluster.org` and `nid001` are one node."""
    name = this_host() if host in LOCAL_NAMES else host
    return name.split(".", 1)[0].lower()


@check("hostfile")
def check_hostfile(ctx: Context) -> Check:
    path, source = ctx.hostfile_source()
    if not path:
        return Check("hostfile", "ok", "none given: hosts come from the scheduler or this machine")
    try:
        parsed = read_hostfile(path)
    except TetherError as exc:
        return Check(
            "hostfile",
            "fail",
            f"{source}: {exc.message}",
            exc.hint or f"fix {path}, or point {source} at a readable hostfile",
            {"path": path, "source": source},
        )
    slots = f", {parsed.total_slots} slots" if parsed.total_slots is not None else ""
    details = {"path": path, "source": source, "hosts": parsed.hosts, "slots": parsed.slots}
    if NULL in parsed.hosts:
        return Check(
            "hostfile",
            "fail",
            f"{source} {path} lists the host {NULL}: it was written from an unset node list",
            f'write it inside the job: scontrol show hostnames "$SLURM_JOB_NODELIST" > {path}',
            details,
        )
    sched, given, _ = ctx.scheduler()
    if source != "PBS_NODEFILE" and given and getattr(sched, "name", "") != "local":
        allowed = {_short(h) for h in given}
        strays = [h for h in parsed.hosts if _short(h) not in allowed]
        details["scheduler_hosts"] = given
        if strays:
            job = sched.job_id(ctx.env)
            shown = ", ".join(strays[:3]) + (
                f" and {len(strays) - 3} more" if len(strays) > 3 else ""
            )
            return Check(
                "hostfile",
                "fail",
                f"{source} {path} lists {shown}, not given to {sched.name} job {job} "
                f"(its hosts: {', '.join(given[:4])}{' ...' if len(given) > 4 else ''})",
                f"remove {strays[0]} from {path}, or drop {source} to use the job's hosts",
                details,
            )
    return Check(
        "hostfile",
        "ok",
        f"{source} {path}: {len(parsed.hosts)} host{'s' if len(parsed.hosts) != 1 else ''}{slots}",
        None,
        details,
    )
