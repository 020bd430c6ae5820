"""`tether tag RUNS +TAG -TAG`: the words as typed add and remove tags (issue 14, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import tether
from tests.conftest import run_cli


def _run() -> str:
    with tether.start_run({"i": 1}, name="train", snapshot=False, capture_output=False) as run:
        pass
    return run.id


def _tags(run_id: str) -> list[str]:
    return json.loads(run_cli("show", run_id, "--json", check=True).stdout)["attrs"]["tags"]


def test_plus_adds_and_minus_removes(runs_root: Path):
    rid = _run()
    run_cli("tag", "1", "cpu", "v1", check=True)
    out = run_cli("tag", "1", "+good", "-cpu", check=True).stdout
    assert "+good -cpu -> v1 good" in out
    assert _tags(rid) == ["v1", "good"]  # not a tag named '+good', and -cpu is no option


def test_remove_options_and_literal_dashes(runs_root: Path):
    rid = _run()
    run_cli("tag", "1", "a", "b", "c", check=True)
    run_cli("tag", "1", "-r", "a", "--remove=b", check=True)
    assert _tags(rid) == ["c"]
    run_cli("tag", "1", "--", "-odd", check=True)  # after --, words are tags as written
    run_cli("tag", "1", "+-x", check=True)
    assert _tags(rid) == ["c", "-odd", "-x"]
    run_cli("tag", "1", "--remove", "-odd", "-c", check=True)
    assert _tags(rid) == ["-x"]


def test_help_and_missing_value_still_work(runs_root: Path):
    _run()
    assert "+TAG" in run_cli("tag", "1", "-h", check=True).stdout
    proc = run_cli("tag", "1", "-r")
    assert proc.returncode == 2
    assert "'-r' requires an argument" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
