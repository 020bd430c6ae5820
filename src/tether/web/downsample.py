"""Metric series cut to a point budget on the server, so a chart of a million steps sends a few
thousand points and still shows every spike: each bucket of consecutive points keeps its
minimum, its maximum and its last point."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Points a bucket keeps at most (min, max, last): a budget of N points makes N // 3 buckets.
PER_BUCKET = 3


def keep(ys: Sequence[float], budget: int) -> list[int]:
    """The positions of `ys` a chart of at most `budget` points keeps, in order.

    Each bucket of consecutive points keeps the point of its minimum, of its maximum and its
    last point (fewer when they coincide). NaN and infinities are left out: they cannot be
    drawn, and the run's summary reports them.
    """
    finite = [i for i, y in enumerate(ys) if math.isfinite(y)]
    if len(finite) <= budget:
        return finite
    buckets = max(1, budget // PER_BUCKET)
    size = math.ceil(len(finite) / buckets)
    out: list[int] = []
    for start in range(0, len(finite), size):
        chunk = finite[start : start + size]
        low = min(chunk, key=ys.__getitem__)
        high = max(chunk, key=ys.__getitem__)
        out += sorted({low, high, chunk[-1]})
    return out


def downsample(
    xs: Sequence[float], ys: Sequence[float], budget: int
) -> tuple[list[float], list[float]]:
    """(xs, ys) cut to at most `budget` points (at least one bucket), in x order (see `keep`)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
    kept = keep(ys, budget)
    return [xs[i] for i in kept], [ys[i] for i in kept]
