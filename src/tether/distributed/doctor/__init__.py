"""`tether doctor`: is this machine ready to launch? One check per concern, each with a status
(`ok`, `warn`, `fail`), a one-line summary, details, and a remedy when it is not ok.

Checks are small functions, registered in order in the module of their concern and run against
a `Context` (tether.distributed.doctor.base):

- machine: `python`, `tether`;
- launching: `launchers`, `mpi`, `scheduler`, `hostfile`;
- accelerators: `torch`, `accelerators`, `backends` (torch probed in a child process: probe);
- services: `wandb`, `mlflow`;
- storage: `runs-root`, `disk`.
"""

from __future__ import annotations

from . import accelerators, launching, machine, services, storage
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
        *accelerators.CHECKS,
        *services.CHECKS,
        *storage.CHECKS,
    ]
)
check = CHECKS.register  # a check of your own, run after the others


def run_checks(ctx: Context | None = None, only: list[str] | None = None) -> list[Check]:
    """Every check in order (or those named in `only`); a check that crashes is a failure."""
    ctx = ctx or Context()
    out: list[Check] = []
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        try:
            result = fn(ctx)
        except Exception as exc:
            result = Check(
                name,
                "fail",
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "run with TETHER_DEBUG=1 and report this",
            )
        out.append(result)
    return out
