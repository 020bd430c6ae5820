"""tether: tie every ML run to its exact code, config and data.

The public API is imported lazily (PEP 562), so `import tether` and `tether --help` stay fast:
OmegaConf, YAML and SQLite load only when a run or a config is made.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "clicfg": "tether.config",
    "experiment": "tether.api",
    "start_run": "tether.api",
    "unsafe_debug": "tether.debug",
    "snapshot": "tether.options",
    "track_data": "tether.options",
    "previous_stage": "tether.options",
    "current_run": "tether.api",
    "Skipped": "tether.api",
    "hash_data": "tether.capture.datahash",
    "History": "tether.track.history",
    "open_run": "tether.track.diagnostics",
    "mlflow": "tether.track.mlflow_decorator",
    "parallel": "tether.executors.parallel",
    "Run": "tether.run",
    "open_store": "tether.store",
    "Store": "tether.store",
    "TetherError": "tether.errors",
    "ConfigError": "tether.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
