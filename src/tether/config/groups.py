"""Config groups, as in Hydra: a folder beside the config is a group, each YAML file in it an
option, and a `defaults:` list in the config picks each group's option.

    conf/config.yaml          defaults: [{model: logistic}, _self_]
    conf/model/logistic.yaml  C: 1.0 ...
    conf/model/svm.yaml

`model=svm` on the command line selects conf/model/svm.yaml, placed at the key `model`;
`~model` (or `model=null`) selects none; a misspelled option gets a did-you-mean from the
folder's files. The defaults list is read in order and the config's own keys are merged where
`_self_` stands (at the end when it is not there, as Hydra 1.1+ does). Entries tether reads:
`_self_`, `GROUP: OPTION`, `GROUP: null`, `optional GROUP: OPTION`, and `NAME` (another config
of the same folder, merged at the same place). Package directives (`@pkg`, `# @package`) are
refused with a message, never ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..globs import compile_glob
from ..patterns import LazyPattern

DEFAULTS_KEY = "defaults"
SELF = "_self_"
_SUFFIXES = (".yaml", ".yml")
_GROUP_NAME = LazyPattern(r"[A-Za-z_][A-Za-z0-9_-]*(?:/[A-Za-z_][A-Za-z0-9_-]*)*")


@dataclass(frozen=True)
class Group:
    """A group folder: its key (`model`, or `optim/sched` for a folder inside a group folder)
    and its options (file names without the suffix)."""

    name: str
    folder: Path
    options: tuple[str, ...]

    @property
    def key(self) -> str:
        """The config key its option goes at (Hydra's default package)."""
        return self.name.replace("/", ".")

    def file(self, option: str) -> Path:
        for suffix in _SUFFIXES:
            path = self.folder / f"{option}{suffix}"
            if path.is_file():
                return path
        hint = did_you_mean(option, list(self.options))
        raise ConfigError(
            f"config group {self.name!r} has no option {option!r}"
            + (f" (did you mean {hint!r}?)" if hint else ""),
            f"options in {self.folder}: {', '.join(self.options) or 'none'}",
        )

    def matching(self, include: list[str], exclude: list[str]) -> list[str]:
        """The options a `glob(include, exclude)` sweep selects, sorted (Hydra's glob)."""
        inc = [compile_glob(p, anchored=True) for p in include]
        exc = [compile_glob(p, anchored=True) for p in exclude]
        out = [o for o in self.options if any(g.match(o) for g in inc)]
        return [o for o in out if not any(g.match(o) for g in exc)]


@dataclass
class Selection:
    """The groups beside a config and the option chosen for each (None: none chosen), in the
    order the defaults list names them, with where `_self_` stands."""

    groups: dict[str, Group] = field(default_factory=dict)
    entries: list[tuple[str, str | None]] = field(default_factory=list)  # (kind/group, option)

    def chosen(self) -> dict[str, str | None]:
        return {g: o for g, o in self.entries if g in self.groups}


def load_group(config_dir: Path, name: str) -> Group | None:
    """The group `name` (`model`, `optim/sched`, or dotted `optim.sched`) beside a config: a
    folder holding at least one YAML file; None when there is none. One folder is listed, so a
    command line costs a stat per override that could name a group, not a walk."""
    name = name.replace(".", "/")
    if not _GROUP_NAME.fullmatch(name):
        return None
    folder = config_dir / name
    try:
        with os.scandir(folder) as it:
            options = sorted(
                e.name.rsplit(".", 1)[0] for e in it if e.name.endswith(_SUFFIXES) and e.is_file()
            )
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return Group(name, folder, tuple(options)) if options else None


def find_groups(config_dir: Path) -> dict[str, Group]:
    """The group folders right beside a config (for --help), by name."""
    out: dict[str, Group] = {}
    try:
        with os.scandir(config_dir) as it:
            names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith((".", "_")))
    except OSError:
        return out
    for name in names:
        group = load_group(config_dir, name)
        if group is not None:
            out[name] = group
    return out


