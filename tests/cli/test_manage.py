"""Managing runs from the command line: label/tag/note, delete/restore/purge, archive, cat,
compare and the grown `tether show`, through the real console script."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import pty
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import BIN, run_cli
from tether.store import open_store


def _run(cfg: dict[str, Any], name: str = "train", **kwargs: Any) -> str:
    kwargs.setdefault("snapshot", False)
    with tether.start_run(copy.deepcopy(cfg), name=name, capture_output=False, **kwargs) as run:
        run.log_metrics({"loss": round(1.0 - cfg.get("lr", 0), 3), "acc": 0.5}, step=3)
    return run.id


def cli_no_tty(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script with no terminal at all: stdin from /dev/null."""
    return subprocess.run(
        [str(BIN / "tether"), *args],
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def cli_tty(*args: str, answer: str) -> subprocess.CompletedProcess[str]:
    """The console script with a terminal as stdin that types `answer`."""
    main, side = pty.openpty()
    try:
        os.write(main, answer.encode() + b"\n")
        return subprocess.run(
            [str(BIN / "tether"), *args], stdin=side, capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(side)
        os.close(main)


def _json(*args: str) -> Any:
    return json.loads(run_cli(*args, check=True).stdout)


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- label, tag, note ----------------------------------------------------------------------------
def test_label_tag_note(runs_root: Path):
    a, b = _run({"lr": 0.1}), _run({"lr": 0.2})
    proc = run_cli("label", "1:2", "baseline", check=True)
    assert proc.stdout.count("label 'baseline'") == 2
    run_cli("tag", f"{a[:13]},{b[:13]}", "cpu", "v1", check=True)
    out = run_cli("tag", "2", "--remove", "cpu", "gpu", check=True).stdout
    assert "-cpu" in out and "+gpu" in out and out.strip().endswith("-> v1 gpu")
    assert "v1 gpu" in run_cli("tag", "2", check=True).stdout  # no TAG: print them
    run_cli("note", "1", "lr", "was", "a", "guess", check=True)
    run_cli("label", "--clear", "1", check=True)

    shown_a, shown_b = _json("show", a, "--json"), _json("show", b, "--json")
    assert shown_a["attrs"]["label"] == "baseline" and shown_a["attrs"]["tags"] == ["v1", "gpu"]
    assert shown_b["label"] is None and shown_b["tags"] == ["cpu", "v1"]
    assert shown_b["notes"][0]["text"] == "lr was a guess"
    assert shown_b["notes"][0]["author"]
    # The index follows every change: the listing shows the same.
    listed = {r["id"]: r for r in _json("runs", "--json")}
    assert listed[a]["label"] == "baseline" and listed[b]["label"] is None
    assert listed[a]["tags"] == ["gpu", "v1"]
    # Every change is its own event file; none is rewritten.
    events = sorted((runs_root / b / "attrs").glob("*.json"))
    kinds = [json.loads(p.read_text())["kind"] for p in events]
    assert kinds == ["label", "tag", "tag", "note", "label"]

    notes = run_cli("note", b[:13], check=True).stdout
    assert "lr was a guess" in notes
    assert _json("note", b[:13], "--json")[0]["notes"][0]["text"] == "lr was a guess"
    assert "(no notes)" in run_cli("note", a[:13], check=True).stdout


def test_label_usage_errors():
    _run({})
    assert "give a LABEL, or --clear" in _error(run_cli("label", "1"))
    assert "--clear takes no LABEL" in _error(run_cli("label", "--clear", "1", "x"))
    assert "a TAG is empty" in _error(run_cli("tag", "1", ""))


def test_unknown_and_ambiguous_runs():
    _run({}, name="train")
    _run({}, name="trial")
    msg = _error(run_cli("label", "nothing-like-it", "x"))
    assert (
        msg
        == "tether: error: no run matches 'nothing-like-it' in "
        + str(open_store().root)
        + "; see `tether runs`"
    )
    msg = _error(run_cli("tag", "tr", "x"))
    assert msg.startswith("tether: error: 'tr' matches 2 runs: ") and "(train)" in msg
    assert "use a longer prefix" in msg
    assert "no run number 5" in _error(run_cli("note", "5", "hi"))
    assert "no run matches 'zz'" in _error(run_cli("delete", "1", "zz"))
    assert len(open_store().list()) == 2  # nothing was deleted: every RUN resolves first
    assert "no run matches" in _error(run_cli("compare", "1", "nope"))
    assert "no run matches" in _error(run_cli("archive", "export", "nope", "-o", "x.tar.gz"))
    assert "selects 2 runs" in _error(run_cli("cat", "1:2", "run.lock"))


# -- delete, restore, purge ----------------------------------------------------------------------
def test_delete_restore_purge(runs_root: Path):
    keep, gone = _run({"lr": 0.1}), _run({"lr": 0.2})
    proc = cli_no_tty("delete", gone[:13])
    assert proc.returncode == 0, proc.stderr
    assert "deleted" in proc.stdout and "brings it back" in proc.stdout
    assert (runs_root / ".trash" / gone / "run.lock").is_file()
    assert [r["id"] for r in _json("runs", "--json")] == [keep]
    assert gone not in run_cli("runs", "reindex", check=True).stdout

    trash = _json("restore", "--list", "--json")
    assert [(t["id"], t["name"], t["status"]) for t in trash] == [(gone, "train", "completed")]
    assert trash[0]["deleted_by"]
    text = run_cli("restore", "--list", check=True).stdout
    assert gone[:13] in text and "1 run in the trash" in text

    run_cli("restore", gone[:13], check=True)
    assert {r["id"] for r in _json("runs", "--json")} == {keep, gone}
    assert "is empty" in run_cli("restore", "--list", check=True).stdout

    cli_no_tty("delete", "1", "-y")
    msg = _error(cli_no_tty("purge", gone[:13]))
    assert msg == (
        "tether: error: purge would delete 1 run for good, and there is no terminal to "
        "confirm on; pass -y to confirm"
    )
    assert (runs_root / ".trash" / gone).is_dir()
    proc = cli_no_tty("purge", gone[:13], "-y")
    assert proc.returncode == 0 and "purged" in proc.stdout
    assert not (runs_root / ".trash" / gone).exists()
    assert "no run in the trash matches" in _error(run_cli("restore", gone[:13]))


def test_purge_asks_at_a_terminal(runs_root: Path):
    rid = _run({})
    cli_no_tty("delete", rid[:13])
    proc = cli_tty("purge", "--all", answer="n")
    assert proc.returncode == 1 and "nothing purged" in proc.stdout
    assert (runs_root / ".trash" / rid).is_dir()
    proc = cli_tty("purge", "--all", answer="y")
    assert proc.returncode == 0 and "purged" in proc.stdout
    assert not (runs_root / ".trash" / rid).exists()


def test_delete_refuses_a_running_run(runs_root: Path):
    store = open_store()
    record = store.create(store.new_lock("busy", config={}))
    from tether.store.state import RunState

    store.set_state(record, RunState(status="running", pid=os.getpid(), host=_host()))
    msg = _error(cli_no_tty("delete", "1"))
    assert "is running; stop it first, or pass --force" in msg
    assert (runs_root / record.id).is_dir()
    assert cli_no_tty("delete", "1", "--force").returncode == 0
    assert not (runs_root / record.id).exists()


def _host() -> str:
    from tether.store.state import hostname

    return hostname()


def test_purge_and_restore_usage():
    assert "give RUNS" in _error(cli_no_tty("purge"))
    assert "give RUNS to restore" in _error(run_cli("restore"))
    assert "is empty" in cli_no_tty("purge", "--all", "-y").stdout


# -- archive -------------------------------------------------------------------------------------
def test_archive_export_import(tmp_path: Path):
    a = _run({"lr": 0.1}, label="keep")
    b = _run({"lr": 0.2, "save_dir": str(tmp_path / "ext")})
    (tmp_path / "ext" / "weights.txt").write_text("0.5\n")
    out = tmp_path / "runs.tar.gz"
    proc = run_cli("archive", "export", "1:2", "-o", str(out), check=True)
    assert proc.stdout.startswith("exported 2 runs (") and str(out) in proc.stdout
    assert "already exists" in _error(run_cli("archive", "export", "1", "-o", str(out)))
    run_cli("archive", "export", "1", "-o", str(out), "--force", check=True)
    run_cli("archive", "export", "1:2", "-o", str(out), "--force", check=True)

    elsewhere = {"TETHER_RUNS": str(tmp_path / "elsewhere")}
    proc = run_cli("archive", "import", str(out), env=elsewhere, check=True)
    assert [line.split()[0] for line in proc.stdout.splitlines()][:2] == ["imported"] * 2
    assert proc.stdout.strip().endswith("2 runs imported into " + str(tmp_path / "elsewhere"))
    listed = json.loads(run_cli("runs", "--json", env=elsewhere, check=True).stdout)
    assert {r["id"] for r in listed} == {a, b}
    assert [r["label"] for r in listed if r["id"] == a] == ["keep"]
    cat = run_cli("cat", b[:13], "weights.txt", env=elsewhere, check=True)
    assert cat.stdout == "0.5\n"
    again = run_cli("archive", "import", str(out), env=elsewhere, check=True)
    assert again.stdout.count("skipped ") == 2 and "0 runs imported" in again.stdout


def _manifest() -> bytes:
    return json.dumps({"format": "tether-archive", "version": 1, "runs": []}).encode()


RID = "01a205b3-7769-75dd-a88f-8c84fa2168ca"


@pytest.mark.parametrize(
    ("name", "kind", "link", "why"),
    [
        ("../evil", tarfile.REGTYPE, "", "its path leaves the archive ('..')"),
        ("/tmp/tether-evil-abs", tarfile.REGTYPE, "", "absolute path"),
        (f"runs/{RID}/etc", tarfile.SYMTYPE, "/etc", "a link to an absolute path (/etc)"),
    ],
    ids=["dotdot", "absolute", "symlink-to-etc"],
)
def test_archive_import_refuses_malicious_members(
    tmp_path: Path, name: str, kind: bytes, link: str, why: str
):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for member_name, data in (("manifest.json", _manifest()), (f"runs/{RID}/run.lock", b"")):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        payload = b"pwned\n" if kind == tarfile.REGTYPE else b""
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload) if payload else None)
    msg = _error(run_cli("archive", "import", str(bad)))
    assert msg == (f"tether: error: archive member {name!r} refused: {why}; nothing was imported")
    assert not (tmp_path / "evil").exists() and not Path("/tmp/tether-evil-abs").exists()
    assert not (open_store().root / RID).exists()


