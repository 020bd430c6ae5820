"""Config from source files: reading keys, selecting them, rewriting a staged copy in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.ops.sourceconfig import apply_to_staged
from tether.project.messages import ProjectError
from tether.project.model import FlagDef, OpDef
from tether.project.parse import parse_project_file
from tether.project.sourcekeys import (
    SourceError,
    data_keys,
    key_regex,
    parse_selection,
    python_keys,
    rewrite,
)

HELLO = '''\
"""Say hello."""
# Who to greet
name = "Joe"  # the name to greet
times: int = 1
rate = -0.5
tags = ['a', "b"]
flag = True
nothing = None
__version__ = "1.0"
_private = 3
computed = len("abc")
a, b = 1, 2
pair = (1, 2)

for _ in range(times):
    print(f"Hello, {name}")
'''


def test_python_keys_are_module_level_literals_only() -> None:
    keys = python_keys(HELLO)
    assert {k: v.value for k, v in keys.items()} == {
        "name": "Joe",
        "times": 1,
        "rate": -0.5,
        "tags": ["a", "b"],
        "flag": True,
        "nothing": None,
        "_private": 3,
    }
    assert keys["name"].description == "the name to greet"
    assert keys["times"].description is None
    start, end = keys["name"].span
    assert HELLO[start:end] == '"Joe"'


def test_python_keys_never_run_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\nlr = 0.1\n"
    assert python_keys(text)["lr"].value == 0.1
    assert not marker.exists()


def test_python_syntax_error_names_the_line() -> None:
    with pytest.raises(SourceError, match=r":2:\d+: Python syntax error"):
        python_keys("x = 1\ny = (\n")


def test_python_rewrite_keeps_comments_and_quotes() -> None:
    keys = python_keys(HELLO)
    out = rewrite(HELLO, "python", keys, {"name": "Mike", "times": 3, "tags": ["c"], "flag": False})
    assert 'name = "Mike"  # the name to greet' in out
    assert "times: int = 3" in out
    assert 'tags = ["c"]' in out
    assert "flag = False" in out
    changed = [
        i
        for i, (x, y) in enumerate(zip(HELLO.splitlines(), out.splitlines(), strict=True))
        if x != y
    ]
    assert changed == [2, 3, 5, 6]  # the four lines of the four keys, nothing else
    assert len(out.splitlines()) == len(HELLO.splitlines())
    assert python_keys(out)["name"].value == "Mike"


def test_python_rewrite_with_non_ascii_columns() -> None:
    text = 'x = "é"; y = 2  # ünïcode\n'
    keys = python_keys(text)
    out = rewrite(text, "python", keys, {"y": 5, "x": 'q"uote'})
    assert out == 'x = "q\\"uote"; y = 5  # ünïcode\n'
    assert python_keys(out)["x"].value == 'q"uote'


@pytest.mark.parametrize(
    ("fmt", "text", "values", "expected"),
    [
        (
            "json",
            '{\n  // lr\n  "lr": 0.1, "model": {"name": "mlp", "layers": [1, 2]}\n}\n',
            {"lr": 0.5, "model.name": "cnn", "model.layers": [3]},
            '{\n  // lr\n  "lr": 0.5, "model": {"name": "cnn", "layers": [3]}\n}\n',
        ),
        (
            "yaml",
            "# top\nlr: 0.1  # rate\nmodel:\n  name: mlp\n  use: true\n",
            {"lr": 0.5, "model.name": "yes", "model.use": False},
            '# top\nlr: 0.5  # rate\nmodel:\n  name: "yes"\n  use: false\n',
        ),
        (
            "toml",
            "# top\nlr = 0.1  # rate\n[model]\nname = 'mlp'\nsize = 2\n",
            {"lr": 0.5, "model.name": "cnn", "model.size": 4},
            "# top\nlr = 0.5  # rate\n[model]\nname = 'cnn'\nsize = 4\n",
        ),
    ],
)
def test_data_rewrite_round_trip(fmt: str, text: str, values: dict, expected: str) -> None:
    keys = data_keys(text, fmt)
    out = rewrite(text, fmt, keys, values)
    assert out == expected
    again = data_keys(out, fmt)
    assert {k: again[k].value for k in values} == values


def test_toml_has_no_null() -> None:
    keys = data_keys("a = 1\n", "toml")
    with pytest.raises(ValueError, match="null"):
        rewrite("a = 1\n", "toml", keys, {"a": None})


def test_selection_entries() -> None:
    sel = parse_selection("add.py#x", None)
    assert not isinstance(sel, str)
    assert (sel.file, sel.pattern, sel.exclude) == ("add.py", "x", False)
    sel = parse_selection("#y", "add.py")
    assert not isinstance(sel, str) and sel.file == "add.py"
    sel = parse_selection("-eval.py#priv*", None)
    assert not isinstance(sel, str) and sel.exclude and sel.pattern == "priv*"
    sel = parse_selection("conf.yaml", None)
    assert not isinstance(sel, str) and sel.pattern == "**"
    assert isinstance(parse_selection("#y", None), str)
    assert isinstance(parse_selection("a.py#", None), str)


def test_key_patterns() -> None:
    assert key_regex("*").match("lr")
    assert not key_regex("*").match("model.lr")
    assert key_regex("**").match("model.lr")
    assert key_regex("model.*").match("model.lr")
    assert key_regex("**.lr").match("a.b.lr")
    assert not key_regex("l?").match("lrr")
    assert not key_regex("a.b").match("aXb")


def _project(tmp_path: Path, toml: str, files: dict[str, str]) -> OpDef:
    (tmp_path / "tether.toml").write_text(toml)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return next(iter(parse_project_file(tmp_path / "tether.toml").ops.values()))


def test_tether_toml_config_from_python_file(tmp_path: Path) -> None:
    op = _project(
        tmp_path,
        '[ops.train]\nexec = "python train.py"\nconfig = "train.py"\n',
        {"train.py": "lr = 0.1  # learning rate\nepochs = 2\n"},
    )
    assert op.flags["lr"] == FlagDef(
        "lr", 0.1, "learning rate", "train.py", target="train.py", target_key="lr"
    )
    assert op.defaults() == {"lr": 0.1, "epochs": 2}


def test_selection_tables_prefix_excludes_wildcards(tmp_path: Path) -> None:
    op = _project(
        tmp_path,
        '[ops.t]\nexec = "x"\n[[ops.t.config]]\nkeys = ["train.py#*", "-#priv*"]\n'
        'prefix = "opt."\ndescription = "optimizer"\n'
        '[[ops.t.config]]\nkeys = "conf/*.yaml#model.**"\n',
        {
            "train.py": "lr = 0.1\npriv_seed = 1\n",
            "conf/a.yaml": "model:\n  depth: 2\n  head:\n    size: 3\nother: 1\n",
        },
    )
    assert list(op.flags) == ["opt.lr", "model.depth", "model.head.size"]
    assert op.flags["opt.lr"].description == "optimizer"
    assert op.flags["model.head.size"].target == "conf/a.yaml"


@pytest.mark.parametrize(
    ("config", "files", "message"),
    [
        ('"train.py#nope"', {"train.py": "lr = 1\n"}, "no key 'nope' in train.py (its keys: lr)"),
        ('"missing.py"', {}, "expected an existing file"),
        ('["#lr"]', {}, "expected 'FILE#KEY'"),
        ('"train.py"', {"train.py": "x = (\n"}, "train.py:1:5: Python syntax"),
        ('"../up.py#x"', {}, "expected a file inside the project folder"),
    ],
)
def test_bad_selections_say_where(
    tmp_path: Path, config: str, files: dict[str, str], message: str
) -> None:
    with pytest.raises(ProjectError) as info:
        _project(tmp_path, f'[ops.t]\nexec = "x"\nconfig = {config}\n', files)
    assert len(info.value.problems) == 1
    assert "tether.toml:3:" in info.value.problems[0]
    assert message in info.value.problems[0]


def test_apply_to_staged_rewrites_the_copy_only(tmp_path: Path) -> None:
    project, run = tmp_path / "p", tmp_path / "run"
    project.mkdir()
    run.mkdir()
    source = "# hi\nname = 'Joe'  # who\nn = 1\n"
    (project / "hello.py").write_text(source)
    op = _project(project, '[ops.h]\nexec = "x"\nconfig = "hello.py"\n', {})
    assert apply_to_staged(op, {"name": "Mike", "n": 1}, run, project) == ["hello.py"]
    assert (run / "hello.py").read_text() == "# hi\nname = 'Mike'  # who\nn = 1\n"
    assert (project / "hello.py").read_text() == source
    (run / "hello.py").write_text("n = 1\n")
    with pytest.raises(TetherError, match="has no key 'name'"):
        apply_to_staged(op, {"name": "Mike"}, run, project)
