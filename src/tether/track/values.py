"""Metric values as numbers: Python numbers, NumPy scalars and one-element torch tensors.

`classify` decides, once per key and type, how a value becomes a number: kept as it is (PLAIN),
converted when logged (NOW), or at flush, all the tensors of one device at once (TENSOR:
`materialize`), so logging a CUDA loss costs no device sync per step. Anything else raises
TetherError naming the key. float32 values are written as the short decimals NumPy prints.
"""

from __future__ import annotations

import functools
import logging
import numbers
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TetherError
from .sinks.base import Row

log = logging.getLogger("tether.history")

# How a value of a given type is turned into a number: kept, converted now, or at flush.
PLAIN, NOW, TENSOR = 0, 1, 2
FLOAT = {float}  # the set of value types of a row of floats only
NUMBERS = (float, int)
_F32 = struct.Struct("<f")
_INF = float("inf")
# (type, how: PLAIN/NOW/TENSOR, category for the type-change warning, converter for NOW)
Kind = tuple[type, int, str, Callable[[Any], "int | float"]]


# -- checking and converting ----------------------------------------------------------------------
def _torch() -> Any:
    return sys.modules.get("torch")


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float"


def not_a_number(key: str, value: Any, why: str = "") -> TetherError:
    shown = " ".join(repr(value).split())
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return TetherError(
        f"metric {key!r}: {type(value).__name__} {shown} is not a number{why}",
        "log Python numbers, NumPy scalars or one-element tensors",
    )


def _item(key: str, value: Any) -> int | float:
    """A NumPy scalar, a 0-d array or anything with `.item()` as a Python number."""
    try:
        number = value.item()
        if type(number) is float and getattr(value.dtype, "itemsize", 8) <= 4:
            number = short32(number)
    except (ValueError, TypeError, AttributeError, RuntimeError):
        raise not_a_number(key, value, " (it holds more than one value)")
    if isinstance(number, bool):
        return int(number)
    if isinstance(number, (int, float)):
        return number
    raise not_a_number(key, value)


