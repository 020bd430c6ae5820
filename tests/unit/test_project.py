"""The project file: parsing, validation and the exact text of every message."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.fileformats import strip_json_comments
from tether.project import depends
from tether.project import positions as positions_mod
from tether.project import validate as project_mod
from tether.project.messages import ProjectError, keypath
from tether.project.model import DependencyDef, FlagDef, Project
from tether.project.parse import load_project


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages name the file relative to the working folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(project_mod, "current_platform", lambda: "linux")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, name: str, text: str) -> list[str]:
    path = write(tmp_path, name, text)
    with pytest.raises(ProjectError) as info:
        load_project(path=path)
    assert info.value.exit_code == 2
    return info.value.problems


def problem(tmp_path: Path, name: str, text: str) -> str:
    found = problems(tmp_path, name, text)
    assert len(found) == 1, found
    return found[0]


# -- valid files --------------------------------------------------------------------------------
TOML = (
    "\n"
    'project-id = "24E17EF2-4E6B-49BD-AF59-F7BA0CA79349"\n'
    'runs-dir = "runs"\n'
    "\n"
    "[ops.prepare]\n"
    'exec = ["python", "prepare.py"]\n'
    'description = "Prepare the data"\n'
    'depends = ["project-files: data/*.csv"]\n'
    "\n"
    "[ops.train]\n"
    'description = "Train the model"\n'
    'exec = {linux = "python train.py --lr {lr}", darwin = "python3 train.py", '
    'windows = "py train.py"}\n'
    'config = ["conf/model.yaml", {lr = 0.1, optimizer = {default = "adam", '
    'choices = ["adam", "sgd"], description = "update rule"}, '
    'data = {path = "data", shuffle = true}}]\n'
    'sourcecode = ["**/*.py", "-tests/**"]\n'
    'depends = ["run-files: op=prepare features.npz", {type = "runs-summary", '
    'where = "op = train", name = "previous", target = "prev"}]\n'
    "output-scalars = ['(?P<key>\\w+): (?P<value>\\S+)', 'acc=(?P<accuracy>\\S+)']\n"
    "needed = true\n"
    "\n"
)

YAML = """
# comments are fine
project-id: 24e17ef2-4e6b-49bd-af59-f7ba0ca79349
runs-dir: runs
ops:
  prepare:
    exec: [python, prepare.py]
    description: Prepare the data
    depends:
      - "project-files: data/*.csv"
  train:
    description: Train the model
    exec:
      linux: python train.py --lr {lr}
      darwin: python3 train.py
      windows: py train.py
    config:
      - conf/model.yaml
      - lr: 0.1
        optimizer: {default: adam, choices: [adam, sgd], description: update rule}
        data:
          path: data
          shuffle: true
    sourcecode: ["**/*.py", "-tests/**"]
    depends:
      - "run-files: op=prepare features.npz"
      - {type: runs-summary, where: op = train, name: previous, target: prev}
    output-scalars: ['(?P<key>\\w+): (?P<value>\\S+)', 'acc=(?P<accuracy>\\S+)']
    needed: true
"""

JSON = """
{
  // comments are fine, // inside "strings" are not comments: "http://example.com"
  "project-id": "24e17ef2-4e6b-49bd-af59-f7ba0ca79349",
  "runs-dir": "runs", /* so are
  block comments */
  "ops": {
    "prepare": {
      "exec": ["python", "prepare.py"],
      "description": "Prepare the data",
      "depends": ["project-files: data/*.csv"]
    },
    "train": {
      "description": "Train the model",
      "exec": {"linux": "python train.py --lr {lr}", "darwin": "python3 train.py",
               "windows": "py train.py"},
      "config": ["conf/model.yaml", {"lr": 0.1,
        "optimizer": {"default": "adam", "choices": ["adam", "sgd"], "description": "update rule"},
        "data": {"path": "data", "shuffle": true}}],
      "sourcecode": ["**/*.py", "-tests/**"],
      "depends": ["run-files: op=prepare features.npz",
                  {"type": "runs-summary", "where": "op = train", "name": "previous",
                   "target": "prev"}],
      "output-scalars": ["(?P<key>\\\\w+): (?P<value>\\\\S+)", "acc=(?P<accuracy>\\\\S+)"],
      "needed": true
    }
  }
}
"""

MODEL_YAML = """
model:
  depth: 3
  widths: [64, 32]
