"""The run.lock of a child run from parts made once per worker: its YAML text and its digest.

The children of a batch share everything in run.lock but their id, their creation time and the
config keys each task sets (its item's, `save_dir`). A worker renders the rest once
(`LockParts`), and a child's lock reuses a part wherever its value is the very object the part
was made from; only the per-task values are rendered for each task, so neither the text nor the
digest costs more with a bigger config (a 200-element list converted and rendered per task
cost 3 ms):

* `LockParts.text` is `lock.to_yaml()`: the YAML of the shared keys, and of each shared
  top-level config key, joined with the per-task lines (`childyaml.yaml_line` for scalars);
* `ChildLock.digest` (what the index records for every run) is `RunLock.digest`: the blake3 of
  the same canonical JSON of `identity()`, assembled from each shared key's JSON made once
  (`json.dumps` with sorted keys writes a mapping key by key, so the pieces joined in key
  order are the whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..lock import RunLock, dump_yaml
from .childyaml import yaml_line

PER_TASK = ("id", "created", "config")  # the keys of run.lock rendered for each task, in order
_ABSENT = object()


def config_part(key: str, value: Any) -> str:
    """The lines of run.lock's `config:` mapping for one top-level key: `dump_yaml` renders a
    block mapping key by key, so these lines joined in the keys' order equal the whole
    mapping's (rendered under `config:`, so long strings fold at the same columns)."""
    return dump_yaml({"config": {key: value}}).removeprefix("config:\n")


def canonical(value: Any) -> str:
    """JSON as `RunLock.digest` writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class LockParts:
    """What the locks of one worker's children share, rendered once.

    `shared` is a lock with everything the children share (its id, created and config are
    left out); `config` is the batch's config as every child's lock holds it (redacted), but
    for the keys a task sets; None where the children's configs share nothing (a config with
    interpolations, resolved per task)."""

    def __init__(self, shared: RunLock, config: dict[str, Any] | None) -> None:
        self._parts: list[str | None] = []  # YAML text, or None where a per-task key goes
        run: dict[str, Any] = {}
        for key, value in shared.to_dict().items():
            if key in PER_TASK:
                if run:
                    self._parts.append(dump_yaml(run))
                    run = {}
                self._parts.append(None)
            else:
                run[key] = value
        if run:
            self._parts.append(dump_yaml(run))
        self._config = config or {}
        self._yaml = {k: config_part(k, v) for k, v in self._config.items()}
        # The digest: the identity's parts but the config, as JSON (`RunLock.identity`).
        self._shared = (shared.name, shared.sources, shared.data, shared.stages, shared.env)
        ident = shared.identity()
        ident.pop("config", None)
        self._rest = ",".join(f"{json.dumps(k)}:{canonical(ident[k])}" for k in sorted(ident))
        self._json: dict[str, str] = {}  # a shared config key's JSON, made on first use

    def _shared_value(self, key: Any, value: Any) -> bool:
        return self._config.get(key, _ABSENT) is value

    # -- run.lock's text --------------------------------------------------------------------
    def text(self, lock: RunLock) -> str:
        """`lock.to_yaml()`, from the parts."""
        config = lock.config
        patch = bool(config) and bool(self._config)
        per_task = {
            k: yaml_line(k, v) or dump_yaml({k: v})
            for k, v in ((k, getattr(lock, k)) for k in PER_TASK)
            if not (patch and k == "config")
        }
        if patch:
            per_task["config"] = "config:\n" + "".join(
                self._yaml[k]
                if self._shared_value(k, v)
                else (yaml_line(k, v, "  ") or config_part(k, v))
                for k, v in config.items()
            )
        pending: Iterator[str] = iter(per_task[k] for k in PER_TASK)
        return "".join(part if part is not None else next(pending) for part in self._parts)

    # -- the digest -------------------------------------------------------------------------
    def digest(self, lock: RunLock) -> str | None:
        """`lock.digest()`, from the parts; None where `lock` is not made of them (its name,
        sources, data, stages or environment are not the worker's, or it has flags)."""
        if lock.flags or lock.name != self._shared[0]:
            return None
        if any(a is not b for a, b in zip(self._shared[1:], _shared_parts(lock), strict=True)):
            return None
        config = lock.config
        keys = [k for k in config if k != "save_dir"]
        if any(type(k) is not str for k in keys):
            return None  # json sorts and writes other keys its own way: leave it to json
        pieces = []
        for key in sorted(keys):
            value = config[key]
            if self._shared_value(key, value):
                text = self._json.get(key)
                if text is None:
                    text = self._json[key] = canonical(value)
            else:
                text = canonical(value)
            pieces.append(f"{json.dumps(key)}:{text}")
        ident = '{"config":{' + ",".join(pieces) + "}," + self._rest + "}"
        import blake3  # banned at module level (TID253): only when a child is indexed

        return blake3.blake3(ident.encode("utf-8")).hexdigest()


def _shared_parts(lock: RunLock) -> tuple[Any, ...]:
    return (lock.sources, lock.data, lock.stages, lock.env)


class ChildLock(RunLock):
    """A child's RunLock, whose digest comes from its worker's LockParts (the same value as
    `RunLock.digest`, without converting the whole config to JSON for each child)."""

    parts: LockParts | None = None  # a class default, not a field: not in run.lock

    def digest(self) -> str:
        parts = self.parts
        found = parts.digest(self) if parts is not None else None
        return found if found is not None else super().digest()
