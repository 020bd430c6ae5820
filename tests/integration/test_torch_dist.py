"""tether.distributed: setup_torch, wrap_model, distributed_loader on real ranks; the ViT example.

Ranks are real processes started by Open MPI's `mpiexec` (or `tether launch`), talking gloo on
the CPU. Everything a rank needs is set in the children's environment only: the test process
never gets MASTER_ADDR/MASTER_PORT (a leaked pair makes the next gloo test wait for minutes).
A missing torch, mpiexec or `datasets` skips with a reason outside CI and fails in CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tether.distributed import torch as tdist
from tether.errors import TetherError
from tether.track.metrics_file import read_metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "vit_digits" / "train.py"
BIN = Path(sys.executable).parent
TIMEOUT = 300
IN_CI = os.environ.get("CI", "").lower() == "true"
# Launcher and scheduler variables of an outer job (the suite may itself run under Slurm or MPI).
FOREIGN = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "TORCH_BACKEND",
    "GLOO_SOCKET_IFNAME",
    "TETHER_HOSTFILE",
    "HOSTFILE",
    "TETHER_JOB_ID",
    "TETHER_LAUNCH_ID",
    "TETHER_LAUNCH_DIR",
    "TETHER_RUN_DIR",
    "TETHER_SCHEDULER",
)
FOREIGN_PREFIXES = ("OMPI_", "PMI_", "PMIX_", "PALS_", "SLURM_", "PBS_", "TORCHELASTIC_")


def need(what: str, ok: bool, how: str) -> None:
    if ok:
        return
    message = f"{what} is missing ({how})"
    if IN_CI:
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


def need_torch() -> None:
    need("torch", importlib.util.find_spec("torch") is not None, "make dev installs torch==2.13.0")


def need_openmpi() -> str:
    mpiexec = shutil.which("mpiexec")
    need("mpiexec", mpiexec is not None, "apt-get install openmpi-bin; make system-deps")
    assert mpiexec is not None
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    need("Open MPI", "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout,
         "these tests drive Open MPI's mpiexec")  # fmt: skip
    return mpiexec


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in FOREIGN and not k.startswith(FOREIGN_PREFIXES)
    }
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def mpiexec_argv(n: int) -> list[str]:
    argv = [need_openmpi()]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    return [*argv, "--oversubscribe", "-n", str(n)]


def run(argv: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        env=child_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


# -- without torch: choices and errors --------------------------------------------------------
def test_backend_follows_the_device_unless_torch_backend() -> None:
    assert tdist.pick_backend("cuda:1", {}) == "nccl"
    assert tdist.pick_backend("xpu:0", {}) == "xccl"
    assert tdist.pick_backend("cpu", {}) == "gloo"
    assert tdist.pick_backend("mps", {}) == "gloo"
    assert tdist.pick_backend("cuda:0", {"TORCH_BACKEND": "gloo"}) == "gloo"


def test_info_without_setup_reads_the_launcher_and_imports_nothing() -> None:
    code = (
        "import sys; from tether import dist; i = dist.info(); "
        "print(i.rank, i.world_size, i.launcher, i.initialized, i.backend, 'torch' in sys.modules)"
    )
    env = child_env(Path("."), OMPI_COMM_WORLD_RANK="1", OMPI_COMM_WORLD_SIZE="4")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["1", "4", "openmpi", "False", "None", "False"], out.stderr


def test_wrap_model_needs_setup() -> None:
    with pytest.raises(TetherError, match="setup_torch"):
        tdist.wrap_model(object(), "ddp")
    with pytest.raises(TetherError, match="unknown strategy 'zero'"):
        tdist.wrap_model(object(), "zero")


# -- one process ------------------------------------------------------------------------------
SINGLE = r"""
import gc, json, os, random, sys
from tether import dist
import torch