dropout: 0.5
"""


def _normal(project: Project) -> dict[str, Any]:
    root = project.root
    ops = {}
    for name, op in project.ops.items():
        d = dataclasses.asdict(op)
        d["config_files"] = [str(p.relative_to(root)) for p in op.config_files]
        ops[name] = d
    return {
        "project_id": project.project_id,
        "runs_dir": str(project.runs_dir.relative_to(root)) if project.runs_dir else None,
        "ops": ops,
        "warnings": project.warnings,
    }


def test_the_three_formats_give_equal_projects(tmp_path: Path):
    loaded = []
    for name, text in (("tether.toml", TOML), ("tether.yaml", YAML), ("tether.json", JSON)):
        folder = tmp_path / name.split(".")[1]
        write(folder, "conf/model.yaml", MODEL_YAML)
        path = write(folder, name, text)
        project = load_project(start=folder)
        assert project.path == path.resolve()
        loaded.append(_normal(project))
    assert loaded[0] == loaded[1] == loaded[2]


def test_a_valid_project_gives_these_records(tmp_path: Path):
    write(tmp_path, "conf/model.yaml", MODEL_YAML)
    write(tmp_path, "tether.toml", TOML)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    project = load_project(start=tmp_path / "sub" / "deeper")
    assert project.project_id == "24e17ef2-4e6b-49bd-af59-f7ba0ca79349"  # normalised
    assert project.runs_dir == tmp_path.resolve() / "runs"
    assert project.warnings == []
    prepare, train = project.ops["prepare"], project.ops["train"]
    assert prepare.exec == ["python", "prepare.py"]
    assert prepare.depends == [
        DependencyDef(type="project-files", files=["data/*.csv"], key_path="ops.prepare.depends[0]")
    ]
    assert prepare.flags == {} and prepare.output_scalars is True and prepare.needed is False
    assert train.exec == "python train.py --lr {lr}"
    assert list(train.flags) == [
        "model.depth",
        "model.widths",
        "dropout",
        "lr",
        "optimizer",
        "data.path",
        "data.shuffle",
    ]
    assert train.flags["model.depth"] == FlagDef("model.depth", 3, source="conf/model.yaml")
    assert train.flags["optimizer"] == FlagDef(
        "optimizer", "adam", description="update rule", choices=["adam", "sgd"]
    )
    assert train.defaults()["model.widths"] == [64, 32]
    assert train.config_files == [tmp_path.resolve() / "conf" / "model.yaml"]
    assert train.sourcecode == ["**/*.py", "-tests/**"]
    assert train.depends == [
        DependencyDef(
            type="run-files", files=["features.npz"], op="prepare", key_path="ops.train.depends[0]"
        ),
        DependencyDef(
            type="runs-summary",
            where="op = train",
            name="previous",
            target="prev",
            key_path="ops.train.depends[1]",
        ),
    ]
    assert train.output_scalars == [r"(?P<key>\w+): (?P<value>\S+)", r"acc=(?P<accuracy>\S+)"]
    assert train.needed is True


def test_exec_is_picked_for_this_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, "tether.toml", '[ops.a.exec]\nlinux = "l"\ndarwin = ["d", "x"]\n')
    assert load_project().ops["a"].exec == "l"
    monkeypatch.setattr(project_mod, "current_platform", lambda: "darwin")
    assert load_project().ops["a"].exec == ["d", "x"]


def test_an_op_may_be_just_a_command(tmp_path: Path):
    write(tmp_path, "tether.toml", '[ops]\nhello = "echo hi"\nargv = ["echo", "hi"]\n')
    ops = load_project().ops
    assert ops["hello"].exec == "echo hi" and ops["argv"].exec == ["echo", "hi"]


def test_config_files_in_every_format_become_flags(tmp_path: Path):
    write(tmp_path, "a.json", '{"x": 1, // a comment\n "n": {"y": [1, 2]}}')
    write(tmp_path, "b.toml", "z = 'b'\n[n]\nw = false\n")
    write(tmp_path, "c.yml", "x: 2\nspec: {default: 1}\n")
    write(tmp_path, "tether.toml", '[ops.a]\nexec = "e"\nconfig = ["a.json", "b.toml", "c.yml"]\n')
    flags = load_project().ops["a"].flags
    assert {n: (f.default, f.source) for n, f in flags.items()} == {
        "x": (2, "c.yml"),  # a later entry sets the default again
        "n.y": ([1, 2], "a.json"),
        "z": ("b", "b.toml"),
        "n.w": (False, "b.toml"),
        "spec.default": (1, "c.yml"),  # no flag-spec tables in config files
    }


def test_flag_spec_rule(tmp_path: Path):
    write(
        tmp_path,
        "tether.toml",
        """
        [ops.a]
        exec = "e"
        [ops.a.config]
        plain = 1
        described = {description = "no default"}
        nested = {default = 1, other = 2}
        empty = {}
        [ops.a.config.spec]
        default = [1, 2]
        description = "a list"
        """,
    )
    flags = load_project().ops["a"].flags
    assert flags["described"] == FlagDef("described", None, description="no default")
    assert flags["nested.default"].default == 1 and flags["nested.other"].default == 2
    assert flags["empty"].default == {}
    assert flags["spec"] == FlagDef("spec", [1, 2], description="a list")


def test_an_empty_project_is_valid(tmp_path: Path):
    write(tmp_path, "tether.yaml", "# nothing yet\n")
    project = load_project()
    assert project.ops == {} and project.project_id is None and project.runs_dir is None


# -- syntax errors ------------------------------------------------------------------------------
def test_toml_syntax_error(tmp_path: Path):
    assert (
        problem(tmp_path, "tether.toml", '[ops.train]\nexec = "python train.py\n')
        == "tether.toml:2:24: TOML syntax error: Illegal character '\\n'"
    )


def test_toml_syntax_error_at_end_of_document(tmp_path: Path):
    assert (
        problem(tmp_path, "tether.toml", "[ops.train]\nexec =")
        == "tether.toml:2:7: TOML syntax error: Invalid value"
    )


def test_yaml_syntax_errors(tmp_path: Path):
    assert problem(tmp_path, "tether.yaml", "ops:\n  train:\n    exec: [python, train.py\n") == (
        "tether.yaml:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    )
    assert problem(tmp_path, "tether.yaml", "ops:\n  train:\n\texec: x\n") == (
        "tether.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token)"
    )


def test_json_syntax_errors(tmp_path: Path):
    text = '{\n  // the ops\n  "ops": {\n    "train": {"exec": "python train.py",}\n  }\n}\n'
    assert (
        problem(tmp_path, "tether.json", text)
        == "tether.json:4:41: JSON syntax error: Expecting property name enclosed in double quotes"
    )
    assert (
        problem(tmp_path, "tether.json", '{"ops": {} /* open\n}')
        == "tether.json:1:12: JSON syntax error: unterminated /* comment"
    )


def test_not_utf8(tmp_path: Path):
    (tmp_path / "tether.toml").write_bytes(b"x = '\xff'\n")
    with pytest.raises(ProjectError) as info:
        load_project()
    assert str(info.value) == "tether.toml: expected UTF-8 text, found byte 0xff at offset 5"


def test_no_project_file(tmp_path: Path):
    with pytest.raises(ProjectError) as info:
        load_project(start=tmp_path)
    assert str(info.value) == (
        f"no tether.toml, tether.yaml or tether.json in {tmp_path.resolve()} or a parent "
        "folder; `tether init` writes one"
    )


def test_a_self_referring_yaml_alias_is_an_error(tmp_path: Path):
    text = "ops:\n  a:\n    exec: e\n    config: &c {x: *c}\n"
    assert problem(tmp_path, "tether.yaml", text) == (
        "tether.yaml: nested too deeply (or a YAML alias refers to itself)"
    )


# -- keys and types -----------------------------------------------------------------------------
def test_unknown_op_key_with_did_you_mean(tmp_path: Path):
    text = '[ops.train]\nexec = "python train.py"\nneded = true\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:1: ops.train.neded: unknown key; expected one of exec, description, "
        "config, sourcecode, depends, output-scalars, needed (did you mean 'needed'?)"
    )
    text = "ops:\n  train:\n    exec: python train.py\n    flavour: 1\n"
    assert problem(tmp_path, "tether.yaml", text) == (
        "tether.yaml:4:5: ops.train.flavour: unknown key; expected one of exec, description, "
        "config, sourcecode, depends, output-scalars, needed"
    )


def test_unknown_top_level_key_warns(tmp_path: Path):
    write(tmp_path, "tether.toml", 'projct-id = "x"\n[ops.a]\nexec = "e"\n')
    assert load_project().warnings == [
        "tether.toml:1:1: projct-id: unknown top-level key, ignored; expected one of "
        "project-id, runs-dir, snapshot, secrets, ops, runs, remotes (did you mean 'project-id'?)"
    ]


def test_shadowed_project_files_warn(tmp_path: Path):
    write(tmp_path, "tether.toml", "")
    write(tmp_path, "tether.json", "{}")
    assert load_project().warnings == ["tether.json: ignored, tether.toml comes first"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'project-id = "abc"',
            "tether.toml:1:1: project-id: expected a UUID (`tether init` writes one), found 'abc'",
        ),
        ("runs-dir = 3", "tether.toml:1:1: runs-dir: expected a folder path, found 3"),
        ("ops = [1]", "tether.toml:1:1: ops: expected a table of operations, found a list"),
        (
            "[ops]\ntrain = 3",
            "tether.toml:2:1: ops.train: expected a table of operation keys or a command, found 3",
        ),
        (
            '[ops."my op"]\nexec = "e"',
            'tether.toml:1:1: ops."my op": expected an operation name of letters, digits, '
            "'_', '-' and '.', found 'my op'",
        ),
        (
            '[ops.train]\ndescription = "d"',
            "tether.toml:1:1: ops.train: expected an 'exec' command, found none",
        ),
        (
            "[ops.train]\nexec = 3",
            "tether.toml:2:1: ops.train.exec: expected a command: a string, a list of strings or "
            "a table of platforms (linux, darwin, windows), found 3",
        ),
        (
            '[ops.train]\nexec = "  "',
            "tether.toml:2:1: ops.train.exec: expected a command, found '  '",
        ),
        (
            "[ops.train]\nexec = []",
            "tether.toml:2:1: ops.train.exec: expected a command, found an empty list",
        ),
        (
            '[ops.train]\nexec = ["python", 3]',
            "tether.toml:2:19: ops.train.exec[1]: expected a string, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\ndescription = 3',
            "tether.toml:3:1: ops.train.description: expected a string, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\nneeded = "yes"',
            "tether.toml:3:1: ops.train.needed: expected true or false, found 'yes'",
        ),
        (
            '[ops.train]\nexec = "e"\nsourcecode = 3',
            "tether.toml:3:1: ops.train.sourcecode: expected a glob or a list of globs, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\nsourcecode = ["*.py", "-"]',
            "tether.toml:3:23: ops.train.sourcecode[1]: expected a glob, found '-'",
        ),
        (
            '[ops.train]\nexec = "e"\noutput-scalars = 3',
            "tether.toml:3:1: ops.train.output-scalars: expected true, false or a list of "
            "patterns, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = 3',
            "tether.toml:3:1: ops.train.config: expected a table of flags, a config file or a "
            "list of them, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\n[ops.train.config]\nwhen = 2024-01-01',
            "tether.toml:4:1: ops.train.config.when: expected a string, number, true/false, "
            "null, list or table, found a date",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = {lr = {default = {a = 1}}}',
            "tether.toml:3:17: ops.train.config.lr.default: expected a string, number, "
            "true/false, null or list, found a table",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = {lr = {description = 3}}',
            "tether.toml:3:17: ops.train.config.lr.description: expected a string, found 3",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = {m = {default = "c", choices = ["a", "b"]}}',
            'tether.toml:3:16: ops.train.config.m.default: expected one of "a", "b", found \'c\'',
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = {m = {choices = []}}',
            "tether.toml:3:16: ops.train.config.m.choices: expected a list of values, found an "
            "empty list",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = ["missing.yaml"]',
            "tether.toml:3:11: ops.train.config[0]: expected an existing config file, found "
            "'missing.yaml'",
        ),
        (
            '[ops.train]\nexec = "e"\nconfig = "conf.ini"',
            "tether.toml:3:1: ops.train.config: expected a .yaml, .yml, .json or .toml config "
            "file, found 'conf.ini'",
        ),
    ],
)
def test_wrong_types_fail(tmp_path: Path, text: str, message: str):
    assert problem(tmp_path, "tether.toml", text + "\n") == message


def test_flags_that_hold_flags_conflict(tmp_path: Path):
    write(tmp_path, "conf.yaml", "model:\n  depth: 3\n")
    text = '[ops.train]\nexec = "e"\nconfig = [{model = "small"}, "conf.yaml"]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:30: ops.train.config[1]: flag 'model.depth' conflicts with flag 'model': "
        "a flag cannot also hold other flags"
    )


def test_errors_inside_config_files_name_that_file(tmp_path: Path):
    write(tmp_path, "conf/bad.yaml", "a: 1\nb: [\n")
    write(tmp_path, "conf/list.json", "[1, 2]")
    write(tmp_path, "conf/date.yaml", "model:\n  when: 2024-01-01\n")
    text = (
        '[ops.train]\nexec = "e"\nconfig = ["conf/bad.yaml", "conf/list.json", "conf/date.yaml"]\n'
    )
    assert problems(tmp_path, "tether.toml", text) == [
        "conf/bad.yaml:3:1: YAML syntax error: expected the node content, "
        "but found '<stream end>' (while parsing a flow node)",
        "conf/list.json: expected a table of config keys at the top, found a list",
        "conf/date.yaml:2:3: model.when: expected a string, number, true/false, null, list or "
        "table, found a date",
    ]


def test_top_level_must_be_a_table(tmp_path: Path):
    assert problem(tmp_path, "tether.yaml", "- a\n- b\n") == (
        "tether.yaml: expected a table of project keys at the top, found a list"
    )


def test_every_problem_is_reported_and_the_first_leads(tmp_path: Path):
    text = '[ops.a]\nexec = 3\nneeded = "no"\n[ops.b]\nexce = "e"\n'
    with pytest.raises(ProjectError) as info:
        load_project(path=write(tmp_path, "tether.toml", text))
    assert info.value.problems == [
        "tether.toml:2:1: ops.a.exec: expected a command: a string, a list of strings or a "
        "table of platforms (linux, darwin, windows), found 3",
        "tether.toml:3:1: ops.a.needed: expected true or false, found 'no'",
        "tether.toml:5:1: ops.b.exce: unknown key; expected one of exec, description, config, "
        "sourcecode, depends, output-scalars, needed (did you mean 'exec'?)",
        "tether.toml:4:1: ops.b: expected an 'exec' command, found none",
    ]
    assert str(info.value) == info.value.problems[0] + "; 3 more problems: see `tether check`"


# -- platforms ----------------------------------------------------------------------------------
def test_bad_platform_tables(tmp_path: Path):
    text = '[ops.train.exec]\nmacos = "m"\nlinux = "l"\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:2:1: ops.train.exec.macos: unknown platform; expected one of linux, "
        "darwin, windows (did you mean 'darwin'?)"
    )
    text = "[ops.train]\nexec = {}\n"
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:2:1: ops.train.exec: expected a command for linux, found an empty table"
    )
    text = '[ops.train.exec]\nlinux = {a = "b"}\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:2:1: ops.train.exec.linux: expected a string or a list of strings, "
        "found a table"
    )


def test_an_op_without_a_command_for_this_platform_is_unavailable_not_invalid(tmp_path: Path):
    write(
        tmp_path,
        "tether.toml",
        '[ops.train]\nexec = {darwin = "m", windows = "w"}\n[ops.ok]\nexec = "echo ok"\n',
    )
    ops = load_project().ops
    assert ops["train"].unavailable == "no command for linux (exec has only darwin, windows)"
    assert ops["train"].exec == ""
    assert ops["ok"].unavailable is None and ops["ok"].exec == "echo ok"


def test_unavailable_op_is_listed_and_refused_with_one_line(tmp_path: Path):
    from tests.conftest import run_cli

    (tmp_path / "tether.toml").write_text(
        '[ops.win]\nexec = {windows = "dir"}\n[ops.ok]\nexec = "echo ok"\n'
    )
    proc = run_cli("ops", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "win\n  unavailable here: no command for linux (exec has only windows)" in proc.stdout
    listed = {op["name"]: op for op in json.loads(run_cli("ops", "--json", cwd=tmp_path).stdout)}
    assert listed["win"]["available"] is False and listed["ok"]["available"] is True
    proc = run_cli("run", "win", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "tether: error: ops.win.exec: no command for linux (exec has only windows); "
        "add a command for it there\n"
    )
    assert run_cli("run", "ok", cwd=tmp_path).returncode == 0


# -- file patterns ------------------------------------------------------------------------------
def test_a_bad_regex_pattern_is_one_problem_naming_it(tmp_path: Path):
    text = '[ops.train]\nexec = "t"\nsourcecode = ["*.py", "-regex:(x", "regex:.*\\\\.csv"]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:23: ops.train.sourcecode[1]: pattern 'regex:(x': not a regular "
        "expression (missing ), unterminated subpattern at position 0)"
    )
    text = '[ops.train]\nexec = "t"\ndepends = [{type = "project-files", files = "regex:"}]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:37: ops.train.depends[0].files: pattern 'regex:': the expression "
        "after 'regex:' is empty"
    )
    write(tmp_path, "tether.toml", '[ops.t]\nexec = "t"\nsourcecode = ["regex:src/.*\\\\.py"]\n')
    assert load_project().ops["t"].sourcecode == ["regex:src/.*\\.py"]


def test_dvcfile_dependencies(tmp_path: Path):
    write(tmp_path, "tether.toml", '[ops.t]\nexec = "t"\ndepends = ["dvcfile: data.csv"]\n')
    (dep,) = load_project().ops["t"].depends
    assert (dep.type, dep.files) == ("dvcfile", ["data.csv"])
    text = '[ops.t]\nexec = "t"\ndepends = ["dvcfile:"]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:12: ops.t.depends[0]: expected 'files' for a dvcfile dependency, found none"
    )
    text = '[ops.t]\nexec = "t"\ndepends = ["dvcfile: data/*.csv"]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:12: ops.t.depends[0]: expected the path of data DVC tracks (data.csv) "
        "or of its .dvc file, found 'data/*.csv'"
    )
    text = '[ops.t]\nexec = "t"\n[ops.u]\nexec = "u"\ndepends = ["dvcfile: op=t d.csv"]\n'
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:5:12: ops.u.depends[0].op: not used by a dvcfile dependency (only "
        "run-files and runs-summary select runs)"
    )


# -- dependencies -------------------------------------------------------------------------------
DEP_HEAD = '[ops.prepare]\nexec = "p"\n\n[ops.train]\nexec = "t"\n'


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        (
            '\n[[ops.train.depends]]\ntype = "project-files"\nfiles = ["a"]\n\n'
            '[[ops.train.depends]]\ntype = "run-file"\nop = "prepare"\n',
            "tether.toml:12:1: ops.train.depends[1].type: expected one of project-files, "
            "run-files, runs-summary, dvcfile, found 'run-file' (did you mean 'run-files'?)",
        ),
        (
            "depends = [{}]",
            "tether.toml:6:12: ops.train.depends[0]: expected a dependency, found an empty table",
        ),
        (
            'depends = [""]',
            "tether.toml:6:12: ops.train.depends[0]: expected a dependency, found an empty string",
        ),
        (
            'depends = ["run-files: op=train"]',
            "tether.toml:6:12: ops.train.depends[0]: an operation cannot depend on its own runs",
        ),
        (
            'depends = [{type = "run-files", op = "train"}]',
            "tether.toml:6:12: ops.train.depends[0]: an operation cannot depend on its own runs",
        ),
        (
            'depends = ["run-files: op=prepar"]',
            "tether.toml:6:12: ops.train.depends[0].op: expected an operation of this project, "
            "found 'prepar' (did you mean 'prepare'?)",
        ),
        (
            'depends = ["prepare"]',
            "tether.toml:6:12: ops.train.depends[0]: expected 'TYPE: ...' like "
            "'run-files: op=prepare', found 'prepare'",
        ),
        (
            'depends = ["run-files: opp=prepare"]',
            "tether.toml:6:12: ops.train.depends[0].opp: unknown key; expected one of op, name, "
            "target (did you mean 'op'?)",
        ),
        (
            "depends = [3]",
            "tether.toml:6:12: ops.train.depends[0]: expected a dependency table or a string like "
            "'run-files: op=prepare', found 3",
        ),
        (
            "depends = 3",
            "tether.toml:6:1: ops.train.depends: expected a list of dependencies, found 3",
        ),
        (
            'depends = [{files = ["a"]}]',
            "tether.toml:6:12: ops.train.depends[0]: expected a 'type' (project-files, run-files, "
            "runs-summary, dvcfile), found none",
        ),
        (
            'depends = [{type = "project-files", files = "a", file = "b"}]',
            "tether.toml:6:50: ops.train.depends[0].file: unknown key; expected one of type, "
            "files, op, where, name, target (did you mean 'files'?)",
        ),
        (
            'depends = ["project-files:"]',
            "tether.toml:6:12: ops.train.depends[0]: expected 'files' for a project-files "
            "dependency, found none",
        ),
        (
            'depends = [{type = "project-files", files = "a", op = "prepare"}]',
            "tether.toml:6:50: ops.train.depends[0].op: not used by a project-files dependency "
            "(only run-files and runs-summary select runs)",
        ),
        (
            'depends = ["runs-summary: name=x"]',
            "tether.toml:6:12: ops.train.depends[0]: expected 'op' or 'where' to select the "
            "upstream runs, found neither",
        ),
        (
            'depends = [{type = "run-files", op = "prepare", where = ""}]',
            "tether.toml:6:49: ops.train.depends[0].where: expected a --where expression, found "
            "an empty string",
        ),
        (
            'depends = [{type = "run-files", where = "label = x"}]',
            "tether.toml:6:12: ops.train.depends[0]: expected 'op', the operation whose runs it "
            "reads, found none",
        ),
        (
            'depends = ["run-files: op=prepare target=../up"]',
            "tether.toml:6:12: ops.train.depends[0].target: expected a folder inside the run "
            "folder, found '../up'",
        ),
        (
            'depends = ["run-files: op=prepare a", "run-files: op=prepare b"]',
            "tether.toml:6:39: ops.train.depends[1].name: expected a stage name not used by "
            "depends[0], found 'prepare'",
        ),
    ],
)
def test_bad_dependencies(tmp_path: Path, deps: str, message: str):
    assert problem(tmp_path, "tether.toml", DEP_HEAD + deps + "\n") == message


def test_self_dependency_of_a_runs_summary_is_allowed(tmp_path: Path):
    write(
        tmp_path, "tether.toml", '[ops.search]\nexec = "s"\ndepends = ["runs-summary: op=search"]\n'
    )
    assert load_project().ops["search"].depends[0].op == "search"


def test_dependency_cycles(tmp_path: Path):
    text = """
    [ops.a]
    exec = "a"
    depends = ["run-files: op=b"]
    [ops.b]
    exec = "b"
    depends = ["run-files: op=c"]
    [ops.c]
    exec = "c"
    depends = ["project-files: x", "run-files: op=a"]
    """
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:12: ops.a.depends[0]: dependency cycle: a -> b -> c -> a"
    )


def test_dependency_shorthand(tmp_path: Path):
    write(
        tmp_path,
        "tether.toml",
        '[ops.p]\nexec = "p"\n[ops.t]\nexec = "t"\n'
        'depends = ["run-files: op=p name=prep target=in a.csv b/*.npz", "project-files: x y"]\n',
    )
    deps = load_project().ops["t"].depends
    assert deps[0] == DependencyDef(
        type="run-files",
        files=["a.csv", "b/*.npz"],
        op="p",
        name="prep",
        target="in",
        key_path="ops.t.depends[0]",
    )
    assert deps[1].files == ["x", "y"]


# -- output scalars -----------------------------------------------------------------------------
def test_bad_regex_in_output_scalars(tmp_path: Path):
    text = "[ops.train]\nexec = \"e\"\noutput-scalars = ['loss: (?P<loss>\\S+)', 'acc: ([0-9.]+']\n"
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:42: ops.train.output-scalars[1]: expected a regular expression, found "
        "'acc: ([0-9.]+' (missing ), unterminated subpattern at position 5)"
    )
    text = "[ops.train]\nexec = \"e\"\noutput-scalars = 'loss: (\\S+)'\n"
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:1: ops.train.output-scalars: expected a pattern with named groups "
        "(?P<key>...) and (?P<value>...), or (?P<NAME>...), found 'loss: (\\S+)'"
    )
    text = "ops:\n  train:\n    exec: e\n    output-scalars: ['(?P<key>\\w+)']\n"
    assert problem(tmp_path, "tether.yaml", text) == (
        "tether.yaml:4:22: ops.train.output-scalars[0]: expected a pattern with named groups "
        "(?P<key>...) and (?P<value>...), or (?P<NAME>...), found '(?P<key>\\w+)'"
    )


def test_output_scalars_macros(tmp_path: Path):
    # \\key and \\value stand for the default key and number patterns of `tether run`.
    text = "[ops.t]\nexec = 'e'\noutput-scalars = ['\\key: \\value']\n"
    write(tmp_path, "tether.toml", text)
    assert load_project().ops["t"].output_scalars == ["\\key: \\value"]
    text = "[ops.t]\nexec = 'e'\noutput-scalars = ['acc \\value']\n"
    assert problem(tmp_path, "tether.toml", text) == (
        "tether.toml:3:19: ops.t.output-scalars[0]: expected a pattern with named groups "
        "(?P<key>...) and (?P<value>...), or (?P<NAME>...), found 'acc \\value'"
    )


def test_runs_summaries_may_share_an_op_with_run_files(tmp_path: Path):
    text = '[ops.p]\nexec = "p"\n[ops.t]\nexec = "t"\n'
    text += 'depends = ["run-files: op=p", "runs-summary: op=p", "runs-summary: op=p name=all"]\n'
    write(tmp_path, "tether.toml", text)
    assert len(load_project().ops["t"].depends) == 3


def test_output_scalars_false(tmp_path: Path):
    write(tmp_path, "tether.toml", '[ops.train]\nexec = "e"\noutput-scalars = false\n')
    assert load_project().ops["train"].output_scalars is False


# -- placeholders -------------------------------------------------------------------------------
def test_exec_placeholders_that_name_no_flag_warn(tmp_path: Path):
    write(
        tmp_path,
        "tether.toml",
        "[ops.train]\nexec = \"python t.py {lrr} ${HOME} {{x}} awk '{print $1}' {a,b} "
        '{save_dir} {model} {model.depth} {m}"\n'
        "config = {lr = 0.1, model = {depth = 3}}\n",
    )
    assert load_project().warnings == [
        "tether.toml:2:1: ops.train.exec: {lrr} names no flag of train (did you mean 'lr'?)",
        "tether.toml:2:1: ops.train.exec: {m} names no flag of train",
    ]


# -- JSON comments and positions ----------------------------------------------------------------
def test_strip_json_comments_keeps_positions():
    text = '{"a": "x // y /* z */", // c\n /* d\n e */ "b": 1}'
    out = strip_json_comments(text)
    assert len(out) == len(text) and out.count("\n") == text.count("\n")
    assert json.loads(out) == {"a": "x // y /* z */", "b": 1}


def test_keypath():
    assert keypath(("ops", "train", "depends", 1, "type")) == "ops.train.depends[1].type"
    assert keypath(("ops", "a b", "x.y")) == 'ops."a b"."x.y"'


def test_toml_positions_follow_arrays_of_tables():
    text = textwrap.dedent(
        """
        [ops.a]
        x = 1
        [[ops.a.depends]]
        type = "p"
        [[ops.a.depends]]
        type = 'q'
        [ops.a.depends.sub]
        k = '''multi
        line'''
        [[ops.b.list]]
        y.z = {u = [1, {v = 2}]}
        """
    )
    pos = positions_mod.toml_positions(text)
    assert pos[("ops", "a", "depends", 0, "type")] == (5, 1)
    assert pos[("ops", "a", "depends", 1, "type")] == (7, 1)
    assert pos[("ops", "a", "depends", 1, "sub", "k")] == (9, 1)
    assert pos[("ops", "b", "list", 0, "y", "z", "u", 1, "v")] == (12, 17)


# -- fuzzing: only ProjectError ever escapes ----------------------------------------------------
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FRAGMENTS = [
    "[ops.train]",
    "[ops",
    "]",
    "[[ops.train.depends]]",
    "exec",
    "config",
    "depends",
    "needed",
    "output-scalars",
    "sourcecode",
    "description",
    "project-id",
    "runs-dir",
    "ops",
    "type",
    "files",
    "op",
    "where",
    "name",
    "target",
    "linux",
    "darwin",
    "default",
    "choices",
    " = ",
    "=",
    ":",
    ": ",
    "\n",
    "\n  ",
    "\t",
    " ",
    '"',
    "'",
    '"""',
    "'''",
    "{",
    "}",
    "[",
    "]",
    ",",
    ".",
    "#",
    "//",
    "/*",
    "*/",
    "- ",
    "1",
    "0.1",
    "true",
    "null",
    "-",
    "\\",
    "(",
    "(?P<key>",
    '"run-files: op=train"',
    '"project-files: *.csv"',
    "&a",
    "*a",
    "<<: ",
    "!!python/object",
    "1979-05-27",
    "99999999999999999999999999999999",
    "nan",
    "inf",
    "é",
    "\x00",
]
fuzz_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join),
)


