"""`tether.History`: metrics that cost nothing to log, flushed in the background.

    history = tether.History()              # inside a run: that run's metrics.jsonl
    history.update({"train/loss": loss, "train/acc": acc}, step=i)

`update` checks the values and appends one row to an in-memory buffer; a background thread
writes the buffer to `metrics.jsonl` (one JSON object per line: `{"step": .., "t": .., key:
number, ...}`) and to every sink at most every `flush_every` seconds or `flush_rows` rows, when
`flush()` or `close()` is called, when the run ends and at interpreter exit, so a training loop
never waits on disk or network. `summary.json` (and the run's index row, so `tether runs` and
`tether show` see live values) keeps, per key, the last value, the min, the max and the last
step; it is rewritten with the rows at most every `flush_every` seconds.

A run that is continued (a requeued batch task, `tether run --restart RUN`, a script attached to
a run) resumes after the last step its metrics.jsonl holds: `start_step` is the step after it,
and rows logged again at or before it (a loop gone back to its last checkpoint) are not written
twice.

Values: Python numbers, NumPy scalars and one-element torch tensors. Tensors are kept as they
are (detached) and converted at flush time, all of one device at once, so logging a CUDA loss
costs no device sync per step: one per flush. NaN and infinities are recorded as they are
(`NaN`, `Infinity` in the file) and flagged (`"nonfinite": true` in the summary, one warning per
key); min and max skip NaN. Anything else (a string, None, a list, a tensor of many elements)
raises TetherError naming the key; a key whose type changes (int to float, float to bool)
warns once.

With `reduce=True`, when torch.distributed is initialised with more than one rank, the rows are
reduced across ranks in the caller's thread (collectives must run in the same order on every
rank): the key sets are compared first (a mismatch is a TetherError on every rank, not a hang),
then one all_gather carries every value of the batch, and `key` (the mean), `key/min`,
`key/max` and `key/std` are recorded. Only rank 0 writes files and sinks; the other ranks'
unreduced rows are dropped. Reductions happen every few updates, a count the ranks agree on so
that they come about every `flush_every` seconds, and at `flush()`/`close()`, which every rank
must call (the run's end does).

This module is the handle; the rest lives beside it: the buffer, statistics and flush thread in
tether.track.writer, value checks and conversion in tether.track.values, and the metrics.jsonl
reader in tether.track.metrics_file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from time import time as _now
from typing import Any

from ..context import current_or_attached_run
from ..errors import TetherError
from ..store.layout import METRICS
from . import plots, report
from .feeds import add_sink, env_sinks
from .handle import TrackedRun
from .metrics_file import read_metrics
from .reduce import distributed
from .sinks.base import Row, Sink
from .trial import TRIAL as _TRIAL
from .trial import report as _report_trial
from .values import as_step
from .writer import Core


class History:
    """Metrics of a run (or of a file) logged without waiting: see the module docstring.

    `run`: the run whose metrics.jsonl and summary.json to write (default: the current run, or,
    in a process tether started for a run, that run). `path`: a metrics.jsonl to write instead
    (its summary.json goes beside it). With neither, rows are kept in memory (`rows()`). All
    History objects of one run share one buffer, file and thread (the first one's `flush_every`
    and `flush_rows` hold). `sinks`: names of `tether.sinks` entry points (`"mlflow"`,
    `"wandb"`, `"tensorboard"`, ...) or Sink objects, besides metrics.jsonl.
    """

    def __init__(
        self,
        run: TrackedRun | None = None,
        path: str | os.PathLike[str] | None = None,
        flush_every: float = 2.0,
        flush_rows: int = 1000,
        sinks: Sequence[str | Sink] | None = None,
    ) -> None:
        if run is None and path is None:
            # In a process tether started for a run: that run (tether.session.attach).
            run = current_or_attached_run()
        if run is not None and path is None:
            core = run._history_core
            if core is None:
                own = getattr(run, "rank_dir", None)
                if own is not None:
                    # A rank other than 0 of a run: its own rows in ranks/<rank>/, no index and
                    # no sinks (rows reduced to rank 0 are rank 0's to write).
                    Path(own).mkdir(parents=True, exist_ok=True)
                    core = Core(
                        run=None,
                        path=Path(own) / METRICS,
                        flush_every=flush_every,
                        flush_rows=flush_rows,
                    )
                    core.per_rank = True
                else:
                    core = Core(
                        run=run,
                        path=run.dir / METRICS,
                        flush_every=flush_every,
                        flush_rows=flush_rows,
                    )
                    for name in env_sinks():
                        add_sink(core, name)
                run._history_core = core
        else:
            core = Core(
                run=None,
                path=Path(path).absolute() if path is not None else None,
                flush_every=flush_every,
                flush_rows=flush_rows,
            )
        self._core = core
        for spec in sinks or ():
            add_sink(core, spec)

    # -- logging ----------------------------------------------------------------------------
    def update(
        self, values: Mapping[str, Any], step: int | None = None, reduce: bool = False
    ) -> None:
        """Record `values` ({key: number}) at `step`. Returns at once; see the class doc."""
        # The hot path of a training loop: a value whose type is its key's plain type (a float
        # under a key of floats, a NumPy float32 under a key of them) needs no check here and
        # becomes a number in the flush thread; one `is` test per value, a copy of the mapping,
        # one clock read and one append. Anything else goes through Core.check.
        core = self._core
        try:
            items = values.items()
        except AttributeError:
            raise TetherError(
                f"History.update takes a mapping of metric names to numbers, not "
                f"{type(values).__name__}"
            ) from None
        if core.closed:
            raise TetherError(
                "this History is closed (its run has ended)",
                "add metrics to a finished run with tether.open_run(RUN)",
            )
        plain = core.plain
        for key, value in items:
            if plain.get(key) is not type(value):
                row = core.check(values)
                break
        else:
            row = values.copy() if type(values) is dict else dict(values)
        # `t` is written rounded to milliseconds (the encoder's %.3f), not rounded here. Both
        # go last (the file puts them first: tether.track.batch).
        row["t"] = _now()
        if step is not None:
            if type(step) is not int:
                step = as_step(step)
            row["step"] = step
        if reduce and distributed():
            core.reduce_used = True
            core.reduce_pending.append(row)
            if len(core.reduce_pending) >= core.reduce_every:
                core.reduce_now()
        else:
            pending = core.pending
            pending.append(row)
            if len(pending) >= core.flush_rows and not core.asked:
                # Once a batch: until the thread takes it (up to a switch interval, 5 ms, with
                # the GIL held here) every update would set the event again, ~1 us each.
                core.asked = True
                core._wake.set()
        if core._thread is None:
            core.ensure_thread()
        if _TRIAL is not None:  # a trial of a search: the objective to its study (trial.py)
            _report_trial(values, step, self.flush)

    log = update

    def flush(self, timeout: float | None = None) -> None:
        """Write everything logged so far (files, summary, sinks) and wait until it is done."""
        self._core.flush(timeout)

    def close(self, status: str | None = None) -> None:
        """Flush and close the file and the sinks. A run's History closes when the run ends."""
        self._core.close(status)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sinks ------------------------------------------------------------------------------
    def add_sink(self, spec: str | Sink, **options: Any) -> Sink:
        """Also send rows to this sink (a `tether.sinks` name or a Sink); it receives the rows
        logged before too."""
        return add_sink(self._core, spec, **options)

    @property
    def sinks(self) -> list[Sink]:
        return [r.sink for r in self._core.runners]

    # -- reading ----------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The metrics.jsonl written (None for a History kept in memory)."""
        return self._core.path

    @property
    def run(self) -> TrackedRun | None:
        return self._core.run

    @property
    def start_step(self) -> int:
        """The step to start from: 0 for a new run; for a continued run (a requeued task,
        `tether run --restart`) one after the last step its metrics.jsonl held when this
        process opened it. Rows logged at or before that step are not written again."""
        resumed = self._core.resumed
        return resumed.step + 1 if resumed is not None else 0

    def keys(self) -> list[str]:
        """Metric keys in the order they were first logged."""
        return [k for k in self._core.kinds] or list(self._core.stats)

    def groups(self) -> dict[str, list[str]]:
        """Keys by prefix: `{"train": ["train/loss", ...], "eval": [...], "": [unprefixed]}`."""
        out: dict[str, list[str]] = {}
        for key in self.keys():
            group = key.split("/", 1)[0] if "/" in key else ""
            out.setdefault(group, []).append(key)
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """`{key: {"last", "min", "max", "step"[, "nonfinite"]}}` of what was flushed."""
        self.flush()
        return {k: dict(v) for k, v in self._core.stats.items()}

    def rows(self) -> list[Row]:
        """Every row logged (after a flush): read back from the file, or kept in memory."""
        self.flush()
        core = self._core
        if core.memory is not None:
            return [dict(r) for r in core.memory]
        assert core.path is not None
        return read_metrics(core.path)

    def series(self, key: str) -> tuple[list[Any], list[Any]]:
        """(steps, values) of one key; a row without a step counts by its position."""
        steps, values = [], []
        for i, row in enumerate(self.rows()):
            if key in row:
                steps.append(row.get("step", i))
                values.append(row[key])
        return steps, values

    # -- plots and reports (tether.track.plots / tether.track.report) -----------------------
    def _source(self) -> Path:
        self.flush()
        if self._core.path is None:
            raise TetherError(
                "this History keeps its rows in memory",
                "give it a run or a path to plot or report",
            )
        return self._core.path

    def plot(self, keys: Sequence[str] | None = None, **options: Any) -> Any:
        """Chart the metrics (in the terminal, or as PNGs with `png=True`): `tether plot`."""
        return plots.plot(self._source(), keys, **options)

    def report(self, out: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """Write report.md with the summary table and PNG charts: `tether report`."""
        return report.write_report(self._source().parent, out, **options)

    def __repr__(self) -> str:
        where = self._core.path or "memory"
        return f"History({where}, keys={len(self._core.kinds)})"
