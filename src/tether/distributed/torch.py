"""torch.distributed without fragile rendezvous: `setup_torch()`, `wrap_model()`,
`distributed_loader()`, `info()`, `cleanup()`.

    from tether import dist
    info = dist.setup_torch(seed=0)         # rank, world size, device from any launcher
    model = dist.wrap_model(Net(), "ddp")   # or "fsdp"
    loader = dist.distributed_loader(train_set, batch_size=64)
    for epoch in range(epochs):
        for batch in loader: ...            # each pass is a new epoch: a new shuffle
    dist.cleanup()

`setup_torch` reads the rank, local rank and world size from whichever launcher started the
process (torchrun, Open MPI, MPICH, PALS, srun: see tether.distributed.ranks), picks the rendezvous
address and port (the first host of the job, a port derived from the job id; `MASTER_ADDR` and
`MASTER_PORT` win when set), binds the device (`cuda:<local rank>`, `xpu:<local rank>`, or the
CPU) before `init_process_group`, picks the backend from the device (nccl, xccl, gloo) unless
`TORCH_BACKEND` or `backend=` says otherwise, and seeds `random`, NumPy and torch with a seed
derived from `seed` and the global rank only. It is idempotent: a second call returns the same
info. A single process (no launcher) gets a process group of one, without a port, so the same
script runs alone and on many ranks.

It exports `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and
`MASTER_PORT` for libraries that read them (those already set are left as they are);
`cleanup()` destroys the process group and removes what it exported.
"""

from __future__ import annotations

import atexit
import gc
import os
import random
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ..errors import TetherError
from . import ranks

BACKENDS = {"cuda": "nccl", "xpu": "xccl"}  # anything else: gloo
STRATEGIES = ("ddp", "fsdp", "none")
EXPORTED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo(ranks.RankInfo):
    """This process's place in the job (the `RankInfo` fields: rank, local_rank, world_size,
    local_world_size, launcher, master_addr, master_port, job_id, and is_main, is_local_main,
    distributed) and what `setup_torch` made of it."""

    backend: str | None = None  # None until a process group exists
    device: str = "cpu"  # "cuda:1", "xpu:0", "mps", "cpu": usable as `tensor.to(info.device)`
    initialized: bool = False
    seed: int | None = None  # this rank's seed (see ranks.rank_seed)


_lock = threading.Lock()
_state: DistInfo | None = None  # set by setup_torch, cleared by cleanup
_exported: dict[str, str | None] = {}  # variables setup_torch set -> their previous value
_atexit_registered = False


# -- info -------------------------------------------------------------------------------------
def _from_ranks(r: ranks.RankInfo) -> DistInfo:
    return DistInfo(**r.as_dict())


def info() -> DistInfo:
    """Where this process stands: what `setup_torch` set up, else what the launcher's
    environment says (without importing torch; `backend` is then None)."""
    if _state is not None:
        return _state
    dist = sys.modules.get("torch.distributed")
    base = _from_ranks(ranks.detect())
    try:
        initialized = dist is not None and dist.is_available() and dist.is_initialized()
    except Exception:
        initialized = False
    if initialized:  # a process group made by the user's own code
        assert dist is not None
        return replace(
            base,
            rank=int(dist.get_rank()),
            world_size=int(dist.get_world_size()),
            backend=str(dist.get_backend()),
            initialized=True,
        )
    return base


# -- setup ------------------------------------------------------------------------------------
def pick_device(local_rank: int, torch: Any) -> str:
    """`cuda:<i>` / `xpu:<i>` (i = local rank modulo the devices of this node), `mps`, or `cpu`."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available() and xpu.device_count() > 0:
        return f"xpu:{local_rank % xpu.device_count()}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_backend(device: str, env: Mapping[str, str] | None = None) -> str:
    """`TORCH_BACKEND` if set, else nccl for CUDA, xccl for XPU, gloo for the rest."""
    env = os.environ if env is None else env
    chosen = env.get("TORCH_BACKEND", "").strip()
    if chosen:
        return chosen
    return BACKENDS.get(device.split(":", 1)[0], "gloo")


def _bind(device: str, torch: Any) -> None:
    kind, _, index = device.partition(":")
    if kind == "cuda":
        torch.cuda.set_device(int(index or 0))
    elif kind == "xpu":
        torch.xpu.set_device(int(index or 0))


def _loopback(addr: str) -> bool:
    return addr in ("localhost", "::1") or addr.startswith("127.")


def _export(values: dict[str, str]) -> None:
    for name, value in values.items():
        if name in os.environ:
            continue
        _exported[name] = None
        os.environ[name] = value


def _unexport() -> None:
    for name, previous in _exported.items():
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
    _exported.clear()


def seed_everything(seed: int) -> None:
    """Seed `random`, NumPy (when importable) and torch (every device) with `seed`."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _timeout(timeout: float | timedelta | None) -> timedelta | None:
    if timeout is None:
        raw = os.environ.get("TETHER_DIST_TIMEOUT", "").strip()
        if not raw:
            return None
        try:
            timeout = float(raw)
        except ValueError:
            raise TetherError(f"TETHER_DIST_TIMEOUT={raw!r} is not a number of seconds")
    if isinstance(timeout, timedelta):
        return timeout
    return timedelta(seconds=float(timeout))


