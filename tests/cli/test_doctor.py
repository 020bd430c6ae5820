"""`tether doctor`: JSON with one entry per check; each check broken once, showing its remedy
(a port in use, a hostfile host the scheduler did not give, an unresolvable MASTER_ADDR, an
unreachable MLflow server and a W&B without credentials among them).

torch is replaced by small fake packages on PYTHONPATH (the probe runs in a child process),
which makes these tests fast and lets them break torch in every way that matters. Checks that
cannot be broken from outside the process (the Python version, a stale install, no launcher
anywhere) are broken through the `Context` the checks run against.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tether.distributed import doctor
from tether.distributed.doctor import CHECKS, Context, run_checks, services
from tether.track.sinks.mlflow import default_uri
from tether.workspace import resolve_runs_root

NAMES = [
    "python",
    "tether",
    "shared-env",
    "launchers",
    "mpi",
    "scheduler",
    "hostfile",
    "allocation",
    "launch-command",
    "rank-prefix",
    "master-addr",
    "master-port",
    "network",
    "torch",
    "accelerators",
    "backends",
    "timeouts",
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
    "cuda-nccl": """
__version__ = "2.9.0+fake"
class version:
    cuda = "12.4"
class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 1)
    get_device_name = staticmethod(lambda i: "Fake GPU")
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class distributed:
    is_available = staticmethod(lambda: True)
    is_gloo_available = staticmethod(lambda: True)
    is_nccl_available = staticmethod(lambda: True)
    is_mpi_available = staticmethod(lambda: False)
""",
    "hangs": "import time\ntime.sleep(60)\n",
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
    for name in ("TETHER_SCHEDULER", "MASTER_ADDR", "MASTER_PORT", "NCCL_SOCKET_IFNAME"):
        env.pop(name, None)
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


NAMES = [*NAMES, "remotes"]


def test_a_remote_without_rclone_is_a_failure_with_its_remedy(
    cli: Any, base_env: dict[str, str], work: Path
) -> None:
    (work / "tether.toml").write_text('[remotes]\nshared = "mys3:bucket/runs"\n')
    env = {**base_env, "PATH": "/nonexistent"}  # no rclone (the doctor runs by its full path)
    proc = cli("doctor", "--json", "--check", "remotes", env=env, cwd=work)
    (check,) = json.loads(proc.stdout)["checks"]
    assert (check["status"], check["summary"]) == ("fail", "shared: rclone is not on PATH")
    assert "apt-get install rclone" in check["remedy"]
    assert proc.returncode == 1


def test_json_has_one_entry_per_check(cli: Any, base_env: dict[str, str], work: Path) -> None:
    code, data = doctor_json(cli, base_env, work)
    # the command line adds the remotes check of tether push|pull (sync/health.py) after the rest
    assert [c["name"] for c in data["checks"]] == NAMES == [n for n, _ in CHECKS] + ["remotes"]
    for c in data["checks"]:
        assert set(c) == {"name", "status", "summary", "remedy", "details"}
        assert c["status"] in ("ok", "warn", "fail", "skip")
        assert (c["remedy"] is None) == (c["status"] in ("ok", "skip")), c
    checks = by_name(data)
    assert checks["torch"]["summary"] == "torch 9.9.9+fake (no CUDA; gloo)"
    assert checks["timeouts"]["summary"].startswith("gloo enforces")
    assert checks["accelerators"]["summary"].startswith("CPU only")
    assert checks["backends"]["summary"] == "available: gloo"
    assert checks["wandb"]["summary"].startswith("WANDB_MODE=offline")
    worst = max((c["status"] for c in data["checks"]), key=["skip", "ok", "warn", "fail"].index)
    worst = "ok" if worst == "skip" else worst
    assert data["status"] == worst
    assert code == (1 if worst == "fail" else 0)


def test_text_output_shows_remedies_and_exit_codes(
    cli: Any, base_env: dict[str, str], work: Path
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


def test_unknown_check_name(cli: Any, work: Path) -> None:
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
    "mlflow-server-down": ("mlflow", "fail", "start the server or fix the URI"),
    "wandb-no-key": ("wandb", "warn", "run `wandb login`, set WANDB_API_KEY"),
    "master-port-in-use": ("master-port", "fail", "export MASTER_PORT="),
    "master-addr-unresolvable": ("master-addr", "fail", "set MASTER_ADDR to the first host"),
    "hostfile-not-given": ("hostfile", "fail", "remove node3 from"),
    "hostfile-null": ("hostfile", "fail", 'scontrol show hostnames "$SLURM_JOB_NODELIST"'),
    "scheduler-null": ("scheduler", "fail", "run inside the allocation"),
    "allocation-ntasks": ("allocation", "fail", "give -n 2, or allocate them"),
    "allocation-gpus": ("allocation", "warn", "give -ppn 4 (one rank per GPU)"),
    "allocation-cores": ("allocation", "warn", "or fewer"),
    "rank-prefix": ("rank-prefix", "warn", "add --rank-prefix to tether launch (srun then gets"),
    "network": ("network", "fail", "export NCCL_SOCKET_IFNAME="),
    "torch-hangs": ("torch", "fail", "tether env yeet"),
    "timeouts-nccl-off": ("timeouts", "warn", "unset TORCH_NCCL_ASYNC_ERROR_HANDLING"),
    "timeouts-mpi": ("timeouts", "warn", "tether launch --idle-timeout"),
    "runs-root": ("runs-root", "fail", "set TETHER_RUNS or --runs-dir to a writable folder"),
    "disk": ("disk", "fail", "free space"),
}


def _closed_port(keep: list[socket.socket]) -> int:
    """A port nothing listens on (bound, so nothing else takes it during the test)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    keep.append(sock)
    return int(sock.getsockname()[1])


