"""gage's project files (gage.toml, gage.yaml, gage.json) read onto tether's model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.project.messages import ProjectError
from tether.project.parse import load_project, parse_project_file
from tether.workspace import find_project_file, project_id, resolve_runs_root

GAGE_TOML = """\
"$runs-dir" = "myruns"
"$namespace" = "demo"
"$project-id" = "3f1c2b9e-0c1a-4f7e-9d55-1b2a3c4d5e6f"

[hello]
description = "Say hello"
listing-description = "greets"
default = true
version = 2
exec = "python hello.py"
config = "hello.py"
output-summary = 'loss: (\\S+)'
progress = 'step (\\d+)'

[add]
exec = ["python", "add.py"]
config = ["add.py#x", "#y"]
sourcecode = false

[phases.exec]
finalize = "echo 5"
run = "echo 4"
stage-runtime = "echo 2"
stage-sourcecode = "echo 1"
stage-dependencies = "echo 3"
"""


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        {
            "gage.toml": GAGE_TOML,
            "hello.py": '# greet\nname = "Joe"  # who\nprint(f"Hello, {name}")\n',
            "add.py": "x = 1\ny = 2\nz = 3\nprint(x + y)\n",
        },
    )
    return tmp_path


def test_gage_toml_maps_onto_the_model(project_dir: Path) -> None:
    project = load_project(project_dir)
    assert project.dialect == "gage"
    assert project.namespace == "demo"
    assert project.runs_dir == project_dir / "myruns"
    assert project.project_id == "3f1c2b9e-0c1a-4f7e-9d55-1b2a3c4d5e6f"
    assert list(project.ops) == ["hello", "add", "phases"]
    hello = project.ops["hello"]
    assert hello.default and project.default_op() is hello
    assert (hello.version, hello.listing_description) == ("2", "greets")
    assert (hello.output_summary, hello.progress) == (r"loss: (\S+)", r"step (\d+)")
    assert hello.flags["name"].default == "Joe"
    assert hello.flags["name"].description == "who"
    assert (hello.flags["name"].target, hello.flags["name"].target_key) == ("hello.py", "name")
    add = project.ops["add"]
    assert list(add.flags) == ["x", "y"]
    assert add.exec == ["python", "add.py"]
    assert add.sourcecode == ["-**"]
    phases = project.ops["phases"]
    assert phases.exec == "echo 4"
    assert list(phases.phases) == [
        "stage-sourcecode",
        "stage-runtime",
        "stage-dependencies",
        "finalize-run",
    ]


def test_workspace_reads_gage_settings(project_dir: Path) -> None:
    assert find_project_file(project_dir) == project_dir / "gage.toml"
    assert project_id(project_dir) == "3f1c2b9e-0c1a-4f7e-9d55-1b2a3c4d5e6f"


def test_runs_dir_setting_is_the_runs_root(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_RUNS", raising=False)
    assert resolve_runs_root(cwd=project_dir) == (project_dir / "myruns").absolute()


def test_same_project_in_yaml_and_json_with_comments(tmp_path: Path) -> None:
    _write(tmp_path, {"add.py": "x = 1\ny = 2\n"})
    (tmp_path / "gage.yaml").write_text(
        "$namespace: ns\nadd:\n  exec: python add.py\n  config: [add.py#x, '#y']\n"
    )
    yaml_project = parse_project_file(tmp_path / "gage.yaml")
    data = {"$namespace": "ns", "add": {"exec": "python add.py", "config": ["add.py#x", "#y"]}}
    (tmp_path / "gage.json").write_text("// gage\n" + json.dumps(data, indent=2))
    json_project = parse_project_file(tmp_path / "gage.json")
    for project in (yaml_project, json_project):
        assert project.namespace == "ns"
        assert project.ops["add"].defaults() == {"x": 1, "y": 2}


def test_tether_file_wins_with_a_notice(project_dir: Path) -> None:
    (project_dir / "tether.toml").write_text('[ops.only]\nexec = "true"\n')
    project = load_project(project_dir)
    assert list(project.ops) == ["only"]
    assert any("gage.toml: ignored, tether.toml comes first" in w for w in project.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[a]\nexec = "x"\ncolour = 1\n', "gage.toml:3:1: a.colour: unknown key; expected one of"),
        ('"$runz-dir" = "x"\n', 'gage.toml:1:1: "$runz-dir": unknown project setting'),
        ('[a.exec]\nstage-soucecode = "x"\n', "a.exec.stage-soucecode: unknown exec phase"),
        ('[a]\nexec = "x"\ndefault = "yes"\n', "gage.toml:3:1: a.default: expected true or false"),
        ('[a]\nexec = "x"\nversion = true\n', "a.version: expected a version number or string"),
        ('[a]\nexec = "x"\nprogress = "("\n', "a.progress: expected a regular expression"),
        ('[a]\nexec = "x"\nconfig = "#y"\n', "a.config: expected 'FILE#KEY'"),
        ('"$namespace" = "a b"\n', '"$namespace": expected a name'),
        ("a = 1\n", "gage.toml:1:1: a: expected a table of operation keys"),
        (
            '[a]\nexec = "x"\ndefault = true\n[b]\nexec = "y"\ndefault = true\n',
            "b.default: a is the default already",
        ),
    ],
)
def test_bad_gage_files_get_one_line_each(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "gage.toml").write_text(text)
    with pytest.raises(ProjectError) as info:
        parse_project_file(tmp_path / "gage.toml")
    assert len(info.value.problems) == 1, info.value.problems
    assert message in info.value.problems[0]
