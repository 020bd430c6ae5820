"""Composing the config of a decorated main with OmegaConf: defaults, file, preset, overrides.

The loaded config is strict (as in Hydra): overriding a key that does not exist is an error with
a did-you-mean, and `+key=value` adds a key on purpose. OmegaConf and YAML are imported inside
the functions that need them (heavy).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..capture.resolvers import register
from ..errors import ConfigError, did_you_mean
from ..lock import dump_yaml
from .argv import CliArgs
from .groups import (
    DEFAULTS_KEY,
    SELF,
    Group,
    Selection,
    apply_choices,
    check_option_file,
    is_defaults_list,
    load_group,
    read_defaults,
)
from .overrides import Call, Override, parse_override

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


def _option_file(key: str, value: str) -> str | None:
    """`model=wide` where no group folder says what `wide` is: the YAML file a Hydra user most
    likely meant (conf/model/wide.yaml and its usual neighbours, from the working folder)."""
    if not value or "/" in value or value.startswith("."):
        return None
    rel = Path(*key.split(".")) / f"{value}.yaml"
    for base in ("conf", "configs", "config", ""):
        candidate = Path(base) / rel if base else rel
        if candidate.is_file():
            return candidate.as_posix()
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
    hint = None
    found = _option_file(key, new) if want == "mapping" and isinstance(new, str) else None
    if found is not None:
        hint = f"to merge that file, write {key}=@{found}"
    elif want == "mapping" and isinstance(new, str):
        hint = (
            f"merge a file with {key}=@FILE.yaml, or make {key!r} a config group: a folder "
            f"{key.replace('.', '/')}/ of YAML files beside the config"
        )
    raise ConfigError(
        f"config key {key!r}{source} expects {names[want]} (default {shown!s}), got {new!r}",
        hint,
    )


def apply_override(cfg: Any, item: str | Override, source: str = "") -> None:
    """Apply one override (Hydra's grammar, tether.config.overrides) to `cfg` in place.

    `key=value` sets a key that exists (a dict value merges into the mapping there, its keys
    checked like any other); `+key=value` adds a key and is refused when one is there;
    `++key=value` adds or sets; `~key` and `~key=value` delete. `key=@file.yaml` (tether's)
    merges a YAML file at `key`.
    """
    ov = item if isinstance(item, Override) else parse_override(item)
    if ov.is_sweep:
        raise ConfigError(
            f"override {ov.text!r}{source} is a sweep ({_sweep_word(ov)})",
            f"add -m to run one child run per value, or quote it for a string: {ov.key}='{ov.raw}'",
        )
    key, value = ov.key, ov.value
    old = select_node(cfg, key)
    if ov.op == "delete":
        _delete(cfg, ov, old, source)
        return
    if ov.bare and isinstance(value, str) and value.startswith("@"):
        value = load_yaml_file(value[1:], what=f"file for {key!r}")
    if ov.op == "set":
        if old is ABSENT:
            raise _unknown_key(cfg, key, source)
        _check_type(key, old, value, source)  # 0/1 for a bool stays a number, as in Hydra
    elif ov.op == "add" and old is not ABSENT and old is not None and not _is_container(value):
        raise ConfigError(
            f"override {ov.text!r}{source}: {key!r} is already in the config ({_brief(old)})",
            f"write {key}=... to change it, or ++{key}=... to add or change it",
        )
    if _is_container(value) and ov.op == "set":
        _check_dict_keys(cfg, key, value, source)
    _update(cfg, ov, key, value, source)


def _sweep_word(ov: Override) -> str:
    return f"{ov.value.name}(...)" if isinstance(ov.value, Call) else "a,b: one value each"


def _is_container(value: Any) -> bool:
    from omegaconf import OmegaConf

    return isinstance(value, (dict, list)) or OmegaConf.is_config(value)


def _brief(value: Any) -> str:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return "a mapping" if isinstance(value, dict) or hasattr(value, "keys") else "a list"
    return f"{value!r}"


def _check_dict_keys(cfg: Any, key: str, value: Any, source: str) -> None:
    """The keys inside a dict value must exist, as `key.sub=...` would (strict, as in Hydra)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(select_node(cfg, key), DictConfig):
        return
    plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if not isinstance(plain, dict):
        return
    for sub in _dict_paths(plain):
        path = f"{key}.{sub}"
        if select_node(cfg, path) is not ABSENT:
            continue
        parent = path.rpartition(".")[0]
        if not isinstance(select_node(cfg, parent), DictConfig):
            continue  # below a leaf (null, say) the value brings its own shape
        raise _unknown_key(cfg, path, source)


def _dict_paths(d: dict[Any, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out.append(path)
        if isinstance(v, dict):
            out.extend(_dict_paths(v, path))
    return out


def _update(cfg: Any, ov: Override, key: str, value: Any, source: str) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.update(cfg, key, value, merge=True, force_add=ov.op != "set")
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"override {ov.text!r}{source}: {msg}")
    except (ValueError, TypeError) as exc:  # e.g. a dict key OmegaConf cannot hold
        raise ConfigError(f"override {ov.text!r}{source}: {str(exc).splitlines()[0]}")


def _delete(cfg: Any, ov: Override, old: Any, source: str) -> None:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    key = ov.key
    if old is ABSENT:
        raise ConfigError(
            f"override {ov.text!r}{source}: cannot delete {key!r}: it is not in the config",
            suggest_key(cfg, key),
        )
    if ov.has_value:
        current = OmegaConf.to_container(old) if OmegaConf.is_config(old) else old
        if current != ov.value:
            raise ConfigError(
                f"override {ov.text!r}{source}: cannot delete {key!r}: its value is "
                f"{current!r}, not {ov.value!r}",
                f"write ~{key} to delete it whatever its value",
            )
    parent_key, _, last = key.rpartition(".")
    parent = select_node(cfg, parent_key) if parent_key else cfg
    if isinstance(parent, ListConfig):
        del parent[int(last)]
    elif isinstance(parent, DictConfig):
        del parent[last]


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


def config_dir(defaults: Any, args: CliArgs) -> Path | None:
    """The folder whose subfolders are config groups: the config file's."""
    if args.config_file:
        return Path(args.config_file).parent
    if isinstance(defaults, (str, os.PathLike)):
        return Path(defaults).parent
    return None


def _group_word(folder: Path, ov: Override, cfg: Any, selection: Selection) -> Group | None:
    """The group an override chooses an option of, or None when it is an ordinary override.
    A key of the defaults list is a group; another key is one when a folder of YAML files
    beside the config has its name and the config holds no plain value there."""
    if ov.is_sweep:
        return None
    if ov.has_value and not (ov.value is None or (ov.bare and isinstance(ov.value, str))):
        return None
    if isinstance(ov.value, str) and ov.value.startswith("@"):
        return None  # key=@file.yaml merges a file, group or not
    if ov.key in selection.groups:
        return selection.groups[ov.key]
    if not ov.key.replace(".", "").replace("/", "").replace("-", "").replace("_", "").isalnum():
        return None
    old = select_node(cfg, ov.key.replace("/", "."))
    if old is not ABSENT and not _is_mapping(old):
        return None
    group = load_group(folder, ov.key)
    if group is not None:
        selection.groups[group.name] = group
    return group


def _is_mapping(value: Any) -> bool:
    from omegaconf import DictConfig

    return isinstance(value, DictConfig)


def compose_groups(
    cfg: Any, folder: Path | None, words: list[Override], where: str = "the config"
) -> tuple[Any, list[Override], Selection]:
    """The config with its groups' options merged in (its defaults list, then the command
    line's choices), and the overrides left to apply to it."""
    from omegaconf import OmegaConf

    selection = Selection()
    has_list = DEFAULTS_KEY in cfg and is_defaults_list(cfg._get_node(DEFAULTS_KEY))
    if folder is None:
        return cfg, words, selection
    if has_list:
        selection.entries = read_defaults(cfg, where, folder, selection.groups)
    choices: list[tuple[str, str, str | None]] = []
    rest: list[Override] = []
    for ov in words:
        group = _group_word(folder, ov, cfg, selection)
        if group is None:
            rest.append(ov)
            continue
        option = None if ov.op == "delete" else ov.value
        if option is not None:
            group.file(option)  # a misspelled option: did-you-mean from the folder's files
        choices.append(("delete" if option is None else ov.op, group.name, option))
    if not has_list and not choices:
        return cfg, rest, selection
    entries = apply_choices(selection.entries or [(SELF, None)], choices)
    selection.entries = entries
    out: Any = OmegaConf.create({})
    for name, option in entries:
        if name == SELF:
            out = OmegaConf.merge(out, cfg)
        elif name.startswith("="):
            out = OmegaConf.merge(out, load_yaml_file(_named_config(folder, name[1:], where)))
        elif option is not None:
            content = _option_config(selection.groups[name], option)
            out = OmegaConf.merge(out, _nested(selection.groups[name].key, content))
    return out, rest, selection


def _named_config(folder: Path, name: str, where: str) -> Path:
    for suffix in (".yaml", ".yml", ""):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    raise ConfigError(f"{where}: defaults entry {name!r}: no file {folder / name}.yaml")


def _option_config(group: Group, option: str, seen: tuple[str, ...] = ()) -> Any:
    """An option's content, its own defaults list (other options of the group) read first."""
    from omegaconf import DictConfig, OmegaConf

    path = group.file(option)
    check_option_file(path)
    loaded = load_yaml_file(path, what=f"option {option!r} of group {group.name!r}")
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: an option of group {group.name!r} must be a mapping")
    if DEFAULTS_KEY not in loaded or not is_defaults_list(loaded._get_node(DEFAULTS_KEY)):
        return loaded
    raw = list(loaded[DEFAULTS_KEY])
    del loaded[DEFAULTS_KEY]
    out: Any = OmegaConf.create({})
    names = [str(x) for x in raw if isinstance(x, str)]
    if len(names) != len(raw):
        raise ConfigError(
            f"{path}: tether reads a defaults list in a group option only as names of other "
            f"options of {group.name!r} (and _self_)",
            "choose the other groups in the primary config's defaults list",
        )
    if SELF not in names:
        names.append(SELF)
    for name in names:
        if name == SELF:
            out = OmegaConf.merge(out, loaded)
        elif name == option or name in seen:
            chain = " -> ".join((*seen, option, name))
            raise ConfigError(f"{path}: the defaults lists include each other ({chain})")
        else:
            out = OmegaConf.merge(out, _option_config(group, name, (*seen, option)))
    return out


def _nested(key: str, content: Any) -> Any:
    from omegaconf import OmegaConf

    node: Any = content
    for part in reversed(key.split(".")):
        node = {part: node}
    return OmegaConf.create(node)


def build_config(
    defaults: Any = None,
    args: CliArgs | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    point: Sequence[Override] = (),
    selection: list[Selection] | None = None,
) -> Any:
    """Compose the config: defaults or file, groups, preset, overrides file(s), the command
    line's overrides (then `point`, one point of a sweep), kwargs. `selection`, when given,
    receives the groups and their chosen options (for --help)."""
    from omegaconf import DictConfig, OmegaConf

    register()
    args = args or CliArgs()
    words = [parse_override(w) for w in args.overrides]
    words += list(point)
    cfg = base_config(defaults)
    if args.config_file:
        loaded = load_yaml_file(args.config_file)
        cfg = OmegaConf.merge(cfg, loaded) if dataclasses.is_dataclass(defaults) else loaded
    if isinstance(cfg, DictConfig):
        where = str(args.config_file or defaults)
        cfg, words, chosen = compose_groups(cfg, config_dir(defaults, args), words, where)
        if selection is not None:
            selection.append(chosen)
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
    for item in words:
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