def is_defaults_list(value: Any) -> bool:
    """A Hydra defaults list: strings and one-key mappings of a string to a string or null
    (any other `defaults:` value is ordinary config data and stays)."""
    from omegaconf import DictConfig, ListConfig

    if not isinstance(value, ListConfig):
        return False
    for item in value:
        if isinstance(item, str):
            continue
        if isinstance(item, DictConfig) and len(item) == 1:
            (val,) = item.values()
            if val is None or isinstance(val, str):
                continue
        return False
    return True


def read_defaults(
    cfg: Any, where: str, config_dir: Path, groups: dict[str, Group]
) -> list[tuple[str, str | None]]:
    """The entries of a config's defaults list as (group or `_self_` or `=NAME`, option), with
    `_self_` added at the end when missing; the list is taken out of `cfg`. The groups it
    names are loaded into `groups`."""
    raw = cfg.get(DEFAULTS_KEY)
    del cfg[DEFAULTS_KEY]
    entries: list[tuple[str, str | None]] = []
    for item in raw:
        if isinstance(item, str):
            name = item.strip()
            if name == SELF:
                entries.append((SELF, None))
            elif "@" in name:
                raise _package_refused(where, name)
            else:
                entries.append(("=" + name, name))
            continue
        ((key, option),) = item.items()
        key = str(key).strip()
        if key.startswith("override "):
            raise ConfigError(
                f"{where}: defaults entry {key!r}: `override` belongs in a config that a defaults "
                "list includes, which tether does not read",
                f"choose the option on the command line: {key.split()[-1]}=OPTION",
            )
        optional = key.startswith("optional ")
        key = key.removeprefix("optional ").strip().lstrip("/")
        if "@" in key:
            raise _package_refused(where, key)
        group = load_group(config_dir, key)
        if group is None:
            if optional:
                continue
            hint = did_you_mean(key, list(find_groups(config_dir)))
            raise ConfigError(
                f"{where}: defaults entry {key!r} names no group folder beside the config"
                + (f" (did you mean {hint!r}?)" if hint else ""),
                f"groups: {', '.join(find_groups(config_dir)) or 'none'} "
                "(a group is a folder of YAML files beside the config)",
            )
        key = group.name
        groups[key] = group
        if any(g == key for g, _ in entries):
            raise ConfigError(f"{where}: group {key!r} is in the defaults list twice")
        entries.append((key, None if option is None else str(option)))
    if not any(g == SELF for g, _ in entries):
        entries.append((SELF, None))
    return entries


def _package_refused(where: str, entry: str) -> ConfigError:
    return ConfigError(
        f"{where}: defaults entry {entry!r}: packages (@pkg) are not supported",
        "an option goes at its group's key; move the keys in the file instead",
    )


def apply_choices(
    entries: list[tuple[str, str | None]], choices: list[tuple[str, str, str | None]]
) -> list[tuple[str, str | None]]:
    """The defaults entries after the command line's group choices, in order: (op, group,
    option) with op "set" (`model=svm`), "add" (`+model=svm`) or "delete" (`~model`). A group
    the list does not name is added after everything else, as Hydra's `+group=option` does."""
    out = list(entries)
    for op, group, option in choices:
        at = next((i for i, (g, _) in enumerate(out) if g == group), None)
        if op == "delete":
            if at is not None:
                out[at] = (group, None)
            continue
        if at is None:
            out.append((group, option))
        else:
            out[at] = (group, option)
    return out


def check_option_file(path: Path) -> None:
    """A `# @package` line changes where Hydra puts an option: refused, never ignored."""
    try:
        with path.open(encoding="utf-8") as fh:
            head = [fh.readline() for _ in range(5)]
    except OSError:
        return
    for line in head:
        if line.lstrip().startswith("# @package"):
            raise ConfigError(
                f"{path}: `{line.strip()}` is not supported: an option goes at its group's key",
                "remove the line and write the keys where they go",
            )