def test_archive_import_of_a_file_that_is_not_one(tmp_path: Path):
    (tmp_path / "x.tar.gz").write_text("not a tar\n")
    assert "is not a readable tar archive" in _error(
        run_cli("archive", "import", str(tmp_path / "x.tar.gz"))
    )
    assert "no such file" in _error(run_cli("archive", "import", str(tmp_path / "nope.tgz")))


# -- cat -----------------------------------------------------------------------------------------
def test_cat(tmp_path: Path):
    with tether.start_run({}, name="catme", snapshot=False, capture_output=False) as run:
        run.path("notes.txt").write_text("hello\nworld\n")
        run.path("blob.bin").write_bytes(b"\x00\x01\x02\xff" * 10)
        run.path("sub").mkdir()
        (tmp_path / "secret.txt").write_text("secret\n")
        run.path("escape").symlink_to(tmp_path / "secret.txt")
    assert run_cli("cat", "1", "notes.txt", check=True).stdout == "hello\nworld\n"
    assert run_cli("cat", "1", "run.lock", check=True).stdout.startswith("schema: 2\n")
    assert "status" in json.loads(run_cli("cat", "catme", "state.json", check=True).stdout)
    short = run.id[:13]
    assert _error(run_cli("cat", "1", "blob.bin")) == (
        f"tether: error: blob.bin of run {short} is binary (40 bytes); "
        "pass --binary to write it to stdout as it is"
    )
    raw = subprocess.run(
        [str(BIN / "tether"), "cat", "1", "blob.bin", "--binary"], capture_output=True, check=True
    )
    assert raw.stdout == b"\x00\x01\x02\xff" * 10
    assert _error(run_cli("cat", "1", "../index.db")) == (
        f"tether: error: '../index.db' leads out of the folder of run {short}"
    )
    assert "leads out of the folder" in _error(run_cli("cat", "1", "escape"))
    assert "is not a path inside run" in _error(run_cli("cat", "1", "/etc/passwd"))
    msg = _error(run_cli("cat", "1", "output.log"))
    assert msg.startswith(f"tether: error: run {short} (catme) has no output.log; it has: ")
    assert "notes.txt" in msg
    assert "is a folder" in _error(run_cli("cat", "1", "sub"))


