"""The handle a running experiment gets: its folder, config, upstream stages and metrics."""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TetherError
from ..store import RunRecord, Store

if TYPE_CHECKING:
    from ..track.history import History
    from ..track.writer import Core

# Sinks that the next Run made in this context takes on (`@tether.mlflow` above a decorator
# that starts the run itself).
_sink_requests: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "tether_sink_requests", default=()
)


@contextlib.contextmanager
def sinks_for_next_run(*sinks: Any) -> Iterator[None]:
    """Runs started inside this block send their metrics to `sinks` as well."""
    token = _sink_requests.set((*_sink_requests.get(), *sinks))
    try:
        yield
    finally:
        _sink_requests.reset(token)


def _take_sink_requests() -> tuple[Any, ...]:
    requests = _sink_requests.get()
    if requests:
        _sink_requests.set(())  # the first run takes them, not the runs it starts
    return requests


class Run:
    """The handle a running experiment gets: its folder, config and a few record helpers."""

    def __init__(
        self,
        store: Store,
        record: RunRecord,
        cfg: Any,
        stages: dict[str, Path] | None = None,
    ) -> None:
        self.store = store
        self.record = record
        self.cfg = cfg
        self.stages: dict[str, Path] = dict(stages or {})
        self._history_core: Core | None = None  # made by the first History of the run
        # Attached (tether.session.attach): this process works for a run another one owns.
        self.attached = False
        # A rank other than 0 of an attached run: where its own files go (ranks/<rank>/).
        self.rank_dir: Path | None = None
        # This process records the run's end (session.lifecycle): sinks may work after it.
        self.records_end = False
        for request in _take_sink_requests():
            # A factory makes a fresh sink per run; names and Sink classes load as usual.
            made = request() if callable(request) and not isinstance(request, type) else request
            self.add_sink(made)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def dir(self) -> Path:
        return self.record.dir

    @property
    def name(self) -> str:
        return self.record.name

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def stage(self, name: str) -> Path:
        """The folder of the upstream run recorded under `name`."""
        try:
            return self.stages[name]
        except KeyError:
            known = ", ".join(sorted(self.stages)) or "none"
            raise TetherError(f"this run has no stage {name!r} (stages: {known})")

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, dir={str(self.dir)!r})"

    # -- attributes -------------------------------------------------------------------------
    def set_label(self, label: str) -> None:
        self.store.add_attr(self.record, "label", label)

    def add_tag(self, *tags: str) -> None:
        for tag in tags:
            self.store.add_attr(self.record, "tag", tag)

    def note(self, text: str) -> None:
        self.store.add_attr(self.record, "note", text)

    # -- metrics ----------------------------------------------------------------------------
    @property
    def history(self) -> History:
        """The run's History: rows to metrics.jsonl (and sinks) from a background thread."""
        # heavy for a run that logs nothing: History, its writer thread, the sink registry
        from ..track.history import History  # noqa: PLC0415

        return History(run=self)

    def log_metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        """One row of metrics: `run.history.update(values, step=step)`.

        Returns at once; metrics.jsonl, summary.json and the index follow within
        `flush_every` seconds (2 by default), and completely when the run ends or at `flush()`.
        """
        self.history.update(values, step=step)

    def add_sink(self, spec: Any, **options: Any) -> Any:
        """Also send this run's metrics to a sink (`"mlflow"`, `"wandb"`, a Sink object)."""
        return self.history.add_sink(spec, **options)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Path:
        """Keep a file with the run: copied into the run folder (under `artifacts/`, unless it
        is already inside), and uploaded by sinks that keep artifacts (MLflow) at the end."""
        source = Path(path).absolute()
        if not source.exists():
            raise TetherError(f"no file {source} to keep with run {self.id}")
        run_dir = self.dir.resolve()
        if source.resolve().is_relative_to(run_dir):
            target = source
        else:
            target = self.dir / "artifacts" / (name or source.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)
        core = self.history._core
        if target not in core.artifacts:
            core.artifacts.append(target)
        return target

    def flush(self) -> None:
        """Write the metrics logged so far (metrics.jsonl, summary.json, index, sinks) now."""
        if self._history_core is not None:
            self._history_core.flush()

    def _close(self, status: str | None = None) -> None:
        """The run ends: flush and close its History and sinks (`status`: its final status)."""
        if self._history_core is not None:
            self._history_core.close(status)

    def _ended(self) -> None:
        """The run's record is complete: sinks that work after the run start (Sink.ended)."""
        if self._history_core is not None:
            self._history_core.ended()
