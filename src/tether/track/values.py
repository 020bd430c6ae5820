"""Metric values as numbers: Python numbers, NumPy scalars and one-element torch tensors.

`classify` decides, once per key and type, how a value becomes a number: kept as it is and
converted at flush, a column at a time (PLAIN: floats, ints, bools, NumPy scalars, whose
conversion cannot fail: `column_converter`), converted when logged with its checks (NOW: 0-d
arrays, Fractions, Decimals, float subclasses), or at flush, all the tensors of one device at
once (TENSOR: tether.track.batch), so logging a CUDA loss costs no device sync per step.
Anything else raises TetherError naming the key. float32 values are written as the short
decimals NumPy prints (tether.track.float32).
"""

from __future__ import annotations

import functools
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TetherError
from .float32 import short32, shortest

# How a value of a given type is turned into a number: at flush as it is (PLAIN), converted
# now (NOW), or at flush, the tensors of a device at once (TENSOR).
PLAIN, NOW, TENSOR = 0, 1, 2
# (type, how: PLAIN/NOW/TENSOR, category for the type-change warning, converter for NOW)
Kind = tuple[type, int, str, Callable[[Any], "int | float"]]
Column = Callable[[Sequence[Any]], list[Any]]


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
        return kind, PLAIN, "bool", int
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
        if fast is not None:
            return kind, PLAIN, category, fast  # converted at flush (column_converter)
        return kind, NOW, category, checked
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


def _ints(col: Sequence[Any]) -> list[int]:
    return list(map(int, col))


def _floats(col: Sequence[Any]) -> list[float]:
    return list(map(float, col))


_COLUMN: dict[Any, Column] = {int: _ints, float: _floats, _short_numpy: shortest}


def column_converter(kind: type) -> Column | None:
    """How a column of values of one PLAIN type becomes numbers, in one call; None for floats
    and ints, which are numbers already. The same numbers `classify`'s converter gives one by
    one (float32 as the short decimal NumPy prints for it)."""
    if kind is float or kind is int:
        return None
    if kind is bool:
        return _ints
    one = _numpy_scalar(kind)
    if one is not None:
        return _COLUMN[one]
    return _floats  # a number of another type that reached a PLAIN column: as a float


def as_step(step: Any) -> int:
    try:
        if hasattr(step, "item"):
            step = step.item()
        if isinstance(step, float) and not step.is_integer():
            raise ValueError
        return int(step)
    except (TypeError, ValueError, OverflowError):
        raise TetherError(f"step must be an integer, not {step!r}")