def _slurm(env: dict[str, str], nodelist: str = "node[1-2]", **more: str) -> None:
    env.update(SLURM_JOB_ID="77", SLURM_JOB_NODELIST=nodelist, **more)


def _break(case: str, env: dict[str, str], tmp_path: Path, keep: list[socket.socket]) -> list[str]:
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
    elif case == "mlflow-server-down":
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{_closed_port(keep)}"
    elif case == "wandb-no-key":
        if importlib.util.find_spec("wandb") is None:
            pytest.skip("wandb is not installed here")
        del env["WANDB_MODE"]
        env.update(HOME=str(tmp_path), WANDB_PROJECT="demo")  # no ~/.netrc, no key
    elif case == "master-port-in-use":
        port = _closed_port(keep)
        keep[-1].listen()
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    elif case == "master-addr-unresolvable":
        env["MASTER_ADDR"] = "no-such-host.invalid"
    elif case == "hostfile-not-given":
        _slurm(env)
        (tmp_path / "hosts").write_text("node1\nnode3\n")
        return ["--hostfile", str(tmp_path / "hosts")]
    elif case == "hostfile-null":
        (tmp_path / "hosts").write_text("(null)\n")
        return ["--hostfile", str(tmp_path / "hosts")]
    elif case == "scheduler-null":
        _slurm(env, "(null)")
    elif case == "allocation-ntasks":
        _slurm(env, SLURM_JOB_NUM_NODES="2", SLURM_NTASKS="2", SLURM_TASKS_PER_NODE="1(x2)")
        return ["-n", "4", "--nhosts", "2"]
    elif case == "allocation-gpus":
        _slurm(env, SLURM_JOB_NUM_NODES="2", SLURM_NTASKS="8", SLURM_GPUS_ON_NODE="4")
        return ["-n", "2", "--nhosts", "2"]
    elif case == "allocation-cores":
        return ["-n", str(len(os.sched_getaffinity(0)) + 1), "--launcher", "srun"]
    elif case == "rank-prefix":
        return ["-n", "2", "--launcher", "srun"]
    elif case == "network":
        if not Path("/sys/class/net").is_dir():
            pytest.skip("no /sys/class/net (not Linux)")
        env["NCCL_SOCKET_IFNAME"] = "nosuch0"
    elif case == "torch-hangs":
        env["PYTHONPATH"] = str(_fake_torch(tmp_path, "hangs"))
        return ["--torch-timeout", "0.5"]
    elif case == "timeouts-nccl-off":
        env["PYTHONPATH"] = str(_fake_torch(tmp_path, "cuda-nccl"))
        env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "0"
    elif case == "timeouts-mpi":
        env["TORCH_BACKEND"] = "mpi"
    elif case == "runs-root":
        env["TETHER_RUNS"] = str(_file(tmp_path) / "runs")
    elif case == "disk":
        return ["--min-free-gb", "1e9"]
    return []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_check_broken_once(
    cli: Any, base_env: dict[str, str], work: Path, tmp_path: Path, case: str
) -> None:
    name, status, remedy = BROKEN[case]
    keep: list[socket.socket] = []  # sockets held open while the doctor runs
    args = _break(case, base_env, tmp_path, keep)
    code, data = doctor_json(cli, base_env, work, "--check", name, *args)
    for sock in keep:
        sock.close()
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
    with socket.socket() as server:  # a W&B host that answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        env["WANDB_BASE_URL"] = f"http://127.0.0.1:{server.getsockname()[1]}"
        (tmp_path / ".netrc").write_text("machine 127.0.0.1\n  login user\n  password k\n")
        (tmp_path / ".netrc").chmod(0o600)
        (c,) = run_checks(Context(env=env), ["wandb"])
        assert c.status == "ok" and "~/.netrc" in c.summary and "answers" in c.summary
        (c,) = run_checks(Context(env={**env, "WANDB_API_KEY": "x" * 40}), ["wandb"])
        assert c.status == "ok"
    (c,) = run_checks(Context(env=env), ["wandb"])  # the host is gone now
    assert c.status == "warn" and "cannot be reached" in c.summary
    assert c.remedy is not None and "WANDB_MODE=offline" in c.remedy


