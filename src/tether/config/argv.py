"""The command line of a decorated main, split into a config file, flags and overrides.

python train.py [CONFIG.yaml] [--experiment KEY] [a.b=1 ...] [key=@file.yaml] [+new=1]
                [--secret KEY ...] [-m|--multirun [--random [--max-runs N] [--seed S]]]
                [-m ... --optimize ALGO --trials N --minimize KEY|--maximize KEY [--prune P]
                 [--resume]]

Override words follow Hydra's grammar (tether.config.overrides); with `-m` the words whose
value is a sweep (`a=1,2`, `seed=range(3)`) make a batch of one child run per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, did_you_mean


class UnknownOption(ConfigError):
    """`--lr 0.1` on a decorated main: the caller, who knows the config's keys, may name the
    override meant (`optim.lr=0.1`)."""

    def __init__(self, message: str, hint: str, *, flag: str, value: str | None) -> None:
        super().__init__(message, hint)
        self.flag, self.value = flag, value


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
    # -m --optimize ALGO: a search over the sweeps (tether.search.multirun), not their grid
    optimize: str | None = None
    trials: int | None = None  # --trials N
    minimize: str | None = None  # --minimize KEY: the objective, a metric the main logs
    maximize: str | None = None  # --maximize KEY
    prune: str | None = None  # --prune median|hyperband
    resume: bool = False  # --resume: continue the newest search asked the same
    plan: Any = None  # the multirun's batch (tether.config.multirun.MultirunPlan), once planned


# Flags with a value, each with its aliases (naga's spellings included).
_VALUE_FLAGS: dict[str, tuple[str, ...]] = {
    "config_file": ("--config", "-c"),
    "experiment": ("--experiment", "-e"),
    "overrides_path": ("--overrides-path", "--overrides_path"),
    "secret": ("--secret",),
    "max_runs": ("--max-runs", "--max_runs"),
    "seed": ("--seed",),
    "optimize": ("--optimize",),
    "trials": ("--trials",),
    "minimize": ("--minimize",),
    "maximize": ("--maximize",),
    "prune": ("--prune",),
}
_SEARCH = ("optimize", "trials", "minimize", "maximize", "prune")
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
        "--resume",
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
            elif flag == "--resume":
                args.resume = True
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
                elif name in ("max_runs", "seed", "trials"):
                    setattr(args, name, _whole(flag, value))
                elif name in _SEARCH:
                    setattr(args, name, value)
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
                given = inline if eq else (words[i] if i < len(words) else None)
                raise UnknownOption(f"unknown option {flag!r}", suggestion, flag=flag, value=given)
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
    _check_search(args)
    return args


def _check_search(args: CliArgs) -> None:
    given = [n for n in _SEARCH if getattr(args, n) is not None] + (
        ["resume"] if args.resume else []
    )
    if not given:
        return
    flag = "--" + given[0]
    if args.optimize is None:
        raise ConfigError(
            f"{flag} belongs to a search", "write -m key=interval(a,b) --optimize tpe --trials N"
        )
    if not args.multirun:
        raise ConfigError(
            "--optimize searches a multirun's sweeps: it needs -m",
            "write -m key=interval(a,b) --optimize tpe --trials N --minimize KEY",
        )
    if args.random:
        raise ConfigError(
            "--optimize and --random are two ways to choose the points: give one",
            "--optimize random draws them too, and tells the study",
        )


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