# -- compare -------------------------------------------------------------------------------------
def test_compare(runs_root: Path):
    a = _run({"lr": 0.1, "model": {"width": 4, "depth": 2}, "seed": 0})
    b = _run({"lr": 0.3, "model": {"width": 8, "depth": 2}, "seed": 0})
    rows = _json("compare", "1", "2", "--json")
    assert [r["id"] for r in rows] == [b, a]
    assert list(rows[0]) == [
        "id",
        "name",
        "status",
        "config.lr",
        "config.model.width",
        "metrics.acc",
        "metrics.loss",
    ]
    assert rows[1]["config.lr"] == 0.1 and rows[1]["metrics.loss"] == 0.9
    text = run_cli("compare", "1:2", check=True).stdout
    assert "config.model.width" in text and "config.seed" not in text and "save_dir" not in text
    table = list(csv.reader(io.StringIO(run_cli("compare", "1:2", "--csv", check=True).stdout)))
    assert table[0][:4] == ["id", "name", "status", "config.lr"] and table[1][0] == b
    picked = _json(
        "compare", "1,2", "--json", "--columns", "config.seed,metrics.loss.min", "-c", "label"
    )
    assert list(picked[0]) == ["id", "name", "status", "config.seed", "metrics.loss.min", "label"]
    assert picked[0]["metrics.loss.min"] == 0.7 and picked[0]["config.seed"] == 0
    msg = _error(run_cli("compare", "1:2", "--columns", "config.lrr"))
    assert msg == "tether: error: no run has column 'config.lrr'; did you mean 'config.lr'?"
    assert "--json and --csv" in _error(run_cli("compare", "1", "--json", "--csv"))


