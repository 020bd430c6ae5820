"""`tether doctor`: JSON with one entry per check; each check broken once, showing its remedy.

torch is replaced by small fake packages on PYTHONPATH (the probe runs in a child process),
which makes these tests fast and lets them break torch in every way that matters. Checks that
cannot be broken from outside the process (the Python version, a stale install, no launcher
anywhere) are broken through the `Context` the checks run against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tether.distributed import doctor
from tether.distributed.doctor import CHECKS, Context, run_checks, services

NAMES = [
    "python",
    "tether",
    "launchers",
    "mpi",
    "scheduler",
    "hostfile",
    "torch",
    "accelerators",
    "backends",
    "wandb",
    "mlflow",
    "runs-root",
    "disk",
]

FAKE_TORCH = {
    "cpu": """
__version__ = "9.9.9+fake"
class cuda:
    is_available = staticmethod(lambda: False)
    device_count = staticmethod(lambda: 0)
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class distributed:
    is_available = staticmethod(lambda: True)
    is_gloo_available = staticmethod(lambda: True)
    is_nccl_available = staticmethod(lambda: False)
    is_mpi_available = staticmethod(lambda: False)
""",
    "missing": "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n",
    "broken": "raise OSError('libcudart.so.12: cannot open shared object file')\n",
    "no-distributed": """
__version__ = "9.9.9+fake"
class cuda:
    is_available = staticmethod(lambda: False)
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class distributed:
    is_available = staticmethod(lambda: False)
""",
    "no-gloo": """
__version__ = "9.9.9+fake"
class cuda:
    is_available = staticmethod(lambda: False)
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class distributed:
    is_available = staticmethod(lambda: True)
    is_gloo_available = staticmethod(lambda: False)
    is_nccl_available = staticmethod(lambda: False)
    is_mpi_available = staticmethod(lambda: True)
""",
    "cuda-no-nccl": """
__version__ = "9.9.9+fake"
class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 2)
    get_device_name = staticmethod(lambda i: "Fake GPU")
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class distributed:
    is_available = staticmethod(lambda: True)
    is_gloo_available = staticmethod(lambda: True)
    is_nccl_available = staticmethod(lambda: False)
    is_mpi_available = staticmethod(lambda: False)
""",
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """A healthy environment: a fake CPU torch, W&B offline, no scheduler."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "PBS_", "WANDB_", "MLFLOW_", "TETHER_HOSTFILE"))
    }
    env.pop("TETHER_SCHEDULER", None)
    env["PYTHONPATH"] = str(_fake_torch(tmp_path, "cpu"))
    env["WANDB_MODE"] = "offline"
    return env


