"""The command line of a decorated main, split into a config file, flags and overrides.

python train.py [CONFIG.yaml] [--experiment KEY] [a.b=1 ...] [key=@file.yaml] [+new=1]
                [--secret KEY ...] [-m|--multirun [--random [--max-runs N] [--seed S]]]

Override words follow Hydra's grammar (tether.config.overrides); with `-m` the words whose
value is a sweep (`a=1,2`, `seed=range(3)`) make a batch of one child run per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, did_you_mean


@dataclass
class CliArgs:
    """What the command line of a decorated main asked for."""

    config_file: str | None = None
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    overrides_paths: list[str] = field(default_factory=list)
    print_config: bool = False
    help: bool = False
    needed: bool = False
    secrets: list[str] = field(default_factory=list)  # --secret KEY: keys recorded redacted
    extra: dict[str, Any] = field(default_factory=dict)
    multirun: bool = False  # -m / --multirun: sweeps make a batch
    random: bool = False  # --random: draw the points instead of the grid
    max_runs: int | None = None  # --max-runs N: how many points --random draws
    seed: int | None = None  # --seed S: the seed of --random
    plan: Any = None  # the multirun's batch (tether.config.multirun.MultirunPlan), once planned


# Flags with a value, each with its aliases (naga's spellings included).
_VALUE_FLAGS: dict[str, tuple[str, ...]] = {
    "config_file": ("--config", "-c"),
    "experiment": ("--experiment", "-e"),
    "overrides_path": ("--overrides-path", "--overrides_path"),
    "secret": ("--secret",),
    "max_runs": ("--max-runs", "--max_runs"),
    "seed": ("--seed",),
}
_MULTIRUN = ("-m", "--multirun")


def parse_argv(
    argv: Sequence[str], extra_flags: dict[str, tuple[str, ...]] | None = None
) -> CliArgs:
    """Split a decorated main's argv into files, flags and overrides (no argparse: `k=v` words
    and options interleave freely, and unknown options must be reported with a suggestion)."""
    args = CliArgs()
    value_flags = dict(_VALUE_FLAGS)
    value_flags.update(extra_flags or {})
    lookup = {alias: name for name, aliases in value_flags.items() for alias in aliases}
    known = [
        *lookup,
        "-o",
        "--overrides",
        "--print-config",
        "--print_config",
        "-h",
        "--help",
        "--needed",
        *_MULTIRUN,
        "--random",
    ]
    words = list(argv)
    i = 0
    in_overrides = False
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            args.overrides.extend(words[i:])
            break
        if word.startswith("-") and not _looks_numeric(word):
            in_overrides = False
            flag, eq, inline = word.partition("=")
            if flag in ("-h", "--help"):
                args.help = True
            elif flag in ("--print-config", "--print_config"):
                args.print_config = True
            elif flag == "--needed":
                args.needed = True
            elif flag in _MULTIRUN:
                args.multirun = True
            elif flag == "--random":
                args.random = True
            elif flag in ("-o", "--overrides"):
                in_overrides = True
                if eq:
                    args.overrides.append(inline)
            elif flag in lookup:
                if eq:
                    value = inline
                elif i < len(words):
                    value = words[i]
                    i += 1
                else:
                    raise ConfigError(f"option {flag} needs a value")
                name = lookup[flag]
                if name == "config_file":
                    args.config_file = value
                elif name == "experiment":
                    args.experiment = value
                elif name == "overrides_path":
                    args.overrides_paths.append(value)
                elif name == "secret":
                    args.secrets.append(value)
                elif name in ("max_runs", "seed"):
                    setattr(args, name, _whole(flag, value))
                else:
                    args.extra[name] = value
            else:
                hint = did_you_mean(flag, known)
                if hint:
                    suggestion = f"did you mean {hint!r}?"
                elif flag.startswith("--") and len(flag) > 2:
                    suggestion = f"to set a config key, write {flag[2:]}=VALUE"
                else:
                    suggestion = "see --help"
                raise ConfigError(f"unknown option {flag!r}", suggestion)
            continue
        if "=" in word:
            args.overrides.append(word)
        elif in_overrides:
            raise ConfigError(f"override {word!r} is not of the form key=value")
        elif args.config_file is None and word.endswith((".yaml", ".yml")):
            args.config_file = word
        else:
            raise ConfigError(
                f"argument {word!r} is neither a config file (.yaml) nor an override key=value"
            )
    if (args.max_runs is not None or args.seed is not None or args.random) and not (
        args.multirun and args.random
    ):
        given = "--random" if args.random else ("--max-runs" if args.max_runs else "--seed")
        raise ConfigError(
            f"{given} belongs to a random multirun",
            "write -m --random [--max-runs N] [--seed S]; set the config's seed with seed=S",
        )
    return args


def _whole(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"option {flag} takes a whole number, got {value!r}")


def _looks_numeric(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False
