"""Configuration of a decorated main: OmegaConf files, presets, dotlist and path overrides.

`clicfg` turns `def main(cfg)` into a command line in the naga style:

    python train.py [CONFIG.yaml] [--experiment KEY] [a.b=1 ...] [key=@file.yaml] [+new=1]

The loaded config is strict (as in Hydra): overriding a key that does not exist is an error with
a did-you-mean, and `+key=value` adds a key on purpose.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, TetherError, did_you_mean

_ABSENT = object()


@dataclass
class CliArgs:
    """What the command line of a decorated main asked for."""

    config_file: str | None = None
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    overrides_paths: list[str] = field(default_factory=list)
    print_config: bool = False
    help: bool = False
    needed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# Flags with a value, each with its aliases (naga's spellings included).
_VALUE_FLAGS: dict[str, tuple[str, ...]] = {
    "config_file": ("--config", "-c"),
    "experiment": ("--experiment", "-e"),
    "overrides_path": ("--overrides-path", "--overrides_path"),
}


def parse_argv(
    argv: Sequence[str], extra_flags: dict[str, tuple[str, ...]] | None = None
) -> CliArgs:
    """Split a decorated main's argv into files, flags and overrides (no argparse: `k=v` words
    and options interleave freely, and unknown options must be reported with a suggestion)."""
    args = CliArgs()
    value_flags = dict(_VALUE_FLAGS)
    value_flags.update(extra_flags or {})
    lookup = {alias: name for name, aliases in value_flags.items() for alias in aliases}
    known = [
        *lookup,
        "-o",
        "--overrides",
        "--print-config",
        "--print_config",
        "-h",
        "--help",
        "--needed",
    ]
    words = list(argv)
    i = 0
    in_overrides = False
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            args.overrides.extend(words[i:])
            break
        if word.startswith("-") and not _looks_numeric(word):
            in_overrides = False
            flag, eq, inline = word.partition("=")
            if flag in ("-h", "--help"):
                args.help = True
            elif flag in ("--print-config", "--print_config"):
                args.print_config = True
            elif flag == "--needed":
                args.needed = True
            elif flag in ("-o", "--overrides"):
                in_overrides = True
                if eq:
                    args.overrides.append(inline)
            elif flag in lookup:
                if eq:
                    value = inline
                elif i < len(words):
                    value = words[i]
                    i += 1
                else:
                    raise ConfigError(f"option {flag} needs a value")
                name = lookup[flag]
                if name == "config_file":
                    args.config_file = value
                elif name == "experiment":
                    args.experiment = value
                elif name == "overrides_path":
                    args.overrides_paths.append(value)
                else:
                    args.extra[name] = value
            else:
                hint = did_you_mean(flag, known)
                if hint:
                    suggestion = f"did you mean {hint!r}?"
                elif flag.startswith("--") and len(flag) > 2:
                    suggestion = f"to set a config key, write {flag[2:]}=VALUE"
                else:
                    suggestion = "see --help"
                raise ConfigError(f"unknown option {flag!r}", suggestion)
            continue
        if "=" in word:
            args.overrides.append(word)
        elif in_overrides:
            raise ConfigError(f"override {word!r} is not of the form key=value")
        elif args.config_file is None and word.endswith((".yaml", ".yml")):
            args.config_file = word
        else:
            raise ConfigError(
                f"argument {word!r} is neither a config file (.yaml) nor an override key=value"
            )
    return args


def _looks_numeric(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


# -- loading ----------------------------------------------------------------------------------
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


def _select(cfg: Any, key: str) -> Any:
    """The node at a dotted key (containers as they are, leaves as their raw value, `???` and
    interpolations unresolved), or _ABSENT. OmegaConf.select cannot tell a `???` key from an
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
            return _ABSENT
    if isinstance(node, (DictConfig, ListConfig)):
        return node
    return node._value() if node is not None else None


def _unknown_key(cfg: Any, key: str, source: str) -> ConfigError:
    return ConfigError(
        f"unknown config key {key!r}{source}",
        _suggest_key(cfg, key) or f"use +{key}=... to add a new key",
    )


def _suggest_key(cfg: Any, key: str) -> str | None:
    """Did-you-mean: first among the siblings of the last part (so `optim.nesterov` is not
    offered `optim.lr`), then among all dotted keys."""
    from omegaconf import DictConfig

    parent, _, last = key.rpartition(".")
    siblings = _select(cfg, parent) if parent else cfg
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
    if old is _ABSENT or old is None or new is None:
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
    old = _select(cfg, key)
    if old is _ABSENT and not add:
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
        if _select(cfg, key) is not _ABSENT:
            continue
        parent = key.rpartition(".")[0]
        # Below a key whose default is not a mapping (None, say), the file brings its own shape.
        if parent and not isinstance(_select(cfg, parent), DictConfig):
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

    from .capture.resolvers import register

    register()
    args = args or CliArgs()
    cfg = base_config(defaults)
    if args.config_file:
        loaded = load_yaml_file(args.config_file)
        cfg = OmegaConf.merge(cfg, loaded) if dataclasses.is_dataclass(defaults) else loaded
    if args.experiment:
        preset = _select(cfg, args.experiment)
        if preset is _ABSENT or not isinstance(preset, DictConfig):
            keys = [k for k in all_keys(cfg) if isinstance(_select(cfg, k), DictConfig)]
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
        old = _select(cfg, name)
        if old is _ABSENT and not add:
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
    from .lock import dump_yaml

    return dump_yaml(to_container(cfg))


