"""The run store: run folders on disk (the truth) and a SQLite index over them (a cache)."""

from ..workspace import resolve_runs_root
from .records import RunRecord
from .state import RunState
from .store import Store, open_store

__all__ = ["RunRecord", "RunState", "Store", "open_store", "resolve_runs_root"]
