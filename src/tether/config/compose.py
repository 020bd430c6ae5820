"""Composing the config of a decorated main with OmegaConf: defaults, file, preset, overrides.

The loaded config is strict (as in Hydra): overriding a key that does not exist is an error with
a did-you-mean, and `+key=value` adds a key on purpose. OmegaConf and YAML are imported inside
the functions that need them (heavy).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..capture.resolvers import register
from ..errors import ConfigError, did_you_mean
from ..lock import dump_yaml
from .argv import CliArgs

ABSENT = object()  # what `select_node` returns for a key the config does not have


def load_yaml_file(path: str | os.PathLike[str], what: str = "config file") -> Any:
    import yaml
    from omegaconf import OmegaConf

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"{what} {p} not found" if not p.exists() else f"{what} {p} is not a file",
            f"looked in {p.absolute().parent}",
        )
    try:
        return OmegaConf.load(p)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: YAML error: {exc}")
    except Exception as exc:  # OmegaConf's own checks, e.g. duplicate keys
        raise ConfigError(f"{p}: {exc}".splitlines()[0])


def base_config(defaults: Any) -> Any:
    """A DictConfig from a dataclass (class or instance), a mapping, a YAML path or None."""
    from omegaconf import OmegaConf

    if defaults is None:
        return OmegaConf.create({})
    if isinstance(defaults, (str, os.PathLike)):
        return load_yaml_file(defaults)
    if dataclasses.is_dataclass(defaults):
        return OmegaConf.structured(defaults)
    if isinstance(defaults, dict):
        return OmegaConf.create(defaults)
    if OmegaConf.is_config(defaults):
        return defaults.copy()
    raise ConfigError(
        f"config defaults of type {type(defaults).__name__} are not supported",
        "give a YAML path, a dataclass or a dict",
    )


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys: list[str] = []
    if isinstance(cfg, DictConfig):
        for key in cfg:
            name = str(key)
            path = f"{prefix}.{name}" if prefix else name
            keys.append(path)
            child = cfg._get_node(key)
            if isinstance(child, DictConfig):
                keys.extend(all_keys(child, path))
    return keys


def select_node(cfg: Any, key: str) -> Any:
    """The node at a dotted key (containers as they are, leaves as their raw value, `???` and
    interpolations unresolved), or ABSENT. OmegaConf.select cannot tell a `???` key from an
    absent one, and `???` keys (save_dir) must stay settable."""
    from omegaconf import DictConfig, ListConfig

    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig) and part in list(node.keys()):  # `in` skips ??? keys
            node = node._get_node(part)
        elif (
            isinstance(node, ListConfig)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node._get_node(int(part))
        else:
            return ABSENT
    if isinstance(node, (DictConfig, ListConfig)):
        return node
    return node._value() if node is not None else None


def _unknown_key(cfg: Any, key: str, source: str) -> ConfigError:
    return ConfigError(
        f"unknown config key {key!r}{source}",
        suggest_key(cfg, key) or f"use +{key}=... to add a new key",
    )


def suggest_key(cfg: Any, key: str) -> str | None:
    """Did-you-mean: first among the siblings of the last part (so `optim.nesterov` is not
    offered `optim.lr`), then among all dotted keys."""
    from omegaconf import DictConfig

    parent, _, last = key.rpartition(".")
    siblings = select_node(cfg, parent) if parent else cfg
    if isinstance(siblings, DictConfig):
        hint = did_you_mean(last, [str(k) for k in siblings])
        if hint:
            return f"did you mean {(parent + '.' if parent else '') + hint!r}?"
        if parent:
            return None
    hint = did_you_mean(key, all_keys(cfg))
    return f"did you mean {hint!r}?" if hint else None


def _kind(value: Any) -> str | None:
    from omegaconf import DictConfig, ListConfig

    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    if isinstance(value, (list, ListConfig)):
        return "list"
    return None


def _check_type(key: str, old: Any, new: Any, source: str) -> None:
    """Keys whose default is a number, bool or mapping keep that kind: `lr=abc` is a mistake."""
    if old is ABSENT or old is None or new is None:
        return
    want, got = _kind(old), _kind(new)
    if want is None or want == got:
        return
    if isinstance(new, str) and new.strip().startswith("${"):
        return  # an interpolation: checked when it resolves
    if want == "number" and got == "bool":
        pass
    elif want == "bool" and got == "number" and new in (0, 1):
        return  # apply_override turns it into a bool
    names = {"bool": "a boolean", "number": "a number", "mapping": "a mapping", "list": "a list"}
    shown = old if want not in ("mapping", "list") else type(old).__name__
    raise ConfigError(
        f"config key {key!r}{source} expects {names[want]} (default {shown!s}), got {new!r}"
    )


def apply_override(cfg: Any, item: str, source: str = "") -> None:
    """Apply one `key=value`, `+key=value` or `key=@file.yaml` to `cfg` in place."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if "=" not in item:
        raise ConfigError(f"override {item!r}{source} is not of the form key=value")
    key, _, raw = item.partition("=")
    key = key.strip()
    add = key.startswith("+")
    if add:
        key = key[1:]
    if not key:
        raise ConfigError(f"override {item!r}{source} has an empty key")
    old = select_node(cfg, key)
    if old is ABSENT and not add:
        raise _unknown_key(cfg, key, source)
    if raw.startswith("@"):
        value: Any = load_yaml_file(raw[1:], what=f"file for {key!r}")
    else:
        try:
            value = OmegaConf.from_dotlist([f"v={raw}"])._get_node("v")._value()  # type: ignore[union-attr]
        except OmegaConfBaseException as exc:
            raise ConfigError(
                f"override {item!r}{source}: cannot parse value ({exc})".splitlines()[0]
            )
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a 5,000-digit integer
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0][:80]
            raise ConfigError(
                f"override {item!r}{source}: the value is not valid YAML ({problem})",
                f"quote it to pass a string: {key}='\"...\"'",
            )
        if not add:
            _check_type(key, old, value, source)
            if isinstance(old, bool) and not isinstance(value, bool) and value in (0, 1):
                value = bool(value)
    try:
        merge = OmegaConf.is_config(value)
        OmegaConf.update(cfg, key, value, merge=merge, force_add=add)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"override {item!r}{source}: {msg}")