def setup_torch(
    backend: str | None = None,
    *,
    seed: int | None = None,
    device: str | None = None,
    timeout: float | timedelta | None = None,
) -> DistInfo:
    """Initialise torch.distributed for this process and return its `DistInfo`.

    `backend`: nccl, xccl, gloo, ... (default: `TORCH_BACKEND`, else from the device).
    `seed`: seed `random`, NumPy and torch with `ranks.rank_seed(seed, rank)`; None leaves
    them alone. `device`: force one ("cpu", "cuda:0"); default: the local rank's accelerator.
    `timeout`: seconds (or a timedelta) for collectives, default `TETHER_DIST_TIMEOUT`, else
    torch's. Calling it again returns the first call's info.
    """
    global _state, _atexit_registered
    with _lock:
        if _state is not None:
            return _state
        import torch
        import torch.distributed as dist

        if not dist.is_available():
            raise TetherError("this torch build has no torch.distributed")
        where = ranks.detect()
        if device is None:
            device = pick_device(where.local_rank, torch)
        backend = backend or pick_backend(device)
        _bind(device, torch)  # before init: NCCL/XCCL communicators use the bound device
        addr, port = where.master_addr, where.master_port
        _export(
            {
                "RANK": str(where.rank),
                "LOCAL_RANK": str(where.local_rank),
                "WORLD_SIZE": str(where.world_size),
                "LOCAL_WORLD_SIZE": str(where.local_world_size),
                "MASTER_ADDR": addr,
                "MASTER_PORT": str(port),
            }
        )
        if (
            backend == "gloo"
            and _loopback(addr)
            and "GLOO_SOCKET_IFNAME" not in os.environ
            and os.path.exists("/sys/class/net/lo")
        ):
            # Rank 0 listens on loopback, so every rank is on this node: gloo talks over
            # loopback too, whatever the hostname resolves to.
            _export({"GLOO_SOCKET_IFNAME": "lo"})
        options: dict[str, Any] = {"backend": backend}
        limit = _timeout(timeout)
        if limit is not None:
            options["timeout"] = limit
        if device.split(":", 1)[0] in ("cuda", "xpu"):
            options["device_id"] = torch.device(device)
        if not dist.is_initialized():
            try:
                if where.world_size == 1:
                    # A group of one needs no rendezvous, so no port that could be taken.
                    dist.init_process_group(store=dist.HashStore(), rank=0, world_size=1, **options)
                else:
                    host = f"[{addr}]" if ":" in addr else addr
                    dist.init_process_group(
                        init_method=f"tcp://{host}:{port}",
                        rank=where.rank,
                        world_size=where.world_size,
                        **options,
                    )
            except Exception:
                _unexport()
                raise
        own_seed = None
        if seed is not None:
            own_seed = ranks.rank_seed(seed, where.rank)
            seed_everything(own_seed)
        _state = replace(
            _from_ranks(where),
            backend=str(dist.get_backend()),
            device=device,
            initialized=True,
            seed=own_seed,
        )
        if not _atexit_registered:
            atexit.register(cleanup)
            _atexit_registered = True
        return _state


def cleanup(barrier: bool = False) -> None:
    """Destroy the process group (after a barrier if asked) and remove the variables
    `setup_torch` exported. Safe to call twice, or without `setup_torch`."""
    global _state
    with _lock:
        dist = sys.modules.get("torch.distributed")
        try:
            if dist is not None and _state is not None and dist.is_initialized():
                if barrier:
                    dist.barrier()
                # A DDP/FSDP wrapper the caller dropped may still sit in a reference cycle
                # that holds the group; freed later, at exit, after the group, its reducer can
                # abort in gloo ("terminate called without an active exception"). Collect
                # those now, while the group lives.
                gc.collect()
                dist.destroy_process_group()
        finally:
            _state = None
            _unexport()


def _require() -> DistInfo:
    current = info()
    if not current.initialized:
        raise TetherError(
            "torch.distributed is not initialised", "call tether.distributed.setup_torch() first"
        )
    return current


