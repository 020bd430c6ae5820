"""The study of a search, in its batch run folder: storage, sampler, pruner, warm start.

The study is an Optuna JournalStorage file, `study.journal`, in the batch run folder. Its lock
is Optuna's `JournalFileOpenLock` (a lock file made by exclusive creation), which holds on
NFS and Lustre where `flock` may not: workers on several hosts append to one file. Every
worker process opens the study itself (nothing of Optuna is pickled), so the sampler state is
rebuilt from the journal: a worker started after a kill sees every trial told so far.

Optuna is imported only here and only when a search runs (an extra: `pip install
tether[optuna]`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..track.trial import make_pruner
from .space import Dimension, SearchSpec

STUDY_FILE = "study.journal"
STUDY_NAME = "search"
SLOT_ATTR = "tether_slot"  # the task-pool index a trial was asked for
RUN_ATTR = "tether_run"  # the child run of a trial
WARM_ATTR = "tether_warm"  # a trial copied from an earlier run (--warm-start): its run


def optuna() -> Any:
    try:
        import optuna as module  # noqa: PLC0415 (heavy, an extra: only when a search runs)
    except ImportError:
        raise TetherError(
            "--optimize needs Optuna, which is not installed",
            "pip install 'tether[optuna]' (or pip install optuna)",
        ) from None
    module.logging.set_verbosity(module.logging.WARNING)
    return module


def storage(folder: Path) -> Any:
    """The journal storage of the study in `folder` (created on first use)."""
    opt = optuna()
    journal = opt.storages.journal
    path = str(Path(folder) / STUDY_FILE)
    backend_cls = getattr(journal, "JournalFileBackend", None)
    if backend_cls is None:  # Optuna < 4: the older name
        backend_cls = opt.storages.JournalFileStorage
    lock = journal.JournalFileOpenLock(path)
    return journal.JournalStorage(backend_cls(path, lock_obj=lock))


def distribution(dim: Dimension) -> Any:
    dists = optuna().distributions
    if dim.kind == "categorical":
        return dists.CategoricalDistribution(dim.choices)
    if dim.kind == "int":
        return dists.IntDistribution(int(dim.low or 0), int(dim.high or 0), log=dim.log)
    return dists.FloatDistribution(float(dim.low or 0.0), float(dim.high or 0.0), log=dim.log)


def distributions(spec: SearchSpec) -> dict[str, Any]:
    return {d.name: distribution(d) for d in spec.dimensions}


def sampler(spec: SearchSpec, slot: int = 0) -> Any:
    """The sampler of the search, for the trial of task-pool slot `slot`. With `--seed S` each
    slot's draw is seeded `S + slot`: workers that ask at the same moment (or a resumed search
    asking again) never draw the same point, and a serial search repeats exactly."""
    opt = optuna()
    samplers = opt.samplers
    seed = None if spec.seed is None else spec.seed + slot
    if spec.algorithm == "tpe":
        return samplers.TPESampler(seed=seed, n_startup_trials=min(10, spec.trials))
    if spec.algorithm == "random":
        return samplers.RandomSampler(seed=seed)
    if spec.algorithm == "grid":
        space = {d.name: list(d.choices) for d in spec.dimensions}
        return samplers.GridSampler(space, seed=seed)
    try:
        import cmaes  # noqa: F401, PLC0415 (only to say what is missing)
    except ImportError:
        raise TetherError(
            "--optimize cmaes needs the cmaes package, which is not installed",
            "pip install cmaes (or use --optimize tpe)",
        ) from None
    return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def pruner(spec: SearchSpec) -> Any:
    return make_pruner(optuna(), spec.prune)


def open_study(folder: Path, spec: SearchSpec) -> Any:
    """The study of the search in `folder`, made on first use with the spec's direction."""
    opt = optuna()
    return opt.create_study(
        study_name=STUDY_NAME,
        storage=storage(folder),
        sampler=sampler(spec),
        pruner=pruner(spec),
        direction=spec.direction,
        load_if_exists=True,
    )


def load_study(folder: Path) -> Any:
    """The study in `folder` as it is (for reading: `tether show`)."""
    return optuna().load_study(study_name=STUDY_NAME, storage=storage(folder))


def has_study(folder: Path) -> bool:
    return (Path(folder) / STUDY_FILE).is_file()


# -- warm start -------------------------------------------------------------------------------
def inputs_digest(lock: Any) -> str | None:
    """What a run's code and data were, as one digest (None: not known yet): its sources'
    commits, trees or manifests and its data digests."""
    parts: list[Any] = []
    for src in getattr(lock, "sources", []) or []:
        ident = src.tree or src.manifest or src.commit
        if ident is None or (src.dirty and not src.manifest):
            return None
        parts.append([src.path, ident])
    for data in getattr(lock, "data", []) or []:
        if data.status != "done" or not data.digest:
            return None
        parts.append([data.key or data.path, data.digest])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def warm_start(study: Any, spec: SearchSpec, store: Any, op_name: str, digest: str) -> int:
    """Copy into the study the completed runs of `op_name` (outside this batch) whose code and
    data digest is `digest` and whose flags lie in the space; how many were added."""
    opt = optuna()
    dists = distributions(spec)
    seen = {t.user_attrs.get(WARM_ATTR) for t in study.get_trials(deepcopy=False)}
    added = 0
    for row in store.list():
        if row.name != op_name or row.status != "completed" or row.id in seen:
            continue
        with contextlib.suppress(Exception):
            record = store.load(row.id)
            if inputs_digest(record.lock) != digest:
                continue
            flags = record.lock.flags or {}
            if any(flags.get(k) != v for k, v in spec.fixed.items()):
                continue
            params = {name: flags[name] for name in dists if name in flags}
            if len(params) != len(dists):
                continue
            value = (record.metrics().get(spec.key) or {}).get("last")
            if value is None:
                continue
            for name, dist in dists.items():
                if not dist._contains(dist.to_internal_repr(params[name])):
                    raise ValueError(name)
            trial = opt.trial.create_trial(
                params=params,
                distributions=dists,
                value=float(value),
                user_attrs={WARM_ATTR: row.id},
            )
            study.add_trial(trial)
            added += 1
    return added
