"""`clicfg`: give `def main(cfg)` a config command line in the naga style.

    python train.py [CONFIG.yaml] [--experiment KEY] [a.b=1 ...] [key=@file.yaml] [+new=1]

`argv` splits the command line, `compose` builds the config; this module is the decorator, its
`--help`, and the one-line error report of a command line gone wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..debug import debug_enabled
from ..errors import TetherError
from .argv import CliArgs, UnknownOption, parse_argv
from .compose import all_keys, build_config, config_dir, select_node, to_container, to_yaml
from .groups import Group, Selection, find_groups

DEFAULT_RANDOM_RUNS = 20  # points `-m --random` draws without --max-runs (as `tether run`)


# -- help -------------------------------------------------------------------------------------
def help_text(
    prog: str,
    doc: str | None,
    cfg: Any,
    source: str,
    groups: dict[str, Group] | None = None,
    chosen: dict[str, str | None] | None = None,
) -> str:
    from omegaconf import DictConfig, OmegaConf

    lines = [
        f"usage: {prog} [CONFIG.yaml] [--config FILE] [--experiment KEY] [-o] [key=value ...]",
        "",
    ]
    if doc:
        lines += [doc.strip().split("\n\n")[0].strip(), ""]
    lines.append(f"config keys (defaults from {source}):")
    rows = []
    for key in all_keys(cfg):
        node = select_node(cfg, key)
        if isinstance(node, DictConfig):
            continue
        if node == "???":
            shown = "??? (tether fills it)" if key == "save_dir" else "??? (required)"
        elif OmegaConf.is_config(node):
            shown = json.dumps(OmegaConf.to_container(node, resolve=False), default=str)
        else:
            shown = repr(node)
        rows.append((key, shown))
    width = max((len(k) for k, _ in rows), default=0)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows] or ["  (none)"]
    if groups:
        lines += ["", "config groups (GROUP=OPTION picks a file of the group's folder):"]
        gw = max(len(g) for g in groups)
        for name, group in groups.items():
            default = (chosen or {}).get(name)
            shown = ", ".join(o + (" (default)" if o == default else "") for o in group.options)
            lines.append(f"  {name.ljust(gw)}  {shown}")
    lines += [
        "",
        "options:",
        "  CONFIG.yaml, --config FILE   use this config file instead of the default",
        "  --experiment KEY             use the preset at KEY inside the config",
        "  key=value, -o key=value      override a key (dotted paths: model.lr=0.1)",
        "  key=@file.yaml               merge a YAML file at a key",
        "  +key=value                   add a key that the config does not have",
        "  ++key=value, ~key            add or override a key; delete a key",
        "  -m key=a,b key=range(3)      multirun: one child run per point of the sweeps",
        "  -m --random --max-runs N     multirun: N points drawn (uniform(), loguniform())",
        "  -m ... --optimize ALGO       multirun as a search: tpe, random, cmaes or grid",
        "    --trials N                 how many child runs the search makes",
        "    --minimize KEY             the objective: a metric the main logs (or --maximize)",
        "    --prune median|hyperband   stop poor trials early (History reports each step)",
        "    --resume                   continue the newest search asked the same",
        "  --overrides-path FILE        merge a YAML file of overrides",
        "  --print-config               print the resolved config and exit",
        "  --needed                     skip if a completed run has the same inputs",
        "  --secret KEY                 record KEY's value redacted (repeatable)",
        "  -h, --help                   show this message and exit",
        "",
        "batches (docs/executors.md):",
        "  --task-to KEY --tasks FILE   one child run per value of FILE, set at KEY",
        "  --tasks-key KEY              the list inside FILE (a YAML or JSON mapping)",
        "  --n-jobs N                   run N children at a time",
        "  --executor NAME              where children run: serial, local, slurm, pbs, ...",
        "  --slurm-config FILE          submitit options for --executor slurm",
        "  --retry-failed BATCH         rerun the failed children of a batch",
    ]
    return "\n".join(lines)


# -- the decorator ----------------------------------------------------------------------------
def report_and_exit(exc: TetherError) -> None:
    """One line on stderr and exit 2; the traceback only with TETHER_DEBUG=1."""
    if debug_enabled():
        raise exc
    print("tether: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
    raise SystemExit(exc.exit_code)


def clicfg(
    fn: Callable[..., Any] | None = None,
    *,
    config: Any = None,
    defaults: Any = None,
) -> Any:
    """Give `main(cfg)` a config command line. `config` is a YAML path (relative paths are taken
    from the script's folder first, then the working folder); `defaults` a dataclass or dict."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        source = defaults if defaults is not None else locate_config(config, func)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            cfg, args = load_for_call(wrapper, source, a, kw)
            if cfg is None:
                return None
            if args is not None and args.plan is not None:
                # A multirun is a batch of runs: clicfg records none, so it cannot make one.
                report_and_exit(
                    TetherError(
                        "-m (multirun) makes a batch of runs, and clicfg records no run",
                        "decorate the function with @tether.experiment instead",
                    )
                )
            return func(cfg)

        wrapper.__tether_config_source__ = source  # type: ignore[attr-defined]
        add_cli(wrapper)
        return wrapper

    return decorate(fn) if fn is not None else decorate


def add_cli(wrapper: Callable[..., Any]) -> None:
    """`main.cli(["lr=0.1"])`: run a decorated main as if from the command line with this argv
    (tests and notebooks; `main()` itself reads sys.argv)."""

    def cli(argv: Sequence[str] = ()) -> Any:
        saved = sys.argv
        sys.argv = [saved[0] if saved else "main", *argv]
        try:
            return wrapper()
        finally:
            sys.argv = saved

    wrapper.cli = cli  # type: ignore[attr-defined]


def locate_config(config: Any, func: Callable[..., Any]) -> Any:
    """A relative config path: beside the module that defines `func` when it is there."""
    if not isinstance(config, (str, os.PathLike)):
        return config
    path = Path(config)
    if path.is_absolute():
        return path
    module = sys.modules.get(func.__module__)
    module_file = getattr(module, "__file__", None)
    if module_file:
        beside = Path(module_file).resolve().parent / path
        if beside.exists():
            return beside
    return path


def load_for_call(
    wrapper: Callable[..., Any], source: Any, a: tuple[Any, ...], kw: dict[str, Any]
) -> tuple[Any, CliArgs | None]:
    """The config for one call of a decorated main (None after --help / --print-config), and
    the parsed command line when it came from there.

    From Python (`main(lr=0.1)` or `main(cfg)`) errors raise; from the command line (`main()`)
    they print one line and exit 2. `TETHER_REPRODUCE_CONFIG` (set by `tether reproduce`) names
    a recorded config that replaces the defaults and the command line's overrides.
    """
    from omegaconf import OmegaConf

    if a or kw:
        if a:
            if len(a) > 1:
                raise TypeError("a decorated main takes at most one positional config")
            base = a[0]
            cfg = build_config(source, None, None)
            given = OmegaConf.create(base) if isinstance(base, dict) else base
            cfg = OmegaConf.merge(cfg, given)
            return build_config(cfg, None, kw), None
        return build_config(source, None, kw), None
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "main"
    try:
        try:
            args = parse_argv(sys.argv[1:], getattr(wrapper, "__tether_extra_flags__", None))
        except UnknownOption as exc:
            raise _name_the_key(exc, source) from None
        recorded = os.environ.get("TETHER_REPRODUCE_CONFIG")
        if recorded:
            args = CliArgs(config_file=recorded, needed=args.needed, secrets=args.secrets)
            cfg = build_config(None, args)
            return cfg, args
        if args.help:
            shown = args.config_file or source
            chosen: list[Selection] = []
            cfg = build_config(source, CliArgs(config_file=args.config_file), selection=chosen)
            folder = config_dir(source, args)
            groups = find_groups(folder) if folder is not None else {}
            defaults = chosen[0].chosen() if chosen else {}
            print(help_text(prog, wrapper.__doc__, cfg, _describe(shown), groups, defaults))
            return None, args
        if args.multirun:
            plan_sweeps(source, args)
        cfg = build_config(source, args)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return None, args
        to_container(cfg)  # fail early, on the command line, when interpolations are broken
        return cfg, args
    except TetherError as exc:
        report_and_exit(exc)
    return None, None


def _name_the_key(exc: UnknownOption, source: Any) -> TetherError:
    """`--lr 0.1`, argparse-style, where the config has `optim.lr`: name the override meant."""
    word = exc.flag.lstrip("-").replace("-", "_")
    if not exc.flag.startswith("--") or not word:
        return exc
    try:
        keys = all_keys(build_config(source, None, None))
    except TetherError:
        return exc
    meant = [k for k in keys if k == word or k.rsplit(".", 1)[-1] == word]
    if not meant:
        return exc
    value = exc.value if exc.value is not None and not exc.value.startswith("-") else "VALUE"
    return UnknownOption(
        str(exc.message),
        f"config keys are set as key=value: write {meant[0]}={value}",
        flag=exc.flag,
        value=exc.value,
    )


def plan_sweeps(source: Any, args: CliArgs) -> None:
    """`-m`: split the sweeps off the overrides and plan the batch (args.plan)."""
    # heavy: the sweep grammar and planners (nine dataclasses, the samplers) cost a run
    # without -m ~3 ms of its start, so they load only for a multirun.
    from .multirun import plan_multirun, plan_search  # noqa: PLC0415 (heavy, -m only)
    from .sweeps import split_multirun  # noqa: PLC0415 (heavy, -m only)

    fixed, sweeps = split_multirun(args.overrides)
    if not sweeps:
        raise TetherError(
            "-m (multirun) needs a sweep: a key with several values",
            "e.g. lr=0.1,0.01, seed=range(3) or model=glob(*)",
        )
    args.overrides = fixed
    if args.optimize is not None:
        args.plan = plan_search(source, args, sweeps)
        return
    runs = (args.max_runs or DEFAULT_RANDOM_RUNS) if args.random else None
    args.plan = plan_multirun(source, args, sweeps, random_runs=runs, seed=args.seed)


def _describe(source: Any) -> str:
    if source is None:
        return "no defaults"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if dataclasses.is_dataclass(source):
        return getattr(source, "__name__", type(source).__name__)
    return type(source).__name__
