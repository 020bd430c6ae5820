"""Run ids: UUIDv7 (RFC 9562), time-sortable and safe to create on many machines at once."""

from __future__ import annotations

import os
import threading
import time

from .patterns import LazyPattern

_lock = threading.Lock()
_last_ms = 0
_counter = 0

MIN_SHORT = 8


def new_id() -> str:
    """A new UUIDv7 string; ids made in one process are strictly increasing."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same millisecond (or a clock step back): keep order with a counter in rand_a.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        _last_ms = ms
        rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= (_counter & 0xFFF) << 64
        value |= 0b10 << 62
        value |= rand_b
    h = f"{value:032x}"
    # Formatted by hand: the uuid module imports platform, a few ms of start-up for nothing.
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_RUN_ID = LazyPattern(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def is_run_id(text: str) -> bool:
    return _RUN_ID.fullmatch(text) is not None


def id_time(run_id: str) -> float:
    """Creation time (seconds since the epoch) encoded in a UUIDv7."""
    return int(run_id.replace("-", "")[:12], 16) / 1000.0


def normalise_prefix(prefix: str) -> str:
    return prefix.lower()


def short_ids(ids: list[str], minimum: int = MIN_SHORT) -> dict[str, str]:
    """Shortest prefix (at least `minimum` chars) that tells each id apart from its neighbours.

    Sorting puts the ids that share the longest prefix next to each other, so each id only needs
    comparing with the one before and after it.
    """
    ordered = sorted(set(ids))
    out: dict[str, str] = {}
    for i, rid in enumerate(ordered):
        need = minimum
        for j in (i - 1, i + 1):
            if 0 <= j < len(ordered):
                other = ordered[j]
                common = 0
                for a, b in zip(rid, other, strict=False):
                    if a != b:
                        break
                    common += 1
                need = max(need, common + 1)
        short = rid[:need]
        if short.endswith("-"):
            short = rid[: need + 1]
        out[rid] = short
    return out


def fnv1a64(data: bytes) -> int:
    """A 64-bit FNV-1a hash: enough to tell cache files apart (runs roots, interpreters),
    without importing hashlib (3 ms of start-up for every run)."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
