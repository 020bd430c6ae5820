"""tether: tie every ML run to its exact code, config and data.

The public API is imported lazily (PEP 562), so `import tether` and `tether --help` stay fast:
OmegaConf, YAML and SQLite load only when a run or a config is made.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "clicfg": "tether.config.cli",
    "experiment": "tether.api",
    "start_run": "tether.session.start",
    "unsafe_debug": "tether.debug",
    "snapshot": "tether.api",
    "track_data": "tether.api",
    "previous_stage": "tether.api",
    "current_run": "tether.context",
    "Skipped": "tether.session.exits",
    "hash_data": "tether.capture.datahash",
    # tether.History is track's class, taken from session.attach, which registers the attacher
    # that lets `History()` in a process started for a run attach to it.
    "History": "tether.session.attach",
    "open_run": "tether.session.open",
    "mlflow": "tether.api",
    "parallel": "tether.api",
    "Run": "tether.session.run",
    "open_store": "tether.store",
    "Store": "tether.store",
    "TetherError": "tether.errors",
    # Runs as data (pandas and polars are imported only by .to_pandas() / .to_polars()).
    "runs": "tether.track.frames",
    "metrics": "tether.track.frames",
    "ConfigError": "tether.errors",
}

# Modules reachable as attributes: `from tether import dist` is the documented spelling of
# tether.distributed (docs/distributed.md); no module file is named `dist` (build output's name).
_MODULES = {"dist": "tether.distributed"}

__all__ = ["__version__", *_API, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = import_module(_MODULES[name])
        globals()[name] = value
        return value
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
