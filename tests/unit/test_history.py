"""tether.History: values, buffering and flushing, summary, torn lines, sinks, faults."""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.errors import TetherError
from tether.track.history import History
from tether.track.metrics_file import iter_metrics, read_metrics
from tether.track.sinks import Sink, SinkContext, load_sink, sink_names
from tether.track.values import short32


def need(module: str) -> Any:
    """Import an optional package; skip without it, except in CI (make dev installs it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed (make dev installs it)")


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Recorder(Sink):
    """A sink that keeps what it receives."""

    name = "recorder"

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.opened: SinkContext | None = None
        self.closed_with: list[str | None] = []

    def open(self, ctx: SinkContext) -> int | None:
        self.opened = ctx
        return None

    def write(self, rows: Sequence[dict[str, Any]], first: int) -> None:
        self.rows += [(first + i, dict(r)) for i, r in enumerate(rows)]

    def close(self, status: str | None, ctx: SinkContext) -> None:
        self.closed_with.append(status)


class Broken(Sink):
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def write(self, rows: Sequence[dict[str, Any]], first: int) -> None:
        self.calls += 1
        raise ConnectionError("tracking server gone")


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SINK_BACKOFF", "0.01")
    monkeypatch.delenv("TETHER_SINKS", raising=False)


# -- values -----------------------------------------------------------------------------------
def test_numbers_numpy_and_bools_become_plain_json(tmp_path: Path) -> None:
    np = need("numpy")
    path = tmp_path / "metrics.jsonl"
    with History(path=path) as h:
        h.update({"a": 1, "b": 0.5, "c": np.float32(0.1), "d": np.int64(7), "e": True}, step=0)
        h.update({"a": 2, "f": np.array(3.5)}, step=np.int64(1))
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [0, 1]
    assert {k: rows[0][k] for k in "abcde"} == {"a": 1, "b": 0.5, "c": 0.1, "d": 7, "e": 1}
    assert rows[1]["f"] == 3.5
    assert all(isinstance(r["t"], float) for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert summary["a"] == {"last": 2, "min": 1, "max": 2, "step": 1}


def test_numpy_scalars_keep_their_numbers_and_float32_reads_as_numpy_prints_it(
    tmp_path: Path,
) -> None:
    """Each NumPy scalar type has its converter (float, int, or float32's NumPy text), chosen
    once per key: float64 stays exact, float32 is NumPy's shortest decimal, 9 digits and
    subnormals included, as float32 tensors are."""
    np = need("numpy")
    path = tmp_path / "metrics.jsonl"
    singles = [np.float32(x) for x in (0.1, -120.805145, 1.03491494e-26, 1e-45, 3.4e38)]
    with History(path=path) as h:
        for i, v in enumerate(singles):
            h.update({"x": v, "y": np.float64(v), "n": np.int64(i), "b": np.bool_(i % 2)}, step=i)
    rows = read_metrics(path)
    assert [r["x"] for r in rows] == [float(str(v)) for v in singles]
    assert [r["y"] for r in rows] == [float(v) for v in singles]
    assert [r["n"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["b"] for r in rows] == [0, 1, 0, 1, 0]
    torch = sys.modules.get("torch") or pytest.importorskip("torch")
    with History(path=tmp_path / "t.jsonl") as h:
        for i, v in enumerate(singles):
            h.update({"x": torch.tensor(float(v), dtype=torch.float32)}, step=i)
    assert [r["x"] for r in read_metrics(tmp_path / "t.jsonl")] == [r["x"] for r in rows]


# The CUDA case (one .tolist() per device and flush) needs a GPU: the device check covers it.
@pytest.mark.parametrize("device", ["cpu"])
def test_tensors_are_converted_at_flush_with_one_device_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    torch = need("torch")
    calls = {"tolist": 0, "stack": 0}
    real_tolist, real_stack = torch.Tensor.tolist, torch.stack

    def counting(self: Any) -> Any:
        calls["tolist"] += 1
        return real_tolist(self)

    def stacking(*args: Any, **kwargs: Any) -> Any:
        calls["stack"] += 1
        return real_stack(*args, **kwargs)

    def no_item(self: Any) -> Any:
        raise AssertionError(".item() forces one device sync per value, and hands the GIL off")

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    monkeypatch.setattr(torch.Tensor, "item", no_item)
    monkeypatch.setattr(torch, "stack", stacking)
    path = tmp_path / "metrics.jsonl"
    weight = torch.tensor(2.0, requires_grad=True, device=device)
    h = History(path=path, flush_every=60)
    for i in range(50):
        loss = weight * (1.0 / (i + 1))  # part of a graph: kept detached
        h.update(
            {
                "loss": loss,
                "correct": torch.tensor(i, device=device),
                "half": torch.tensor([0.5], device=device).half(),
            },
            step=i,
        )
    h.close()
    if device == "cpu":
        # No device to wait for: a 0-d tensor is read by its own .tolist() (no GIL hand-off,
        # half the cost of a stack); the one-element 1-d tensors are stacked.
        assert calls["stack"] == 1
    else:
        assert calls["tolist"] == 1  # one stack per key, one .tolist() for the device
    rows = read_metrics(path)
    assert len(rows) == 50
    assert rows[3] == {"step": 3, "t": rows[3]["t"], "loss": 0.5, "correct": 3, "half": 0.5}
    assert type(rows[3]["correct"]) is int


def test_short32_prints_float32_as_numpy_does() -> None:
    np = need("numpy")
    for value in (0.1, 0.2, 1 / 3, 123456.789, 1e-8, -2.5, 0.0):
        assert str(short32(float(np.float32(value)))) == str(np.float32(value))


@pytest.mark.parametrize(
    "value, why",
    [("high", "str 'high'"), (None, "NoneType None"), ([1, 2], "list [1, 2]"), (1j, "complex")],
)
def test_non_numeric_values_name_their_key(tmp_path: Path, value: Any, why: str) -> None:
    h = History(path=tmp_path / "m.jsonl")
    with pytest.raises(TetherError) as err:
        h.update({"ok": 1.0, "train/bad": value})
    assert "metric 'train/bad'" in str(err.value)
    assert why in str(err.value)
    h.close()
    assert read_metrics(tmp_path / "m.jsonl") == []  # the bad row was not half-written


def test_many_element_tensors_and_arrays_are_refused(tmp_path: Path) -> None:
    np = need("numpy")
    h = History(path=tmp_path / "m.jsonl")
    with pytest.raises(TetherError, match="'vec'.*more than one value"):
        h.update({"vec": np.arange(3)})
    torch = need("torch")
    with pytest.raises(TetherError, match="'weights'.*a tensor of 4 elements"):
        h.update({"weights": torch.ones(2, 2)})
    with pytest.raises(TetherError, match="reserved"):
        h.update({"step": 1})
    with pytest.raises(TetherError, match="step must be an integer"):
        h.update({"x": 1}, step=1.5)
    with pytest.raises(TetherError, match="mapping"):
        h.update([("x", 1)])  # type: ignore[arg-type]
    h.close()


def test_a_key_that_changes_type_warns_once(tmp_path: Path) -> None:
    h = History(path=tmp_path / "m.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h.update({"n": 1})
        h.update({"n": 1.5})
        h.update({"n": 2})
        h.update({"n": True})
    h.close()
    messages = [str(w.message) for w in caught]
    assert messages == [
        "metric 'n' changed type from int to float (recorded as numbers all the same; warned once)"
    ]
    assert [r["n"] for r in read_metrics(tmp_path / "m.jsonl")] == [1, 1.5, 2, 1]


def test_nan_and_inf_are_recorded_and_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.jsonl"
    with History(path=path) as h:
        for step, value in enumerate([1.0, float("nan"), 0.5, float("inf")]):
            h.update({"loss": value, "acc": 0.5}, step=step)
    rows = read_metrics(path)
    assert math.isnan(rows[1]["loss"]) and rows[3]["loss"] == math.inf
    summary = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert summary["loss"]["nonfinite"] is True
    assert summary["loss"]["min"] == 0.5 and summary["loss"]["max"] == math.inf
    assert summary["loss"]["last"] == math.inf
    assert "nonfinite" not in summary["acc"]
    assert "metric 'loss' is nan at step 1" in caplog.text


# -- flushing ---------------------------------------------------------------------------------
def test_rows_flush_in_the_background_by_count_and_by_time(tmp_path: Path) -> None:
    by_count = History(path=tmp_path / "count.jsonl", flush_every=3600, flush_rows=10)
    for i in range(10):
        by_count.update({"x": i}, step=i)
    wait_for(lambda: len(read_metrics(tmp_path / "count.jsonl")) == 10, "a flush of 10 rows")
    by_time = History(path=tmp_path / "time.jsonl", flush_every=0.05, flush_rows=10**6)
    by_time.update({"x": 1.0}, step=0)
    wait_for(lambda: read_metrics(tmp_path / "time.jsonl"), "a timed flush")
    wait_for(lambda: (tmp_path / "summary.json").exists(), "summary.json")
    by_count.close()
    by_time.close()


def test_a_history_alone_in_memory_and_its_views(tmp_path: Path) -> None:
    h = History()
    for i in range(3):
        h.update({"train/loss": 1 / (i + 1), "eval/acc": i / 2, "lr": 0.1}, step=i)
    h.update({"train/loss": 0.1})
    assert h.path is None
    assert len(h.rows()) == 4
    assert h.keys() == ["train/loss", "eval/acc", "lr"]
    assert h.groups() == {"train": ["train/loss"], "eval": ["eval/acc"], "": ["lr"]}
    assert h.series("train/loss") == ([0, 1, 2, 3], [1.0, 0.5, 1 / 3, 0.1])
    assert h.summary()["eval/acc"] == {"last": 1.0, "min": 0.0, "max": 1.0, "step": 2}
    with pytest.raises(TetherError, match="in memory"):
        h.plot()
    h.close()
    with pytest.raises(TetherError, match="closed"):
        h.update({"x": 1})


def test_unclosed_history_is_flushed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    code = (
        "import sys, tether\n"
        f"h = tether.History(path={str(path)!r}, flush_every=3600)\n"
        "for i in range(500): h.update({'x': i}, step=i)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert [r["x"] for r in read_metrics(path)] == list(range(500))


def test_sigkill_mid_flush_loses_at_most_the_buffer_and_readers_skip_the_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.jsonl"
    code = (
        "import sys, time, tether\n"
        f"h = tether.History(path={str(path)!r}, flush_every=0.01, flush_rows=50)\n"
        "i = 0\n"
        "while True:\n"
        "    h.update({'x': i, 'pad': 'x' * 0 or 1.0}, step=i)\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for(lambda: path.exists() and path.stat().st_size > 200_000, "rows on disk", 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == list(range(len(rows)))  # a prefix, in order
    # A torn tail (as a kill mid-write leaves) is skipped, and a new writer starts a new line.
    with open(path, "a") as fh:
        fh.write('{"step": 99999999, "x": 1')
    assert len(read_metrics(path)) == len(rows)
    with History(path=path) as h:
        h.update({"x": -1}, step=-1)
    after = read_metrics(path)
    assert len(after) == len(rows) + 1 and after[-1]["step"] == -1
    assert path.read_text().count("\n") == len(rows) + 2  # the torn line kept on its own


def test_iter_metrics_skips_bad_lines_in_the_middle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "x": 1}\nnot json\n[1, 2]\n\n{"step": 1, "x": 2}\n{"st')
    assert [r["x"] for r in read_metrics(path)] == [1, 2]
    assert [r["x"] for r in iter_metrics(path, start=1)] == [2]
    assert "metrics.jsonl:2: not a JSON object" in caplog.text
    assert read_metrics(tmp_path / "missing.jsonl") == []
    assert read_metrics(tmp_path) == [r for r in read_metrics(path)]  # a run folder works too


def test_keys_with_braces_are_written_safely(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with History(path=path) as h:
        h.update({"a}, {b": 1, 'q"uote': 2}, step=0)
        h.update({"a}, {b": 3}, step=1)
    assert read_metrics(path)[1]["a}, {b"] == 3


# -- inside runs ------------------------------------------------------------------------------
def test_run_log_metrics_goes_through_the_runs_history(runs_root: Path) -> None:
    with tether.start_run({"lr": 0.1}, name="train", snapshot=False) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        h = tether.History()  # the current run's: the same buffer and file
        assert h.run is run and h.path == run.dir / "metrics.jsonl"
        h.update({"loss": 0.25, "acc": 0.9}, step=1)
        assert History(run=run)._core is h._core
    rows = read_metrics(run.dir)
    assert [(r["step"], r["loss"]) for r in rows] == [(0, 0.5), (1, 0.25)]
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["metrics"]["loss"] == {"last": 0.25, "min": 0.25, "max": 0.5, "step": 1}
    with pytest.raises(TetherError, match="closed"):
        run.log_metrics({"loss": 0.1})


def _live_value(tsv: str) -> str | None:
    """The train/loss cell of the first row of `tether runs --tsv`."""
    lines = tsv.splitlines()
    if len(lines) < 2 or "train/loss" not in lines[0].split("\t"):
        return None
    return lines[1].split("\t")[lines[0].split("\t").index("train/loss")]


def test_tether_runs_and_show_see_live_values(runs_root: Path, cli: Any) -> None:
    with tether.start_run({}, name="live", snapshot=False) as run:
        h = History(run=run, flush_every=0.05)
        h.update({"train/loss": 0.75}, step=3)
        wait_for(
            lambda: _live_value(cli("runs", "--tsv").stdout) == "0.75",
            "tether runs to show the live value",
        )
        shown = json.loads(cli("show", "1", "--json").stdout)
        assert shown["state"]["status"] == "running"
        assert shown["metrics"]["train/loss"]["last"] == 0.75


# -- continued runs ---------------------------------------------------------------------------
def test_last_step_is_read_from_the_end_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.track import metrics_file

    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as fh:
        for step in range(20000):
            fh.write(json.dumps({"step": step, "t": 1.0, "loss": 0.5}) + "\n")
        # The last step spans several of the blocks read from the end (64 KiB each), with
        # other keys on some rows, a row without a step and a torn line after it.
        for i in range(3000):
            row = {"step": 20000, "t": 1.0, f"k{i % 3}": 1.0}
            fh.write(json.dumps(row) + "\n")
        fh.write(json.dumps({"t": 2.0, "note": 1}) + "\n")
        fh.write('{"step": 20001, "lo')
    assert path.stat().st_size > 4 * metrics_file.TAIL_BLOCK
    found = metrics_file.last_step(path)
    assert found is not None and found.step == 20000 and found.keys == {"k0", "k1", "k2"}
    assert metrics_file.last_step(tmp_path / "missing.jsonl") is None
    # Only the end is read: a step further back than the limit is not looked for.
    tail = tmp_path / "no-steps-at-the-end.jsonl"
    tail.write_text('{"step": 1, "a": 1}\n' + '{"t": 1.0, "a": 2}\n' * 5000)
    monkeypatch.setattr(metrics_file, "TAIL_LIMIT", 1 << 16)
    assert metrics_file.last_step(tail) is None
    monkeypatch.setattr(metrics_file, "TAIL_LIMIT", 1 << 22)
    assert metrics_file.last_step(tail) == metrics_file.LastStep(1, {"a"})


def test_a_continued_run_resumes_after_its_last_step(runs_root: Path) -> None:
    """A run continued in another process start (here: `continued`, what `tether run
    --restart` and a requeued batch task use) writes no step twice: rows before the last
    recorded step are dropped, and at that step only the keys it lacks are written."""
    from tether.ops.restart import continued
    from tether.store import open_store

    with pytest.raises(RuntimeError), tether.start_run({}, name="train", snapshot=False) as run:
        h = History(run=run)
        assert h.start_step == 0
        for step in range(5):
            h.update({"loss": 10.0 - step, "acc": step / 10}, step=step)
        h.update({"loss": 4.0}, step=5)  # killed before `acc` of step 5
        raise RuntimeError("preempted")
    store = open_store()
    with continued(store, store.load(run.id), {}) as again:
        assert again.id == run.id
        h = History(run=again)
        assert h.start_step == 6
        for step in range(3, 8):  # back to a checkpoint of step 3
            h.update({"loss": 10.0 - step, "acc": step / 10}, step=step)
        h.update({"note": 1.0})  # rows without a step are not steps: written
    rows = read_metrics(run.dir)
    assert [(r.get("step"), sorted(k for k in r if k != "t")) for r in rows] == [
        (0, ["acc", "loss", "step"]),
        (1, ["acc", "loss", "step"]),
        (2, ["acc", "loss", "step"]),
        (3, ["acc", "loss", "step"]),
        (4, ["acc", "loss", "step"]),
        (5, ["loss", "step"]),
        (5, ["acc", "step"]),  # the key step 5 lacked
        (6, ["acc", "loss", "step"]),
        (7, ["acc", "loss", "step"]),
        (None, ["note"]),
    ]
    record = store.load(run.id)
    assert record.metrics()["loss"] == {"last": 3.0, "min": 3.0, "max": 10.0, "step": 7}
    assert record.status == "completed"
    attempts = record.state.attempts
    assert [(a.status, a.exit_code) for a in attempts] == [("failed", 1), ("completed", 0)]
    assert record.state.started == attempts[0].start and record.state.stopped == attempts[1].stop


def test_open_run_adds_to_a_finished_run_without_resuming(runs_root: Path) -> None:
    with tether.start_run({}, name="train", snapshot=False) as run:
        run.log_metrics({"loss": 1.0}, step=9)
    with tether.open_run(run.id) as again:
        assert again.history.start_step == 0
        again.log_metrics({"eval/acc": 0.5}, step=3)  # an evaluation of an earlier checkpoint
    assert [r["step"] for r in read_metrics(run.dir)] == [9, 3]


# -- sinks ------------------------------------------------------------------------------------
def test_built_in_sinks_are_entry_points() -> None:
    assert {"jsonl", "mlflow", "wandb", "tensorboard"} <= set(sink_names())
    assert load_sink("jsonl").name == "jsonl"
    with pytest.raises(TetherError, match="no metric sink 'mlfow'; did you mean 'mlflow'"):
        load_sink("mlfow")


def test_a_sink_added_later_gets_the_earlier_rows_first(runs_root: Path) -> None:
    recorder = Recorder()
    with tether.start_run({"lr": 0.1}, name="train", snapshot=False) as run:
        run.log_metrics({"x": 0.0}, step=0)
        run.flush()
        run.log_metrics({"x": 1.0}, step=1)
        run.add_sink(recorder)
        run.log_metrics({"x": 2.0}, step=2)
    assert [(i, r["x"]) for i, r in recorder.rows] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert recorder.opened is not None and recorder.opened.run_id == run.id
    assert recorder.opened.config["lr"] == 0.1
    assert recorder.closed_with == ["completed"]
    state = json.loads((run.dir / "summary.json").read_text())["sinks"]["recorder"]
    assert state == {"status": "ok", "rows": 3}


def test_a_failing_sink_is_retried_then_reported_and_the_run_goes_on(
    runs_root: Path, cli: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = Broken()
    with tether.start_run({}, name="train", snapshot=False) as run:
        run.add_sink(broken)
        for i in range(3):
            run.log_metrics({"x": float(i)}, step=i)
        run.flush()
        run.log_metrics({"x": 9.0}, step=9)
    assert broken.calls == 3  # three tries, then switched off
    assert run.record.status == "completed"
    assert len(read_metrics(run.dir)) == 4  # metrics.jsonl has everything
    state = json.loads((run.dir / "summary.json").read_text())["sinks"]["broken"]
    assert state["status"] == "failed" and state["rows"] == 0
    assert "ConnectionError: tracking server gone" in state["error"]
    log = (run.dir / "output.log").read_text()
    assert "metric sink 'broken' failed (write, 3 tries)" in log
    shown = json.loads(cli("show", "1", "--json").stdout)
    assert shown["summary"]["sinks"]["broken"]["status"] == "failed"


def test_the_jsonl_sink_copies_rows(tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl"
    with History(path=tmp_path / "m.jsonl", sinks=[load_sink("jsonl", path=copy)]) as h:
        h.update({"x": 1}, step=0)
    assert [r["x"] for r in read_metrics(copy)] == [1]


def test_the_tensorboard_sink_writes_scalars_tensorboard_reads(runs_root: Path) -> None:
    need("tensorboard")
    from tether.track.tensorboard import rollup

    with tether.start_run({}, name="tb", snapshot=False) as run:
        run.add_sink("tensorboard")
        for i in range(4):
            run.log_metrics({"train/loss": 1 / (i + 1)}, step=i)
    assert rollup(run.dir)["train/loss"] == {"last": 0.25, "min": 0.25, "max": 1.0, "step": 3}
    summary = json.loads((run.dir / "summary.json").read_text())
    assert "tensorboard" not in summary  # the run logged those keys itself


def _wandb_records(path: Path) -> list[Any]:
    """Records of a .wandb file (a LevelDB-style log of protobuf `Record`s)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            out.append(record)
            pending = b""
        elif kind in (2, 3):
            pending += chunk
        else:
            break
    return out


def test_the_wandb_sink_offline(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with tether.start_run({"lr": 0.1, "model": {"depth": 2}}, name="wb", snapshot=False) as run:
        run.add_sink("wandb")
        for i in range(3):
            run.log_metrics({"train/loss": 1 / (i + 1)}, step=i)
    state = json.loads((run.dir / "summary.json").read_text())["sinks"]["wandb"]
    assert state["status"] == "ok" and state["rows"] == 3
    files = list((run.dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = _wandb_records(files[0])
    history = [
        {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [(h["_step"], h["train/loss"]) for h in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in runs[0].config.update}
    assert config["lr"] == 0.1 and config["model.depth"] == 2
    assert runs[0].run_id == run.id
