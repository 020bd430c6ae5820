"""The one time format of tether: UTC ISO-8601 with microseconds and a `Z`.

state.json, run.lock, attrs events, the trash and launch.json all write it, so text order is
time order. Formatting uses `time` only: `datetime` costs ~2 ms of start-up, and only readers
that parse times need it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

# For `datetime.strftime` (`time.strftime` has no %f).
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SECONDS = "%Y-%m-%dT%H:%M:%S"


def now_iso() -> str:
    """Now, as `2026-11-22T23:00:00.123456Z`."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime(_SECONDS, time.gmtime(seconds)) + f".{ns // 1000:06d}Z"


def iso_from_timestamp(t: float, digits: int = 6) -> str:
    """Seconds since the epoch as UTC ISO-8601 with `digits` (3 or 6) fractional digits."""
    scale = 10**digits
    seconds, frac = divmod(int(t * scale), scale)
    return time.strftime(_SECONDS, time.gmtime(seconds)) + f".{frac:0{digits}d}Z"


def parse_iso(text: str | None) -> datetime | None:
    """An aware datetime for a time tether wrote (or any ISO-8601 text); None if empty or bad."""
    if not text:
        return None
    from datetime import datetime  # noqa: PLC0415 (only readers of times pay)

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
