"""A multirun's points as the tasks of a batch: one composed config per point.

Each point of the sweeps (tether.config.sweeps) is composed as if its values were on the
command line (a group option chosen by a point brings that option's file, and overrides inside
it apply after it, as in Hydra). The batch machinery (tether.batches) puts a task's item at
config keys; here the item is the top-level sections in which the point's config differs
from the batch's, so a child's config is exactly the config composed for its point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .argv import CliArgs
from .compose import build_config, config_dir
from .groups import load_group
from .sweeps import Sweep, grid_points, point_overrides, random_points

TASK_KEYS_SEP = ","  # the batch's task_to: top-level keys, each followed by this


@dataclass
class MultirunPlan:
    """The batch a multirun makes: `task_to` (top-level keys, each followed by a comma), one
    item per point ({key: section}), the points' swept values, and the seed of a random
    draw."""

    task_to: str
    items: list[dict[str, Any]]
    points: list[dict[str, Any]]
    sweeps: list[Sweep] = field(default_factory=list)
    seed: int | None = None
    # -m --optimize: the search's options (CliArgs' optimize, trials, minimize, maximize,
    # prune, resume); its points come from the study, one per task (tether.search.multirun)
    search: dict[str, Any] | None = None


def resolve_globs(defaults: Any, args: CliArgs, sweeps: list[Sweep]) -> list[Sweep]:
    """`key=glob(...)` sweeps as the list of the group's options they select."""
    out = []
    folder = config_dir(defaults, args)
    for s in sweeps:
        if s.glob is None:
            out.append(s)
            continue
        group = load_group(folder, s.key) if folder is not None else None
        if group is None:
            raise ConfigError(
                f"sweep {s.word}: glob(...) selects options of a config group, and {s.key!r} "
                "is not one",
                "a group is a folder of YAML files beside the config",
            )
        names = group.matching(list(s.glob[0]), list(s.glob[1]))
        if not names:
            raise ConfigError(
                f"sweep {s.word}: no option of group {group.name!r} matches",
                f"options: {', '.join(group.options)}",
            )
        out.append(Sweep(s.key, s.text, values=names, op=s.op, bare=(True,) * len(names)))
    return out


def plan_multirun(
    defaults: Any,
    args: CliArgs,
    sweeps: list[Sweep],
    *,
    random_runs: int | None = None,
    seed: int | None = None,
) -> MultirunPlan:
    """Compose each point's config and turn the points into batch tasks."""
    from omegaconf import OmegaConf

    sweeps = resolve_globs(defaults, args, sweeps)
    if random_runs is not None:
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        points = random_points(sweeps, random_runs, seed)
    else:
        points = grid_points(sweeps)
    base = OmegaConf.to_container(build_config(defaults, args), resolve=False)
    assert isinstance(base, dict)
    configs: list[dict[str, Any]] = []
    for point in points:
        cfg = build_config(defaults, args, point=point_overrides(sweeps, point))
        raw = OmegaConf.to_container(cfg, resolve=False)
        assert isinstance(raw, dict)
        plain: dict[str, Any] = {str(k): v for k, v in raw.items()}
        lost = [k for k in base if k not in plain]
        if lost:
            raise ConfigError(
                f"multirun point {_describe(point)} has no key {lost[0]!r}, which the config "
                "has: a point may change sections, not remove them"
            )
        configs.append(plain)
    keys = [
        k for k in _ordered_keys(configs) if any(c.get(k, _NO) != base.get(k, _NO) for c in configs)
    ]
    if not keys:  # every point is the config itself (a=1,1): still one task each
        keys = [sweeps[0].key.split(".")[0]]
    items = [{k: c[k] for k in keys} for c in configs]
    # A trailing separator keeps one key in the several-keys form (items are mappings of keys);
    # `+` adds a key the batch's config lacks.
    task_to = "".join(("" if k in base else "+") + k + TASK_KEYS_SEP for k in keys)
    return MultirunPlan(task_to, items, points, sweeps, seed)


def plan_search(defaults: Any, args: CliArgs, sweeps: list[Sweep]) -> MultirunPlan:
    """`-m --optimize`: a batch whose points the study gives as the tasks run. Each swept key
    is a task key (its item {key: value, ...}); a config group's options are not searched (a
    point would have to compose the group's file in the worker)."""
    from omegaconf import OmegaConf

    sweeps = resolve_globs(defaults, args, sweeps)
    folder = config_dir(defaults, args)
    for s in sweeps:
        if folder is not None and load_group(folder, s.key) is not None:
            raise ConfigError(
                f"sweep {s.word}: --optimize searches config values, and {s.key!r} is a "
                "config group",
                "search a group's options with a grid multirun (-m without --optimize)",
            )
    base = build_config(defaults, args)
    keys = []
    for s in sweeps:
        present = OmegaConf.select(base, s.key, default=_NO) is not _NO
        keys.append(("" if present else "+") + s.key + TASK_KEYS_SEP)
    search = {
        "optimize": args.optimize,
        "trials": args.trials,
        "minimize": args.minimize,
        "maximize": args.maximize,
        "prune": args.prune,
        "resume": args.resume,
    }
    return MultirunPlan("".join(keys), [], [], sweeps, None, search)


_NO = object()


def _ordered_keys(configs: list[dict[str, Any]]) -> list[str]:
    out: dict[str, None] = {}
    for c in configs:
        out.update(dict.fromkeys(str(k) for k in c))
    return list(out)


def _describe(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())
