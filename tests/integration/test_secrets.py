"""Secrets given on a command line never reach a record: real decorated mains, `tether run`,
`tether launch`, MLflow's sqlite store, `tether reproduce`, and the modes files get under a
group umask.

Each test greps every byte of every file the records live in (the runs root with its index,
the MLflow database and artifacts) for the literal secret.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.test_snapshot import make_repo

SECRET = "SUPERSECRET123"
OTHER = "hunter2-other-value"
TOKEN = "tok-abc-987654"

MAIN = """
import json, os, pathlib, sys
import tether

@tether.experiment(config="conf.yaml", mlflow={mlflow}, secrets=["db.pass_phrase"])
def main(cfg, run):
    # the code gets the real values, whatever the record says
    pathlib.Path(os.environ["SEEN_FILE"]).write_text(
        json.dumps({{"api_key": cfg.api_key, "other": cfg.other, "phrase": cfg.db.pass_phrase}})
    )
    print("training with", cfg.lr)
    run.log_metrics({{"loss": 0.5}})

if __name__ == "__main__":
    main()
"""
CONF = "lr: 0.1\napi_key: ''\nother: none\nrng_key: 7\neos_token: '</s>'\ndb:\n  pass_phrase: x\n"


def files_under(*roots: Path) -> list[Path]:
    out = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out += [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return out


def holding(text: str, *roots: Path) -> list[str]:
    """The files under `roots` whose bytes contain `text` (SQLite pages, WAL and all)."""
    needle = text.encode()
    return [str(p) for p in files_under(*roots) if needle in p.read_bytes()]


def need_mlflow() -> None:
    try:
        importlib.import_module("mlflow")
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("mlflow is not installed (make dev installs it)")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "proj",
        {"train.py": MAIN.format(mlflow="True"), "conf.yaml": CONF, ".gitignore": "seen*\n"},
    )


def train(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def test_a_command_line_api_key_is_nowhere_in_the_runs_root_the_index_or_mlflow(
    project: Path, tmp_path: Path, runs_root: Path
) -> None:
    need_mlflow()
    mlruns = tmp_path / "mlflow"
    mlruns.mkdir()
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlruns / 'mlflow.db'}",
        "MLFLOW_ARTIFACTS_DESTINATION": str(mlruns / "artifacts"),
        "SEEN_FILE": str(tmp_path / "seen.json"),
        "TETHER_SINK_BACKOFF": "0.01",
    }
    # MLflow's default artifact root is ./mlruns of the working folder: keep it in view too.
    proc = train(
        project,
        env,
        f"api_key={SECRET}",
        f"other={OTHER}",
        "db.pass_phrase=open-sesame-42",
        "--secret",
        "other",
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"api_key": SECRET, "other": OTHER, "phrase": "open-sesame-42"}
    # the run's MLflow sync runs in the background after it: wait for it (and complete it)
    sync = run_cli("mlflow", "sync", "--wait", cwd=project, env=env)
    assert sync.returncode == 0, sync.stderr
    places = (runs_root, mlruns, project / "mlruns")
    assert files_under(mlruns), "MLflow wrote nothing: the test would prove nothing"
    assert any(p.name == "index.db" for p in files_under(runs_root))
    for value in (SECRET, OTHER, "open-sesame-42"):
        assert holding(value, *places) == []
    (run_dir,) = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    lock = (run_dir / "run.lock").read_text()
    assert "api_key: <redacted:" in lock and "other: <redacted:" in lock
    assert "pass_phrase: <redacted:" in lock
    # ordinary keys that merely end like a secret stay as they were
    assert "rng_key: 7" in lock and "eos_token: </s>" in lock
    # the declaration itself is kept: a reproduction redacts the same key
    assert "- --secret\n- other\n" in lock
    assert "training with 0.1" in (run_dir / "output.log").read_text()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (mlrun,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert mlrun.data.params["api_key"].startswith("<redacted:")
    assert mlrun.data.params["lr"] == "0.1"


def test_reproduce_takes_redacted_values_from_the_environment(
    tmp_path: Path, runs_root: Path
) -> None:
    repo = make_repo(
        tmp_path / "proj",
        {"train.py": MAIN.format(mlflow="False"), "conf.yaml": CONF, ".gitignore": "seen*\n"},
    )
    env = {"SEEN_FILE": str(tmp_path / "seen.json")}
    assert train(repo, env, f"api_key={SECRET}").returncode == 0
    (tmp_path / "seen.json").unlink()
    # Not a terminal and no variable: one line naming the variable to set, exit 2.
    proc = run_cli("reproduce", "1", cwd=repo, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "TETHER_SECRET_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "error" in line] == [
        proc.stderr.splitlines()[-1]
    ]
    assert not (tmp_path / "seen.json").exists()
    # db.pass_phrase is declared by the code: its default from conf.yaml is redacted too.
    env["TETHER_SECRET_DB_PASS_PHRASE"] = "x"
    proc = run_cli(
        "reproduce", "1", "--json", cwd=repo, env={**env, "TETHER_SECRET_API_KEY": SECRET}
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["same_inputs"], result  # the same value under the same key: the same record
    assert json.loads((tmp_path / "seen.json").read_text())["api_key"] == SECRET
    assert holding(SECRET, runs_root) == []
    # A value that does not match the record is used, with a warning.
    proc = run_cli(
        "reproduce", "1", "--json", cwd=repo, env={**env, "TETHER_SECRET_API_KEY": "wrong-1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "does not match" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "seen.json").read_text())["api_key"] == "wrong-1"


OP_PROJECT = """\
project-id = "0b5d3f0e-5a43-4d47-9a4f-1f3c3ad2e0a2"
secrets = ["pin"]