def _outcome(path: Path) -> Project | ProjectError:
    try:
        return load_project(path=path)
    except ProjectError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems), exc.problems
        return exc


@FUZZ
@given(text=fuzz_text, name=st.sampled_from(["tether.toml", "tether.yaml", "tether.json"]))
def test_fuzz_text(tmp_path: Path, text: str, name: str):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _outcome(path)


KEYS = st.one_of(
    st.sampled_from(
        [*project_mod.TOP_KEYS, *project_mod.OP_KEYS, *depends.DEP_KEYS, "train", "prepare"]
    ),
    st.text(max_size=8),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "run-files: op=train",
            "run-files: op=prepare x",
            "project-files: *.csv",
            "runs-summary: where=x",
            "(?P<key>\\w+)=(?P<value>\\S+)",
            "(",
            "python x.py {lr}",
            "24e17ef2-4e6b-49bd-af59-f7ba0ca79349",
            "run-files",
            "project-files",
            "conf.yaml",
            "-",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)
OP = st.dictionaries(st.sampled_from(project_mod.OP_KEYS) | KEYS, VALUES, max_size=6)
PROJECT = st.fixed_dictionaries(
    {},
    optional={
        "project-id": SCALARS,
        "runs-dir": SCALARS,
        "ops": st.dictionaries(
            st.sampled_from(["train", "prepare"]) | KEYS, OP | VALUES, max_size=3
        )
        | VALUES,
    },
).flatmap(lambda d: st.dictionaries(KEYS, VALUES, max_size=2).map(lambda extra: {**extra, **d}))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    assert isinstance(v, dict)
    return (
        "{"
        + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None)
        + "}"
    )