# -- models -----------------------------------------------------------------------------------
def wrap_model(
    model: Any,
    strategy: str = "ddp",
    *,
    shard: Sequence[type] | None = None,
    **options: Any,
) -> Any:
    """Move `model` to this rank's device and wrap it for data-parallel training.

    `strategy`: "ddp" (DistributedDataParallel; `options` go to it), "fsdp" (FSDP2's
    `fully_shard` over all ranks; `options` go to each `fully_shard` call), or "none" (only
    moved). With "fsdp", `shard` names the module classes sharded as units of their own
    (transformer blocks); by default every module held in an `nn.ModuleList` is one, then the
    root. Needs `setup_torch()` first.
    """
    if strategy not in STRATEGIES:
        raise TetherError(f"unknown strategy {strategy!r}", f"use one of {', '.join(STRATEGIES)}")
    current = _require()
    import torch
    from torch import nn

    device = torch.device(current.device)
    model = model.to(device)
    if strategy == "none":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        if device.type in ("cuda", "xpu"):
            options.setdefault("device_ids", [device.index or 0])
        return DistributedDataParallel(model, **options)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = options.pop("mesh", None) or init_device_mesh(device.type, (current.world_size,))
    units: list[Any]
    if shard is None:
        units = [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]
    else:
        kinds = tuple(shard)
        units = [m for m in model.modules() if kinds and isinstance(m, kinds) and m is not model]
    for unit in units:
        fully_shard(unit, mesh=mesh, **options)
    fully_shard(model, mesh=mesh, **options)
    return model


def unwrap_model(model: Any) -> Any:
    """The module inside a DistributedDataParallel wrapper (FSDP2 keeps the module itself)."""
    return getattr(model, "module", model)


# -- data -------------------------------------------------------------------------------------
def _is_hf(dataset: Any) -> bool:
    """A Hugging Face `datasets` Dataset or IterableDataset (or a look-alike)."""
    return hasattr(dataset, "with_format") and hasattr(dataset, "column_names")


def _is_hf_iterable(dataset: Any) -> bool:
    return _is_hf(dataset) and not hasattr(type(dataset), "__len__")


_loader_class: Any = None


def _distributed_loader_class() -> Any:
    global _loader_class
    if _loader_class is not None:
        return _loader_class
    from torch.utils.data import DataLoader

    class DistributedLoader(DataLoader):
        """A DataLoader whose every pass is a new epoch: its sampler (or iterable dataset) is
        told the epoch before each pass, so each epoch has its own shuffle, the same on every
        rank. `set_epoch(n)` sets the next pass's epoch (when resuming)."""

        next_epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.next_epoch = int(epoch)

        def __iter__(self) -> Any:
            epoch = self.next_epoch
            self.next_epoch = epoch + 1
            self.epoch = epoch
            target = self.sampler if hasattr(self.sampler, "set_epoch") else self.dataset
            if hasattr(target, "set_epoch"):
                target.set_epoch(epoch)
            return super().__iter__()

    _loader_class = DistributedLoader
    return _loader_class


def distributed_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    columns: Iterable[str] | None = None,
    num_workers: int = 0,
    collate_fn: Callable[..., Any] | None = None,
    **options: Any,
) -> Any:
    """A DataLoader giving this rank its share of `dataset`, `batch_size` items per batch.

    Map-style datasets (torch ones, lists, Hugging Face `datasets.Dataset`) get a
    DistributedSampler over the world of `info()` (one rank when nothing is set up), shuffled
    with `seed` (the same on every rank: it is the data order, not a per-rank seed) and
    reshuffled at each pass over the loader. A Hugging Face Dataset is read in torch format
    (`columns` picks its columns), so batches are dicts of tensors; a Hugging Face
    IterableDataset is split between ranks with `datasets.distributed.split_dataset_by_node`.
    Other `options` go to the DataLoader.
    """
    from torch.utils.data import DistributedSampler

    where = info()
    world, rank = where.world_size, where.rank
    if where.initialized:
        import torch.distributed as dist

        world, rank = int(dist.get_world_size()), int(dist.get_rank())
    cols = list(columns) if columns is not None else None
    loader = _distributed_loader_class()
    if _is_hf_iterable(dataset):
        from datasets.distributed import split_dataset_by_node

        if shuffle:
            dataset = dataset.shuffle(seed=seed)
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world)
        dataset = dataset.with_format("torch")
        if cols is not None:
            dataset = dataset.select_columns(cols)
        return loader(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            num_workers=num_workers,
            collate_fn=collate_fn,
            **options,
        )
    if _is_hf(dataset):
        dataset = dataset.with_format("torch", columns=cols)
    elif cols is not None:
        raise TetherError("columns= applies to Hugging Face datasets only")
    try:
        size = len(dataset)
    except TypeError:
        raise TetherError(
            f"distributed_loader needs a dataset with a length, not {type(dataset).__name__}",
            "give a map-style dataset (or a Hugging Face IterableDataset)",
        )
    if size == 0:
        raise TetherError("distributed_loader: the dataset is empty")
    sampler: Any = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return loader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate_fn,
        **options,
    )
