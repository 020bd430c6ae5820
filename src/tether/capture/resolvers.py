"""`${track:path}` and `${stage:ref}`: config resolvers that record inputs while resolving."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..store import open_store
from .lineage import find_upstream


@dataclass
class Collected:
    """What tether's config resolvers saw while a config was resolved: tracked keys and stage
    folders."""

    tracked: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)  # reference -> upstream folder
    store_root: str | None = None


_current: contextvars.ContextVar[Collected | None] = contextvars.ContextVar(
    "tether_resolvers", default=None
)
_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    # OmegaConf 2.4 deprecates register_new_resolver for register_resolver; in 2.3 the name
    # register_resolver is an older, different call (no replace=), so tell them apart by it.
    import inspect  # noqa: PLC0415 (heavy: only with OmegaConf, when a resolver registers)

    from omegaconf import OmegaConf

    new_api = getattr(OmegaConf, "register_resolver", None)
    if new_api is not None and "annotation_validation" not in inspect.signature(new_api).parameters:
        new_api = None
    for name, func in (("track", _track), ("stage", _stage)):
        if new_api is not None:
            new_api(name, func, replace=True, annotation_validation="off")
        else:
            OmegaConf.register_new_resolver(name, func, replace=True)
    _registered = True


def _track(path: Any) -> Any:
    collected = _current.get()
    if collected is not None and str(path) not in collected.tracked:
        collected.tracked.append(str(path))
    return path


def _stage(ref: Any) -> str:

    collected = _current.get()
    root = collected.store_root if collected else None
    record = find_upstream(open_store(root), str(ref))
    if collected is not None:
        collected.stages[str(ref)] = record.id
    return str(record.dir)


@contextlib.contextmanager
def collecting(store_root: str | None) -> Iterator[Collected]:
    collected = Collected(store_root=store_root)
    token = _current.set(collected)
    try:
        yield collected
    finally:
        _current.reset(token)
