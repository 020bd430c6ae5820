"""MLflow for real: the sqlite store and a live `mlflow server` on 127.0.0.1.

Params, metrics and artifacts of runs, resuming and superseding, `@tether.mlflow`,
`tether.open_run`, `tether mlflow sync` (backfill of runs made while MLflow could not be
imported), the server going away mid-run, and many runs opening a fresh store at once.

MLflow needs seconds to create a SQLite store (schema migrations): each test copies a store made
once per worker, except the one that checks the fresh-store race.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.clock import parse_iso
from tether.track.metrics_file import read_metrics
from tether.track.sinks.mlflow_after import wait_for_sync
from tether.track.sinks.mlflow_names import original_key

BIN = Path(sys.executable).parent


def need_mlflow() -> Any:
    try:
        return importlib.import_module("mlflow")
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("mlflow is not installed (make dev installs it)")


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_mlflow()
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the schema
    return db


@pytest.fixture
def store_uri(runs_root: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The default store of the test's runs root, already migrated."""
    runs_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_db, runs_root / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("TETHER_SINKS", raising=False)
    monkeypatch.setenv("TETHER_SINK_BACKOFF", "0.01")
    return f"sqlite:///{runs_root / 'mlflow.db'}"


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def sink_state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())["sinks"]["mlflow"]


def synced(run_dir: Path, timeout: float = 240) -> dict[str, Any]:
    """The run's MLflow record once the sync after the run has ended: waits (bounded) on the
    run's sync lock, which the run's process takes before it starts the background sync."""
    assert wait_for_sync(run_dir, timeout), f"the MLflow sync of {run_dir} runs after {timeout} s"
    state = sink_state(run_dir)
    assert state["status"] != "pending", state
    return state


def store_record(run_dir: Path, key: str) -> dict[str, Any]:
    return dict(sink_state(run_dir)["stores"][key])


def history(c: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))


def artifacts(c: Any, run_id: str, path: str = "tether") -> list[str]:
    return sorted(a.path for a in c.list_artifacts(run_id, path))


def tether_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [str(BIN / "tether"), *args], env=full, capture_output=True, text=True, timeout=300
    )


# -- the sqlite store -------------------------------------------------------------------------
def test_params_metrics_artifacts_and_status_on_the_sqlite_store(store_uri: str) -> None:
    config = {
        "lr": 0.1,
        "model": {"depth": 2, "name": "mlp"},
        "many": {f"k{i}": i for i in range(150)},
    }

    @tether.experiment(defaults=config, snapshot=False, mlflow=True)
    def train(cfg: Any, run: Any) -> Any:
        for step in range(1200):  # more than one log_batch of 1,000 values
            run.log_metrics({"train/loss": 1 / (step + 1)}, step=step)
        run.log_metrics({"eval/acc": 0.9, "odd key@1": 1.0}, step=1199)
        (run.dir / "report.md").write_text("# report\n")
        print("training done")
        return run

    run = train.cli([])
    state = synced(run.dir)
    assert state["status"] == "ok" and state["rows"] == 1201
    assert state["ended"] == "completed" and list(state["stores"]) == [store_uri]
    assert state["uri"] == store_uri and state["experiment"] == "train"
    c = client(store_uri)
    got = c.get_run(state["run_id"])
    assert got.info.status == "FINISHED"
    assert got.data.tags["tether.run_id"] == run.id
    assert got.data.tags["tether.status"] == "active"
    assert got.info.run_name == f"train-{run.id[:13]}"
    params = got.data.params
    assert len(params) == 154  # lr, model.depth, model.name, save_dir + 150: two batches
    assert params["model.depth"] == "2" and params["many.k149"] == "149"
    assert params["save_dir"] == str(run.dir)
    assert len(history(c, state["run_id"], "train/loss")) == 1200
    assert got.data.metrics["eval/acc"] == 0.9 and got.data.metrics["odd key:40:1"] == 1.0
    assert original_key("odd key:40:1") == "odd key@1"
    assert artifacts(c, state["run_id"]) == [
        "tether/config.yaml",
        "tether/output.log",
        "tether/report.md",
        "tether/run.lock",
        "tether/summary.json",
    ]
    folder = Path(c.download_artifacts(state["run_id"], "tether/run.lock", str(run.dir.parent)))
    assert folder.read_text() == (run.dir / "run.lock").read_text()
    # Artifacts live beside the store, not in the working folder.
    assert (Path(store_uri[len("sqlite:///") :]).parent / "mlartifacts" / "train").is_dir()


