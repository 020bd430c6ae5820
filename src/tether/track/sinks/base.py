"""The Sink interface: where History sends metric rows besides metrics.jsonl.

A sink is a class registered under the entry-point group `tether.sinks`; the built-ins (`jsonl`,
`mlflow`, `wandb`, `tensorboard`) are registered in tether's own pyproject.toml exactly as a
third-party package would register its own:

    [project.entry-points."tether.sinks"]
    mysink = "mypackage.sinks:MySink"

History calls a sink from its background thread only: `open` once (before the first rows),
`write` with each flushed batch, `close` at the end. A sink that raises is retried with backoff
(`SinkRunner`); when it keeps failing it is switched off for the rest of the run, the error is
printed (so it lands in output.log) and recorded in summary.json under `sinks`, and the run goes
on: its rows stay in metrics.jsonl, from where a later `tether mlflow sync` (or re-opening the
run with `tether.open_run`) sends them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ... import plugins
from ...errors import TetherError, did_you_mean

GROUP = "tether.sinks"
Row = dict[str, Any]

# Files of a run that sinks which keep artifacts (MLflow) upload at the end, when present.
RUN_ARTIFACTS = ("run.lock", "output.log", "report.md", "summary.json")


@dataclass
class SinkContext:
    """What a sink knows about the rows it receives and the run they belong to."""

    run_dir: Path | None = None  # the run folder (None for a History writing a bare file)
    run_id: str | None = None
    run_name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config of run.lock
    runs_root: Path | None = None
    status: str | None = None  # the run's status when it is already finished (open_run, sync)
    started: str | None = None  # UTC ISO-8601 times from state.json
    stopped: str | None = None
    source_commit: str | None = None
    label: str | None = None
    tags: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # what the sink recorded last time
    new: bool = False  # open a fresh destination that supersedes the recorded one
    extra_artifacts: list[Path] = field(default_factory=list)  # registered by open_run users
    # This process records the run's end (session.lifecycle): `Sink.ended` follows `close`.
    after_end: bool = False
    # The rows of the run's metrics.jsonl from a row number on (a sink that sends them late).
    rows: Callable[[int], Iterator[Row]] | None = None

    def artifact_files(self) -> list[Path]:
        """The run's record files that exist (run.lock, output.log, report.md, summary.json,
        the PNGs of plots/), then the extra artifacts."""
        files: list[Path] = []
        if self.run_dir is not None:
            files += [self.run_dir / n for n in RUN_ARTIFACTS if (self.run_dir / n).is_file()]
            plots = self.run_dir / "plots"
            if (self.run_dir / "report.md").is_file() and plots.is_dir():
                files += sorted(plots.glob("*.png"))
        files += [p for p in self.extra_artifacts if p.exists() and p not in files]
        return files


class Sink:
    """Base class of metric sinks. Subclasses set `name` and override what they need."""

    name: ClassVar[str] = "sink"

    def open(self, ctx: SinkContext) -> int | None:
        """Connect. Return how many rows of the run's metrics.jsonl (counted from its start) the
        destination already holds, so History sends the rest first; None means as many as
        `ctx.state["rows"]` says (0 when nothing was recorded)."""
        return None

    def write(self, rows: Sequence[Row], first: int) -> None:
        """Send rows `{"step"?: int, "t": float, key: number, ...}`; `first` is the position of
        `rows[0]` among all the rows of metrics.jsonl (a step for rows that have none)."""

    def close(self, status: str | None, ctx: SinkContext) -> None:
        """Finish: `status` is the run's final status (`completed`, `failed`, `terminated`),
        or None when only the History closes. Upload artifacts here (`ctx.artifact_files()`)."""

    def ended(self, ctx: SinkContext) -> None:
        """The run's record is complete (final state.json, manifest.json), in the process that
        recorded it (`ctx.after_end` is true at `close` then): work after the run starts here
        (the MLflow sink's background sync). Not called by `open_run`, a batch task's run or a
        process attached to a run."""

    def info(self) -> dict[str, Any]:
        """What to remember in summary.json (`sinks.<name>`), handed back as `ctx.state`; a
        key given as None is left out."""
        return {}


def sink_names() -> list[str]:
    """Names of the installed sinks (entry points of the group `tether.sinks`)."""
    return plugins.names(GROUP)


def load_sink(spec: str | Sink | type[Sink], **options: Any) -> Sink:
    """A sink from its entry-point name (`"mlflow"`), a Sink class or a Sink instance."""
    if isinstance(spec, Sink):
        return spec
    if isinstance(spec, type) and issubclass(spec, Sink):
        return spec(**options)
    if not isinstance(spec, str):
        raise TetherError(f"not a sink: {spec!r}", "give a sink name, a Sink class or instance")
    found = plugins.by_name(GROUP)
    if spec not in found:
        names = sorted(found)
        hint = did_you_mean(spec, names)
        raise TetherError(
            f"no metric sink {spec!r}",
            (f"did you mean {hint!r}? " if hint else "")
            + f"(installed: {', '.join(names) or 'none'}; sinks are entry points of {GROUP})",
        )
    cls = found[spec].load()
    sink = cls(**options)
    if not isinstance(sink, Sink):
        raise TetherError(f"entry point {spec!r} of {GROUP} does not make a tether Sink")
    return sink


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class SinkRunner:
    """Calls one sink with retries and backoff, and keeps its status for summary.json.

    Each call is tried `TETHER_SINK_TRIES` times (default 3), waiting `TETHER_SINK_BACKOFF`
    seconds (default 0.5) and doubling. When every try fails the sink is switched off: later
    calls do nothing, and `state` says `failed` with the error.
    """

    def __init__(self, sink: Sink, report: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self.name = sink.name
        self.report = report or _stderr
        self.tries = max(1, int(_env_number("TETHER_SINK_TRIES", 3)))
        self.backoff = max(0.0, _env_number("TETHER_SINK_BACKOFF", 0.5))
        self.opened = False
        self.failed = False
        self.rows = 0  # rows of metrics.jsonl the destination holds
        self.error: str | None = None
        self.retried = 0

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "status": "failed" if self.failed else ("ok" if self.opened else "pending"),
            "rows": self.rows,
        }
        if self.error:
            state["error"] = self.error
        if self.retried:
            state["retries"] = self.retried
        try:
            state.update(self.sink.info())
        except Exception:
            pass
        return {k: v for k, v in state.items() if v is not None}

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """(True, result) when `fn(*args)` succeeded within the tries; (False, None) when not."""
        if self.failed:
            return False, None
        delay = self.backoff
        for attempt in range(1, self.tries + 1):
            try:
                return True, fn(*args)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
                missing = isinstance(exc, ImportError)
                if missing:
                    message += f" (install it: pip install 'tether[{self.name}]')"
                if attempt < self.tries and not missing:
                    self.retried += 1
                    time.sleep(delay)
                    delay *= 2
                    continue
                self.failed = True
                self.error = f"{what}: {message}"
                tries = f"{attempt} {'try' if attempt == 1 else 'tries'}"
                self.report(
                    f"tether: metric sink {self.name!r} failed ({what}, {tries}): "
                    f"{message}; the run goes on without it and its metrics stay in "
                    "metrics.jsonl (send them later with `tether mlflow sync` or "
                    "`tether.open_run`)"
                )
        return False, None


def _stderr(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except Exception:
        pass


def describe(summary: dict[str, Any]) -> list[str]:
    """Lines for `tether show`: one per sink recorded in summary.json, with its error."""
    lines = []
    for name, state in sorted((summary.get("sinks") or {}).items()):
        if not isinstance(state, dict):
            continue
        status = state.get("status", "?")
        where = state.get("uri") or state.get("dir") or ""
        run = state.get("run_id")
        text = f"{name}: {status}, {state.get('rows', 0)} rows"
        if where:
            text += f" -> {where}"
        if run:
            text += f" (run {run})"
        if state.get("error"):
            text += f"; error: {state['error']}"
        lines.append(text)
    return lines
