"""Metric series cut to a point budget on the server, so a chart of a million steps sends a few
thousand points and still shows every spike: each bucket of consecutive points keeps its
minimum, its maximum and its last point."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Points a bucket keeps at most (min, max, last): a budget of N points makes N // 3 buckets.
PER_BUCKET = 3


def downsample(
    xs: Sequence[float], ys: Sequence[float], budget: int
) -> tuple[list[float], list[float]]:
    """(xs, ys) cut to at most `budget` points (at least one bucket), in x order.

    Each bucket of consecutive points keeps the point of its minimum, of its maximum and its
    last point (fewer when they coincide). NaN and infinities are left out: they cannot be
    drawn, and the run's summary reports them.
    """
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if len(pairs) <= budget:
        return [p[0] for p in pairs], [p[1] for p in pairs]
    buckets = max(1, budget // PER_BUCKET)
    size = math.ceil(len(pairs) / buckets)
    out_x: list[float] = []
    out_y: list[float] = []
    for start in range(0, len(pairs), size):
        chunk = range(start, min(start + size, len(pairs)))
        low = min(chunk, key=lambda i: pairs[i][1])
        high = max(chunk, key=lambda i: pairs[i][1])
        for i in sorted({low, high, chunk[-1]}):
            out_x.append(pairs[i][0])
            out_y.append(pairs[i][1])
    return out_x, out_y
