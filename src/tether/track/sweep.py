"""What tells the runs of a sweep apart: the config values that differ among them, legend labels
made of those values (`lr=0.03`), and the best run by a metric.

Configs are compared flattened to dotted keys (lists whole); `save_dir` is where a run wrote,
not an input, and never counts. A key one run lacks differs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TetherError, did_you_mean
from ..store.values import flatten

IGNORED = ("save_dir",)
MAX_LABEL_KEYS = 4  # a legend entry names at most this many differing values
_MISSING = object()
# Metrics whose names say smaller is better (loss, error, perplexity, ...).
_LOWER_IS_BETTER = re.compile(r"loss|err|perplex|mse|mae|rmse|nll|wer|cer", re.IGNORECASE)


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flatten(dict(config)).items() if k not in IGNORED}


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python, but a flag is not a count.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dotted config keys whose values are not the same in every config, in first-seen
    order. One config (or none) has no differing keys."""
    flats = [flat_config(c) for c in configs]
    if len(flats) < 2:
        return []
    keys: dict[str, None] = {}
    for flat in flats:
        keys.update(dict.fromkeys(flat))
    out = []
    for key in keys:
        first = flats[0].get(key, _MISSING)
        if any(not _same(first, f.get(key, _MISSING)) for f in flats[1:]):
            out.append(key)
    return out


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its shortest tail that no other key shares: model.lr -> lr, unless
    another key also ends in `lr` (then `model.lr` and `optim.lr`)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(o != key and (o == tail or o.endswith("." + tail)) for o in keys):
                out[key] = tail
                break
        else:
            out[key] = key
    return out


def show_value(value: Any) -> str:
    if value is _MISSING or value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def config_labels(configs: Sequence[Mapping[str, Any]], fallbacks: Sequence[str]) -> list[str]:
    """A legend label per config: the values that differ among them (`lr=0.03, C=5`), or the
    fallback (the run's name and short id) when nothing differs. Labels that still collide get
    their fallback appended, so every line stays told apart."""
    keys = differing_keys(configs)
    if not keys:
        return list(fallbacks)
    names = short_keys(keys)
    shown = keys[:MAX_LABEL_KEYS]
    labels = []
    for config in configs:
        flat = flat_config(config)
        parts = [f"{names[k]}={show_value(flat.get(k, _MISSING))}" for k in shown]
        more = len(keys) - len(shown)
        labels.append(", ".join(parts) + (f" (+{more})" if more > 0 else ""))
    counts = {label: labels.count(label) for label in labels}
    return [
        f"{label} [{fb}]" if counts[label] > 1 else label
        for label, fb in zip(labels, fallbacks, strict=True)
    ]


@dataclass
class Best:
    """The best run of a sweep by `key`: its position among the runs, the rule, the value."""

    index: int
    key: str
    rule: str  # "min" or "max"
    value: float


def default_rule(key: str) -> str:
    return "min" if _LOWER_IS_BETTER.search(key) else "max"


def parse_best(spec: str | None) -> tuple[str | None, str | None]:
    """`--best KEY`, `--best KEY:min` or `--best KEY:max` as (key, rule or None)."""
    if not spec:
        return None, None
    key, sep, rule = spec.rpartition(":")
    if sep and rule in ("min", "max") and key:
        return key, rule
    return spec, None


def best_run(
    finals: Sequence[Mapping[str, float]], key: str | None = None, rule: str | None = None
) -> Best | None:
    """The best of runs given as their final metric values: by `key` (default: the first key
    every run has, by name) and `rule` (default: min for names with loss/err/..., else max).
    None when the runs share no metric. A `key` no run has raises TetherError with a
    did-you-mean."""
    if not finals:
        return None
    if key is None:
        shared = sorted(k for k in finals[0] if all(k in f for f in finals[1:]))
        if not shared:
            return None
        key = shared[0]
    elif not any(key in f for f in finals):
        known = sorted({k for f in finals for k in f})
        hint = did_you_mean(key, known)
        raise TetherError(
            f"--best {key!r}: no run has that metric",
            f"did you mean {hint!r}?" if hint else f"the metrics are {', '.join(known[:8])}",
        )
    rule = rule or default_rule(key)
    scored = [(v, i) for i, f in enumerate(finals) if isinstance(v := f.get(key), (int, float))]
    scored = [(float(v), i) for v, i in scored if math.isfinite(v)]
    if not scored:
        return None
    value, index = min(scored) if rule == "min" else max(scored, key=lambda p: (p[0], -p[1]))
    return Best(index, key, rule, value)
