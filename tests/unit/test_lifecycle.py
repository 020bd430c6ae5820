"""Run management in the library: attrs authors, the trash, archives, the TensorBoard roll-up."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.errors import AmbiguousRun, RunNotFound, StoreError, TetherError
from tether.store import Store, attrs, lifecycle, open_store
from tether.store import archive as arc

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def _run(cfg: dict[str, Any], name: str = "train", **kwargs: Any) -> str:
    kwargs.setdefault("snapshot", False)
    with tether.start_run(copy.deepcopy(cfg), name=name, capture_output=False, **kwargs) as run:
        run.log_metrics({"loss": 1.0 / (1 + cfg.get("lr", 0))}, step=1)
    return run.id


@pytest.fixture
def store(runs_root: Path) -> Store:
    return open_store()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    top = tmp_path / "repo"
    top.mkdir()
    (top / "train.py").write_text("print('hi')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=top, check=True, capture_output=True)
    monkeypatch.chdir(top)
    return top


def _refs(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/tether/snapshots"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


# -- authors -------------------------------------------------------------------------------------
def test_author_comes_from_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.org\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(attrs, "_AUTHOR", None)
    assert attrs.author() == ("Ada Lovelace <ada@example.org>", "ada_example.org")
    # Cached for the process: a change of config is not looked up again.
    config.write_text("[user]\n\tname = Someone Else\n")
    assert attrs.author()[0] == "Ada Lovelace <ada@example.org>"


def test_author_falls_back_to_user_at_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("USER", "grace")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(attrs, "_AUTHOR", None)
    who, slug = attrs.author()
    assert who == f"grace@{attrs.hostname()}"
    assert slug.startswith("grace_") and "/" not in slug


def test_events_record_the_author(store: Store, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(attrs, "_AUTHOR", ("Ada <ada@x>", "ada_x"))
    rid = _run({"lr": 0.1})
    record = store.load(rid)
    store.add_attr(record, "note", "looks fine")
    files = sorted((record.dir / "attrs").iterdir())
    assert files[-1].name.endswith("-ada_x.json")
    assert json.loads(files[-1].read_text())["author"] == "Ada <ada@x>"
    assert store.load(rid).attrs.notes[-1]["author"] == "Ada <ada@x>"


# -- delete, restore, purge ----------------------------------------------------------------------
def test_delete_moves_into_the_trash_and_restore_brings_back(store: Store):
    keep, gone = _run({"lr": 0.1}), _run({"lr": 0.2})
    dest = lifecycle.delete(store, gone, author="me")
    assert dest == store.root / ".trash" / gone
    assert (dest / "run.lock").is_file() and not (store.root / gone).exists()
    assert [r.id for r in store.list()] == [keep]
    assert store.reindex() == 1  # the trash is invisible to a rebuild
    with pytest.raises(RunNotFound):
        store.resolve(gone[:13])
    [entry] = lifecycle.trashed(store)
    assert (entry.id, entry.name, entry.status, entry.deleted_by) == (
        gone,
        "train",
        "completed",
        "me",
    )
    record = lifecycle.restore(store, entry)
    assert record.id == gone and (store.root / gone / "run.lock").is_file()
    assert {r.id for r in store.list()} == {keep, gone}
    assert lifecycle.trashed(store) == []
    assert store.index.values(gone)["config.lr"] == 0.2


def test_delete_refuses_a_live_run_unless_forced(store: Store):
    record = store.create(store.new_lock("live", config={}))  # pending, its creator alive
    with pytest.raises(TetherError, match="is pending.*pass --force"):
        lifecycle.delete(store, record.id)
    assert (store.root / record.id).is_dir()
    lifecycle.delete(store, record.id, force=True)
    assert not (store.root / record.id).exists()


def test_restore_refuses_when_the_run_is_back_already(store: Store):
    rid = _run({})
    lifecycle.delete(store, rid)
    [entry] = lifecycle.trashed(store)
    shutil.copytree(entry.path, store.root / rid)
    with pytest.raises(StoreError, match="already in"):
        lifecycle.restore(store, entry)


def test_resolve_trashed_by_prefix(store: Store):
    a, b = _run({"lr": 1}), _run({"lr": 2})
    for rid in (a, b):
        lifecycle.delete(store, rid)
    assert [e.id for e in lifecycle.resolve_trashed(store, [b])] == [b]
    assert [e.id for e in lifecycle.resolve_trashed(store, [f"{a},{b[:20]}"])] == [a, b]
    with pytest.raises(AmbiguousRun, match="matches 2 runs in the trash"):
        lifecycle.resolve_trashed(store, [a[:8]])
    with pytest.raises(RunNotFound, match="no run in the trash matches 'zzz'"):
        lifecycle.resolve_trashed(store, ["zzz"])


def test_external_save_dir_moves_its_link_and_purge_removes_the_folder(
    store: Store, tmp_path: Path
):
    out = tmp_path / "outputs" / "exp1"
    rid = _run({"lr": 0.1, "save_dir": str(out)})
    assert (store.root / rid).is_symlink()
    dest = lifecycle.delete(store, rid)
    assert dest.is_symlink() and (out / "run.lock").is_file()
    [entry] = lifecycle.trashed(store)
    assert entry.target == out.resolve()
    lifecycle.restore(store, entry)
    assert (store.root / rid).is_symlink() and store.load(rid).dir == out.resolve()
    lifecycle.delete(store, rid)
    [entry] = lifecycle.trashed(store)
    result = lifecycle.purge(store, entry)
    assert not out.exists() and not os.path.lexists(dest)
    assert out.resolve() in result.removed
    assert lifecycle.trashed(store) == []


def test_purge_deletes_snapshot_refs(store: Store, repo: Path):
    rid = _run({"lr": 0.1}, snapshot=True)
    other = _run({"lr": 0.2}, snapshot=True)
    assert f"refs/tether/snapshots/{rid}" in _refs(repo)
    lifecycle.delete(store, rid)
    assert f"refs/tether/snapshots/{rid}" in _refs(repo)  # a soft delete keeps the snapshot
    [entry] = lifecycle.trashed(store)
    result = lifecycle.purge(store, entry)
    assert len(result.refs) == 1 and result.refs[0].endswith(f"refs/tether/snapshots/{rid}")
    assert _refs(repo) == [f"refs/tether/snapshots/{other}"]
    assert not (store.root / ".trash" / rid).exists()


def test_purge_leaves_a_reused_save_dir_alone(store: Store, tmp_path: Path):
    out = tmp_path / "out"
    rid = _run({"save_dir": str(out)})
    lifecycle.delete(store, rid)
    # Someone made the folder hold something else since.
    shutil.rmtree(out)
    out.mkdir()
    (out / "precious.txt").write_text("keep me\n")
    [entry] = lifecycle.trashed(store)
    result = lifecycle.purge(store, entry)
    assert (out / "precious.txt").is_file()
    assert result.left_alone is not None and "left alone" in result.left_alone


# -- archives ------------------------------------------------------------------------------------
def test_archive_round_trip(store: Store, tmp_path: Path):
    a = _run({"lr": 0.1}, label="first")
    b = _run({"lr": 0.2, "save_dir": str(tmp_path / "ext")}, tags=["x"])
    (tmp_path / "ext" / "model.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "ext" / "inner").symlink_to("model.bin")
    (tmp_path / "ext" / "outer").symlink_to("/etc/hostname")
    records = [store.load(a), store.load(b)]
    seen: list[int] = []
    result = arc.export_runs(store, records, tmp_path / "x.tar.gz", progress=seen.append)
    assert result.runs == [a, b] and sum(seen) == result.bytes
    assert any("outer" in s and "outside the run folder" in s for s in result.skipped)
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        inner = tar.getmember(f"runs/{b}/inner")
        assert inner.issym() and inner.linkname == "model.bin"
    with pytest.raises(TetherError, match="already exists"):
        arc.export_runs(store, records, tmp_path / "x.tar.gz")

    other = Store(tmp_path / "elsewhere")
    imported = arc.import_archive(other, tmp_path / "x.tar.gz")
    assert sorted(r.id for r in imported.imported) == sorted([a, b])
    assert {r.id for r in other.list()} == {a, b}
    assert other.load(a).attrs.label == "first" and other.load(b).attrs.tags == ["x"]
    copied = other.root / b
    assert not copied.is_symlink()  # the save_dir's files, now in the root
    assert (copied / "model.bin").read_bytes() == bytes(range(256)) * 10
    assert os.readlink(copied / "inner") == "model.bin"
    assert not list(other.root.glob(".import-*"))
    again = arc.import_archive(other, tmp_path / "x.tar.gz")
    assert again.imported == [] and len(again.skipped) == 2


def test_archive_with_snapshots(store: Store, repo: Path, tmp_path: Path):
    rid = _run({"lr": 0.1}, snapshot=True)
    commit = store.load(rid).lock.sources[0].commit
    out = tmp_path / "snap.tar.gz"
    result = arc.export_runs(store, [store.load(rid)], out, with_snapshots=True)
    assert result.bundles == ["snapshots/0.bundle"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    assert _refs(clone) == []
    imported = arc.import_archive(Store(tmp_path / "other"), out, snapshots_into=clone)
    assert [r.id for r in imported.imported] == [rid]
    assert _refs(clone) == [f"refs/tether/snapshots/{rid}"]
    head = subprocess.run(
        ["git", "rev-parse", f"refs/tether/snapshots/{rid}"],
        cwd=clone,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert head == commit


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, **kw: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in kw.items():
        setattr(info, key, value)
    return info


RID = "01a205b3-7769-75dd-a88f-8c84fa2168ca"


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_info("../evil"), "leaves the archive"),
        (_info(f"runs/{RID}/../../evil"), "leaves the archive"),
        (_info("/tmp/evil"), "absolute path"),
        (_info(f"runs/{RID}/etc", type=tarfile.SYMTYPE, linkname="/etc"), "absolute path"),
        (_info(f"runs/{RID}/up", type=tarfile.SYMTYPE, linkname="../other"), "outside its run"),
        (_info(f"runs/{RID}/hl", type=tarfile.LNKTYPE, linkname="etc/passwd"), "hard link"),
        (_info(f"runs/{RID}/dev", type=tarfile.CHRTYPE), "device"),
        (_info(f"runs/{RID}/fifo", type=tarfile.FIFOTYPE), "device or FIFO"),
        (_info("elsewhere.txt"), "not part of a tether archive"),
        (_info("runs/not-an-id/x"), "is not a run id"),
    ],
    ids=lambda v: v.name if isinstance(v, tarfile.TarInfo) else None,
)
def test_check_member_refuses(member: tarfile.TarInfo, why: str):
    with pytest.raises(arc.UnsafeArchive, match=why) as err:
        arc.check_member(member)
    assert repr(member.name) in str(err.value)


def test_import_refuses_before_writing_anything(store: Store, tmp_path: Path):
    manifest = json.dumps({"format": "tether-archive", "version": 1, "runs": []}).encode()
    bad = _tar(
        tmp_path / "bad.tar.gz",
        [
            (_info("manifest.json"), manifest),
            (_info(f"runs/{RID}/run.lock"), b"id: x\n"),
            (_info("../evil"), b"pwned\n"),
        ],
    )
    with pytest.raises(arc.UnsafeArchive, match="'../evil'"):
        arc.import_archive(store, bad)
    assert not (tmp_path / "evil").exists() and not (store.root / RID).exists()
    assert not list(store.root.glob(".import-*"))


def test_import_of_something_else(store: Store, tmp_path: Path):
    (tmp_path / "plain.txt").write_text("hello\n")
    with pytest.raises(TetherError, match="not a readable tar archive"):
        arc.import_archive(store, tmp_path / "plain.txt")
    no_manifest = _tar(tmp_path / "nm.tar.gz", [(_info(f"runs/{RID}/run.lock"), b"id: x\n")])
    with pytest.raises(TetherError, match="not a tether archive"):
        arc.import_archive(store, no_manifest)


# -- TensorBoard roll-up -------------------------------------------------------------------------
def _need_tensorboard() -> Any:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("tensorboard is not installed (pip install -e '.[dev]' brings it)")
    import tensorboard

    return tensorboard


def _write_v1(folder: Path, tag: str, values: list[float]) -> None:
    """Events the TF1/PyTorch way (`simple_value`), as torch's SummaryWriter writes them."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    for step, v in enumerate(values):
        value = summary_pb2.Summary.Value(tag=tag, simple_value=v)
        event = event_pb2.Event(
            wall_time=time.time(), step=step * 10, summary=summary_pb2.Summary(value=[value])
        )
        writer.add_event(event)
    writer.close()