def _fake_torch(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / f"torch-{kind}"
    (root / "torch").mkdir(parents=True, exist_ok=True)
    (root / "torch" / "__init__.py").write_text(FAKE_TORCH[kind])
    return root


def doctor_json(cli: Any, env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli("doctor", "--json", *args, env=env, cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["checks"]}


def test_json_has_one_entry_per_check(cli, base_env: dict[str, str], work: Path) -> None:
    code, data = doctor_json(cli, base_env, work)
    assert [c["name"] for c in data["checks"]] == NAMES == [name for name, _ in CHECKS]
    for c in data["checks"]:
        assert set(c) == {"name", "status", "summary", "remedy", "details"}
        assert c["status"] in ("ok", "warn", "fail")
        assert (c["remedy"] is None) == (c["status"] == "ok"), c
    checks = by_name(data)
    assert checks["torch"]["summary"] == "torch 9.9.9+fake"
    assert checks["accelerators"]["summary"].startswith("CPU only")
    assert checks["backends"]["summary"] == "available: gloo"
    assert checks["wandb"]["summary"].startswith("WANDB_MODE=offline")
    worst = max((c["status"] for c in data["checks"]), key=["ok", "warn", "fail"].index)
    assert data["status"] == worst
    assert code == (1 if worst == "fail" else 0)


def test_text_output_shows_remedies_and_exit_codes(
    cli, base_env: dict[str, str], work: Path
) -> None:
    env = dict(base_env, NO_COLOR="1", MLFLOW_TRACKING_URI="https://mlflow.example")
    env["MLFLOW_TRACKING_USERNAME"] = "me"  # without the password: a warning
    proc = cli("doctor", "--check", "mlflow", "--check", "python", env=env, cwd=work)
    assert proc.returncode == 0  # warnings alone pass
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ok    python")
    assert lines[1].startswith("WARN  mlflow  https://mlflow.example: only one of")
    assert lines[2].strip() == "-> set both, or MLFLOW_TRACKING_TOKEN"
    assert lines[-1] == "1 ok, 1 warning, 0 failed"
    proc = cli("doctor", "--check", "disk", "--min-free-gb", "1e9", env=env, cwd=work)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL  disk")
    assert proc.stdout.splitlines()[-1] == "0 ok, 0 warnings, 1 failed"


def test_unknown_check_name(cli, work: Path) -> None:
    proc = cli("doctor", "--check", "torhc", cwd=work)
    assert proc.returncode == 2 and "no check 'torhc'; did you mean 'torch'?" in proc.stderr


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


BROKEN: dict[str, Any] = {
    # name: (how to break it: env changes and extra args, expected status, text in the remedy)
    "mpi-unrecognised": ("mpi", "warn", "tell tether which it is with --mpi"),
    "mpi-broken": ("mpi", "fail", "check the MPI installation"),
    "scheduler": ("scheduler", "fail", "unset TETHER_SCHEDULER, or set it to one of"),
    "scheduler-pbs": ("scheduler", "fail", "run inside the PBS job, or give --hostfile"),
    "hostfile": ("hostfile", "fail", "check the path given to --hostfile"),
    "hostfile-empty": ("hostfile", "fail", "write one host name per line"),
    "torch-missing": ("torch", "warn", "pip install 'tether[torch]'"),
    "torch-broken": ("torch", "fail", "reinstall torch"),
    "accelerators": ("accelerators", "warn", "pip install 'tether[torch]'"),
    "backends-no-distributed": ("backends", "fail", "torch build with distributed support"),
    "backends-no-gloo": ("backends", "fail", "wheels, which include gloo"),
    "backends-cuda-no-nccl": ("backends", "warn", "CUDA build of torch that includes NCCL"),
    "mlflow": ("mlflow", "fail", "point MLFLOW_TRACKING_URI at a writable folder"),
    "runs-root": ("runs-root", "fail", "set TETHER_RUNS or --runs-dir to a writable folder"),
    "disk": ("disk", "fail", "free space"),
}


def _break(case: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    def fake_mpiexec(body: str) -> None:
        bin_dir = tmp_path / "fake-bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "mpiexec").write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / "mpiexec").chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    if case == "mpi-unrecognised":
        fake_mpiexec("echo 'FooMPI launcher 0.1'")
    elif case == "mpi-broken":
        fake_mpiexec("exit 127")
    elif case == "scheduler":
        env["TETHER_SCHEDULER"] = "nope"
    elif case == "scheduler-pbs":
        env["PBS_JOBID"] = "3.server"  # and no PBS_NODEFILE
    elif case == "hostfile":
        return ["--hostfile", str(tmp_path / "missing-hosts")]
    elif case == "hostfile-empty":
        (tmp_path / "hosts").write_text("# nobody\n")
        env["TETHER_HOSTFILE"] = str(tmp_path / "hosts")
    elif case in ("torch-missing", "accelerators"):
        env["PYTHONPATH"] = str(_fake_torch(tmp_path, "missing"))
    elif case == "torch-broken":
        env["PYTHONPATH"] = str(_fake_torch(tmp_path, "broken"))
    elif case.startswith("backends-"):
        env["PYTHONPATH"] = str(_fake_torch(tmp_path, case[len("backends-") :]))
    elif case == "mlflow":
        env["MLFLOW_TRACKING_URI"] = (_file(tmp_path) / "mlruns").as_uri()
    elif case == "runs-root":
        env["TETHER_RUNS"] = str(_file(tmp_path) / "runs")
    elif case == "disk":
        return ["--min-free-gb", "1e9"]
    return []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_check_broken_once(
    cli, base_env: dict[str, str], work: Path, tmp_path: Path, case: str
) -> None:
    name, status, remedy = BROKEN[case]
    args = _break(case, base_env, tmp_path)
    code, data = doctor_json(cli, base_env, work, "--check", name, *args)
    (check,) = data["checks"]
    assert check["name"] == name
    assert check["status"] == status, check
    assert remedy in check["remedy"], check
    assert code == (1 if status == "fail" else 0)


# -- checks that are broken through the Context -------------------------------------------------
def test_old_python() -> None:
    (c,) = run_checks(Context(python=(3, 9, 18)), ["python"])
    assert c.status == "fail" and "3.9.18 is older than 3.10" in c.summary
    assert c.remedy is not None and "Python 3.10 or newer" in c.remedy


def test_stale_tether_install() -> None:
    (c,) = run_checks(Context(installed_version=lambda: "0.0.1"), ["tether"])
    assert c.status == "warn" and "but 0.0.1 is installed" in c.summary
    assert c.remedy is not None and "pip install -e ." in c.remedy
    (c,) = run_checks(Context(installed_version=lambda: None), ["tether"])
    assert c.status == "warn" and "not installed here" in c.summary


def test_no_launcher_on_path() -> None:
    ctx = Context(which=lambda program, env: None)
    launchers, mpi = run_checks(ctx, ["launchers", "mpi"])
    assert launchers.status == "fail"
    assert launchers.summary == "no launcher on PATH: none of mpiexec, srun, torchrun"
    assert launchers.remedy is not None and "apt install openmpi-bin" in launchers.remedy
    assert mpi.status == "warn" and "no mpiexec on PATH" in mpi.summary


def test_wandb_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services, "_has_module", lambda name, ctx: True)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin"}
    (c,) = run_checks(Context(env=env), ["wandb"])
    assert c.status == "warn" and "no credentials for api.wandb.ai" in c.summary
    assert c.remedy is not None and "wandb login" in c.remedy
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    (tmp_path / ".netrc").chmod(0o600)
    (c,) = run_checks(Context(env=env), ["wandb"])
    assert c.status == "ok" and "~/.netrc" in c.summary
    (c,) = run_checks(Context(env={**env, "WANDB_API_KEY": "x" * 40}), ["wandb"])
    assert c.status == "ok"


def test_a_crashing_check_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: Context) -> doctor.Check:
        raise RuntimeError("surprise")

    monkeypatch.setattr(doctor, "CHECKS", [("boom", boom)])
    (c,) = run_checks(Context())
    assert c.status == "fail" and "the check itself failed: RuntimeError: surprise" in c.summary


def test_real_torch_probe_when_installed() -> None:
    """The probe against the environment's own torch (skipped where torch is absent)."""
    pytest.importorskip("torch")
    (c,) = run_checks(Context(), ["torch"])
    assert c.status == "ok" and c.summary.startswith("torch ")