def apply_overrides_file(cfg: Any, path: str) -> Any:
    """Merge a YAML file of overrides; like `key=value`, it may not invent keys."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    extra = load_yaml_file(path, what="overrides file")
    for key in all_keys(extra):
        if select_node(cfg, key) is not ABSENT:
            continue
        parent = key.rpartition(".")[0]
        # Below a key whose default is not a mapping (None, say), the file brings its own shape.
        if parent and not isinstance(select_node(cfg, parent), DictConfig):
            continue
        raise _unknown_key(cfg, key, f" (in {path})")
    try:
        return OmegaConf.merge(cfg, extra)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}")


def build_config(
    defaults: Any = None,
    args: CliArgs | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Compose the config: defaults or file, preset, overrides file(s), dotlist, kwargs."""
    from omegaconf import DictConfig, OmegaConf

    register()
    args = args or CliArgs()
    cfg = base_config(defaults)
    if args.config_file:
        loaded = load_yaml_file(args.config_file)
        cfg = OmegaConf.merge(cfg, loaded) if dataclasses.is_dataclass(defaults) else loaded
    if args.experiment:
        preset = select_node(cfg, args.experiment)
        if preset is ABSENT or not isinstance(preset, DictConfig):
            keys = [k for k in all_keys(cfg) if isinstance(select_node(cfg, k), DictConfig)]
            hint = did_you_mean(args.experiment, keys)
            raise ConfigError(
                f"experiment {args.experiment!r} is not a section of the config",
                f"did you mean {hint!r}?" if hint else f"sections: {', '.join(keys) or 'none'}",
            )
        cfg = preset
    if not isinstance(cfg, DictConfig):
        raise ConfigError("the config must be a mapping at the top level")
    for path in args.overrides_paths:
        cfg = apply_overrides_file(cfg, path)
    for item in args.overrides:
        apply_override(cfg, item)
    for key, value in (overrides or {}).items():
        add = key.startswith("+")
        name = key[1:] if add else key
        old = select_node(cfg, name)
        if old is ABSENT and not add:
            raise _unknown_key(cfg, name, " (keyword argument)")
        if not add:
            _check_type(name, old, value, " (keyword argument)")
            if isinstance(old, bool) and not isinstance(value, bool) and value in (0, 1):
                value = bool(value)
        OmegaConf.update(cfg, name, value, merge=isinstance(value, dict), force_add=add)
    return cfg


def to_container(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}")
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def to_yaml(cfg: Any) -> str:
    return dump_yaml(to_container(cfg))
