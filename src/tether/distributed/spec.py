"""The launch spec: what the user asked for, checked, and the facts a command is built from.

`LaunchSpec` holds the user's request (ranks, ranks per host, hosts, hostfile, launcher, flags
to pass through) and, once `tether.distributed.resolver.resolve` has filled them in, the facts
of this machine and job: the hosts, the MPI flavour, whether we run as root, the cores here.
Scheduler plug-ins build their argv from a resolved spec alone, so building is a pure function
and every scheduler x launcher combination is tested with exact argv.

The rank arithmetic lives here (`counts`), so an inconsistent request fails before anything
runs, with the numbers in the message:

    -n 8 -ppn 3 --nhosts 2   ->   -n 8 does not fit -ppn 3 x --nhosts 2 = 6 ranks
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import TetherError, did_you_mean

LAUNCHERS = ("mpiexec", "srun", "torchrun")


@dataclass
class LaunchSpec:
    """One launch. The first group of fields is the request; the second is filled by
    `resolve()` (`resolved` tells which state a spec is in)."""

    command: list[str]
    nprocs: int | None = None  # -n/-np: total ranks
    ppn: int | None = None  # -ppn: ranks per host
    nhosts: int | None = None  # --nhosts
    hostfile: str | None = None  # --hostfile (or TETHER_HOSTFILE)
    cpu_bind: str | None = None  # --cpu-bind, spelled for the launcher (core, depth, cores...)
    launcher: str | None = None  # mpiexec | srun | torchrun; None: the scheduler's default
    extra_args: list[str] = field(default_factory=list)  # launcher flags passed through
    env: dict[str, str] = field(default_factory=dict)  # set for the ranks (and forwarded)
    forward: list[str] = field(default_factory=list)  # names forwarded (Open MPI -x), if set
    mpi: str | None = None  # flavour to assume when `mpiexec --version` does not tell
    rank_prefix: bool = False  # ask the launcher to label each line with its rank
    scheduler: str | None = None  # force a scheduler plug-in (like TETHER_SCHEDULER)

    # -- filled by resolve() --------------------------------------------------------------
    resolved: bool = False
    scheduler_name: str | None = None
    job_id: str | None = None
    hosts: list[str] = field(default_factory=list)  # the hosts the ranks run on, in order
    slots: dict[str, int] | None = None  # slots per host, when a hostfile or nodefile says
    hostfile_arg: str | None = None  # the hostfile to hand to the launcher
    name_hosts: bool = False  # the launcher must be told the hosts (a subset, a user list)
    flavour: str | None = None  # openmpi | mpich | pals | intel (mpiexec only)
    as_root: bool = False
    cores: int = 1  # usable cores of this machine
    local: bool = True  # every rank runs on this machine
    fanout: str | None = None  # torchrun on several hosts: the launcher that starts one per host

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> LaunchSpec:
        return dataclasses.replace(self, **changes)

    @property
    def forwarded(self) -> list[str]:
        """Environment names handed to launchers that do not forward everything (-x)."""
        names = [*self.forward, *self.env]
        return list(dict.fromkeys(names))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise TetherError(f"{flag} {value} is not a positive whole number", "give 1 or more")


def validate(spec: LaunchSpec) -> None:
    """Check the request on its own (before any host is known)."""
    if not spec.command:
        raise TetherError(
            "no command to launch", "put it after `--`: tether launch -n 2 -- python train.py"
        )
    _positive(spec.nprocs, "-n")
    _positive(spec.ppn, "-ppn")
    _positive(spec.nhosts, "--nhosts")
    if spec.launcher is not None and spec.launcher not in LAUNCHERS:
        hint = did_you_mean(spec.launcher, LAUNCHERS)
        raise TetherError(
            f"--launcher {spec.launcher!r} is not one of {', '.join(LAUNCHERS)}",
            f"did you mean {hint!r}?" if hint else None,
        )
    if spec.nprocs is not None and spec.ppn is not None and spec.nhosts is not None:
        fit(spec.nprocs, spec.ppn, spec.nhosts)
    if spec.nprocs is not None and spec.nhosts is not None and spec.nprocs < spec.nhosts:
        raise TetherError(
            f"-n {spec.nprocs} cannot place a rank on each of --nhosts {spec.nhosts}",
            f"give -n {spec.nhosts} or more, or --nhosts {spec.nprocs}",
        )


def fit(n: int, ppn: int, nhosts: int) -> None:
    """-n must fill the hosts: more than ppn x (nhosts - 1), at most ppn x nhosts."""
    most = ppn * nhosts
    if n > most:
        raise TetherError(
            f"-n {n} does not fit -ppn {ppn} x --nhosts {nhosts} = {most} ranks",
            f"give -n {most}, or -ppn {-(-n // nhosts)} for {n} ranks on {nhosts} hosts",
        )
    least = ppn * (nhosts - 1)
    if n <= least:
        raise TetherError(
            f"-n {n} leaves a host idle: -ppn {ppn} x {nhosts - 1} hosts = {least} ranks "
            f"already hold all {n}",
            f"give --nhosts {-(-n // ppn)} or -n {most}",
        )


def counts(
    spec: LaunchSpec, available: int, hint: int | None, slots: dict[str, int] | None = None
) -> tuple[int, int, int]:
    """(ranks, ranks per host, hosts) from what the user gave and what the job has.

    `available`: hosts known (hostfile, scheduler; 1 on a plain machine); `hint`: the ranks per
    host the scheduler or hostfile suggests. Missing numbers are derived:
    -n and -ppn -> hosts = ceil(n / ppn); -n and --nhosts -> ppn = ceil(n / nhosts);
    -ppn and --nhosts -> n = ppn x nhosts; -n alone -> spread over min(n, available) hosts;
    -ppn alone -> every host; nothing -> every host at `hint` (or 1) ranks each.
    """
    n, ppn, nhosts = spec.nprocs, spec.ppn, spec.nhosts
    if n is not None and ppn is not None and nhosts is None:
        nhosts = -(-n // ppn)
    elif n is not None and nhosts is not None and ppn is None:
        ppn = -(-n // nhosts)
    elif ppn is not None and nhosts is not None and n is None:
        n = ppn * nhosts
    elif n is not None and ppn is None and nhosts is None:
        nhosts = min(n, available)
        ppn = -(-n // nhosts)
    elif ppn is not None and n is None and nhosts is None:
        nhosts = available
        n = ppn * nhosts
    elif n is None and ppn is None:
        nhosts = nhosts if nhosts is not None else available
        ppn = hint or 1
        n = ppn * nhosts
    assert n is not None and ppn is not None and nhosts is not None
    fit(n, ppn, nhosts)
    if nhosts > available:
        raise TetherError(
            f"{n} ranks at {ppn} per host need {nhosts} hosts, but only {available} "
            f"{'is' if available == 1 else 'are'} known",
            "give --hostfile, run inside a job allocation, or lower -n / raise -ppn",
        )
    if slots is not None:
        _check_slots(n, ppn, nhosts, slots)
    return n, ppn, nhosts


def _check_slots(n: int, ppn: int, nhosts: int, slots: dict[str, int]) -> None:
    hosts = list(slots)[:nhosts]
    total = sum(slots[h] for h in hosts)
    shown = ", ".join(f"{h}:{slots[h]}" for h in hosts)
    if n > total:
        raise TetherError(
            f"-n {n} is more than the {total} slots of {nhosts} host"
            f"{'s' if nhosts != 1 else ''} ({shown})",
            f"give -n {total} or fewer, or add hosts or slots to the hostfile",
        )
    placed = [min(ppn, n - i * ppn) for i in range(nhosts)]
    short = [(h, k) for h, k in zip(hosts, placed, strict=True) if slots[h] < k]
    if short:
        shown = ", ".join(f"{h} gets {k} ranks but has {slots[h]} slots" for h, k in short)
        raise TetherError(
            f"-ppn {ppn} does not fit the hostfile: {shown}",
            "lower -ppn or give those hosts more slots in the hostfile",
        )