def _write_v2(folder: Path, tag: str, values: list[float]) -> None:
    """Events the TF2 way (rank-0 tensors of the scalars plug-in)."""
    from tensorboard.summary import Writer

    writer = Writer(str(folder))
    for step, v in enumerate(values):
        writer.add_scalar(tag, v, step)
    writer.close()


def test_rollup_reads_both_kinds_of_scalars(tmp_path: Path):
    _need_tensorboard()
    _write_v1(tmp_path / "tb", "train/loss", [1.0, 0.25, 0.5])
    _write_v2(tmp_path / "tb", "val/acc", [0.5, 0.75])
    from tether.track.tensorboard import rollup

    assert rollup(tmp_path) == {
        "train/loss": {"last": 0.5, "min": 0.25, "max": 1.0, "step": 20},
        "val/acc": {"last": 0.75, "min": 0.5, "max": 0.75, "step": 1},
    }


def test_rollup_prefixes_keys_when_event_files_sit_in_several_folders(tmp_path: Path):
    _need_tensorboard()
    _write_v1(tmp_path / "logs" / "train", "loss", [3.0, 2.0])
    _write_v1(tmp_path / "logs" / "val", "loss", [4.0])
    from tether.track.tensorboard import rollup

    rolled = rollup(tmp_path)
    assert sorted(rolled) == ["logs/train/loss", "logs/val/loss"]
    assert rolled["logs/train/loss"]["last"] == 2.0


