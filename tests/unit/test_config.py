from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tether.config.argv import CliArgs, parse_argv
from tether.config.cli import clicfg
from tether.config.compose import build_config
from tether.errors import ConfigError


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(
        "learning_rate: 0.1\nepochs: 3\nuse_amp: false\nsave_dir: ???\n"
        "model:\n  width: 64\n  act: relu\n"
        "presets:\n  small:\n    learning_rate: 0.5\n    epochs: 1\n"
    )
    return path


def test_parse_argv_splits_files_flags_and_overrides():
    args = parse_argv(
        [
            "other.yaml",
            "a.b=1",
            "--experiment",
            "x",
            "-o",
            "c=2",
            "d=3",
            "--overrides_path",
            "o.yaml",
            "--print-config",
        ]
    )
    assert args.config_file == "other.yaml"
    assert args.experiment == "x"
    assert args.overrides == ["a.b=1", "c=2", "d=3"]
    assert args.overrides_paths == ["o.yaml"]
    assert args.print_config


def test_unknown_option_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean '--experiment'"):
        parse_argv(["--experimnt", "x"])


def test_dotlist_overrides_are_typed(conf: Path):
    cfg = build_config(
        conf, CliArgs(overrides=["learning_rate=0.01", "model.width=128", "use_amp=true"])
    )
    assert cfg.learning_rate == 0.01
    assert cfg.model.width == 128
    assert cfg.use_amp is True


def test_unknown_key_has_did_you_mean(conf: Path):
    with pytest.raises(ConfigError) as err:
        build_config(conf, CliArgs(overrides=["lerning_rate=0.2"]))
    assert str(err.value) == "unknown config key 'lerning_rate'; did you mean 'learning_rate'?"


def test_plus_adds_a_key_on_purpose(conf: Path):
    cfg = build_config(conf, CliArgs(overrides=["+optim.momentum=0.9"]))
    assert cfg.optim.momentum == 0.9


def test_wrong_type_is_refused(conf: Path):
    with pytest.raises(ConfigError, match="'learning_rate' expects a number"):
        build_config(conf, CliArgs(overrides=["learning_rate=abc"]))
    with pytest.raises(ConfigError, match="'model' expects a mapping"):
        build_config(conf, CliArgs(overrides=["model=3"]))


def test_int_for_float_is_fine(conf: Path):
    assert build_config(conf, CliArgs(overrides=["learning_rate=1"])).learning_rate == 1


def test_experiment_selects_a_preset(conf: Path):
    cfg = build_config(conf, CliArgs(experiment="presets.small"))
    assert cfg.learning_rate == 0.5 and cfg.epochs == 1
    with pytest.raises(ConfigError, match="did you mean 'presets.small'"):
        build_config(conf, CliArgs(experiment="presets.smal"))


def test_path_override_merges_a_file(conf: Path, tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_text("width: 1024\n")
    cfg = build_config(conf, CliArgs(overrides=[f"model=@{big}"]))
    assert cfg.model.width == 1024
    assert cfg.model.act == "relu"


def test_overrides_file_is_strict(conf: Path, tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  width: 8\n")
    assert build_config(conf, CliArgs(overrides_paths=[str(good)])).model.width == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widht: 8\n")
    with pytest.raises(ConfigError, match="did you mean 'model.width'"):
        build_config(conf, CliArgs(overrides_paths=[str(bad)]))


def test_positional_file_replaces_the_default(conf: Path, tmp_path: Path):
    other = tmp_path / "other.yaml"
    other.write_text("alpha: 1\n")
    cfg = build_config(conf, CliArgs(config_file=str(other)))
    assert list(cfg.keys()) == ["alpha"]


def test_missing_file_and_yaml_error_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+:\d+: YAML syntax error"):
        build_config(broken)


@dataclass
class Model:
    width: int = 64


@dataclass
class Defaults:
    lr: float = 0.1
    model: Model = field(default_factory=Model)


def test_dataclass_defaults_validate_types():
    cfg = build_config(Defaults, CliArgs(overrides=["model.width=32"]))
    assert cfg.model.width == 32
    with pytest.raises(ConfigError):
        build_config(Defaults, CliArgs(overrides=["model.width=wide"]))


def test_keyword_arguments_become_overrides(conf: Path):
    seen = {}

    @clicfg(config=conf)
    def main(cfg):
        seen.update(OmegaConf.to_container(cfg))
        return cfg.learning_rate

    assert main(learning_rate=0.3) == 0.3
    assert seen["epochs"] == 3
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        main(lerning_rate=0.3)


def test_dict_defaults_and_positional_config():
    @clicfg(defaults={"a": 1, "b": {"c": 2}})
    def main(cfg):
        return cfg.a, cfg.b.c

    assert main({"a": 5}) == (5, 2)
    assert main(**{"b.c": 7}) == (1, 7)