[ops.fetch]
exec = "python fetch.py --token {token} --user {user} --pin {pin}"
sourcecode = ["fetch.py"]
[ops.fetch.config]
token = ""
user = "ann"
pin = 0
"""
FETCH = """
import os, sys, pathlib
args = sys.argv[1:]
pathlib.Path(os.environ["SEEN_FILE"]).write_text(args[args.index("--token") + 1] + " " + args[-1])
print("fetched for", args[args.index("--user") + 1])
print("loss: 0.25")
"""


def test_tether_run_secret_flag_is_redacted_in_every_record(
    tmp_path: Path, runs_root: Path
) -> None:
    proj = tmp_path / "ops"
    proj.mkdir()
    (proj / "tether.toml").write_text(OP_PROJECT)
    (proj / "fetch.py").write_text(FETCH)
    seen = tmp_path / "seen.txt"
    proc = run_cli(
        "run", "fetch", f"token={TOKEN}", "pin=8675309", "--secret", "token", cwd=proj,
        env={"SEEN_FILE": str(seen)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == f"{TOKEN} 8675309"  # the op's command got the real values
    for value in (TOKEN, "8675309"):  # --secret on the command line, `secrets` in tether.toml
        assert holding(value, runs_root) == []
    (run_dir,) = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    log = (run_dir / "output.log").read_text()
    assert "--token '<redacted:" in log and "fetched for ann" in log
    lock = (run_dir / "run.lock").read_text()
    assert "token: <redacted:" in lock and "pin: <redacted:" in lock and "user: ann" in lock
    listing = json.loads(run_cli("runs", "--json", cwd=proj, check=True).stdout)
    assert TOKEN not in json.dumps(listing)
    # tether reproduce fills the op's flags from TETHER_SECRET_<FLAG>, and redacts them again
    seen.unlink()
    values = {"TETHER_SECRET_TOKEN": TOKEN, "TETHER_SECRET_PIN": "8675309"}
    proc = run_cli("reproduce", "1", "--json", cwd=proj, env={"SEEN_FILE": str(seen), **values})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["same_inputs"]
    assert seen.read_text() == f"{TOKEN} 8675309"
    for value in (TOKEN, "8675309"):
        assert holding(value, runs_root) == []


LAUNCHED = """
import os, pathlib, sys
pathlib.Path(os.environ["SEEN_FILE"]).write_text(" ".join(sys.argv[1:]))
"""


def test_tether_launch_records_the_command_redacted(tmp_path: Path, runs_root: Path) -> None:
    if shutil.which("mpiexec") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must run the launch tests: mpiexec is not installed")
        pytest.skip("mpiexec is not installed (make system-deps)")
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text(LAUNCHED)
    seen = tmp_path / "seen.txt"
    json_out = tmp_path / "out" / "launch.json"
    proc = run_cli(
        "launch", "-n", "1", "--json-out", str(json_out), "--",
        sys.executable, "job.py", f"api_key={SECRET}", "--password", OTHER,
        cwd=work, env={"SEEN_FILE": str(seen), "TETHER_SCHEDULER": "local"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == f"api_key={SECRET} --password {OTHER}"
    assert [p for p in runs_root.iterdir() if (p / "launch.json").is_file()]
    for value in (SECRET, OTHER):
        assert holding(value, runs_root, json_out) == []
    record = json.loads(json_out.read_text())
    assert any(w.startswith("api_key=<redacted:") for w in record["user_command"])


def test_index_and_run_files_follow_a_group_umask(tmp_path: Path, runs_root: Path) -> None:
    script = tmp_path / "umask_run.py"
    script.write_text(
        "import os\n"
        "os.umask(0o002)\n"
        "import tether\n"
        "with tether.start_run({'lr': 1}, snapshot=False) as run:\n"
        "    run.log_metrics({'loss': 1.0})\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    for path in (runs_root / "index.db", run_dir / "run.lock", run_dir / "state.json"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o060 == 0o060, f"{path.name} is {oct(mode)}"
        assert mode & 0o002 == 0


BATCH = """
import json, os, pathlib
import tether

@tether.experiment(defaults={"seed": 0, "api_key": "", "tasks": [1, 2], "save_dir": "???"},
                   snapshot=False)