def test_rollup_into_summary_merges_and_reindexes(store: Store):
    _need_tensorboard()
    from tether.track.tensorboard import rollup_into_summary

    with tether.start_run({"lr": 0.1}, name="tb", snapshot=False, capture_output=False) as run:
        run.log_metrics({"loss": 0.3}, step=0)
        _write_v1(run.dir / "tb", "train/loss", [1.0, 0.5])
        _write_v1(run.dir / "tb", "loss", [9.0])  # the run logged `loss` itself: it wins
    # The roll-up runs as the run ends: nothing to call.
    record = store.load(run.id)
    summary = json.loads((record.dir / "summary.json").read_text())
    assert summary["metrics"]["train/loss"] == {"last": 0.5, "min": 0.5, "max": 1.0, "step": 10}
    assert summary["metrics"]["train/loss"]["last"] == 0.5
    assert summary["metrics"]["loss"]["last"] == 0.3
    values = store.index.values(run.id)
    assert values["metrics.train/loss.last"] == 0.5 and values["metrics.train/loss.min"] == 0.5
    assert store.list()[0].metrics["train/loss"] == 0.5
    # Rolling up again changes nothing.
    before = (record.dir / "summary.json").read_text()
    rollup_into_summary(store, store.load(run.id))
    assert (record.dir / "summary.json").read_text() == before


