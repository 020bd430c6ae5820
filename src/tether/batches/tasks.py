"""The task list of a batch and where each item goes: `--task-to KEY`, `--tasks FILE`,
`--tasks-key KEY` (default: the config's `tasks` list).

A task item goes at the config key `--task-to` (a dotted path; `+key` adds a key the config
lacks); a mapping item merges into a mapping already there. Items are plain data (what YAML
holds), so they can be stored in the task pool and sent to workers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..capture.resolvers import register
from ..config.compose import ABSENT, select_node, suggest_key
from ..errors import ConfigError
from ..ops.flags import refuse_aliases

DEFAULT_TASKS_KEY = "tasks"


# -- the task list ----------------------------------------------------------------------------
def task_items(
    base: Any,
    *,
    tasks: Sequence[Any] | None,
    tasks_file: str | None,
    tasks_key: str | None,
) -> tuple[list[Any], str | None]:
    """The items of a batch (a list given, else a file, else a config list), as plain data, and
    the config key the list came from (None for a list or a file)."""
    if tasks is not None:
        items, list_key = list(tasks), None
        if not items:
            raise ConfigError("no tasks: the task list is empty")
    else:
        items, list_key = load_tasks(base, tasks_file, tasks_key)
    return [plain(item) for item in items], list_key


def load_tasks(
    cfg: Any, tasks_file: str | None, tasks_key: str | None
) -> tuple[list[Any], str | None]:
    """The task list, and the config key it came from (None for a file)."""
    if tasks_file:
        return read_tasks_file(tasks_file), None
    from omegaconf import ListConfig, OmegaConf

    key = tasks_key or DEFAULT_TASKS_KEY
    node = ABSENT if cfg is None else select_node(cfg, key)
    if node is ABSENT or node is None:
        if tasks_key:
            hint = suggest_key(cfg, key) if cfg is not None else None
            raise ConfigError(f"--tasks-key {key!r} is not a key of the config", hint)
        raise ConfigError(
            "no tasks: the config has no `tasks` list",
            "add one, or give --tasks FILE (.txt: one task per line, or a YAML list) or "
            "--tasks-key KEY",
        )
    if not isinstance(node, ListConfig):
        what = "a mapping" if OmegaConf.is_config(node) else type(node).__name__
        raise ConfigError(f"config key {key!r} holds {what}, not a list of tasks")
    items = OmegaConf.to_container(node, resolve=True)
    assert isinstance(items, list)
    if not items:
        raise ConfigError(f"no tasks: the list at config key {key!r} is empty")
    return items, key


def read_tasks_file(path: str) -> list[Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"--tasks {path}: no such file" if not p.exists() else f"--tasks {path}: not a file"
        )
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tasks {path}: cannot read it ({exc})")
    if suffix in (".yaml", ".yml", ".json"):
        import yaml

        try:
            refuse_aliases(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(
                f"--tasks {path}{where}: not valid YAML "
                f"({str(getattr(exc, 'problem', None) or exc).splitlines()[0]})"
            )
        except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, deep nesting
            raise ConfigError(f"--tasks {path}: not valid YAML ({str(exc)[:80]})")
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            data = data["tasks"]
        if not isinstance(data, list):
            raise ConfigError(
                f"--tasks {path}: expected a YAML list of tasks, got {type(data).__name__}"
            )
        items = data
    else:
        lines = [line.strip() for line in text.splitlines()]
        items = [_scalar(line) for line in lines if line and not line.startswith("#")]
    if not items:
        raise ConfigError(f"no tasks: {path} is empty")
    return items


def _scalar(text: str) -> Any:
    """A line of a task file, typed as a YAML scalar would be (7, 0.5, true, a/b.csv)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


def plain(item: Any) -> Any:
    """A task item as plain data (a DictConfig item becomes a dict); ConfigError otherwise."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(item):
        item = OmegaConf.to_container(item, resolve=True)
    try:
        json.dumps(item)
    except (TypeError, ValueError):
        raise ConfigError(
            f"task {item!r} is not plain data (strings, numbers, lists, mappings)",
            "a task list holds values that can be written to YAML",
        )
    return item


# -- the config of a batch --------------------------------------------------------------------
def base_config(cfg: Any) -> Any:
    """The batch's config as a DictConfig of its own (a copy of `cfg`, or empty)."""
    from omegaconf import OmegaConf

    register()
    if cfg is None:
        return OmegaConf.create({})
    if OmegaConf.is_config(cfg):
        return cfg.copy()
    return OmegaConf.create(copy.deepcopy(dict(cfg)))


