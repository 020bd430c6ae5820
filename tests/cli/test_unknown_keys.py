"""A --where, --sort or --columns key that no run has is a warning with a did-you-mean on
stderr; the listing itself is unchanged (and exits 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tether
from tests.conftest import run_cli
from tether.store import Store
from tether.store.fields import parse_field
from tether.store.select import known_keys, unknown_fields


@pytest.fixture
def made() -> list[str]:
    ids = []
    for lr in (0.1, 0.01):
        cfg = {"lr": lr, "model": {"depth": 2}}
        with tether.start_run(cfg, name="train", snapshot=False, capture_output=False) as run:
            run.log_metrics({"eval/acc": 0.9 + lr, "train/loss": 1 - lr}, step=1)
        ids.append(run.id)
    return ids


def test_where_on_a_key_no_run_has_says_did_you_mean(made):
    proc = run_cli("runs", "--where", "metrics.eval_acc > 0.9")
    assert proc.returncode == 0
    assert proc.stderr == (
        "tether: warning: no run has 'metrics.eval_acc'; did you mean 'metrics.eval/acc'?\n"
    )
    assert proc.stdout.startswith("no runs match 'metrics.eval_acc > 0.9' in ")
    # With --json too (stdout stays the data).
    proc = run_cli("runs", "--where", "config.model.dept = 2", "--json")
    assert json.loads(proc.stdout) == []
    assert "did you mean 'config.model.depth'?" in proc.stderr
    # A statistic is suggested as written.
    proc = run_cli("runs", "--where", "metrics.train/los.min < 1", "--json")
    assert "did you mean 'metrics.train/loss.min'?" in proc.stderr


def test_sort_and_columns_on_a_key_no_run_has(made):
    proc = run_cli("runs", "--sort", "-config.learning_rate", "--json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 2
    assert "no run has 'config.learning_rate'" in proc.stderr
    proc = run_cli("runs", "--columns", "name,metrics.evalacc", "--json")
    assert proc.returncode == 0
    assert "no run has 'metrics.evalacc'; did you mean 'metrics.eval/acc'?" in proc.stderr
    # Nothing near: the warning still names the key, with where to look.
    proc = run_cli("runs", "--where", "config.zzzzzz = 1")
    assert proc.stderr == (
        "tether: warning: no run has 'config.zzzzzz'; `tether show RUN` lists a run's keys\n"
    )


def test_keys_some_run_has_are_silent(made):
    for args in (
        ("--where", "metrics.eval/acc > 0.95 and config.lr = 0.1 and name = train"),
        ("--sort", "metrics.train/loss.min,config.model.depth"),
        ("--columns", "config.lr,metrics.eval/acc.max"),
    ):
        proc = run_cli("runs", *args, check=True)
        assert proc.stderr == "", args


def test_an_empty_runs_root_warns_about_nothing(tmp_path: Path):
    proc = run_cli("runs", "--where", "metrics.x > 1", env={"TETHER_RUNS": str(tmp_path / "none")})
    assert proc.returncode == 0 and proc.stderr == ""


def test_known_keys_and_unknown_fields(made, runs_root: Path):
    index = Store(runs_root).index
    keys = known_keys(index)
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert (
        "config.lr" in keys and "metrics.eval/acc.last" in keys and "metrics.eval/acc.min" in keys
    )
    fields = [parse_field(n) for n in ("config.lr", "metrics.eval_acc", "name", "metrics.eval/acc")]
    assert unknown_fields(index, fields) == [(fields[1], "metrics.eval/acc")]