def _clean_env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": os.environ["PATH"], **more}


def test_mlflow_default_is_the_sinks_sqlite_store(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (c,) = run_checks(Context(env=_clean_env(tmp_path), runs_dir=str(runs)), ["mlflow"])
    expected = default_uri(resolve_runs_root(str(runs)))
    assert expected.startswith("sqlite:///") and expected.endswith("/mlflow.db")
    assert c.details["uri"] == expected and expected in c.summary
    assert "./mlruns" not in c.summary
    (c,) = run_checks(
        Context(env=_clean_env(tmp_path), runs_dir=str(runs), fstype=lambda p: "nfs4"),
        ["mlflow"],
    )
    if c.details["installed"]:
        assert c.status == "warn" and "on nfs4" in c.summary
        assert c.remedy is not None and "local disk" in c.remedy


def test_shared_env_at_scale_suggests_yeet(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("a\nb\n")

    def shared_env(nhosts: int, kind: str) -> doctor.Check:
        ctx = Context(
            env=_clean_env(tmp_path),
            hostfile=str(hosts),
            launcher="srun",
            nhosts=nhosts,
            fstype=lambda path: kind,
        )
        (c,) = run_checks(ctx, ["shared-env"])
        return c

    c = shared_env(2, "lustre")
    assert c.status == "warn" and "2 hosts would import it" in c.summary
    assert c.remedy is not None
    assert c.remedy.startswith("copy it to each node first: tether env yeet")
    c = shared_env(1, "lustre")
    assert c.status == "ok" and "fine for one host" in c.summary
    c = shared_env(2, "ext4")
    assert c.status == "ok" and "local disk" in c.summary


def test_launch_command_and_rank_prefix_follow_the_request(tmp_path: Path) -> None:
    ctx = Context(env=_clean_env(tmp_path), nprocs=2, launcher="srun", rank_prefix=True)
    command, prefix = run_checks(ctx, ["launch-command", "rank-prefix"])
    assert command.status == "ok"
    assert "srun --nodes=1 --ntasks=2 --ntasks-per-node=2 --label" in command.summary
    assert prefix.status == "ok" and "(--label)" in prefix.summary
    (one,) = run_checks(Context(env=_clean_env(tmp_path), launcher="srun"), ["rank-prefix"])
    assert one.status == "ok" and one.summary.startswith("one rank")


def test_allocation_fits_the_slurm_job(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, SLURM_JOB_ID="9", SLURM_JOB_NODELIST="n[1-2]")
    env.update(SLURM_JOB_NUM_NODES="2", SLURM_NTASKS="4", SLURM_TASKS_PER_NODE="2(x2)")
    (c,) = run_checks(Context(env=env), ["allocation"])
    assert c.status == "ok", c
    assert c.summary == "4 ranks on 2 hosts (2 per host) in Slurm job 9 (2 nodes, 4 tasks)"
    (c,) = run_checks(Context(env=env, nhosts=1), ["allocation"])
    assert c.status == "warn" and "1 of the 2 nodes" in c.summary
    (c,) = run_checks(Context(env=env, nprocs=3, ppn=3), ["allocation"])
    assert c.status == "fail" and c.remedy == "give -ppn 2, or allocate --ntasks-per-node=3"


def test_named_interfaces_that_are_up_pass(tmp_path: Path) -> None:
    if not Path("/sys/class/net/lo").exists():
        pytest.skip("no /sys/class/net (not Linux)")
    env = _clean_env(tmp_path, NCCL_SOCKET_IFNAME="lo", GLOO_SOCKET_IFNAME="lo")
    (c,) = run_checks(Context(env=env), ["network"])
    assert c.status == "ok" and "NCCL_SOCKET_IFNAME=lo, GLOO_SOCKET_IFNAME=lo are up" in c.summary


def test_port_of_a_remote_master_is_skipped(tmp_path: Path) -> None:
    """A MASTER_ADDR that resolves but is not this host: rank 0 binds the port there."""
    env = _clean_env(tmp_path, MASTER_ADDR="192.0.2.1", MASTER_PORT="29511")  # TEST-NET-1
    addr, port = run_checks(Context(env=env), ["master-addr", "master-port"])
    assert addr.status == "ok" and "another host" in addr.summary
    assert port.status == "skip" and "not here" in port.summary and port.remedy is None


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
