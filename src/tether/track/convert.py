"""The values of a flush as numbers, a column at a time (tether.track.batch makes the columns).

- A column of one plain type is converted in one call (`values.column_converter`): nothing for
  floats and ints, `map(int, ...)` for bools and NumPy integers.
- float32 values (NumPy float32 scalars, float32 and float16 tensors) become the short decimals
  NumPy prints, all of a flush in one `float32.shortest` call (its cost is mostly per call).
- Tensors on the CPU are read one `.tolist()` each: no device to wait for, and no GIL released
  (`.item()` releases it, and taking it back from a busy training loop can take a switch
  interval); a column of them costs half what `torch.stack` does. Tensors on another device
  are stacked, a column at a time, and all those of one device read with one
  `torch.cat(...).tolist()`: one device sync per device per flush.
- A column whose key changed type within the flush is converted value by value.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, Protocol

from .float32 import short32, shortest
from .values import Column, column_converter

log = logging.getLogger("tether.history")

DROP = object()  # a value left out at flush (a complex tensor under a key of real ones)
_CONVERTERS: dict[type, Column | None] = {}  # column_converter's answers, by type
_SCALARS = {float, int, bool}
_dtype = attrgetter("dtype")


class Columns(Protocol):
    """What is converted: a group of rows (tether.track.batch.Group)."""

    names: tuple[str, ...]
    keys: tuple[str, ...]
    cols: list[Any]


# (group, column, places in the column or None for all of it, values)
_Part = tuple[Columns, int, "list[int] | None", Sequence[Any]]


def numbers(groups: Sequence[Columns]) -> bool:
    """Turn every metric column into numbers, in place; False when a value had to be left out
    (DROP: the caller rebuilds the rows without it)."""
    tensors: list[_Part] = []
    later: list[_Part] = []  # float32 values, shortened together
    torch = sys.modules.get("torch")
    tensor_type = torch.Tensor if torch is not None else None
    for g in groups:
        for j in range(len(g.names) - len(g.keys), len(g.names)):  # after step and t
            col = g.cols[j]
            kinds = set(map(type, col))
            if len(kinds) != 1:
                tensors += _mixed(g, j, tensor_type)
                continue
            kind = kinds.pop()
            if tensor_type is not None and issubclass(kind, tensor_type):
                tensors.append((g, j, None, col))
                continue
            if kind not in _CONVERTERS:
                _CONVERTERS[kind] = column_converter(kind)
            conv = _CONVERTERS[kind]
            if conv is shortest:
                later.append((g, j, None, col))
            elif conv is not None:
                g.cols[j] = conv(col)
    kept = _tensors(tensors, torch, later) if tensors else True
    if later:
        _shorten(later)
    return kept


def _mixed(g: Columns, j: int, tensor_type: type | None) -> list[_Part]:
    """A column of several types, value by value; its tensors, to convert with the rest."""
    col = g.cols[j]
    out = list(col)
    places = []
    for i, value in enumerate(col):
        if tensor_type is not None and isinstance(value, tensor_type):
            places.append(i)
        else:
            out[i] = _one(value)
    g.cols[j] = out
    return [(g, j, places, [col[i] for i in places])] if places else []


def _one(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is int:
        return value
    conv = column_converter(kind)
    if conv is shortest:
        return short32(float(value))
    return conv([value])[0] if conv is not None else value


def _shorten(parts: list[_Part]) -> None:
    """float32 values to their short decimals, every part in one call."""
    short = shortest(list(itertools.chain.from_iterable(p[3] for p in parts)))
    start = 0
    for g, j, places, values in parts:
        _put(g, j, places, short[start : start + len(values)])
        start += len(values)


def _tensors(parts: list[_Part], torch: Any, later: list[_Part]) -> bool:
    """The tensors as numbers (float32 ones into `later`); False if some were left out."""
    kept = True
    by_device: dict[Any, list[tuple[_Part, str, Any]]] = {}
    for part in parts:
        g, j, places, column = part
        first = column[0]
        if first.is_cpu and first.ndim == 0:
            read = _cpu(column, torch)
            if read is not None:
                _store(part, _kind(read[0]), read[1], later)
                continue
        try:
            stacked = torch.stack(list(column)).reshape(-1)
            if stacked.numel() != len(column):
                raise ValueError("not one element each")
        except (RuntimeError, ValueError):  # shapes or devices differ: one at a time
            stacked = torch.stack([t.reshape(()).to(first.device) for t in column])
        if stacked.dtype.is_complex:
            log.warning("metric %r: complex tensors are not numbers, left out", g.names[j])
            _put(g, j, places, [DROP] * len(column))
            kept = False
            continue
        by_device.setdefault(stacked.device, []).append((part, _kind(stacked.dtype), stacked))
    for found in by_device.values():
        if len(found) == 1:
            values = found[0][2].tolist()  # the device sync
        else:
            values = torch.cat([s.to(torch.float64) for _, _, s in found]).tolist()
        start = 0
        for part, kind, stacked in found:
            _store(part, kind, values[start : start + len(stacked)], later)
            start += len(stacked)
    return kept


def _cpu(column: Sequence[Any], torch: Any) -> tuple[Any, list[Any]] | None:
    """(dtype, numbers) of CPU tensors of one real dtype, one `.tolist()` each; None for the
    rest (several dtypes, complex, one-element tensors of more dimensions)."""
    dtypes = set(map(_dtype, column))
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    if dtype.is_complex:
        return None
    values = list(map(torch.Tensor.tolist, column))
    if not set(map(type, values)) <= _SCALARS:
        return None
    return dtype, values


def _kind(dtype: Any) -> str:
    if not dtype.is_floating_point:
        return "int"
    return "f32" if dtype.itemsize <= 4 else ""


def _store(part: _Part, kind: str, values: list[Any], later: list[_Part]) -> None:
    g, j, places, _ = part
    if kind == "f32":
        later.append((g, j, places, values))
    elif kind == "int":
        _put(g, j, places, [int(x) for x in values])
    else:
        _put(g, j, places, values)


def _put(g: Columns, j: int, places: list[int] | None, values: Sequence[Any]) -> None:
    if places is None:
        g.cols[j] = values
        return
    col = g.cols[j]
    for i, value in zip(places, values, strict=True):
        col[i] = value
