"""A run that is a trial of a search reports its objective, step by step, to the study.

The worker of a search (tether.search.runner) starts each trial's command with `TETHER_TRIAL`
set: a JSON object naming the study file, the trial and the objective key. This module reads
that variable once, at import: History.update calls `report` only when it was set, so a run
that is no trial pays one comparison per update and imports nothing more.

Each update holding the objective key reports its value at the update's step; when the study's
pruner says so the trial stops: its History is flushed and `TrialPruned` (a SystemExit, so no
traceback) ends the process with `PRUNED_EXIT`, which the worker records as a pruned trial
(the run `terminated`, tagged `pruned`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

TRIAL_ENV = "TETHER_TRIAL"
PRUNED_EXIT = 77  # the exit code of a pruned trial's process (EX_NOPERM is not taken by tether)


def _read(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(spec, dict) or not {"study", "trial", "key"} <= spec.keys():
        return None
    return spec


TRIAL: dict[str, Any] | None = _read(os.environ.get(TRIAL_ENV))


class TrialPruned(SystemExit):
    """The study's pruner stopped this trial (exits with PRUNED_EXIT, no traceback)."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(PRUNED_EXIT)
        self.step = step
        self.value = value


def make_pruner(optuna: Any, name: str | None) -> Any:
    """The pruner `--prune NAME` asks for. Optuna does not store it in the study: the worker
    that makes the study and each trial that asks `should_prune` build the same one here."""
    pruners = optuna.pruners
    if name == "median":
        # Not before 3 trials have completed, nor at a trial's first step (one value says
        # little about a curve).
        return pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return pruners.HyperbandPruner()
    return pruners.NopPruner()


class _Reporter:
    """The trial of this process, opened on its first report (Optuna loads only then)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.key = str(spec["key"])
        self.trial: Any = None
        self.steps = 0

    def open(self) -> Any:
        import optuna  # noqa: PLC0415 (heavy, an extra: only in a trial, at its first report)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storages: Any = optuna.storages  # `journal` is a subpackage mypy's stubs miss
        journal = storages.journal
        path = str(self.spec["study"])
        backend = getattr(journal, "JournalFileBackend", None) or storages.JournalFileStorage
        storage = journal.JournalStorage(backend(path, lock_obj=journal.JournalFileOpenLock(path)))
        study = optuna.load_study(
            study_name=str(self.spec["name"]),
            storage=storage,
            pruner=make_pruner(optuna, self.spec.get("prune") or None),
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            study._study_id, int(self.spec["trial"])
        )
        return optuna.Trial(study, trial_id)

    def report(self, value: Any, step: int | None) -> bool:
        if self.trial is None:
            self.trial = self.open()
        step = self.steps if step is None else int(step)
        self.steps = step + 1
        self.trial.report(float(value), step)
        return bool(self.spec.get("prune")) and bool(self.trial.should_prune())


_reporter: _Reporter | None = None


def report(values: Any, step: int | None, flush: Any) -> None:
    """History.update's hook in a trial: report the objective, stop when pruned. `flush`
    writes what History holds first, so the pruned run's metrics are complete."""
    global _reporter
    spec = TRIAL
    if spec is None or spec["key"] not in values:
        return
    if _reporter is None:
        _reporter = _Reporter(spec)
    value = values[spec["key"]]
    if _reporter.report(value, step):
        flush()
        # Worded so that no scalar pattern of the op (`key: value`) reads a metric in it.
        print(
            f"tether: trial {spec['trial']} pruned by the search at step {_reporter.steps - 1}",
            file=sys.stderr,
        )
        raise TrialPruned(_reporter.steps - 1, float(value))