# -- show ----------------------------------------------------------------------------------------
def test_show_grows_dependencies_and_lineage(tmp_path: Path):
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n")
    prep = _run({"n": 1}, name="prep", track=[str(data)])
    train = _run({"lr": 0.1}, name="train", stages={"prep": None}, tags=["t1"])
    evaluate = _run({}, name="eval", stages={"train": None})
    shown = _json("show", train[:13], "--json")
    assert shown["dependencies"]["stages"] == [
        {
            "stage": "prep",
            "run": prep,
            "short_id": shown["dependencies"]["stages"][0]["short_id"],
            "lock_digest": open_store().load(prep).lock.digest(),
            "name": "prep",
            "status": "completed",
            "missing": False,
            "lock_digest_matches": True,
        }
    ]
    assert shown["lineage"]["children"][0]["id"] == prep
    assert shown["consumers"][0]["id"] == evaluate and shown["consumers"][0]["stage"] == "train"
    assert shown["metrics"]["loss"] == {"last": 0.9, "min": 0.9, "max": 0.9, "step": 3}
    assert shown["attrs"]["tags"] == ["t1"]
    assert shown["summary"]["metrics"]["acc"]["last"] == 0.5
    prep_shown = _json("show", prep[:13], "--json")
    [entry] = prep_shown["dependencies"]["data"]
    assert entry["digest"] and entry["files"] == 1 and entry["status"] == "done"

    text = run_cli("show", "eval", check=True).stdout
    assert "dependencies" in text and "stage  train: train" in text
    lines = text.splitlines()
    start = lines.index("lineage")
    assert lines[start + 1].startswith("<- ") and "train completed (as train)" in lines[start + 1]
    assert lines[start + 2].startswith("  <- ") and "prep completed (as prep)" in lines[start + 2]
    prep_text = run_cli("show", "prep", check=True).stdout
    assert "data   " in prep_text and "blake3:" in prep_text and "1 file, " in prep_text
    assert "used by: train" in prep_text

    # The upstream run is deleted: show says so instead of failing.
    cli_no_tty("delete", prep[:13])
    shown = _json("show", train[:13], "--json")
    assert shown["dependencies"]["stages"][0]["missing"] is True
    assert "missing (not in this runs root)" in run_cli("show", train[:13], check=True).stdout