def to_toml(data: dict[str, Any]) -> str:
    """A TOML text for `data` (nulls dropped): tables as [sections], the rest inline."""
    lines = [
        f"{json.dumps(k)} = {_toml_value(v)}"
        for k, v in data.items()
        if v is not None and not isinstance(v, dict)
    ]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [
                f"{json.dumps(k2)} = {_toml_value(v2)}" for k2, v2 in v.items() if v2 is not None
            ]
    return "\n".join(lines) + "\n"


def _without_position(message: str) -> str:
    import re

    return re.sub(r"^(json/tether\.json|yaml/tether\.yaml)(:\d+:\d+)?: ", "", message)


@FUZZ
@given(data=PROJECT)
def test_fuzz_values_fail_the_same_in_every_format(tmp_path: Path, data: dict[str, Any]):
    import yaml

    results = {}
    for fmt, text in (
        ("json", json.dumps(data, indent=1)),
        ("yaml", yaml.safe_dump(data, sort_keys=False)),
        ("toml", to_toml(data)),
    ):
        folder = tmp_path / fmt
        folder.mkdir(exist_ok=True)
        path = folder / f"tether.{fmt}"
        path.write_text(text, encoding="utf-8")
        results[fmt] = _outcome(path)
    # JSON and YAML hold the same data: the same verdict and the same messages but for positions.
    a, b = results["json"], results["yaml"]
    if isinstance(a, ProjectError) or isinstance(b, ProjectError):
        assert isinstance(a, ProjectError) and isinstance(b, ProjectError)
        assert [_without_position(p) for p in a.problems] == [
            _without_position(p) for p in b.problems
        ]
    else:
        assert isinstance(b, Project)
        assert _normal(a)["ops"] == _normal(b)["ops"]


SIMPLE_KEYS = st.text(alphabet="abcxyz_-", min_size=1, max_size=5)
SIMPLE = st.recursive(
    st.one_of(st.integers(), st.booleans(), st.text(alphabet="ab c", max_size=4)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(SIMPLE_KEYS, inner, max_size=3)
    ),
    max_leaves=15,
)


def _key_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*path, k))
            out += _key_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*path, i))
            out += _key_paths(v, (*path, i))
    return out


@FUZZ
@given(data=st.dictionaries(SIMPLE_KEYS, SIMPLE, max_size=4))
def test_position_scanners_find_every_key(data: dict[str, Any]):
    import yaml

    for fmt, text in (
        ("json", json.dumps(data, indent=1)),
        ("yaml", yaml.safe_dump(data, sort_keys=False)),
        ("toml", to_toml(data)),
    ):
        positions = positions_mod.POSITION_SCANNERS[fmt](text)
        lines = text.splitlines()
        for path in _key_paths(data):
            assert path in positions, (fmt, path, text)
            line, col = positions[path]
            here = lines[line - 1][col - 1 :]
            if isinstance(path[-1], str):
                assert here.lstrip("[\"' ").startswith(path[-1]), (fmt, path, text)
