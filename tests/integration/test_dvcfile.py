"""`dvcfile` dependencies: a `.dvc` file written as `dvc add` writes one (DVC's documented
format: `outs:` entries with `md5`, `size`, `hash` and `path`), read by a real `tether run`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

DATA = "a,b\n1,2\n3,4\n"
MD5 = hashlib.md5(DATA.encode()).hexdigest()

PROJECT = """\
[ops.train]
exec = "python -c 'print(open(\\"data.csv\\").read().count(chr(10)))'"
depends = ["dvcfile: data.csv"]

[ops.all]
exec = "ls"
depends = [{type = "dvcfile", files = ["inputs.dvc"], target = "in"}]
"""


def dvc_file(path: Path, outs: list[dict[str, object]]) -> None:
    path.write_text(yaml.safe_dump({"outs": outs}, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "tether.toml").write_text(PROJECT)
    (root / "data.csv").write_text(DATA)
    dvc_file(
        root / "data.csv.dvc", [{"md5": MD5, "size": len(DATA), "hash": "md5", "path": "data.csv"}]
    )
    return root


def tether(*args: str, cwd: Path):
    return run_cli(*args, cwd=cwd, env={"NO_COLOR": "1", "COLUMNS": "200"})


def only_run(cwd: Path) -> dict[str, object]:
    (row,) = json.loads(tether("runs", "--json", "--all", cwd=cwd).stdout)
    return row


def test_the_md5_and_path_of_the_dvc_file_are_recorded(project: Path):
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("3")  # the command read the staged file
    row = only_run(project)
    lock = yaml.safe_load((Path(str(row["dir"])) / "run.lock").read_text())
    assert lock["data"] == [
        {
            "path": "data.csv",
            "key": None,
            "algo": "dvc-md5",
            "digest": MD5,
            "files": 1,
            "bytes": len(DATA),
            "status": "done",
        }
    ]
    # The index has it as any data digest: --where and --columns name it.
    shown = tether(
        "runs", "--where", f"data.data.csv = {MD5}", "--columns", "data.data.csv", cwd=project
    )
    assert MD5 in shown.stdout


def test_a_dvc_file_with_several_outs_and_a_folder(project: Path):
    (project / "feats").mkdir()
    (project / "feats/x.txt").write_text("x")
    dvc_file(
        project / "inputs.dvc",
        [
            {"md5": MD5, "size": len(DATA), "path": "data.csv"},
            {
                "md5": "0123456789abcdef0123456789abcdef.dir",
                "size": 1,
                "nfiles": 1,
                "path": "feats",
            },
        ],
    )
    assert tether("run", "all", cwd=project).returncode == 0
    row = only_run(project)
    run_dir = Path(str(row["dir"]))
    lock = yaml.safe_load((run_dir / "run.lock").read_text())
    assert [(d["path"], d["digest"], d["files"]) for d in lock["data"]] == [
        ("data.csv", MD5, 1),
        ("feats", "0123456789abcdef0123456789abcdef.dir", 1),
    ]
    assert (run_dir / "in/data.csv").read_text() == DATA
    assert (run_dir / "in/feats/x.txt").read_text() == "x"


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (
            None,
            "ops.train.depends[0]: data.csv.dvc does not exist in {root}; a dvcfile dependency "
            "reads the .dvc file `dvc add` writes beside the data",
        ),
        ("outs: 3\n", "data.csv.dvc: expected an `outs:` list, found 3; `dvc add DATA` writes one"),
        (
            "outs:\n- path: data.csv\n",
            'data.csv.dvc: outs[0]: expected `md5` and `path`, found {"path": "data.csv"}; '
            "`dvc add DATA` writes them",
        ),
        ("outs: [\n", "data.csv.dvc:2:1: not valid YAML; expected `outs:` entries"),
        (
            "outs:\n- md5: abc\n  path: other.csv\n",
            "data.csv.dvc: its outs do not list data.csv; name the .dvc file itself "
            "(data.csv.dvc) to take all its outs",
        ),
        (
            "outs:\n- md5: abc\n  path: ../up.csv\n",
            "data.csv.dvc: outs[0].path '../up.csv' leads outside the project",
        ),
    ],
)
def test_a_missing_or_malformed_dvc_file_is_one_line(
    project: Path, write: str | None, message: str
):
    dvc = project / "data.csv.dvc"
    if write is None:
        dvc.unlink()
    else:
        dvc.write_text(write)
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 2
    expected = message.replace("{root}", str(project))
    assert proc.stderr == f"tether: error: {expected}\n"
    assert json.loads(tether("runs", "--json", "--all", cwd=project).stdout) == []


def test_data_not_pulled_yet_names_the_dvc_command(project: Path):
    (project / "data.csv").unlink()
    proc = tether("run", "train", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"tether: error: ops.train.depends[0]: data.csv (tracked by data.csv.dvc) is not in "
        f"{project}; fetch it first: dvc pull data.csv.dvc\n"
    )


def test_check_run_compares_the_md5_of_the_data(project: Path):
    assert tether("run", "train", cwd=project).returncode == 0
    proc = tether("check", "--run", "1", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A new file in the project (the run keeps its own, hard-linked, copy of the old one).
    (project / "data.csv").unlink()
    (project / "data.csv").write_text("a,b\n9,9\n")
    now = hashlib.md5(b"a,b\n9,9\n").hexdigest()
    proc = tether("check", "--run", "1", cwd=project)
    assert proc.returncode == 1
    assert f"data: data.csv: digest {MD5[:12]} -> {now[:12]}" in proc.stdout