def test_a_failed_run_is_failed_in_mlflow(store_uri: str) -> None:
    @tether.experiment(defaults={}, snapshot=False, debug=False)
    @tether.mlflow
    def boom(cfg: Any, run: Any) -> None:
        run.log_metrics({"x": 1.0}, step=0)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        boom.cli([])
    record = tether.open_store().resolve_one("1")
    got = client(store_uri).get_run(synced(record.dir)["run_id"])
    assert got.info.status == "FAILED"
    assert got.data.metrics == {"x": 1.0}


def test_open_run_updates_in_place_and_new_supersedes(store_uri: str) -> None:
    with tether.start_run({"lr": 0.1}, name="train", snapshot=False) as run:
        run.add_sink("mlflow")
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    first = synced(run.dir)["run_id"]
    c = client(store_uri)

    # In place (the default): the same MLflow run gets the new metric and artifact.
    plot = run.dir.parent / "calibration.txt"
    plot.write_text("ece 0.02")
    with tether.open_run(run.id) as diag:  # it has an MLflow entry: mlflow is on
        diag.log_metrics({"diag/ece": 0.02}, step=2)
        diag.log_artifact(plot)
    assert sink_state(run.dir)["run_id"] == first
    got = c.get_run(first)
    assert got.data.metrics["diag/ece"] == 0.02 and got.info.status == "FINISHED"
    assert artifacts(c, first, "artifacts") == ["artifacts/calibration.txt"]
    assert (run.dir / "artifacts" / "calibration.txt").read_text() == "ece 0.02"
    assert tether.open_store().load(run.id).status == "completed"  # the run stays as it was

    # new=True: a new MLflow run with everything, superseding the old one.
    @tether.mlflow(run=True, new=True)
    def rediagnose(opened: Any, value: float) -> str:
        opened.log_metrics({"diag/ece": value}, step=3)
        return str(opened.id)

    assert rediagnose(run.id[:13], 0.01) == run.id
    state = sink_state(run.dir)
    second = state["run_id"]
    assert second != first and state["supersedes"] == first
    old, new = c.get_run(first), c.get_run(second)
    assert old.data.tags["tether.status"] == "deprecated"
    assert old.data.tags["tether.superseded_by"] == second
    assert new.data.tags["tether.status"] == "active"
    assert new.data.tags["tether.supersedes"] == first
    assert history(c, second, "loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]  # backfilled
    assert history(c, second, "diag/ece") == [(2, 0.02), (3, 0.01)]
    assert new.data.params == {"lr": "0.1", "save_dir": str(run.dir)}

    # Later updates go to the active one.
    with tether.open_run(run.id) as diag:
        diag.log_metrics({"diag/more": 1.0})
    assert sink_state(run.dir)["run_id"] == second
    assert "diag/more" in c.get_run(second).data.metrics
    assert "diag/more" not in c.get_run(first).data.metrics


def test_a_resumed_run_continues_its_mlflow_run_and_logs_only_new_params(store_uri: str) -> None:
    with tether.start_run({"lr": 0.1, "epochs": 2}, name="train", snapshot=False) as run:
        run.add_sink("mlflow")
        run.log_metrics({"loss": 1.0}, step=0)
    first = synced(run.dir)["run_id"]
    # The same tether run logs again with a config that gained a key and changed one:
    with tether.open_run(run.id, mlflow=False) as again:
        again.record.lock.config = {"lr": 0.2, "epochs": 2, "warmup": 5}
        again.add_sink("mlflow")
        again.log_metrics({"loss": 0.5}, step=1)
    state = sink_state(run.dir)
    assert state["run_id"] == first
    assert state["param_conflicts"] == ["lr"]
    got = client(store_uri).get_run(first)
    assert got.data.params["lr"] == "0.1"  # params are immutable in MLflow
    assert got.data.params["warmup"] == "5"
    assert history(client(store_uri), first, "loss") == [(0, 1.0), (1, 0.5)]


def test_mlflow_decorator_alone_starts_a_run(store_uri: str) -> None:
    @tether.mlflow(experiment="alone")
    def fit(cfg: Any, run: Any) -> str:
        tether.History().update({"score": cfg["k"] * 2}, step=0)
        return str(run.id)

    run_id = fit({"k": 3})
    record = tether.open_store().load(run_id)
    assert record.status == "completed"
    state = synced(record.dir)
    got = client(store_uri).get_run(state["run_id"])
    assert state["experiment"] == "alone"
    assert got.data.params["k"] == "3" and got.data.metrics["score"] == 6


# -- backfill ---------------------------------------------------------------------------------
MADE_WITHOUT_MLFLOW = """
import sys
sys.modules["mlflow"] = None  # as if MLflow were not installed: `import mlflow` fails
import tether
for lr in (0.1, 0.2):
    with tether.start_run({"lr": lr}, name="train", snapshot=False) as run:
        for step in range(4):
            run.log_metrics({"loss": lr / (step + 1)}, step=step)
print("made")
"""


def test_sync_backfills_runs_made_while_mlflow_could_not_be_imported(
    store_uri: str, runs_root: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, TETHER_SINKS="mlflow", TETHER_RUNS=str(runs_root))
    made = subprocess.run(
        [sys.executable, "-c", MADE_WITHOUT_MLFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "metric sink 'mlflow' failed (open, 1 try)" in made.stderr  # at once, in the run
    store = tether.open_store()
    records = [store.load(r.id) for r in store.list()]
    assert [r.status for r in records] == ["completed", "completed"]
    for record in records:
        state = sink_state(record.dir)
        assert state["status"] == "failed" and "install it" in state["error"]
        assert "metric sink 'mlflow' failed" in (record.dir / "output.log").read_text()

    synced = tether_cli("mlflow", "sync")
    assert synced.returncode == 0, synced.stderr
    lines = synced.stdout.splitlines()
    assert len(lines) == 2 and all(": created MLflow run " in line for line in lines)
    assert all("in train (4 new metric rows)" in line for line in lines)
    c = client(store_uri)
    for record in records:
        state = sink_state(record.dir)
        assert state["status"] == "ok" and state["rows"] == 4
        got = c.get_run(state["run_id"])
        lr = record.lock.config["lr"]
        assert got.data.params["lr"] == str(lr)
        assert history(c, state["run_id"], "loss") == [(s, lr / (s + 1)) for s in range(4)]
        assert "tether/output.log" in artifacts(c, state["run_id"])
        assert got.info.status == "FINISHED"

    again = tether_cli("mlflow", "sync", "--json")
    assert again.returncode == 0, again.stderr
    results = json.loads(again.stdout)
    assert [(r["action"], r["rows"]) for r in results] == [("updated", 0), ("updated", 0)]
    for record in records:
        state = sink_state(record.dir)
        assert len(history(c, state["run_id"], "loss")) == 4  # nothing doubled
    assert len(c.search_runs([c.get_experiment_by_name("train").experiment_id])) == 2


def test_many_runs_opening_a_fresh_store_at_once(runs_root: Path, tmp_path: Path) -> None:
    need_mlflow()
    code = (
        "import tether\n"
        "with tether.start_run({'i': 1}, name='fan', snapshot=False) as run:\n"
        "    run.add_sink('mlflow')\n"
        "    run.log_metrics({'x': 1.0}, step=0)\n"
    )
    env = dict(os.environ, TETHER_RUNS=str(runs_root), TETHER_SINK_TRIES="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = tether.open_store()
    states = [synced(store.load(r.id).dir) for r in store.list()]
    assert [s["status"] for s in states] == ["ok"] * 3, states
    assert len({s["run_id"] for s in states}) == 3
    assert len({s["experiment_id"] for s in states}) == 1


# -- a live server ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(
    db: Path, artifacts_dir: Path, port: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mlflow server` on 127.0.0.1:port; waits (bounded) until it answers; killed at the end."""
    log = open(db.parent / f"server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(artifacts_dir),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                text = (db.parent / f"server-{port}.log").read_text()[-3000:]
                raise AssertionError(f"mlflow server did not start:\n{text}")
            time.sleep(0.25)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_a_live_server_and_the_server_going_away_mid_run(
    store_uri: str, template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template_db, db)
    port = free_port()
    with mlflow_server(db, tmp_path / "server" / "artifacts", port) as (url, server):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        # A run through the server: params, metrics, artifacts.
        with tether.start_run({"lr": 0.1}, name="remote", snapshot=False) as run:
            run.add_sink("mlflow", live=True)  # rows go as they are flushed
            for step in range(5):
                run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        state = sink_state(run.dir)
        assert state["status"] == "ok" and state["uri"] == url
        c = client(url)
        got = c.get_run(state["run_id"])
        assert got.info.status == "FINISHED" and got.data.params["lr"] == "0.1"
        assert len(history(c, state["run_id"], "loss")) == 5
        assert "tether/run.lock" in artifacts(c, state["run_id"])

        # The server goes away in the middle of the next run.
        with tether.start_run({"lr": 0.2}, name="remote", snapshot=False) as broken:
            broken.add_sink("mlflow", live=True)
            for step in range(3):
                broken.log_metrics({"loss": float(step)}, step=step)
            broken.flush()
            assert sink_state(broken.dir)["rows"] == 3
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            for step in range(3, 6):
                broken.log_metrics({"loss": float(step)}, step=step)
    assert tether.open_store().load(broken.id).status == "completed"
    state = sink_state(broken.dir)
    assert state["status"] == "failed" and state["rows"] == 3, state
    assert len(read_metrics(broken.dir)) == 6
    assert "metric sink 'mlflow' failed" in (broken.dir / "output.log").read_text()
    shown = tether_cli("show", broken.id, "--json")
    assert json.loads(shown.stdout)["summary"]["sinks"]["mlflow"]["status"] == "failed"

    # Back up: `tether mlflow sync` sends what the server missed, into the same MLflow run.
    with mlflow_server(db, tmp_path / "server" / "artifacts", port) as (url, _):
        synced = tether_cli("mlflow", "sync", broken.id[:13], env={"MLFLOW_TRACKING_URI": url})
        assert synced.returncode == 0, synced.stderr
        assert "updated MLflow run" in synced.stdout and "(3 new metric rows)" in synced.stdout
        c = client(url)
        after = sink_state(broken.dir)
        assert after["status"] == "ok" and after["run_id"] == state["run_id"]
        assert history(c, after["run_id"], "loss") == [(s, float(s)) for s in range(6)]
        assert c.get_run(after["run_id"]).info.status == "FINISHED"


# -- one record per store ---------------------------------------------------------------------
def made_without_mlflow(rows: int = 25) -> Any:
    """A finished run with `rows` rows (keys `loss`, `top@1`, `top_1`) and no MLflow entry."""
    with tether.start_run({"lr": 0.1}, name="train", snapshot=False) as run:
        for step in range(rows):
            run.log_metrics({"loss": 1 / (step + 1), "top@1": step, "top_1": -step}, step=step)
    assert "sinks" not in json.loads((run.dir / "summary.json").read_text())
    return run


def one_mlflow_run(uri: str, experiment: str = "train") -> Any:
    c = client(uri)
    found = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    assert len(found) == 1, [r.info.run_id for r in found]
    return c, found[0]


def test_sync_to_a_then_b_then_a_leaves_each_point_once_in_each_store(
    store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it behind a switch
    run = made_without_mlflow()
    other = (tmp_path / "filestore").as_uri()  # a file store keeps repeated points
    explicit = ["--tracking-uri", other]
    steps = [([], store_uri), (explicit, other), ([], store_uri), (explicit, other)]
    for i, (args, uri) in enumerate(steps):
        done = tether_cli("mlflow", "sync", run.id[:13], "--json", *args)
        assert done.returncode == 0, done.stderr
        [result] = json.loads(done.stdout)
        assert result["uri"] == uri
        assert (result["action"], result["rows"]) == (("created", 25) if i < 2 else ("updated", 0))
    state = sink_state(run.dir)
    assert sorted(state["stores"]) == sorted([store_uri, other])
    assert state["uri"] == store_uri  # the explicit one was for those calls only
    for uri in (store_uri, other):
        record = state["stores"][uri]
        assert record["status"] == "ok" and record["rows"] == 25 and record["params"] == 2
        c, got = one_mlflow_run(uri)
        assert record["run_id"] == got.info.run_id and got.info.status == "FINISHED"
        assert history(c, got.info.run_id, "loss") == [(s, 1 / (s + 1)) for s in range(25)]
        # Keys MLflow refuses are escaped, not merged into their look-alikes.
        assert history(c, got.info.run_id, "top:40:1") == [(s, float(s)) for s in range(25)]
        assert history(c, got.info.run_id, "top_1") == [(s, float(-s)) for s in range(25)]
        assert {original_key(k) for k in got.data.metrics} == {"loss", "top@1", "top_1"}


def test_an_explicit_store_failing_leaves_the_others_record_alone(store_uri: str) -> None:
    run = made_without_mlflow(3)
    first = tether_cli("mlflow", "sync", run.id[:13])
    assert first.returncode == 0, first.stderr
    assert ": created MLflow run " in first.stdout
    home = store_record(run.dir, store_uri)
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failed = tether_cli("mlflow", "sync", run.id[:13], "--tracking-uri", gone)
    assert failed.returncode == 1
    assert ": failed: open: " in failed.stdout and "127.0.0.1" in failed.stdout
    state = sink_state(run.dir)
    assert state["stores"][store_uri] == home  # untouched
    assert state["stores"][gone]["status"] == "failed" and state["stores"][gone]["rows"] == 0
    assert "Connection refused" in state["stores"][gone]["error"]
    assert state["uri"] == store_uri and state["status"] == "ok" and "error" not in state
    # A plain sync still goes to the home store, and finds its MLflow run there.
    again = tether_cli("mlflow", "sync", run.id[:13])
    assert again.returncode == 0, again.stderr
    assert f": updated MLflow run {home['run_id']} in train (0 new metric rows)" in again.stdout
    assert len(history(client(store_uri), home["run_id"], "loss")) == 3


# -- the sync after a run ---------------------------------------------------------------------
WITH_MLFLOW = """
import sys
import tether

@tether.experiment(defaults={"lr": 0.1, "api_token": "s3cret"}, snapshot=False, mlflow=True)
def main(cfg, run):
    for step in range(30):
        run.log_metrics({"loss": 1 / (step + 1), "acc@1": step / 30}, step=step)
    (run.dir / "report.md").write_text("# report\\n")

main.cli([])
print("mlflow imported:", "mlflow" in sys.modules)
"""


def test_a_run_with_mlflow_is_synced_after_it_complete_and_never_imports_mlflow(
    store_uri: str, runs_root: Path, tmp_path: Path
) -> None:
    made = subprocess.run(
        [sys.executable, "-c", WITH_MLFLOW],
        env=dict(os.environ, TETHER_RUNS=str(runs_root)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "mlflow imported: False" in made.stdout  # MLflow's import is the background's
    # `--wait` waits for the background sync, then sends what it missed: nothing.
    waited = tether_cli("mlflow", "sync", "--wait", "--timeout", "240", "--json")
    assert waited.returncode == 0, waited.stderr
    [result] = json.loads(waited.stdout)
    assert (result["action"], result["rows"], result["uri"]) == ("updated", 0, store_uri)
    record = tether.open_store().load(result["id"])
    state = synced(record.dir)
    assert state["status"] == "ok" and state["rows"] == 30 and state["ended"] == "completed"
    c, got = one_mlflow_run(store_uri, "main")
    assert got.info.run_id == state["run_id"] == result["mlflow_run"]
    assert got.info.status == "FINISHED"
    stopped = parse_iso(record.state.stopped)
    assert stopped is not None and got.info.end_time == int(stopped.timestamp() * 1000)
    assert got.data.params["lr"] == "0.1"
    assert got.data.params["api_token"] == record.lock.config["api_token"]  # as recorded
    assert history(c, got.info.run_id, "loss") == [(s, 1 / (s + 1)) for s in range(30)]
    assert len(history(c, got.info.run_id, "acc:40:1")) == 30
    assert artifacts(c, got.info.run_id) == [
        "tether/config.yaml",
        "tether/output.log",
        "tether/report.md",
        "tether/run.lock",
        "tether/summary.json",
    ]


def test_a_background_sync_that_fails_is_recorded_and_the_next_sync_completes_it(
    store_uri: str, runs_root: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    env = dict(os.environ, TETHER_RUNS=str(runs_root), MLFLOW_TRACKING_URI=uri)
    made = subprocess.run(
        [sys.executable, "-c", WITH_MLFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    [row] = tether.open_store().list()
    state = synced(Path(row.dir))
    assert state["status"] == "failed" and state["uri"] == uri, state
    assert "not-a-folder" in state["error"] or "Not a directory" in state["error"], state
    assert tether.open_store().load(row.id).status == "completed"  # the run is not touched

    blocker.unlink()
    blocker.mkdir()
    again = tether_cli("mlflow", "sync", row.id[:13], env={"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0, again.stderr
    assert ": created MLflow run " in again.stdout and "(30 new metric rows)" in again.stdout
    after = sink_state(Path(row.dir))
    assert after["status"] == "ok" and after["rows"] == 30 and "error" not in after
    c, got = one_mlflow_run(uri, "main")
    assert got.info.status == "FINISHED" and len(history(c, got.info.run_id, "loss")) == 30


ATTACHED = """
import tether
history = tether.History(sinks=["mlflow"])  # the run this process was started for
for step in range(4):
    history.update({"x": float(step)}, step=step)
history.close()
"""


def test_a_process_attached_to_a_run_sends_its_rows_when_its_history_closes(
    store_uri: str, runs_root: Path, tmp_path: Path
) -> None:
    from tether.context import run_env

    with tether.start_run({"lr": 0.1}, name="owner", snapshot=False) as run:
        env = dict(os.environ, **run_env(run.dir, run.id, runs_root))
        done = subprocess.run(
            [sys.executable, "-c", ATTACHED], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        # Its owner (this process) records the run's end, not the attached one: no sync after
        # the run from there; the rows went when its History closed.
        assert not (run.dir / ".mlflow-sync.lock").exists()
        state = sink_state(run.dir)
        assert state["status"] == "ok" and state["rows"] == 4, state
    assert history(client(store_uri), state["run_id"], "x") == [(s, float(s)) for s in range(4)]


# -- names ------------------------------------------------------------------------------------
def test_every_key_gets_a_name_mlflow_accepts_reads_back_and_keeps_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_mlflow()
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    from tether.track.sinks.mlflow_names import mlflow_key, store_key

    keys = [
        "train/loss", "acc_1", "top@1", "top_1", "top:40:1", "a:b", "a b", "/abs", "a//b",
        "a/", "..", ".", "x/../y", "é", "loss€", "", "%", "a\nb", "k" * 300, "k" * 299 + "@",
    ]  # fmt: skip
    names = [mlflow_key(k) for k in keys]
    assert len(set(names)) == len(keys)  # no two keys merge
    for key, name in zip(keys, names, strict=True):
        _validate_metric_name(name)  # MLflow's own checks: no exception
        _validate_param_name(name)
        assert len(name) <= 250
        if len(key) < 200:
            assert original_key(name) == key
    assert [mlflow_key(k) for k in ("train/loss", "acc_1", "top@1")] == [
        "train/loss",
        "acc_1",
        "top:40:1",
    ]
    # One store, however its URI is written.
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "m.db"
    assert store_key("sqlite:///m.db") == store_key(f"sqlite:///{db}") == f"sqlite:///{db}"
    assert store_key("HTTP://Example.org:5000/") == "http://example.org:5000"
    assert store_key("mlruns") == store_key((tmp_path / "mlruns").as_uri())


def test_a_run_whose_sync_runs_is_skipped_or_waited_for(store_uri: str) -> None:
    from tether.track.sinks.mlflow_after import sync_lock

    run = made_without_mlflow(2)
    with sync_lock(run.dir) as held:  # as a background sync holds it
        assert held.acquired
        skipped = tether_cli("mlflow", "sync", run.id[:13])
        assert skipped.returncode == 0, skipped.stderr
        assert f": skipped: an MLflow sync of it runs (pid {os.getpid()});" in skipped.stdout
        waited = tether_cli("mlflow", "sync", run.id[:13], "--wait", "--timeout", "0.5")
        assert waited.returncode == 1
        assert ": failed: its MLflow sync (pid " in waited.stdout and "after 0.5 s" in waited.stdout
    assert "sinks" not in json.loads((run.dir / "summary.json").read_text())  # nothing sent
    free = tether_cli("mlflow", "sync", run.id[:13], "--wait")
    assert free.returncode == 0 and ": created MLflow run " in free.stdout, free.stderr


def test_in_a_batch_job_the_run_waits_at_exit_for_its_sync(
    store_uri: str, runs_root: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, TETHER_RUNS=str(runs_root), PBS_JOBID="7.server")
    made = subprocess.run(
        [sys.executable, "-c", WITH_MLFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "tether: waiting for the MLflow sync of 1 run(s)" in made.stderr
    [row] = tether.open_store().list()
    assert wait_for_sync(Path(row.dir), 0)  # done before the process exited: the job may end
    state = sink_state(Path(row.dir))
    assert state["status"] == "ok" and state["rows"] == 30 and state["ended"] == "completed"
