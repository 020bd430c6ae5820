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
from tether.track.metrics_file import read_metrics

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
    state = sink_state(run.dir)
    assert state["status"] == "ok" and state["rows"] == 1201
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
    assert got.data.metrics["eval/acc"] == 0.9 and got.data.metrics["odd key_1"] == 1.0
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
    got = client(store_uri).get_run(sink_state(record.dir)["run_id"])
    assert got.info.status == "FAILED"
    assert got.data.metrics == {"x": 1.0}


def test_open_run_updates_in_place_and_new_supersedes(store_uri: str) -> None:
    with tether.start_run({"lr": 0.1}, name="train", snapshot=False) as run:
        run.add_sink("mlflow")
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    first = sink_state(run.dir)["run_id"]
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
    first = sink_state(run.dir)["run_id"]
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
    state = sink_state(record.dir)
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
    assert "metric sink 'mlflow' failed (open, 1 try)" in made.stderr
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
    states = [sink_state(store.load(r.id).dir) for r in store.list()]
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
            run.add_sink("mlflow")
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
            broken.add_sink("mlflow")
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
