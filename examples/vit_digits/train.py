"""A tiny Vision Transformer on scikit-learn's handwritten digits, data-parallel on any launcher.

    python examples/vit_digits/train.py                          # one process
    tether launch -n 2 -- python examples/vit_digits/train.py    # two ranks (gloo on CPU)
    tether launch -n 2 -- python examples/vit_digits/train.py --strategy fsdp
    python examples/vit_digits/train.py --random                 # synthetic digits, no sklearn

The 8x8 digit images (1,797 of them ship inside scikit-learn: nothing is downloaded) are cut
into four 4x4 patches, 4 tokens of 16 pixels, embedded, given a class token and positions, and read
by two transformer blocks. `tether.distributed.setup_torch()` finds the ranks from whatever launcher
started the script, `wrap_model` makes it DDP or FSDP, `distributed_loader` gives each rank its
share of every epoch. Metrics go through `tether.History(..., reduce=True)`: each logged key is
averaged over the ranks and recorded with its `/min`, `/max` and `/std`; rank 0 writes them to
`metrics.jsonl` in `--out` (default: the run of `tether launch` or `tether run`, which
`History()` attaches to, so `tether runs --where`, `plot` and `show` see them at once; else they
stay in memory) and prints a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tether
from tether import dist

IMAGE = 8  # pixels per side
CLASSES = 10


# -- data -------------------------------------------------------------------------------------
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray] | None:
    """The digits that ship inside scikit-learn, or None without it. Read straight from its
    CSV (64 pixels and the label per row), which skips the seconds `import sklearn` takes."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    csv = Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    if csv.is_file():
        rows = np.loadtxt(csv, delimiter=",")
        return rows[:, :-1].reshape(-1, IMAGE, IMAGE), rows[:, -1]
    from sklearn.datasets import load_digits  # another layout: the public loader

    digits = load_digits()
    return digits.images, digits.target


def load_digits_data(synthetic: bool, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(images scaled to [0, 1] as float32 (n, 8, 8), labels (n,), where they came from)."""
    if not synthetic:
        loaded = _sklearn_digits()
        if loaded is not None:
            images, labels = loaded
            return (images / 16.0).astype(np.float32), labels.astype(np.int64), "sklearn digits"
        print("scikit-learn is not installed: using synthetic digits", file=sys.stderr)
    # Ten random 8x8 prototypes, each shown with noise and a random brightness: learnable,
    # and the same on every rank (seeded by `seed` alone).
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((CLASSES, IMAGE, IMAGE)) > 0.6).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=1800)
    noise = rng.normal(0.0, 0.25, size=(len(labels), IMAGE, IMAGE)).astype(np.float32)
    scale = rng.uniform(0.6, 1.0, size=(len(labels), 1, 1)).astype(np.float32)
    images = np.clip(prototypes[labels] * scale + noise, 0.0, 1.0).astype(np.float32)
    return images, labels.astype(np.int64), "synthetic digits"


def split(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[Any, Any]:
    """80/20 train/test TensorDatasets, the same split on every rank."""
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(0.8 * len(order))
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    train, test = order[:cut], order[cut:]
    return (
        torch.utils.data.TensorDataset(x[train], y[train]),
        torch.utils.data.TensorDataset(x[test], y[test]),
    )


# -- model ------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm transformer block: self-attention, then an MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, patch: int = 4, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        if IMAGE % patch:
            raise ValueError(f"patch {patch} does not divide the image side {IMAGE}")
        self.patch = patch
        tokens = (IMAGE // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, 2 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, CLASSES)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 8, 8) images -> (n, tokens, patch*patch) rows of pixels, row-major patches."""
        p = self.patch
        n = images.shape[0]
        x = images.reshape(n, IMAGE // p, p, IMAGE // p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(n, -1, p * p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patches(images))
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


# -- training ---------------------------------------------------------------------------------
def evaluate(model: nn.Module, loader: Any, device: str) -> dict[str, float]:
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    model.train()
    return {"eval/loss": loss / max(seen, 1), "eval/acc": correct / max(seen, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random", action="store_true", help="synthetic digits, no sklearn")
    parser.add_argument("--out", type=Path, help="folder for metrics.jsonl (rank 0 writes)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(1)  # ranks share the CPU cores: one thread each
    info = dist.setup_torch(seed=args.seed)
    images, labels, source = load_digits_data(args.random, args.seed)
    train_set, test_set = split(images, labels, args.seed)
    train = dist.distributed_loader(train_set, args.batch_size, seed=args.seed)
    test = dist.distributed_loader(test_set, 256, shuffle=False)

    torch.manual_seed(args.seed)  # the same initial weights everywhere (FSDP shards them)
    model = dist.wrap_model(TinyViT(), args.strategy)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    torch.manual_seed(info.seed if info.seed is not None else args.seed)  # per-rank from here

    # Under `tether launch` or `tether run`, History() attaches to that run (rank 0 writes its
    # metrics.jsonl, summary and index row); alone, it keeps the rows in memory.
    history = tether.History(path=args.out / "metrics.jsonl") if args.out else tether.History()
    if info.is_main:
        print(
            f"vit_digits: {len(train_set)} train / {len(test_set)} test {source}, "
            f"{info.world_size} rank(s), {args.strategy}, backend {info.backend}",
            flush=True,
        )
    step = 0
    for epoch in range(args.epochs):
        for x, y in train:  # a new shuffle each epoch, the same on every rank
            x, y = x.to(info.device), y.to(info.device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            acc = (logits.argmax(1) == y).float().mean()
            history.update({"train/loss": loss.detach(), "train/acc": acc}, step=step, reduce=True)
            step += 1
        scores = evaluate(model, test, info.device)
        history.update(scores, step=step, reduce=True)
        if info.is_main:
            print(f"epoch {epoch}: eval/acc {scores['eval/acc']:.3f} (rank 0's share)", flush=True)

    summary = history.summary()  # flushes: every rank takes part in the last reduction
    history.close()
    # The DDP/FSDP wrapper goes before its process group: a reducer destroyed at exit, after
    # the group, can abort in gloo ("terminate called without an active exception").
    del optimizer, model
    dist.cleanup(barrier=True)  # no rank tears gloo down while another still talks to it
    result: dict[str, Any] = {
        "rank": info.rank,
        "world_size": info.world_size,
        "strategy": args.strategy,
        "backend": info.backend,
        "data": source,
        "steps": step,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if info.is_main:  # only rank 0 holds the reduced metrics
        result["eval/acc"] = summary["eval/acc"]["last"]
        result["train/loss"] = summary["train/loss"]["last"]
        print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
