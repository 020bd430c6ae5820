"""A Hydra callback: each job of an unmodified `@hydra.main` app becomes a tether run.

Set it on the command line or in the app's primary config:

    python app.py hydra.callbacks.tether._target_=tether.integrations.hydra.TetherCallback
    python app.py -m model=small,wide lr=0.1,0.01 +hydra.callbacks.tether._target_=...

    hydra:
      callbacks:
        tether:
          _target_: tether.integrations.hydra.TetherCallback
          data: [data.path]        # config keys holding data paths (hashed, recorded)
          snapshot: true           # the app's source, as for a decorated main

A job is a run named after Hydra's job name, its config the job's composed config (the `hydra`
section left out, interpolations kept), its source snapshotted and its data keys hashed; the
app's `tether.History()` logs to it, since the run is current while the job runs. A multirun is
a batch: a parent run named `<job>+batch` (its config the sweep's overrides) and one child run
per job, on any of Hydra's launchers: the parent's id goes to the jobs through the environment
(`TETHER_HYDRA_PARENT`), so launchers that run jobs in other processes (joblib) still attach
them. Hydra's own behaviour (its output folder, `hydra.utils.instantiate`, `_target_`) does not
change. Hydra calls the methods below; nothing of Hydra is imported here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..batches.driver import BATCH_SUFFIX
from ..session.options import SnapshotOptions
from ..session.start import start_run

PARENT_ENV = "TETHER_HYDRA_PARENT"


def _job_config(config: Any) -> dict[str, Any]:
    """The job's config as plain data, without Hydra's own section."""
    from omegaconf import OmegaConf  # heavy: only in a Hydra job

    data = OmegaConf.to_container(config, resolve=False)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return {str(k): v for k, v in data.items()}


def _hydra(config: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf  # heavy: only in a Hydra job

    try:
        return OmegaConf.select(config, f"hydra.{key}", default=default)
    except Exception:  # an interpolation Hydra resolves only in its own context
        return default


class TetherCallback:
    """Records Hydra jobs as tether runs (see the module docstring)."""

    def __init__(
        self,
        data: Sequence[str] = (),
        snapshot: bool = True,
        name: str | None = None,
        tags: Sequence[str] = (),
        label: str | None = None,
        runs_dir: str | None = None,
    ) -> None:
        self.data = list(data)
        self.snapshot = snapshot
        self.name = name
        self.tags = list(tags)
        self.label = label
        self.runs_dir = runs_dir
        self._job: contextlib.ExitStack | None = None
        self._run: Any = None
        self._batch: contextlib.ExitStack | None = None

    # -- a multirun: the batch ------------------------------------------------------------
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        name = self.name or _hydra(config, "job.name", "hydra_app")
        overrides = list(_hydra(config, "overrides.task", []) or [])
        stack = contextlib.ExitStack()
        parent = stack.enter_context(
            start_run(
                {"overrides": overrides, "sweep_dir": _hydra(config, "sweep.dir")},
                name=f"{name}{BATCH_SUFFIX}",
                runs_dir=self.runs_dir,
                snapshot=SnapshotOptions(enabled=False),
                capture_output=False,
                tags=self.tags,
                label=self.label,
                command=[sys.executable, *sys.argv],
            )
        )
        self._batch = stack
        os.environ[PARENT_ENV] = parent.id  # jobs in other processes (joblib launcher) too

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        os.environ.pop(PARENT_ENV, None)
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    # -- a job: one run -------------------------------------------------------------------
    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        name = self.name or _hydra(config, "job.name", "hydra_app")
        overrides = list(_hydra(config, "overrides.task", []) or [])
        stack = contextlib.ExitStack()
        self._run = stack.enter_context(
            start_run(
                _job_config(config),
                name=name,
                runs_dir=self.runs_dir,
                snapshot=self.snapshot,
                data=self.data,
                tags=self.tags,
                label=self.label,
                parent=os.environ.get(PARENT_ENV) or None,
                capture_output=False,  # Hydra logs the job's output itself (its job folder)
                command=[sys.executable, *sys.argv[:1], *overrides],
            )
        )
        self._job = stack

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        stack, self._job = self._job, None
        if stack is None:
            return
        status = getattr(getattr(job_return, "status", None), "name", "COMPLETED")
        value = getattr(job_return, "_return_value", None)
        if status == "COMPLETED":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                with contextlib.suppress(Exception):
                    self._run.log_metrics({"return": float(value)})
            stack.close()
        else:
            exc = value if isinstance(value, BaseException) else RuntimeError(str(value))
            with contextlib.suppress(BaseException):  # Hydra reports the job's error itself
                stack.__exit__(type(exc), exc, exc.__traceback__)
        self._run = None