before = {k: os.environ.get(k) for k in ("RANK", "MASTER_ADDR", "MASTER_PORT")}
info = dist.setup_torch(seed=5)
again = dist.setup_torch(seed=99)
x = torch.ones(3)
torch.distributed.all_reduce(x)
draw = random.random()
random.seed(5)
exported = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
model = dist.wrap_model(torch.nn.Linear(4, 2), "ddp")
loss = model(torch.randn(8, 4)).sum()
loss.backward()
wrapped = type(model).__name__
# The DDP wrapper goes before its process group does (as in a real script's end): a reducer
# destroyed at interpreter exit after the group is gone can abort the process in gloo.
del model, loss
gc.collect()
dist.cleanup()
dist.cleanup()  # twice is fine
after = {k: os.environ.get(k) for k in ("RANK", "MASTER_ADDR", "MASTER_PORT")}
print(json.dumps({
    "info": info.as_dict(), "same": again is info, "sum": x.tolist(),
    "seeded": draw == random.random(), "exported": exported, "before": before, "after": after,
    "initialized": torch.distributed.is_initialized(), "info_after": dist.info().initialized,
    "wrapped": wrapped,
}))
"""


def test_single_process_gets_a_group_of_one(tmp_path: Path) -> None:
    need_torch()
    script = tmp_path / "single.py"
    script.write_text(SINGLE, encoding="utf-8")
    out = json.loads(ok(run([sys.executable, str(script)], tmp_path)).stdout.splitlines()[-1])
    info = out["info"]
    assert (info["rank"], info["world_size"], info["launcher"]) == (0, 1, "none")
    assert (info["backend"], info["device"], info["seed"]) == ("gloo", "cpu", 5)
    assert out["same"] and out["sum"] == [1.0, 1.0, 1.0] and out["seeded"]
    assert out["exported"] == {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    assert out["before"] == out["after"] == {"RANK": None, "MASTER_ADDR": None, "MASTER_PORT": None}
    assert not out["initialized"] and not out["info_after"]
    assert out["wrapped"] == "DistributedDataParallel"


def test_setup_keeps_variables_the_user_set(tmp_path: Path) -> None:
    need_torch()
    code = (
        "import os; from tether import dist; i = dist.setup_torch(); dist.cleanup(); "
        "print(i.master_port, os.environ['MASTER_PORT'])"
    )
    proc = ok(run([sys.executable, "-c", code], tmp_path, MASTER_PORT="23456"))
    assert proc.stdout.split() == ["23456", "23456"]


def test_bad_backend_fails_and_unexports(tmp_path: Path) -> None:
    need_torch()
    code = (
        "import os\nfrom tether import dist\n"
        "try:\n    dist.setup_torch()\nexcept Exception as exc:\n"
        "    print('failed', type(exc).__name__, os.environ.get('MASTER_ADDR'))\n"
    )
    proc = ok(run([sys.executable, "-c", code], tmp_path, TORCH_BACKEND="no-such-backend"))
    assert proc.stdout.split()[0::2] == ["failed", "None"], proc.stdout


# -- two ranks under mpiexec ------------------------------------------------------------------
RANKS = r"""
import json, os, sys
import torch
from torch import nn
from tether import dist

out = sys.argv[1]
info = dist.setup_torch(seed=3)
rng = torch.rand(1).item()  # drawn with this rank's seed
rank, world = info.rank, info.world_size
t = torch.tensor([float(rank + 1)])
torch.distributed.all_reduce(t)

# DDP: different data per rank, equal weights after a step.
torch.manual_seed(0)
ddp = dist.wrap_model(nn.Linear(4, 1), "ddp")
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
ddp(torch.full((2, 4), float(rank))).pow(2).sum().backward()
opt.step()
w = dist.unwrap_model(ddp).weight.detach().clone()
gathered = [torch.zeros_like(w) for _ in range(world)]
torch.distributed.all_gather(gathered, w)
ddp_equal = all(torch.equal(g, gathered[0]) for g in gathered)

# FSDP2: each rank holds a shard; a step runs.
torch.manual_seed(0)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(8, 1)
        self.blocks = nn.ModuleList([nn.Linear(8, 8)])
    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return self.out(x)