def train(cfg, run):
    pathlib.Path(cfg.save_dir, "seen.txt").write_text(cfg.api_key)
    if cfg.seed == 2 and os.environ.get("FAIL_TWO"):
        raise SystemExit(3)
    run.log_metrics({"loss": cfg.seed / 10})

if __name__ == "__main__":
    train()
"""


def test_a_batch_records_its_children_and_task_pool_redacted(
    tmp_path: Path, runs_root: Path
) -> None:
    script = tmp_path / "batch.py"
    script.write_text(BATCH)

    def batch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )

    proc = batch("--task-to", "seed", f"api_key={SECRET}", FAIL_TWO="1")
    assert proc.returncode == 1, proc.stderr  # one task failed

    def seen_values() -> list[str]:
        found = sorted(runs_root.rglob("seen.txt"))
        values = [p.read_text() for p in found]
        for path in found:
            path.unlink()  # written by the test's code, not by tether
        return values

    assert seen_values() == [SECRET, SECRET]  # the tasks got the real value
    assert holding(SECRET, runs_root) == []
    parent = next(
        p for p in runs_root.iterdir() if p.is_dir() and p.name != "cache"
        and (p / "run.lock").is_file() and "train+batch" in (p / "run.lock").read_text()
    )  # fmt: skip
    assert "api_key: <redacted:" in (parent / "run.lock").read_text()
    # --retry-failed rebuilds the tasks' config from the pool: the value comes from the
    # environment (or a prompt), never from the record
    proc = batch("--retry-failed", parent.name)
    assert proc.returncode == 2 and "TETHER_SECRET_API_KEY" in proc.stderr, proc.stderr
    proc = batch("--retry-failed", parent.name, TETHER_SECRET_API_KEY=SECRET)
    assert proc.returncode == 0, proc.stderr
    assert seen_values() == [SECRET]
    assert holding(SECRET, runs_root) == []


@pytest.mark.parametrize("executor", [[], ["--executor", "local", "--n-jobs", "2"]])
def test_an_op_batch_records_its_trials_redacted(
    tmp_path: Path, runs_root: Path, executor: list[str]
) -> None:
    proj = tmp_path / "ops"
    proj.mkdir()
    (proj / "tether.toml").write_text(OP_PROJECT)
    (proj / "fetch.py").write_text(FETCH)
    seen = tmp_path / "seen.txt"
    proc = run_cli(
        "run", "fetch", f"token={TOKEN}", "user=[ann,bob]", "pin=8675309", "--secret", "token",
        "-y", *executor, cwd=proj, env={"SEEN_FILE": str(seen)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == f"{TOKEN} 8675309"  # the trials' commands got the real values
    runs = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    assert len(runs) == 3 and any((p / "batch.json").is_file() for p in runs)
    for value in (TOKEN, "8675309"):
        assert holding(value, runs_root) == []


ATTACHING = """
import tether

@tether.experiment(defaults={"token": "", "user": "", "save_dir": "???"})
def main(cfg):
    print("attached for", cfg.user, len(cfg.token))

if __name__ == "__main__":
    main()
"""


def test_a_script_an_op_starts_records_its_config_redacted_too(
    tmp_path: Path, runs_root: Path
) -> None:
    proj = tmp_path / "ops"
    proj.mkdir()
    (proj / "tether.toml").write_text(
        '[ops.job]\nexec = "python job.py token={token} user={user}"\nsourcecode = ["job.py"]\n'
        '[ops.job.config]\ntoken = ""\nuser = "ann"\n'
    )
    (proj / "job.py").write_text(ATTACHING)
    proc = run_cli("run", "job", f"token={TOKEN}", "--secret", "token", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    assert f"attached for ann {len(TOKEN)}" in proc.stdout
    (run_dir,) = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    lock = (run_dir / "run.lock").read_text()
    assert "attached for ann" in (run_dir / "output.log").read_text()
    assert "token: <redacted:" in lock and "user: ann" in lock
    assert holding(TOKEN, runs_root) == []


FAILING = """
import tether

@tether.experiment(config="conf.yaml")
def main(cfg, run):
    print("connecting with", cfg.api_key)  # a careless print and a message quoting it
    raise RuntimeError(f"login refused for key {cfg.api_key}")

if __name__ == "__main__":
    main()
"""


def test_a_failure_quoting_a_secret_records_it_redacted(tmp_path: Path, runs_root: Path) -> None:
    repo = make_repo(tmp_path / "fail", {"train.py": FAILING, "conf.yaml": CONF})
    proc = train(repo, {}, f"api_key={SECRET}")
    assert proc.returncode != 0
    assert SECRET in proc.stderr  # the console is the user's own: the traceback is shown whole
    (run_dir,) = [p for p in runs_root.iterdir() if (p / "run.lock").is_file()]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "failed" and "login refused for key <redacted:" in state["error"]
    assert "connecting with <redacted:" in (run_dir / "output.log").read_text()
    assert holding(SECRET, runs_root) == []