def _real(key: str, value: Any) -> int | float:
    """A number of another type (an int or float subclass, Fraction, Decimal)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise not_a_number(key, value)


def _tensor(key: str, value: Any) -> Any:
    """The tensor to convert at flush, without its autograd graph."""
    if value.numel() != 1:
        raise not_a_number(key, value, f" (a tensor of {value.numel()} elements)")
    # `.data`, not `.detach()`: the same view without the graph, and no GIL hand-off (detach
    # costs ~20 us whenever another thread exists, as the flush thread does).
    return value.data if value.requires_grad else value


def classify(key: str, value: Any) -> Kind:
    """(type, how to convert, category, converter) for the first value of a type seen under
    `key`. The converter turns a value of that type into a number when it is logged (NOW): a
    builtin (`float`, `int`) for the types whose conversion cannot fail, the checking
    `convert_now` for the rest."""
    kind = type(value)
    if kind is float:
        return kind, PLAIN, "float", float
    if kind is int:
        return kind, PLAIN, "int", int
    if kind is bool:
        return kind, NOW, "bool", int
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_complex():
            raise not_a_number(key, value, " (complex)")
        _tensor(key, value)  # validates
        if value.dtype == torch.bool:
            return kind, TENSOR, "bool", float
        return kind, TENSOR, "float" if value.dtype.is_floating_point else "int", float
    checked = functools.partial(convert_now, key)
    fast = _numpy_scalar(kind)  # before the float test: numpy.float64 is a float subclass
    if isinstance(value, (int, float)) and fast is None:
        return kind, NOW, _category(value), checked
    if hasattr(value, "item") and hasattr(value, "dtype"):
        number = _item(key, value)  # NumPy scalars and 0-d arrays (JAX arrays alike)
        category = "bool" if getattr(value.dtype, "kind", "") == "b" else _category(number)
        return kind, NOW, category, fast or checked
    if isinstance(value, numbers.Real):
        return kind, NOW, _category(_real(key, value)), checked
    raise not_a_number(key, value)


def _numpy_scalar(kind: type) -> Callable[[Any], int | float] | None:
    """A converter that cannot fail for a NumPy scalar type (not a 0-d array: its shape may
    change from one value to the next), about 20x cheaper than `.item()` and its checks: the
    same numbers as `_item` gives."""
    numpy = sys.modules.get("numpy")
    if numpy is None or not issubclass(kind, numpy.generic):
        return None
    if issubclass(kind, numpy.bool_):
        return int
    if issubclass(kind, numpy.integer):
        return int
    if issubclass(kind, numpy.floating):
        if numpy.dtype(kind).itemsize == 4:
            # float32 as the short decimal NumPy prints for it (its `str`), what `short32`
            # computes in Python at ten times the cost.
            return _short_numpy
        return float
    return None  # complex and the rest: the checks of convert_now


def _short_numpy(value: Any) -> float:
    return float(str(value))


def convert_now(key: str, value: Any) -> int | float:
    if type(value) is bool or isinstance(value, (int, float)):
        return _real(key, value)
    if hasattr(value, "item"):
        return _item(key, value)
    return _real(key, value)


def materialize(rows: list[Row], tensor_keys: Sequence[str]) -> list[Row]:
    """The rows with their tensors turned into numbers, in place: one stack per key, one
    `.tolist()` (so one device sync) per device."""
    torch = _torch()
    if not tensor_keys or torch is None:
        return rows
    by_device: dict[Any, list[tuple[str, list[Row], str, Any]]] = {}
    for key in tensor_keys:
        # update() left only numbers and tensors under a key: what is not a number is a tensor.
        holders = [r for r in rows if type(r.get(key, 0.0)) not in NUMBERS]
        if not holders:
            continue
        column = [r[key] for r in holders]
        try:
            stacked = torch.stack(column).reshape(-1)
            if stacked.numel() != len(column):
                raise ValueError("not one element each")
        except (RuntimeError, ValueError):  # shapes or devices differ: one at a time
            device = column[0].device
            stacked = torch.stack([t.reshape(()).to(device) for t in column])
        dtype = stacked.dtype
        if dtype.is_complex:
            for row in holders:
                row.pop(key)
            log.warning("metric %r: complex tensors are not numbers, left out", key)
            continue
        kind = "int" if not dtype.is_floating_point else ("f32" if dtype.itemsize <= 4 else "")
        by_device.setdefault(stacked.device, []).append((key, holders, kind, stacked))
    for entries in by_device.values():
        if len(entries) == 1:
            numbers = entries[0][3].tolist()
        else:
            numbers = torch.cat([e[3].to(torch.float64) for e in entries]).tolist()
        start = 0
        for key, holders, kind, _ in entries:
            chunk = numbers[start : start + len(holders)]
            start += len(holders)
            if kind == "int":
                chunk = [int(x) for x in chunk]
            elif kind == "f32":
                chunk = shorten32(chunk)
            for row, number in zip(holders, chunk, strict=True):
                row[key] = number
    return rows


def shorten32(numbers: list[float]) -> list[float]:
    """float32 values as the short decimals NumPy prints for them, all at once."""
    try:
        import numpy
    except ImportError:
        return [short32(x) for x in numbers]
    return list(map(float, numpy.array(numbers, dtype=numpy.float32).astype(str)))


def short32(number: float) -> float:
    """A float32 value as the shortest decimal that reads back as it (0.2, not
    0.20000000298023224), as NumPy prints float32."""
    try:
        packed = _F32.pack(number)
    except OverflowError:
        return number
    if number != number or number in (_INF, -_INF):
        return number
    for digits in (6, 7, 8):
        candidate = float(f"{number:.{digits}g}")
        if _F32.pack(candidate) == packed:
            return candidate
    return number


def as_step(step: Any) -> int:
    try:
        if hasattr(step, "item"):
            step = step.item()
        if isinstance(step, float) and not step.is_integer():
            raise ValueError
        return int(step)
    except (TypeError, ValueError, OverflowError):
        raise TetherError(f"step must be an integer, not {step!r}")