fsdp = dist.wrap_model(Net(), "fsdp")
opt = torch.optim.SGD(fsdp.parameters(), lr=0.1)
fsdp(torch.randn(2, 4)).sum().backward()
opt.step()
local_shard = fsdp.inp.weight.to_local().shape[0]

# Loaders: each rank a disjoint share, reshuffled per pass, the same order on every rank.
def shares(loader, key):
    epochs = []
    for _ in range(2):
        items = []
        for batch in loader:
            value = batch[key] if isinstance(batch, dict) else batch[0]
            items.extend(int(v) for v in value.reshape(-1).tolist())
        epochs.append(items)
    return epochs

tensor_set = torch.utils.data.TensorDataset(torch.arange(10))
loader = dist.distributed_loader(tensor_set, batch_size=3, seed=1)
result = {"tensor": shares(loader, 0), "batches": len(loader)}
try:
    import datasets
except ImportError:
    result["hf"] = None
else:
    hf = datasets.Dataset.from_dict({"idx": list(range(10)), "text": [str(i) for i in range(10)],
                                     "x": [[float(i)] * 2 for i in range(10)]})
    loader = dist.distributed_loader(hf, batch_size=4, seed=1, columns=["idx", "x"])
    first = next(iter(loader))
    result["hf"] = shares(loader, "idx")
    result["hf_keys"] = sorted(first)
    result["hf_x"] = list(first["x"].shape)
    stream = hf.to_iterable_dataset(num_shards=2)
    result["hf_stream"] = shares(dist.distributed_loader(stream, batch_size=4, seed=1), "idx")

result.update(info=info.as_dict(), sum=t.item(), ddp_equal=ddp_equal, shard=local_shard,
              rng=rng)
dist.cleanup()
result["left"] = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k in os.environ]
with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
    json.dump(result, fh)
