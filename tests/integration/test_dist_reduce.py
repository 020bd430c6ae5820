"""History(reduce=True) across 2 CPU processes (torch.distributed, gloo).

Each test starts two real ranks as subprocesses with MASTER_ADDR=127.0.0.1 and a free port (set
in the children's environment only, so nothing leaks into the next test), and bounds them with a
timeout so a bug shows as a failure, not a hang.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tether.track.metrics_file import read_metrics

TIMEOUT = 180

RANK_SCRIPT = r"""
import os, sys, json
import torch
import torch.distributed as dist
import tether
from tether.errors import TetherError

mode, path = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=60))
rank = dist.get_rank()
h = tether.History(path=path, flush_every=0.2)
try:
    for step in range(5):
        keys = {"loss": torch.tensor(float(rank + step)), "acc": 10.0 * rank}
        if mode == "mismatch" and rank == 1:
            keys = {"loss": float(rank + step), "acc2": 1.0}
        h.update(keys, step=step, reduce=True)
        h.update({"local": float(rank)}, step=step)  # not reduced: rank 0's only
    if mode == "extra" and rank == 1:
        h.update({"loss": 1.0, "acc": 1.0}, step=5, reduce=True)
    h.close()
except TetherError as exc:
    print(f"rank {rank}: TetherError: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)
finally:
    if dist.is_initialized():
        dist.destroy_process_group()
print(f"rank {rank}: done", flush=True)
"""


def need_torch() -> None:
    try:
        importlib.import_module("torch.distributed")
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("torch is not installed (make dev installs torch==2.13.0)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(tmp_path: Path, mode: str) -> tuple[Path, list[subprocess.CompletedProcess[str]]]:
    need_torch()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    path = tmp_path / "metrics.jsonl"
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            RANK=str(rank),
            WORLD_SIZE="2",
            TETHER_RUNS=str(tmp_path / "runs"),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), mode, str(path)],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return path, results


def test_two_ranks_record_mean_min_max_std_and_only_rank_0_writes(tmp_path: Path) -> None:
    path, results = run_ranks(tmp_path, "ok")
    for r in results:
        assert r.returncode == 0, r.stderr
    rows = read_metrics(path)
    reduced = [r for r in rows if "loss" in r]
    local = [r for r in rows if "local" in r]
    assert [r["step"] for r in reduced] == [0, 1, 2, 3, 4]
    for row in reduced:
        step = row["step"]
        # rank 0 logged loss=step, rank 1 step+1; acc 0 and 10
        assert row["loss"] == step + 0.5
        assert (row["loss/min"], row["loss/max"], row["loss/std"]) == (step, step + 1, 0.5)
        assert (row["acc"], row["acc/min"], row["acc/max"], row["acc/std"]) == (5, 0, 10, 5)
    assert [r["local"] for r in local] == [0.0] * 5  # rank 1's rows were not written
    summary = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert summary["loss"] == {"last": 4.5, "min": 0.5, "max": 4.5, "step": 4}
    assert summary["loss/std"]["last"] == 0.5


@pytest.mark.parametrize("mode", ["mismatch", "extra"])
def test_ranks_with_different_keys_get_a_clear_error_not_a_hang(tmp_path: Path, mode: str) -> None:
    _, results = run_ranks(tmp_path, mode)
    for rank, r in enumerate(results):
        assert r.returncode == 3, r.stderr
        assert f"rank {rank}: TetherError: History.update(reduce=True): the ranks logged " in (
            r.stderr
        )
    if mode == "mismatch":
        assert "rank 0: 1 row of loss, acc; rank 1: 1 row of loss, acc2" in results[0].stderr
    else:
        # Rank 1 made one more update: the counts differ by one at the last exchange.
        found = re.search(
            r"rank 0: (\d+) rows? of [^;]*; rank 1: (\d+) rows? of loss, acc", results[0].stderr
        )
        assert found, results[0].stderr
        assert int(found.group(2)) == int(found.group(1)) + 1
