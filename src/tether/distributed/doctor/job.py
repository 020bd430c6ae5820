"""Checks of the launch itself, as `tether launch` would start it with the doctor's request
(`-n`, `-ppn`, `--nhosts`, `--launcher`, `--rank-prefix`): `allocation` (the request against
the job's shape: Slurm's nodes, tasks and GPUs per node, or this machine's cores),
`launch-command` (the launcher family, MPI flavour and flags, as the argv) and `rank-prefix`
(whether each rank's output lines will carry its rank)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from ...errors import TetherError
from ...jobenv import expand_tasks_per_node, int_var
from ..resolver import usable_cores
from .base import Check, CheckList, Context, Resolved

CHECKS = CheckList()
check = CHECKS.register
_LAST_INT = re.compile(r"(\d+)\)?$")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _gpus_per_node(env: Mapping[str, str]) -> tuple[int | None, str | None]:
    """GPUs Slurm gave each node, and the variable that says so."""
    on_node = int_var(env, "SLURM_GPUS_ON_NODE")
    if on_node is not None:
        return on_node, "SLURM_GPUS_ON_NODE"
    per_node = env.get("SLURM_GPUS_PER_NODE", "").strip()  # "4", "a100:4", "gpu:a100:4(IDX:0-3)"
    m = _LAST_INT.search(per_node.split("(", 1)[0])
    if m:
        return int(m.group(1)), "SLURM_GPUS_PER_NODE"
    listed = env.get("SLURM_JOB_GPUS", "").strip()  # "0,1,2,3"
    if listed:
        return len(listed.split(",")), "SLURM_JOB_GPUS"
    return None, None


def _slurm_shape(env: Mapping[str, str]) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "nodes": int_var(env, "SLURM_JOB_NUM_NODES") or int_var(env, "SLURM_NNODES"),
        "ntasks": int_var(env, "SLURM_NTASKS") or int_var(env, "SLURM_NPROCS"),
    }
    per_node = env.get("SLURM_TASKS_PER_NODE", "").strip()
    shape["tasks_per_node"] = (
        expand_tasks_per_node(per_node, "SLURM_TASKS_PER_NODE") if per_node else None
    )
    shape["gpus_per_node"], shape["gpus_var"] = _gpus_per_node(env)
    return shape


def _failed(name: str, r: Resolved) -> Check:
    assert r.error is not None
    return Check(
        name,
        "fail",
        r.error.message,
        r.error.hint or "change -n/-ppn/--nhosts to fit the job's hosts",
    )


@check("allocation")
def check_allocation(ctx: Context) -> Check:
    r = ctx.resolved()
    if r.error is not None:
        return _failed("allocation", r)
    spec = r.spec
    assert spec is not None
    n, ppn, nhosts = spec.nprocs or 1, spec.ppn or 1, spec.nhosts or 1
    request = f"{_plural(n, 'rank')} on {_plural(nhosts, 'host')} ({ppn} per host)"
    details: dict[str, Any] = {"nprocs": n, "ppn": ppn, "nhosts": nhosts, "hosts": spec.hosts}
    if spec.scheduler_name == "slurm":
        try:
            shape = _slurm_shape(ctx.env)
        except TetherError as exc:
            return Check("allocation", "fail", exc.message, exc.hint, details)
        details["slurm"] = shape
        return _against_slurm(ctx, request, n, ppn, nhosts, shape, details)
    if spec.local:
        cores = usable_cores()
        details["cores"] = cores
        if ppn > cores:
            return Check(
                "allocation",
                "warn",
                f"{request}: more ranks than the {cores} usable cores here (oversubscribed)",
                f"give -n {cores} or fewer, or run inside a job allocation",
                details,
            )
        return Check("allocation", "ok", f"{request}, {cores} cores here", None, details)
    job = f" in {spec.scheduler_name} job {spec.job_id}" if spec.job_id else ""
    return Check("allocation", "ok", f"{request}{job}", None, details)


def _against_slurm(
    ctx: Context,
    request: str,
    n: int,
    ppn: int,
    nhosts: int,
    shape: dict[str, Any],
    details: dict[str, Any],
) -> Check:
    job = ctx.env.get("SLURM_JOB_ID") or ctx.env.get("SLURM_JOBID")
    nodes, ntasks, per_node = shape["nodes"], shape["ntasks"], shape["tasks_per_node"]
    gpus, gpus_var = shape["gpus_per_node"], shape["gpus_var"]
    have = ", ".join(
        part
        for part in (
            _plural(nodes, "node") if nodes else "",
            _plural(ntasks, "task") if ntasks else "",
            f"{gpus} GPUs per node" if gpus is not None else "",
        )
        if part
    )
    where = f"Slurm job {job}" + (f" ({have})" if have else "")
    if ntasks is not None and n > ntasks:
        return Check(
            "allocation",
            "fail",
            f"{request} asks for more ranks than {where}: SLURM_NTASKS={ntasks}",
            f"give -n {ntasks}, or allocate them: sbatch/salloc --ntasks={n}",
            details,
        )
    if per_node and ppn > max(per_node):
        return Check(
            "allocation",
            "fail",
            f"{request}: -ppn {ppn} is more than the {max(per_node)} tasks per node of {where} "
            f"(SLURM_TASKS_PER_NODE={ctx.env.get('SLURM_TASKS_PER_NODE')})",
            f"give -ppn {max(per_node)}, or allocate --ntasks-per-node={ppn}",
            details,
        )
    if gpus is not None and gpus > 0 and ppn != gpus:
        if ppn > gpus:
            text = f"{ppn} ranks per node share {gpus} GPUs ({gpus_var})"
            fix = f"give -ppn {gpus} (one rank per GPU), or allocate --gpus-per-node={ppn}"
        else:
            text = f"{gpus - ppn} of the {gpus} GPUs per node stay idle ({gpus_var})"
            fix = f"give -ppn {gpus} (one rank per GPU), or allocate --gpus-per-node={ppn}"
        return Check("allocation", "warn", f"{request}: {text}", fix, details)
    if nodes is not None and nhosts < nodes:
        return Check(
            "allocation",
            "warn",
            f"{request}: {nodes - nhosts} of the {nodes} nodes of {where} stay idle",
            f"give --nhosts {nodes} (or -n {ppn * nodes}), or allocate --nodes={nhosts}",
            details,
        )
    return Check("allocation", "ok", f"{request} in {where}", None, details)


@check("launch-command")
def check_launch_command(ctx: Context) -> Check:
    r = ctx.resolved()
    if r.error is not None:
        return Check(
            "launch-command", "skip", f"no command to show: {r.error.message} (see allocation)"
        )
    spec = r.spec
    assert spec is not None
    family = spec.launcher or "?"
    if spec.flavour:
        family += f" ({spec.flavour})"
    if spec.fanout:
        family += f", one per host through {spec.fanout}"
    details = {
        "launcher": spec.launcher,
        "flavour": spec.flavour,
        "fanout": spec.fanout,
        "argv": r.argv,
        "forwarded": spec.forwarded,
    }
    return Check("launch-command", "ok", f"{family}: {shlex.join(r.argv)}", None, details)


def _label_flags(r: Resolved) -> list[str]:
    """The flags --rank-prefix adds to the launcher's argv (the launcher's own labels)."""
    assert r.spec is not None
    with_labels = r.scheduler.build(r.spec.replace(rank_prefix=True))
    without = r.scheduler.build(r.spec.replace(rank_prefix=False))
    return [a for a in with_labels if a not in without]


@check("rank-prefix")
def check_rank_prefix(ctx: Context) -> Check:
    r = ctx.resolved()
    if r.error is not None:
        return Check("rank-prefix", "skip", "the launch is not known (see allocation)")
    spec = r.spec
    assert spec is not None
    if (spec.nprocs or 1) == 1:
        return Check("rank-prefix", "ok", "one rank: its lines need no prefix")
    flags = _label_flags(r)
    details = {"launcher": spec.launcher, "flags": flags, "requested": ctx.rank_prefix}
    shown = " ".join(flags)
    if not flags:
        return Check(
            "rank-prefix",
            "warn",
            f"{spec.launcher} has no rank-label flag tether knows: lines stay untagged",
            "use --launcher srun or mpiexec (they label lines), or print the rank yourself",
            details,
        )
    if ctx.rank_prefix:
        summary = f"--rank-prefix: {spec.launcher} labels lines ({shown}), shown as `[rank] line`"
        return Check("rank-prefix", "ok", summary, None, details)
    if spec.launcher == "srun" and ctx.env.get("SLURM_LABELIO"):
        return Check("rank-prefix", "ok", "SLURM_LABELIO is set: srun labels lines", None, details)
    return Check(
        "rank-prefix",
        "warn",
        f"{spec.nprocs} ranks will write untagged lines into one stream",
        f"add --rank-prefix to tether launch ({spec.launcher} then gets {shown} and tether "
        "prints `[rank] line`)",
        details,
    )