# -- help -------------------------------------------------------------------------------------
def help_text(prog: str, doc: str | None, cfg: Any, source: str) -> str:
    from omegaconf import DictConfig, OmegaConf

    lines = [
        f"usage: {prog} [CONFIG.yaml] [--config FILE] [--experiment KEY] [-o] [key=value ...]",
        "",
    ]
    if doc:
        lines += [doc.strip().split("\n\n")[0].strip(), ""]
    lines.append(f"config keys (defaults from {source}):")
    rows = []
    for key in all_keys(cfg):
        node = _select(cfg, key)
        if isinstance(node, DictConfig):
            continue
        if node == "???":
            shown = "??? (tether fills it)" if key == "save_dir" else "??? (required)"
        elif OmegaConf.is_config(node):
            import json

            shown = json.dumps(OmegaConf.to_container(node, resolve=False), default=str)
        else:
            shown = repr(node)
        rows.append((key, shown))
    width = max((len(k) for k, _ in rows), default=0)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows] or ["  (none)"]
    lines += [
        "",
        "options:",
        "  CONFIG.yaml, --config FILE   use this config file instead of the default",
        "  --experiment KEY             use the preset at KEY inside the config",
        "  key=value, -o key=value      override a key (dotted paths: model.lr=0.1)",
        "  key=@file.yaml               merge a YAML file at a key",
        "  +key=value                   add a key that the config does not have",
        "  --overrides-path FILE        merge a YAML file of overrides",
        "  --print-config               print the resolved config and exit",
        "  --needed                     skip if a completed run has the same inputs",
        "  -h, --help                   show this message and exit",
    ]
    return "\n".join(lines)


# -- the decorator ----------------------------------------------------------------------------
def report_and_exit(exc: TetherError) -> None:
    """One line on stderr and exit 2; the traceback only with TETHER_DEBUG=1."""
    from .debug import debug_enabled

    if debug_enabled():
        raise exc
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(exc.exit_code)


def clicfg(
    fn: Callable[..., Any] | None = None,
    *,
    config: Any = None,
    defaults: Any = None,
) -> Any:
    """Give `main(cfg)` a config command line. `config` is a YAML path (relative paths are taken
    from the script's folder first, then the working folder); `defaults` a dataclass or dict."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        source = defaults if defaults is not None else _locate(config, func)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            cfg, _ = load_for_call(wrapper, source, a, kw)
            if cfg is None:
                return None
            return func(cfg)

        wrapper.__tether_config_source__ = source  # type: ignore[attr-defined]
        add_cli(wrapper)
        return wrapper

    return decorate(fn) if fn is not None else decorate


def add_cli(wrapper: Callable[..., Any]) -> None:
    """`main.cli(["lr=0.1"])`: run a decorated main as if from the command line with this argv
    (tests and notebooks; `main()` itself reads sys.argv)."""

    def cli(argv: Sequence[str] = ()) -> Any:
        saved = sys.argv
        sys.argv = [saved[0] if saved else "main", *argv]
        try:
            return wrapper()
        finally:
            sys.argv = saved

    wrapper.cli = cli  # type: ignore[attr-defined]


def _locate(config: Any, func: Callable[..., Any]) -> Any:
    if not isinstance(config, (str, os.PathLike)):
        return config
    path = Path(config)
    if path.is_absolute():
        return path
    module = sys.modules.get(func.__module__)
    module_file = getattr(module, "__file__", None)
    if module_file:
        beside = Path(module_file).resolve().parent / path
        if beside.exists():
            return beside
    return path


def load_for_call(
    wrapper: Callable[..., Any], source: Any, a: tuple[Any, ...], kw: dict[str, Any]
) -> tuple[Any, CliArgs | None]:
    """The config for one call of a decorated main (None after --help / --print-config), and
    the parsed command line when it came from there.

    From Python (`main(lr=0.1)` or `main(cfg)`) errors raise; from the command line (`main()`)
    they print one line and exit 2. `TETHER_REPRODUCE_CONFIG` (set by `tether reproduce`) names
    a recorded config that replaces the defaults and the command line's overrides.
    """
    from omegaconf import OmegaConf

    if a or kw:
        if a:
            if len(a) > 1:
                raise TypeError("a decorated main takes at most one positional config")
            base = a[0]
            cfg = build_config(source, None, None)
            given = OmegaConf.create(base) if isinstance(base, dict) else base
            cfg = OmegaConf.merge(cfg, given)
            return build_config(cfg, None, kw), None
        return build_config(source, None, kw), None
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "main"
    try:
        args = parse_argv(sys.argv[1:], getattr(wrapper, "__tether_extra_flags__", None))
        recorded = os.environ.get("TETHER_REPRODUCE_CONFIG")
        if recorded:
            args = CliArgs(config_file=recorded, needed=args.needed)
            cfg = build_config(None, args)
            return cfg, args
        if args.help:
            shown = args.config_file or source
            cfg = build_config(source, CliArgs(config_file=args.config_file))
            print(help_text(prog, wrapper.__doc__, cfg, _describe(shown)))
            return None, args
        cfg = build_config(source, args)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return None, args
        to_container(cfg)  # fail early, on the command line, when interpolations are broken
        return cfg, args
    except TetherError as exc:
        report_and_exit(exc)
    return None, None


def _describe(source: Any) -> str:
    if source is None:
        return "no defaults"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if dataclasses.is_dataclass(source):
        return getattr(source, "__name__", type(source).__name__)
    return type(source).__name__
