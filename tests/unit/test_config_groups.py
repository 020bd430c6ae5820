"""Config groups (tether.config.groups): a folder beside the config is a group, a defaults list
picks each group's option, `GROUP=OPTION` on the command line chooses another."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tether.config.argv import CliArgs
from tether.config.cli import clicfg
from tether.config.compose import build_config
from tether.errors import ConfigError


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        {
            "config.yaml": "defaults:\n  - model: small\n  - _self_\nlr: 0.1\nmodel:\n  depth: 3\n",
            "model/small.yaml": "width: 8\ndepth: 2\n",
            "model/wide.yaml": "width: 64\ndepth: 2\nact: relu\n",
            "model/svm.yaml": "C: 1.0\n",
            "optim/sched/cosine.yaml": "warmup: 5\n",
            "data/notes.txt": "not a group: no YAML\n",
        },
    )
    return tmp_path / "config.yaml"


def _cfg(conf: Path, *words: str) -> dict:
    return OmegaConf.to_container(build_config(conf, CliArgs(overrides=list(words))))  # type: ignore[return-value]


def test_the_defaults_list_picks_the_option_and_self_merges_over_it(conf: Path):
    assert _cfg(conf) == {"model": {"width": 8, "depth": 3}, "lr": 0.1}


def test_group_equals_option_selects_its_file_then_overrides_apply(conf: Path):
    assert _cfg(conf, "model=wide")["model"] == {"width": 64, "depth": 3, "act": "relu"}
    assert _cfg(conf, "model.width=5", "model=wide")["model"]["width"] == 5


def test_a_misspelled_option_gets_a_did_you_mean_from_the_folder(conf: Path):
    with pytest.raises(ConfigError) as err:
        _cfg(conf, "model=svn")
    text = str(err.value)
    assert "has no option 'svn' (did you mean 'svm'?)" in text
    assert "small, svm, wide" in text and "\n" not in text


def test_tilde_or_null_selects_no_option(conf: Path):
    assert _cfg(conf, "~model") == {"lr": 0.1, "model": {"depth": 3}}
    assert _cfg(conf, "model=null") == {"lr": 0.1, "model": {"depth": 3}}


def test_self_first_lets_the_option_win(tmp_path: Path):
    _write(
        tmp_path,
        {"c.yaml": "defaults: [_self_, {m: a}]\nm:\n  x: 0\n", "m/a.yaml": "x: 1\n"},
    )
    assert _cfg(tmp_path / "c.yaml") == {"m": {"x": 1}}


def test_a_group_not_in_the_defaults_list_is_chosen_too(tmp_path: Path):
    _write(tmp_path, {"c.yaml": "lr: 1\n", "model/a.yaml": "w: 1\n"})
    assert _cfg(tmp_path / "c.yaml", "model=a") == {"lr": 1, "model": {"w": 1}}
    assert _cfg(tmp_path / "c.yaml", "+model=a") == {"lr": 1, "model": {"w": 1}}


def test_a_plain_value_at_the_key_is_not_a_group_choice(tmp_path: Path):
    _write(tmp_path, {"c.yaml": "model: resnet\n", "model/a.yaml": "w: 1\n"})
    assert _cfg(tmp_path / "c.yaml", "model=a") == {"model": "a"}


def test_nested_group_folders_and_option_defaults(tmp_path: Path):
    _write(
        tmp_path,
        {
            "c.yaml": "defaults:\n  - optim/sched: cosine\n",
            "optim/sched/cosine.yaml": "defaults: [base]\nwarmup: 5\n",
            "optim/sched/base.yaml": "warmup: 1\nfinal: 0.0\n",
            "optim/sched/step.yaml": "every: 10\n",
        },
    )
    assert _cfg(tmp_path / "c.yaml") == {"optim": {"sched": {"warmup": 5, "final": 0.0}}}
    assert _cfg(tmp_path / "c.yaml", "optim/sched=step") == {"optim": {"sched": {"every": 10}}}


def test_a_named_config_in_the_defaults_list_merges_at_the_top(tmp_path: Path):
    _write(
        tmp_path, {"c.yaml": "defaults: [common, _self_]\nb: 2\n", "common.yaml": "a: 1\nb: 1\n"}
    )
    assert _cfg(tmp_path / "c.yaml") == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"c.yaml": "defaults: [{modle: a}]\n", "model/a.yaml": "w: 1\n"}, "did you mean 'model'"),
        ({"c.yaml": "defaults: [{model@x: a}]\n", "model/a.yaml": "w: 1\n"}, "packages"),
        ({"c.yaml": "defaults: [{override model: a}]\n", "model/a.yaml": "w: 1\n"}, "override"),
        (
            {"c.yaml": "defaults: [{model: a}]\n", "model/a.yaml": "# @package _global_\nw: 1\n"},
            "@package",
        ),
        ({"c.yaml": "defaults: [{model: a}, {model: a}]\n", "model/a.yaml": "w: 1\n"}, "twice"),
        ({"c.yaml": "defaults: [nothere]\n"}, "no file"),
        ({"c.yaml": "defaults: [{model: b}]\n", "model/a.yaml": "w: 1\n"}, "has no option 'b'"),
        ({"c.yaml": "defaults: [{model: a}]\n", "model/a.yaml": "- 1\n"}, "must be a mapping"),
    ],
)
def test_what_tether_does_not_read_is_refused_in_one_line(tmp_path: Path, files: dict, says: str):
    _write(tmp_path, files)
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path / "c.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_optional_entries_may_be_missing(tmp_path: Path):
    _write(tmp_path, {"c.yaml": "defaults: [{optional extra: x}, _self_]\na: 1\n"})
    assert _cfg(tmp_path / "c.yaml") == {"a": 1}


def test_a_defaults_key_that_is_data_stays(tmp_path: Path):
    _write(tmp_path, {"c.yaml": "defaults:\n  lr: 0.1\n"})
    assert _cfg(tmp_path / "c.yaml") == {"defaults": {"lr": 0.1}}


def test_help_lists_the_groups_and_their_options(conf: Path, capsys: pytest.CaptureFixture[str]):
    @clicfg(config=conf)
    def main(cfg: object) -> None:
        raise AssertionError("--help runs nothing")

    main.cli(["--help"])  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "config groups" in out
    assert "model  small (default), svm, wide" in out
    assert "data" not in out.split("config groups")[1].split("options:")[0]


def test_a_dict_default_has_no_groups(tmp_path: Path):
    cfg = build_config({"model": {"w": 1}}, CliArgs(overrides=["model.w=2"]))
    assert cfg.model.w == 2


def test_clicfg_alone_refuses_a_multirun(conf: Path, capsys: pytest.CaptureFixture[str]):
    @clicfg(config=conf)
    def main(cfg: object) -> None:
        raise AssertionError("a multirun must not run once silently")

    with pytest.raises(SystemExit) as exit_:
        main.cli(["-m", "lr=0.1,0.2"])  # type: ignore[attr-defined]
    assert exit_.value.code == 2
    assert "clicfg records no run" in capsys.readouterr().err


def test_a_file_at_a_group_key_still_merges(conf: Path, tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("width: 99\n")
    assert _cfg(conf, f"model=@{extra}")["model"] == {"width": 99, "depth": 3}
