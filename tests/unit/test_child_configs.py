"""A batch worker's child configs: the batch's config converted, redacted and rendered once, and
each task's run.lock patched from it, equal to what converting the whole config per task gives."""

from __future__ import annotations

import math

from omegaconf import OmegaConf

from tether.batches.decorated import run_tasks
from tether.batches.tasks import config_shape, same_shape
from tether.capture.secrets import redact_config, run_policy
from tether.session.options import RunOptions, SnapshotOptions
from tether.store import open_store

NO_SNAPSHOT = RunOptions(snapshot=SnapshotOptions(False), secrets=["db.password"])

BASE = {
    "seed": 0,
    "big": list(range(200)),
    "long": "a long sentence that folds " * 8,
    "model": {"depth": 2, "opts": {"lr": 0.1}, "empty": {}},
    "db": {"password": "hunter2-hunter2", "host": "h"},
    "token": "ghp_" + "a" * 36,  # credential-shaped text is redacted anywhere
    "empty": [],
}


def _locks(result):
    store = open_store()
    return [store.load(run_id) for run_id in result.runs]


def test_child_locks_equal_the_whole_config_converted_and_redacted_per_task():
    def job(cfg):
        return cfg.model.opts.lr

    items = [{"lr": 0.5}, {"lr": 0.25, "wd": 1}]
    result = run_tasks(job, BASE, task_to="model.opts", tasks=items, options=NO_SNAPSHOT)
    assert result.results == [0.5, 0.25]
    rules = run_policy(NO_SNAPSHOT.secrets)
    for record, item in zip(_locks(result), items, strict=True):
        whole = OmegaConf.to_container(OmegaConf.create(BASE), resolve=False)
        whole["model"]["opts"] = item
        whole["save_dir"] = str(record.dir)
        assert record.lock.config == redact_config(whole, rules)
        assert record.lock.config["db"]["password"].startswith("<redacted:")
        text = (record.dir / "run.lock").read_text()
        assert text == record.lock.to_yaml()  # patched parts, equal to the whole rendered


def test_a_new_key_and_a_secret_task_key_are_redacted_and_rendered_like_the_whole():
    def job(cfg):
        return cfg.api_key

    result = run_tasks(
        job,
        BASE,
        task_to="+api_key",
        tasks=["s3cr3t-value-1", "s3cr3t-value-2"],
        options=NO_SNAPSHOT,
    )
    assert result.results == ["s3cr3t-value-1", "s3cr3t-value-2"]
    for record in _locks(result):
        assert list(record.lock.config)[-2:] == ["api_key", "save_dir"]
        assert record.lock.config["api_key"].startswith("<redacted:")
        assert (record.dir / "run.lock").read_text() == record.lock.to_yaml()


def test_a_task_that_changes_a_list_element_does_not_leak_into_the_next():
    def job(cfg):
        seen = cfg.big[3]
        cfg.big[3] = -1
        cfg.model.opts.lr = 9.0
        return seen

    result = run_tasks(
        job, BASE, task_to="seed", tasks=[1, 2, 3], executor="serial", options=NO_SNAPSHOT
    )
    assert result.results == [3, 3, 3]
    assert all(r.lock.config["big"][3] == 3 for r in _locks(result))


def test_config_shape_sees_every_kind_of_change():
    cfg = OmegaConf.create({"a": 1, "l": [1, 2], "d": {"x": "y", "n": math.nan}, "m": "???"})
    before = config_shape(cfg)
    assert same_shape(before, config_shape(cfg))  # NaN equals itself here
    cfg.a = 1  # the same value again: unchanged
    assert same_shape(before, config_shape(cfg))
    for change in (
        lambda c: setattr(c, "a", 2),
        lambda c: c.l.__setitem__(0, 5),
        lambda c: c.l.append(3),
        lambda c: c.d.__delitem__("x"),
        lambda c: setattr(c, "new", 1),
        lambda c: setattr(c, "m", 3),
    ):
        fresh = OmegaConf.create(OmegaConf.to_container(cfg))
        shape = config_shape(fresh)
        change(fresh)
        assert not same_shape(shape, config_shape(fresh))