"""


def test_two_ranks_under_open_mpi(tmp_path: Path) -> None:
    need_torch()
    script = tmp_path / "ranks.py"
    script.write_text(RANKS, encoding="utf-8")
    ok(run([*mpiexec_argv(2), sys.executable, str(script), str(tmp_path)], tmp_path))
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    i0, i1 = r0["info"], r1["info"]
    assert (i0["rank"], i1["rank"]) == (0, 1)
    assert i0["world_size"] == i1["world_size"] == 2
    assert (i0["local_rank"], i1["local_rank"]) == (0, 1)
    assert i0["launcher"] == i1["launcher"] == "openmpi"
    assert i0["master_addr"] == i1["master_addr"] == "127.0.0.1"
    assert i0["master_port"] == i1["master_port"] != 29500  # derived from the MPI job id
    assert i0["backend"] == "gloo" and i0["device"] == "cpu"
    assert i0["seed"] == 3 and i1["seed"] != 3  # per-rank seeds...
    assert r0["rng"] != r1["rng"]  # ...so the ranks draw different numbers
    assert r0["sum"] == r1["sum"] == 3.0
    assert r0["ddp_equal"] and r1["ddp_equal"]
    assert r0["shard"] + r1["shard"] == 8  # FSDP split the 8-row weight between the ranks
    assert r0["left"] == r1["left"] == []

    def check(a: list[list[int]], b: list[list[int]], n: int) -> None:
        for epoch in range(2):
            assert not set(a[epoch]) & set(b[epoch])
            assert sorted(a[epoch] + b[epoch]) == list(range(n))
        assert a[0] != a[1] or b[0] != b[1]  # a new shuffle for the second pass

    check(r0["tensor"], r1["tensor"], 10)
    assert r0["batches"] == 2  # 5 items per rank, batches of 3
    if r0["hf"] is None:
        need("datasets", False, "pip install datasets; it is in the dev extra")
    check(r0["hf"], r1["hf"], 10)
    assert r0["hf_keys"] == ["idx", "x"] and r0["hf_x"] == [4, 2]
    for epoch in range(2):
        a, b = r0["hf_stream"][epoch], r1["hf_stream"][epoch]
        assert sorted(a + b) == list(range(10)) and not set(a) & set(b)


def test_hf_dataset_single_process(tmp_path: Path) -> None:
    need_torch()
    need("datasets", importlib.util.find_spec("datasets") is not None, "it is in the dev extra")
    code = (
        "import datasets\nfrom tether import dist\n"
        "ds = datasets.Dataset.from_dict({'a': [1, 2, 3, 4, 5], 'b': [0.5] * 5})\n"
        "loader = dist.distributed_loader(ds, 2, shuffle=False)\n"
        "print([b['a'].tolist() for b in loader], type(next(iter(loader))['b']).__name__)\n"
    )
    proc = ok(run([sys.executable, "-c", code], tmp_path))
    assert proc.stdout.strip() == "[[1, 2], [3, 4], [5]] Tensor"


# -- the example ------------------------------------------------------------------------------
def launcher_argv(n: int) -> list[str]:
    """`tether launch -n N --` (the acceptance path), adding nothing: launch itself adds
    --allow-run-as-root and --oversubscribe under Open MPI as needed."""
    need_openmpi()
    return [str(BIN / "tether"), "launch", "-n", str(n), "--no-snapshot", "--"]


def result_line(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return dict(json.loads(line))
    raise AssertionError(f"no result line in\n{proc.stdout}\n{proc.stderr}")


def test_vit_example_ddp_and_fsdp_through_tether_launch(tmp_path: Path) -> None:
    need_torch()
    runs = Path(os.environ["TETHER_RUNS"])
    results = {}
    for strategy in ("ddp", "fsdp"):
        argv = [*launcher_argv(2), sys.executable, str(EXAMPLE), "--strategy", strategy]
        argv += ["--epochs", "3"]
        if strategy == "ddp":
            argv += ["--out", str(tmp_path / "ddp")]  # else: into the launch's run folder
        proc = ok(run(argv, tmp_path))
        result = results[strategy] = result_line(proc)
        assert result["world_size"] == 2 and result["backend"] == "gloo"
        assert result["data"] == "sklearn digits"
        launches = sorted(runs.rglob("launch.json"), key=lambda p: p.stat().st_mtime)
        record = json.loads(launches[-1].read_text())
        assert record["exit_code"] == 0 and record["attempts"][-1]["outcome"] == "completed"
        out = tmp_path / "ddp" if strategy == "ddp" else launches[-1].parent
        rows = read_metrics(out / "metrics.jsonl")
        train = [r for r in rows if "train/loss" in r]
        assert len(train) == result["steps"] == 3 * 12  # 1437 images / 2 ranks / 64 per batch
        assert {"train/loss/min", "train/loss/max", "train/loss/std"} <= set(train[0])
        assert [r["step"] for r in rows if "eval/acc" in r] == [12, 24, 36]
        if strategy == "fsdp":
            # History() attached to the launch run: its metrics are in the index at once.
            found = ok(
                run(
                    [
                        str(BIN / "tether"),
                        "runs",
                        "--json",
                        "--where",
                        "op = launch and metrics.eval/acc > 0",
                    ],
                    tmp_path,
                )
            )
            assert [r["dir"] for r in json.loads(found.stdout)] == [str(out)]
    assert float(results["ddp"]["eval/acc"]) > 0.7  # type: ignore[arg-type]
    # The same data, order and initial weights: FSDP trains the same model as DDP.
    ddp_loss, fsdp_loss = (float(results[s]["train/loss"]) for s in ("ddp", "fsdp"))  # type: ignore[arg-type]
    assert abs(ddp_loss - fsdp_loss) < 0.05 * max(ddp_loss, 1e-3)


def test_vit_example_single_process_synthetic(tmp_path: Path) -> None:
    need_torch()
    proc = ok(run([sys.executable, str(EXAMPLE), "--random", "--epochs", "2"], tmp_path))
    result = result_line(proc)
    assert result["world_size"] == 1 and result["data"] == "synthetic digits"
    assert float(result["eval/acc"]) > 0.5  # type: ignore[arg-type]
