"""What track/ needs of a run: its record, its store's root and a slot for its writer.

track/ sits below session/ and never imports it: History and its writer are typed against this
Protocol, which `tether.Run` (tether.session.run) satisfies, and read the current run through
`tether.context`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..store import RunRecord, Store


class TrackedRun(Protocol):
    """A run whose metrics History writes (`tether.Run` is one)."""

    record: RunRecord  # summary, lock (config, sources), state, attrs: for summary.json, sinks
    store: Store  # its root holds the index the live summary goes to
    _history_core: Any  # the tether.track.writer.Core all the run's History handles share

    @property
    def dir(self) -> Path: ...