def config_yaml(cfg: Any) -> Any:
    """The config as plain data, interpolations kept (what the task pool's meta records)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


def drop_key(cfg: Any, key: str | None) -> Any:
    """The config without the task list (children record their own item, not the list)."""
    if not key:
        return cfg
    from omegaconf import DictConfig, OmegaConf

    out = cfg.copy()
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(out, parent) if parent else out
    if isinstance(node, DictConfig) and last in node:
        with contextlib.suppress(Exception):
            del node[last]
    return out


# -- where an item goes -----------------------------------------------------------------------
def require_task_to(task_to: str | None) -> str:
    if not task_to:
        raise ConfigError(
            "--task-to KEY is needed: the config key each task item goes to",
            "e.g. --task-to seed (or @tether.parallel(task_to='seed'))",
        )
    return task_to


def task_keys(task_to: str) -> list[str] | None:
    """The keys of a task_to that names several (`model,optim`, or `model,` for one: a
    multirun's, each item a mapping of those keys to their values), or None for one key."""
    return [k for k in task_to.split(",") if k] if "," in task_to else None


def inject(cfg: Any, key: str, item: Any, *, merge: bool = True) -> None:
    """Put a task item at `key` (a dotted path) in a DictConfig; a mapping item merges into a
    mapping already there (unless `merge=False`). `+key` adds a key the config lacks. With
    several keys (`a,b`), the item maps each key to its value."""
    from omegaconf import DictConfig, OmegaConf

    keys = task_keys(key)
    if keys is not None:
        for one in keys:
            inject(cfg, one, item[one.removeprefix("+")], merge=merge)
        return

    path = key[1:] if key.startswith("+") else key
    parts = path.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node._get_node(part) if isinstance(node, DictConfig) else None
        if not isinstance(node, DictConfig):
            node = None
            break
    if node is not None and not isinstance(item, dict) and not key.startswith("+"):
        set_leaf(node, parts[-1], item)  # the common case: much cheaper than OmegaConf.update
        return
    current = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
    merge = merge and isinstance(item, dict) and isinstance(current, DictConfig)
    OmegaConf.update(cfg, path, item, merge=merge, force_add=True)


_SCALARS = (int, float, str, bool)


def set_leaf(node: Any, key: str, value: Any) -> None:
    """`node[key] = value` in a DictConfig. Where the key holds an untyped leaf already and
    the value is a plain scalar (a task's seed, its `save_dir`), the leaf's value is set in
    place: OmegaConf's `__setitem__` gets there too, after ~15 us of checks that cannot fail
    for such a leaf (the leaf's own `_set_value` still refuses a read-only config)."""
    from omegaconf import AnyNode

    if type(value) in _SCALARS:
        leaf = node._get_node(key, throw_on_missing_key=False, validate_access=False)
        if type(leaf) is AnyNode:
            leaf._set_value(value)
            return
    node[key] = value


def check_task_to(cfg: Any, key: str, item: Any) -> None:
    """A clear error, before anything runs, when `--task-to KEY` cannot take the task items."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    keys = task_keys(key)
    if keys is not None:
        if not isinstance(item, dict) or set(item) != {k.removeprefix("+") for k in keys}:
            raise ConfigError(
                f"--task-to {key!r}: each task must be a mapping of these keys to values"
            )
        for one in keys:
            check_task_to(cfg, one, item[one.removeprefix("+")])
        return
    add = key.startswith("+")
    path = key[1:] if add else key
    parts = path.split(".")
    if not path or any(not p or not p.replace("_", "a").replace("-", "a").isalnum() for p in parts):
        raise ConfigError(
            f"--task-to {key!r} is not a config key path",
            "give dotted keys, e.g. --task-to model.seed",
        )
    found = select_node(cfg, path)
    if found is ABSENT and not add:
        parent = ".".join(parts[:-1])
        where = select_node(cfg, parent) if parent else cfg
        if parent and not isinstance(where, DictConfig):
            raise ConfigError(
                f"--task-to {key!r}: {parent!r} is not a section of the config",
                suggest_key(cfg, path) or f"use --task-to +{path} to add a new key",
            )
        raise ConfigError(
            f"--task-to {key!r} is not a key of the config",
            suggest_key(cfg, path) or f"use --task-to +{path} to add a new key",
        )
    if _plainly_settable(cfg, path, item) and not add:
        return  # a scalar for an untyped leaf of a config without interpolations: cannot fail
    trial = cfg.copy()
    try:
        inject(trial, key, item)
        OmegaConf.to_container(trial, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"--task-to {key!r}: {str(exc).splitlines()[0]}")


def _plainly_settable(cfg: Any, path: str, item: Any) -> bool:
    """Whether putting `item` at `path` and resolving the config cannot fail, told without the
    trial copy (~3 ms for a 200-element list): `item` is a scalar, the key an untyped leaf of
    a writable config, and no value anywhere is an interpolation."""
    from omegaconf import AnyNode, DictConfig

    if type(item) not in _SCALARS:
        return False
    *parents, last = path.split(".")
    node = cfg
    for part in parents:
        node = node._get_node(part) if isinstance(node, DictConfig) else None
    if not isinstance(node, DictConfig):
        return False
    leaf = node._get_node(last, throw_on_missing_key=False, validate_access=False)
    if type(leaf) is not AnyNode or leaf._get_flag("readonly"):
        return False
    _, values = config_shape(cfg)
    return not any(type(v) is str and "${" in v for v in values)


# -- plain containers (a worker's fast path) --------------------------------------------------
Shape = tuple[list[Any], list[Any]]
_NO_CONTENT = object()


def config_shape(cfg: Any, skip: Sequence[Sequence[str]] = ()) -> Shape:
    """What a DictConfig holds, cheaply: its nodes (by identity) and their keys, lengths and
    values, leaving out the nodes at the key paths in `skip` (those a worker sets for each
    task). Setting, adding or deleting a key or list element anywhere else changes it.

    A worker compares its config's shape after a task with the shape it had when the task was
    given it, to know whether the task changed it, without converting it (OmegaConf's
    `to_container` costs a few microseconds a node). It reads OmegaConf's node internals
    (`_content`, `_val`): a node without them counts as changed each time (the worker then
    rebuilds the config, which is slower but right).
    """
    skipped = {id(node) for node in (_node_at(cfg, path) for path in skip) if node is not None}
    nodes: list[Any] = [cfg]
    values: list[Any] = []
    stack = [cfg]  # containers whose node is in `nodes` already, their content not yet read
    while stack:
        fields = stack.pop().__dict__
        content = fields.get("_content", _NO_CONTENT)
        if content is _NO_CONTENT:  # no content after all: a leaf without a value
            values.append(fields["_val"] if "_val" in fields else object())
            continue
        if isinstance(content, dict):
            values.extend(content)
            values.append(len(content))
            children = list(content.values())
            if skipped:
                children = [c for c in children if id(c) not in skipped]
        elif isinstance(content, list):
            values.append(len(content))
            children = content
        else:  # None, "???" or an interpolation in place of a container
            values.append(content)
            continue
        # The children at once (most are leaves: their values in one comprehension, twice as
        # fast as one node at a time); the containers among them are read next.
        leaves = [c.__dict__.get("_val", _NO_CONTENT) for c in children]
        nodes.extend(children)
        values.extend(leaves)
        if _NO_CONTENT in leaves:
            stack.extend(c for c, v in zip(children, leaves, strict=True) if v is _NO_CONTENT)
    return nodes, values


def _node_at(cfg: Any, path: Sequence[str]) -> Any:
    node = cfg
    for part in path:
        content = node.__dict__.get("_content")
        if not isinstance(content, dict) or part not in content:
            return None
        node = content[part]
    return node


def same_shape(a: Shape, b: Shape) -> bool:
    """Whether two `config_shape`s are of an unchanged config: the same node objects, equal
    keys and values (list equality: identical objects are equal, so a NaN equals itself)."""
    return len(a[0]) == len(b[0]) and all(map(operator.is_, a[0], b[0])) and a[1] == b[1]


def with_value(
    container: dict[str, Any], path: list[str], value: Any, *, merge: bool
) -> dict[str, Any]:
    """A copy of `container` (copied along `path` only) with `value` at `path`; a mapping value
    merges into the mapping there when `merge`."""
    out = dict(container)
    node = out
    for part in path[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    last = path[-1]
    if merge and isinstance(node.get(last), dict) and isinstance(value, dict):
        node[last] = merged(node[last], value)
    else:
        node[last] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    return out


def with_task(container: dict[str, Any], task_to: str, item: Any) -> dict[str, Any]:
    """`with_value` at the task's key, or at each of its keys (an item of several)."""
    keys = task_keys(task_to)
    if keys is None:
        return with_value(container, task_to.removeprefix("+").split("."), item, merge=False)
    for one in keys:
        name = one.removeprefix("+")
        container = with_value(container, name.split("."), item[name], merge=False)
    return container


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    return out
