"""Distributed launch: `tether launch`, `tether doctor`, scheduler plug-ins, torch set-up.

Names are imported lazily (PEP 562), so `import tether.dist` costs nothing and torch loads only
when a torch helper is called:

- `LaunchSpec`, `resolve`, `build_command`, `run_launch`: tether.dist.spec / .launch
- `Scheduler`, `select_scheduler`: the plug-in contract and registry (tether.dist.schedulers)
- `read_hostfile`, `parse_hostfile`: tether.dist.hostfile
- `run_checks`: the checks of `tether doctor` (tether.dist.doctor)
- `setup_torch`, `info`, `cleanup`, `wrap_model`, `unwrap_model`, `distributed_loader`,
  `seed_everything`, `DistInfo`: tether.dist.torch
- `RankInfo`, `get_rank`, `get_local_rank`, `get_world_size`, `rank_seed`: tether.dist.ranks
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "LaunchSpec": ("tether.dist.spec", "LaunchSpec"),
    "resolve": ("tether.dist.launch", "resolve"),
    "build_command": ("tether.dist.launch", "build_command"),
    "run_launch": ("tether.dist.launch", "run_launch"),
    "Scheduler": ("tether.dist.schedulers.base", "Scheduler"),
    "select_scheduler": ("tether.dist.schedulers", "select"),
    "read_hostfile": ("tether.dist.hostfile", "read_hostfile"),
    "parse_hostfile": ("tether.dist.hostfile", "parse_hostfile"),
    "run_checks": ("tether.dist.doctor", "run_checks"),
    "setup_torch": ("tether.dist.torch", "setup_torch"),
    "info": ("tether.dist.torch", "info"),
    "cleanup": ("tether.dist.torch", "cleanup"),
    "wrap_model": ("tether.dist.torch", "wrap_model"),
    "distributed_loader": ("tether.dist.torch", "distributed_loader"),
    "unwrap_model": ("tether.dist.torch", "unwrap_model"),
    "seed_everything": ("tether.dist.torch", "seed_everything"),
    "DistInfo": ("tether.dist.torch", "DistInfo"),
    "RankInfo": ("tether.dist.ranks", "RankInfo"),
    "get_rank": ("tether.dist.ranks", "get_rank"),
    "get_local_rank": ("tether.dist.ranks", "get_local_rank"),
    "get_world_size": ("tether.dist.ranks", "get_world_size"),
    "rank_seed": ("tether.dist.ranks", "rank_seed"),
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    target = _NAMES.get(name)
    if target is None:
        raise AttributeError(f"module 'tether.dist' has no attribute {name!r}")
    value = getattr(import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
