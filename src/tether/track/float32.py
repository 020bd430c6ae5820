"""float32 values as the short decimals NumPy prints for them, a whole column at once.

A float32 metric (a NumPy float32 scalar, a float32 or float16 tensor) is written as the
shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612), the digits
NumPy's `str` gives. `str` costs ~300 ns a value (NumPy's Dragon4, then `float`), more than the
rest of a row's logging; `shortest` finds the same digits for a column with a few array
operations, ~50 ns a value:

for p = 6..9 significant digits (a float32 never needs more than 9, and a shorter decimal that
reads back is also the nearest 6-digit one, since a float32's rounding interval is narrower than
half the spacing of 6-digit decimals), scale by the exact power of ten 10**s that puts p digits
before the point, take the two integers around it (m and m + 1), turn each back into the float64
nearest to m / 10**s (one correctly rounded division or product by an exact power: the same float
`float(str)` gives for those digits), and keep the nearer one that rounds to the same float32; the
first p that has one wins. Values whose scale is not an exact float64 power of ten (below ~1e-14
or above ~1e22), and the few a tie leaves in doubt, go through NumPy's `str` one by one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_EXACT = 22  # 10**k is exact in float64 for 0 <= k <= 22
_DIGITS: Any = None  # the significant digits tried, 6..9, as a column (made with NumPy)
_POWERS: Any = None  # 10.0**k for k = 0..22


def _numpy() -> Any:
    return sys.modules.get("numpy")


def short32(number: float) -> float:
    """One float32 value as NumPy prints it (the float64 nearest those digits)."""
    numpy = _numpy()
    if numpy is not None:
        return float(str(numpy.float32(number)))
    return _short32_python(number)


def _short32_python(number: float) -> float:
    """Without NumPy: the shortest of 6 to 9 digits that reads back as the same float32."""
    import struct  # noqa: PLC0415 (heavy: only without NumPy, which a float32 value implies)

    pack = struct.Struct("<f").pack
    try:
        packed = pack(number)
    except OverflowError:
        return number
    if number != number or number in (float("inf"), float("-inf")):
        return number
    for digits in (6, 7, 8, 9):
        candidate = float(f"{number:.{digits}g}")
        if pack(candidate) == packed:
            return candidate
    return number


def shortest(values: Iterable[Any]) -> list[float]:
    """The float32 values (NumPy float32 scalars, or floats that are float32 values) as the
    floats of the decimals NumPy prints for them; NaN and infinities as they are."""
    numpy = _numpy()
    if numpy is None:
        return [_short32_python(float(v)) for v in values]
    np = numpy
    x = np.asarray(values if isinstance(values, (list, tuple)) else list(values), np.float32)
    with np.errstate(all="ignore"):  # NaNs of every bit pattern, log10 of what is left out
        return _shortest(np, x.reshape(-1))


def _shortest(np: Any, x: Any) -> list[float]:
    global _DIGITS, _POWERS
    if _POWERS is None:
        _DIGITS = np.arange(6, 10).reshape(4, 1)
        _POWERS = 10.0 ** np.arange(_EXACT + 1, dtype=np.float64)
    d = x.astype(np.float64)
    out = d.copy()  # zeros, NaN and infinities: as they are
    a = np.abs(d)
    e = np.zeros(len(d), np.int64)
    finite = np.isfinite(d) & (a > 0)
    e[finite] = np.floor(np.log10(a[finite]))
    # log10 may land one off next to a power of ten: put e where 10**e <= a < 10**(e + 1).
    e -= finite & (a < 10.0 ** e.astype(np.float64))
    e += finite & (a >= 10.0 ** (e + 1).astype(np.float64))
    # Every p from 6 to 9 needs an exact power of ten: 10**e from 1e-14 to 1e27. The rest (and
    # the few a tie leaves in doubt) are NumPy's `str` one by one.
    inside = finite & (e >= 9 - 1 - _EXACT) & (e <= 6 - 1 + _EXACT)
    slow = np.flatnonzero(finite & ~inside)
    todo = np.flatnonzero(inside)
    if len(todo):
        xs, ds = x[todo], d[todo]
        # Each p of 6..9 as a row: scale, the two integers around it, both back as floats.
        s = _DIGITS - 1 - e[todo]  # (4, n): d * 10**s has p digits before the point
        if s.min() >= 0:  # the usual case, values under 1e6: every p scales up
            power = _POWERS[s]  # exact
            scaled = ds * power
            lo = np.floor(scaled)
            hi = lo + 1.0
            c_lo = lo / power
            c_hi = hi / power
        else:
            up = s >= 0
            power = _POWERS[np.abs(s)]
            scaled = np.where(up, ds * power, ds / power)
            lo = np.floor(scaled)
            hi = lo + 1.0
            c_lo = np.where(up, lo / power, lo * power)
            c_hi = np.where(up, hi / power, hi * power)
        ok_lo = c_lo.astype(np.float32) == xs
        ok_hi = c_hi.astype(np.float32) == xs
        ok = ok_lo | ok_hi
        first = np.argmax(ok, axis=0)  # the fewest digits that read back
        cols = np.arange(len(todo))
        ok_lo, ok_hi = ok_lo[first, cols], ok_hi[first, cols]
        lo, scaled = lo[first, cols], scaled[first, cols]
        below = scaled - lo
        above = 1.0 - below
        out[todo] = np.where(
            ok_hi & (~ok_lo | (above < below)), c_hi[first, cols], c_lo[first, cols]
        )
        # Both read back and the distances look equal (rare; they are rounded): NumPy's.
        doubt = ok_lo & ok_hi & (np.abs(below - above) <= 1e-6)
        slow = np.concatenate([slow, todo[~(ok_lo | ok_hi) | doubt]])
    for i in slow:
        out[i] = float(str(x[i]))
    return out.tolist()