def test_rollup_without_the_package_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from tether.track import tensorboard as tb

    (tmp_path / "events.out.tfevents.123.host").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing", None)
    with caplog.at_level("DEBUG", logger="tether.tensorboard"):
        assert tb.rollup(tmp_path) == {}
    assert "tensorboard package is not installed" in caplog.text


def test_rollup_of_a_run_without_event_files_does_nothing(store: Store):
    from tether.track.tensorboard import rollup_into_summary

    rid = _run({"lr": 0.1})
    record = store.load(rid)
    before = (record.dir / "summary.json").read_text()
    assert rollup_into_summary(store, record) == {}
    assert (record.dir / "summary.json").read_text() == before


def test_merge_into_summary_replaces_its_own_keys_only():
    from tether.track.tensorboard import merge_into_summary

    first = merge_into_summary(
        {"metrics": {"acc": {"last": 1.0}}}, {"loss": {"last": 2.0}, "acc": {"last": 0.0}}
    )
    assert first["metrics"] == {"acc": {"last": 1.0}, "loss": {"last": 2.0}}
    assert first["tensorboard"] == {"keys": ["loss"]}
    second = merge_into_summary(first, {"gone": {"last": 1.0}})
    assert second["metrics"] == {"acc": {"last": 1.0}, "gone": {"last": 1.0}}
