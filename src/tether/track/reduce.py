"""Reductions across ranks for `History.update(..., reduce=True)`.

Called in the caller's thread on every rank at the same points (collectives must be issued in
the same order everywhere), with the rows each rank logged since the last reduction. Two
collectives per reduction, whatever the number of keys and rows:

1. an all_gather of a small header (rows, a CRC of the keys of every row, the next reduction's
   row count proposed by rank 0): ranks whose keys differ get a TetherError that names them
   (after an all_gather_object of the key lists, for the message), never a hang in a collective
   of mismatched size;
2. an all_gather of every value of the batch as one float64 tensor, from which each rank
   computes the mean, min, max and (population) std across ranks.

The reduced row keeps rank 0's `step` and `t` and holds `key` (the mean), `key/min`, `key/max`
and `key/std`. Tensors travel on the CPU for gloo and on the current CUDA device for NCCL.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Sequence
from typing import Any

from ..errors import TetherError
from .metrics_file import RESERVED

STATS = ("min", "max", "std")


def active_world() -> int:
    """The world size of an initialised torch.distributed, else 1 (torch is never imported)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return 1
    try:
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_world_size())
    except Exception:
        pass
    return 1


def _device(dist: Any, torch: Any) -> Any:
    try:
        backend = str(dist.get_backend())
    except Exception:
        backend = "gloo"
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def next_count(rows: int, since: float, flush_every: float, current: int, most: int) -> int:
    """How many updates until the next reduction, so that one comes every `flush_every` s."""
    elapsed = time.monotonic() - since
    if rows <= 0:
        return current
    if elapsed <= 0:
        return min(most, current * 2)
    wanted = rows / elapsed * flush_every
    if not math.isfinite(wanted):
        return most
    return max(1, min(most, int(wanted)))


def reduce_rows(
    rows: Sequence[dict[str, Any]],
    *,
    since: float,
    flush_every: float,
    most: int,
    current: int = 1,
) -> tuple[list[dict[str, Any]], int]:
    """(reduced rows, updates until the next reduction), the same on every rank."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    rank = dist.get_rank()
    device = _device(dist, torch)
    keys = [tuple(k for k in row if k not in RESERVED) for row in rows]
    signature = "\x1e".join("\x1f".join(ks) for ks in keys).encode("utf-8")
    proposal = next_count(len(rows), since, flush_every, current, most) if rank == 0 else 0
    header = torch.tensor(
        [len(rows), zlib.crc32(signature), len(signature), proposal],
        dtype=torch.int64,
        device=device,
    )
    headers = [torch.zeros_like(header) for _ in range(world)]
    dist.all_gather(headers, header)
    seen = [h.tolist() for h in headers]
    if any(h[:3] != seen[0][:3] for h in seen):
        described: list[Any] = [None] * world
        unique = list(dict.fromkeys(k for ks in keys for k in ks))
        dist.all_gather_object(described, (len(rows), unique))
        parts = [
            f"rank {r}: {n} row{'s' if n != 1 else ''} of {', '.join(ks) or 'no keys'}"
            for r, (n, ks) in enumerate(described)
        ]
        raise TetherError(
            "History.update(reduce=True): the ranks logged different metrics ("
            + "; ".join(parts)
            + ")",
            "every rank must make the same update calls with the same keys",
        )
    count = max(1, int(seen[0][3]))
    if not rows:
        return [], count
    values = [float(row[k]) for row, ks in zip(rows, keys, strict=True) for k in ks]
    payload = torch.tensor(values, dtype=torch.float64, device=device)
    gathered = [torch.empty_like(payload) for _ in range(world)]
    dist.all_gather(gathered, payload)
    stacked = torch.stack(gathered)
    mean = stacked.mean(0).tolist()
    lo = stacked.amin(0).tolist()
    hi = stacked.amax(0).tolist()
    std = stacked.std(0, unbiased=False).tolist() if world > 1 else [0.0] * len(values)
    out: list[dict[str, Any]] = []
    i = 0
    for row, ks in zip(rows, keys, strict=True):
        reduced: dict[str, Any] = {k: row[k] for k in RESERVED if k in row}
        for key in ks:
            reduced[key] = mean[i]
            reduced[f"{key}/min"] = lo[i]
            reduced[f"{key}/max"] = hi[i]
            reduced[f"{key}/std"] = std[i]
            i += 1
        out.append(reduced)
    return out, count


def distributed() -> bool:
    """torch.distributed is initialised with more than one rank."""
    return active_world() > 1
