"""`tether doctor`: is this machine ready to launch? One check per concern, each with a status
(`ok`, `warn`, `fail`, or `skip` where it does not apply), a one-line summary, details, and a
one-line remedy when it is not ok.

Checks are small functions, registered in order in the module of their concern and run against
a `Context` (tether.distributed.doctor.base):

- machine: `python`, `tether`, `shared-env`;
- launching: `launchers`, `mpi`, `scheduler`, `hostfile`;
- job: `allocation`, `launch-command`, `rank-prefix`;
- network: `master-addr`, `master-port`, `network`;
- accelerators: `torch`, `accelerators`, `backends`, `timeouts` (torch probed in a child
  process with a timeout: probe);
- services: `wandb`, `mlflow`;
- storage: `runs-root`, `disk`.

They run concurrently (each waits only on the facts it shares with others, through
`Context.memo`), so the doctor takes about as long as its slowest probe, importing torch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from . import accelerators, job, launching, machine, network, services, storage
from .base import STATUSES, Check, CheckFn, CheckList, Context, overall, report

__all__ = [
    "CHECKS",
    "STATUSES",
    "Check",
    "CheckFn",
    "CheckList",
    "Context",
    "check",
    "overall",
    "report",
    "run_checks",
]

CHECKS = CheckList(
    [
        *machine.CHECKS,
        *launching.CHECKS,
        *job.CHECKS,
        *network.CHECKS,
        *accelerators.CHECKS,
        *services.CHECKS,
        *storage.CHECKS,
    ]
)
check = CHECKS.register  # a check of your own, run after the others
_SLOW_FIRST = ("torch",)  # started first: the others finish while torch imports


def _run_one(name: str, fn: CheckFn, ctx: Context) -> Check:
    try:
        return fn(ctx)
    except Exception as exc:
        return Check(
            name,
            "fail",
            f"the check itself failed: {type(exc).__name__}: {exc}",
            "run with TETHER_DEBUG=1 and report this",
        )


def run_checks(ctx: Context | None = None, only: list[str] | None = None) -> list[Check]:
    """Every check (or those named in `only`), run concurrently, returned in order; a check
    that crashes is a failure."""
    ctx = ctx or Context()
    chosen = [(name, fn) for name, fn in CHECKS if not only or name in only]
    if not chosen:
        return []
    # One thread per check: a check blocked on a shared fact (the torch probe) holds no slot
    # another check needs, so none waits on a busy pool.
    with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="doctor") as pool:
        starts = sorted(range(len(chosen)), key=lambda i: chosen[i][0] not in _SLOW_FIRST)
        futures = {i: pool.submit(_run_one, *chosen[i], ctx) for i in starts}
        return [futures[i].result() for i in range(len(chosen))]
