"""A run's config as plain data: resolved (interpolations, tether resolvers), copied, and read or
set by dotted key on both the caller's config object and its resolved container."""

from __future__ import annotations

import copy
from typing import Any

from ..capture.resolvers import collecting, register
from ..config.compose import to_container

# Values of `save_dir` or a stage key that mean "not given".
MISSING_MARKS = (None, "???", "")


def is_dict(cfg: Any) -> bool:
    """A plain dict (not an OmegaConf DictConfig, which has `_get_node`)."""
    return isinstance(cfg, dict) and not hasattr(cfg, "_get_node")


def resolve_config(cfg: Any, store_root: str) -> tuple[dict[str, Any], Any]:
    """(the resolved config as plain data, what tether's resolvers collected while resolving)."""
    with collecting(store_root) as collected:
        if cfg is None:
            container: dict[str, Any] = {}
        elif is_dict(cfg):
            container = to_container(_as_omegaconf(cfg)) if has_interpolation(cfg) else dict(cfg)
        else:
            container = to_container(cfg)
    return container, collected


def has_interpolation(obj: Any) -> bool:
    if isinstance(obj, str):
        return "${" in obj
    if isinstance(obj, dict):
        return any(has_interpolation(v) for v in obj.values())
    if isinstance(obj, list):
        return any(has_interpolation(v) for v in obj)
    return False


def _as_omegaconf(d: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    register()
    return OmegaConf.create(d)


def copy_config(cfg: Any) -> Any:
    """The run's own copy of the caller's config: one dict can start many runs."""
    if cfg is None:
        return None
    if is_dict(cfg):
        return copy.deepcopy(cfg)
    return cfg.copy() if hasattr(cfg, "copy") else cfg


def set_key(cfg: Any, container: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` to `value` in the resolved container and in the config object."""
    node = container
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if cfg is None:
        return
    if is_dict(cfg):
        target = cfg
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        return
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, key, value, force_add=True)


def get_key(container: dict[str, Any], key: str) -> Any:
    """The value at dotted `key`, or None."""
    node: Any = container
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
