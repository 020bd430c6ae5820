"""Distributed launch: `tether launch`, `tether doctor`, scheduler plug-ins, torch set-up.

Names are imported lazily (PEP 562), so `import tether.distributed` costs nothing and torch
loads only when a torch helper is called:

- `LaunchSpec`: the request and its resolved facts (tether.distributed.spec)
- `resolve`: a spec against this machine and its job (tether.distributed.resolver)
- `build_command`: the launcher's argv (tether.distributed.launchers; templates: .templates)
- `run_launch`: the job as a run, launch.json (tether.distributed.launch)
- `Scheduler`, `select_scheduler`: the plug-in contract and registry (.schedulers)
- `read_hostfile`, `parse_hostfile`: tether.distributed.hostfile
- `run_checks`: the checks of `tether doctor` (tether.distributed.doctor)
- `setup_torch`, `info`, `cleanup`, `wrap_model`, `unwrap_model`, `distributed_loader`,
  `seed_everything`, `DistInfo`: tether.distributed.torch
- `RankInfo`, `get_rank`, `get_local_rank`, `get_world_size`, `rank_seed`: tether.distributed.ranks
  (`DistInfo` is a `RankInfo` with what `setup_torch` set up: backend, device, seed)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "LaunchSpec": ("tether.distributed.spec", "LaunchSpec"),
    "resolve": ("tether.distributed.resolver", "resolve"),
    "build_command": ("tether.distributed.launchers", "build_command"),
    "run_launch": ("tether.distributed.launch", "run_launch"),
    "Scheduler": ("tether.distributed.schedulers.base", "Scheduler"),
    "select_scheduler": ("tether.distributed.schedulers", "select"),
    "read_hostfile": ("tether.distributed.hostfile", "read_hostfile"),
    "parse_hostfile": ("tether.distributed.hostfile", "parse_hostfile"),
    "run_checks": ("tether.distributed.doctor", "run_checks"),
    "setup_torch": ("tether.distributed.torch", "setup_torch"),
    "info": ("tether.distributed.torch", "info"),
    "cleanup": ("tether.distributed.torch", "cleanup"),
    "wrap_model": ("tether.distributed.torch", "wrap_model"),
    "distributed_loader": ("tether.distributed.torch", "distributed_loader"),
    "unwrap_model": ("tether.distributed.torch", "unwrap_model"),
    "seed_everything": ("tether.distributed.torch", "seed_everything"),
    "DistInfo": ("tether.distributed.torch", "DistInfo"),
    "RankInfo": ("tether.distributed.ranks", "RankInfo"),
    "get_rank": ("tether.distributed.ranks", "get_rank"),
    "get_local_rank": ("tether.distributed.ranks", "get_local_rank"),
    "get_world_size": ("tether.distributed.ranks", "get_world_size"),
    "rank_seed": ("tether.distributed.ranks", "rank_seed"),
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    target = _NAMES.get(name)
    if target is None:
        raise AttributeError(f"module 'tether.distributed' has no attribute {name!r}")
    value = getattr(import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
