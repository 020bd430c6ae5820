"""The stackable decorators and resolvers: snapshot, track_data, previous_stage, ${stage:}."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import tether
from tether.errors import ConfigError, TetherError
from tether.store import RunState, open_store


def lock_of(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "run.lock").read_text())


@tether.experiment(defaults={"n": 1, "save_dir": "???"}, snapshot=False)
def prepare(cfg, run):
    (Path(cfg.save_dir) / "out.txt").write_text(str(cfg.n))
    return run.dir


def test_previous_stage_by_name_and_key(tmp_path: Path):
    first = prepare(n=1)
    second = prepare(n=2)

    @tether.experiment(defaults={"prep_run": None}, snapshot=False)
    @tether.previous_stage("prepare", key="prep_run")
    def train(cfg, run):
        return Path(cfg.prep_run), run.stage("prepare"), run.dir

    folder, staged, run_dir = train.cli([])
    assert folder == staged == second  # the latest completed run named prepare
    stages = lock_of(run_dir)["stages"]
    assert stages[0]["name"] == "prepare" and stages[0]["run"] == second.name
    assert stages[0]["lock_digest"] == open_store().load(second.name).lock.digest()
    folder, _, _ = train(prep_run=str(first))  # a folder picks that run
    assert folder == first
    folder, _, _ = train(prep_run=first.name[:30])  # so does an id prefix
    assert folder == first


def test_upstream_must_be_completed():
    run_dir = prepare(n=3)
    store = open_store()
    record = store.load(run_dir.name)
    store.set_state(record, RunState(status="failed"))

    @tether.experiment(defaults={"up": run_dir.name}, stages={"prepare": "up"}, snapshot=False)
    def train(cfg):
        return cfg.up

    with pytest.raises(TetherError, match="is failed, not completed"):
        train({})


def test_stage_resolver_records_the_upstream():
    up = prepare(n=4)

    @tether.experiment(defaults={"src": "${stage:prepare}/out.txt"}, snapshot=False)
    def train(cfg, run):
        return Path(cfg.src).read_text(), run.dir

    text, run_dir = train({})
    assert text == "4"
    lock = lock_of(run_dir)
    assert lock["config"]["src"] == str(up / "out.txt")
    assert [s["run"] for s in lock["stages"]] == [up.name]


def test_track_data_keys_paths_and_resolver(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"x" * 100)
    other = tmp_path / "other.txt"
    other.write_text("o")

    @tether.experiment(
        defaults={"dataset": {"path": str(data)}, "o": f"${{track:{other}}}"}, snapshot=False
    )
    @tether.track_data("dataset.path", paths=[str(extra)])
    def train(cfg, run):
        return run.dir

    entries = {d["path"]: d for d in lock_of(train({}))["data"]}
    assert set(entries) == {str(data), str(extra), str(other)}
    assert entries[str(data)]["key"] == "dataset.path" and entries[str(data)]["files"] == 1
    assert entries[str(extra)]["bytes"] == 100
    assert all(len(e["digest"]) == 64 and e["status"] == "done" for e in entries.values())


def test_missing_data_path_names_the_key(tmp_path: Path):
    @tether.experiment(
        defaults={"dataset": {"path": str(tmp_path / "nope")}},
        snapshot=False,
        data=["dataset.path"],
    )
    def train(cfg):
        return None

    with pytest.raises(ConfigError, match="config key 'dataset.path': data path .*nope"):
        train({})
    with pytest.raises(ConfigError, match="did you mean 'dataset.path'"):
        tether.experiment(
            defaults={"dataset": {"path": "x"}}, data=["dataset.pth"], snapshot=False
        )(lambda cfg: None)({})


def test_decorator_alone_starts_a_run_and_inside_a_run_records_into_it():
    @tether.snapshot(enabled=False)
    def step(cfg, run):
        return run.dir

    alone = step({"x": 1})
    assert lock_of(alone)["name"] == "step"
    with tether.start_run({}, snapshot=False, name="outer") as outer:
        assert step({"x": 2}) == outer.dir
        assert tether.current_run() is outer
