"""Flag assignments of `tether run OP k=v ...`: typed like YAML scalars, checked against the op.

A value is read with `yaml.safe_load` (never evaluated), then fitted to the type of the flag's
default: numbers take numbers (int and float interchange), booleans take booleans, strings take
any scalar (as typed), lists take lists and mappings take mappings. A flag whose default is None
takes any value.

Batch values expand into several trials:
    lr=[0.1,0.01]            a list (unless the flag's default is itself a list)
    n=range(1,10)            Python's range: 1..9; range(stop) and range(start, stop, step) too
    x=linspace(0,1,5)        5 evenly spaced values from 0 to 1, both included
    lr=logspace(-4,-1,4)     10**linspace(-4,-1,4): 0.0001, 0.001, 0.01, 0.1
    lr=uniform(0.01,0.1)     sampled (needs --random)
    lr=loguniform(1e-4,1e-1) sampled on a log scale (needs --random)
    opt=choice(adam,sgd)     a list in a grid, sampled with --random
The function forms are read by a small regular grammar: a name, then its arguments as a YAML
flow sequence.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.overrides import Call, Choices, parse_override
from ..config.sweeps import parse_sweep
from ..errors import TetherError, did_you_mean
from ..project.model import OpDef

FUNCTIONS = ("range", "linspace", "logspace", "uniform", "loguniform", "choice")
SAMPLERS = ("uniform", "loguniform")
MAX_VALUES = 10_000  # values one batch function may expand to
_FUNC = re.compile(r"\s*(?P<name>[a-z]+)\s*\((?P<args>.*)\)\s*", re.DOTALL)
_KEY = re.compile(r"[A-Za-z_][\w.-]*")


class FlagError(TetherError):
    """A flag assignment or batch value that does not fit the op."""


@dataclass(frozen=True)
class Sampler:
    """A distribution to draw from with --random: uniform(a,b), loguniform(a,b), choice(...)."""

    kind: str
    args: tuple[Any, ...]
    text: str


@dataclass
class FlagSpec:
    """What the command line says about an op's flags."""

    fixed: dict[str, Any] = field(default_factory=dict)  # one value
    grid: dict[str, list[Any]] = field(default_factory=dict)  # several values, in order
    sampled: dict[str, Sampler] = field(default_factory=dict)  # distributions (--random)
    words: dict[str, str] = field(default_factory=dict)  # value text as given, per flag

    @property
    def is_batch(self) -> bool:
        return bool(self.grid or self.sampled)


# -- names ------------------------------------------------------------------------------------
def flag_list(op: OpDef) -> str:
    return ", ".join(sorted(op.flags, key=str.lower))


def check_flag(op: OpDef, name: str) -> None:
    """Unknown flag -> FlagError with a did-you-mean and the op's flags."""
    if name in op.flags:
        return
    hint = did_you_mean(name, list(op.flags))
    message = f"unknown flag {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    raise FlagError(message, _flags_hint(op))


def _flags_hint(op: OpDef) -> str:
    if not op.flags:
        return f"op {op.name!r} has no flags"
    return f"flags of op {op.name!r}: {flag_list(op)}"


# -- values -----------------------------------------------------------------------------------
def load_value(text: str, name: str) -> Any:
    """A value typed like YAML: `0.1` a float, `true` a bool, `[1,2]` a list, `abc` a string."""
    try:
        value = yaml_load(text)
    except Exception as exc:  # YAMLError, and ValueError/RecursionError on pathological text
        reason = str(getattr(exc, "problem", None) or type(exc).__name__)
        raise FlagError(f"flag {name!r}: cannot read {text!r} as a value ({reason})")
    plain = _plain(value)
    return text if plain is _NOT_PLAIN else plain


_NOT_PLAIN = object()
_LOADER: Any = None


def refuse_aliases(text: str) -> None:
    """Raise a YAML error at the first anchor or alias (`&a`, `*a`): files of rows and tasks are
    plain data, and an alias can make a document refer to itself (`- &a {lr: *a}`)."""
    import yaml

    for token in yaml.scan(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
            raise yaml.MarkedYAMLError(
                problem=f"anchors and aliases are not allowed (found {token.value!r}); "
                "write the values out",
                problem_mark=token.start_mark,
            )


def yaml_load(text: str, aliases: bool = True) -> Any:
    """`yaml.safe_load`, except that `1e-4` is a number (YAML 1.1 wants `1.0e-4`)."""
    global _LOADER
    import yaml

    if not aliases:
        refuse_aliases(text)

    if _LOADER is None:
        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class Loader(base):  # type: ignore[valid-type,misc]
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
            list("-+0123456789."),
        )
        _LOADER = Loader
    return yaml.load(text, Loader=_LOADER)


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-like data only: dates, binary, sets and the like fall back to the text."""
    if depth > 20:
        return _NOT_PLAIN
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        items = [_plain(v, depth + 1) for v in value]
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            pv = _plain(v, depth + 1)
            if not isinstance(k, str) or pv is _NOT_PLAIN:
                return _NOT_PLAIN
            out[k] = pv
        return out
    return _NOT_PLAIN


def value_text(value: Any) -> str:
    """How a value reads in messages, trial descriptions and `{key}` placeholders."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _kind(default: Any) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return "a boolean (true or false)"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list):
        return "a list"
    if isinstance(default, dict):
        return "a mapping"
    return None


def fit(op: OpDef, name: str, value: Any, text: str | None = None) -> Any:
    """`value` made to fit flag `name` of `op`, or FlagError naming what was expected."""
    out = _fit_type(op, name, value, text)
    choices = getattr(op.flags[name], "choices", None)
    if choices and out not in choices:
        got = value_text(out) if text is None else text
        shown = ", ".join(value_text(c) for c in choices)
        hint = did_you_mean(got, [value_text(c) for c in choices])
        raise FlagError(
            f"flag {name!r} of op {op.name!r} expects one of {shown}, got {got!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
        )
    return out


def _fit_type(op: OpDef, name: str, value: Any, text: str | None) -> Any:
    check_flag(op, name)
    default = op.flags[name].default
    got = value_text(value) if text is None else text

    def wrong() -> FlagError:
        shown = value_text(default)
        return FlagError(
            f"flag {name!r} of op {op.name!r} expects {_kind(default)} "
            f"(default {shown if shown else repr(default)}), got {got!r}"
        )

    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise wrong()
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        if isinstance(default, float):
            return float(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # max_iter=linspace(50,100,3) gives 50, not 50.0
        return value
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        if isinstance(value, (list, dict)) and text is None:
            raise wrong()
        return text if text is not None else value_text(value)
    if isinstance(default, list):
        if isinstance(value, list):
            return value
        raise wrong()
    if isinstance(default, dict):
        if isinstance(value, dict):
            return value
        raise wrong()
    return value


# -- batch functions --------------------------------------------------------------------------
def _number(name: str, func: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FlagError(
            f"flag {name!r}: {func}(...) takes numbers, got {value_text(value) or 'nothing'!r}"
        )
    return value


def _round(x: float) -> float:
    """Twelve significant digits: linspace(0,1,11) gives 0.3, not 0.30000000000000004."""
    return float(f"{x:.12g}")


def _arity(name: str, func: str, args: list[Any], lo: int, hi: int, shape: str) -> None:
    if not lo <= len(args) <= hi:
        raise FlagError(f"flag {name!r}: {func} takes {shape}, got {len(args)} values")


def parse_function(name: str, text: str) -> list[Any] | Sampler | None:
    """range/linspace/logspace/choice -> their values; uniform/loguniform -> a Sampler;
    None when `text` is not a batch function."""
    m = _FUNC.fullmatch(text)
    if not m or m.group("name") not in FUNCTIONS:
        return None
    func, inner = m.group("name"), m.group("args")
    args = load_value(f"[{inner}]", name) if inner.strip() else []
    if not isinstance(args, list):
        raise FlagError(f"flag {name!r}: cannot read the arguments of {text.strip()!r}")
    if func == "choice":
        if not args:
            raise FlagError(f"flag {name!r}: choice takes at least one value")
        return list(args)
    if func in SAMPLERS:
        _arity(name, func, args, 2, 2, "(low, high)")
        lo, hi = (_number(name, func, a) for a in args)
        if not lo < hi:
            raise FlagError(f"flag {name!r}: {func}(low, high) needs low < high, got {lo}, {hi}")
        if func == "loguniform" and lo <= 0:
            raise FlagError(f"flag {name!r}: loguniform(low, high) needs 0 < low, got {lo}")
        return Sampler(func, (lo, hi), text.strip())
    if func == "range":
        _arity(name, func, args, 1, 3, "(stop), (start, stop) or (start, stop, step)")
        nums = [_number(name, func, a) for a in args]
        start: float | int
        stop: float | int
        step: float | int
        if len(nums) == 1:
            start, stop, step = 0, nums[0], 1
        else:
            start, stop = nums[0], nums[1]
            step = nums[2] if len(nums) > 2 else 1
        if step == 0:
            raise FlagError(f"flag {name!r}: range step must not be 0")
        span = (stop - start) / step
        if not math.isfinite(span) or span > MAX_VALUES + 1:
            _check_count(name, text, math.inf)
        count = math.ceil(span - 1e-9)
        if count <= 0:
            raise FlagError(f"flag {name!r}: {text.strip()} is empty")
        _check_count(name, text, count)
        if all(isinstance(n, int) for n in (start, stop, step)):
            return list(range(int(start), int(stop), int(step)))
        return [_round(start + i * step) for i in range(count)]
    # linspace / logspace
    _arity(name, func, args, 3, 3, "(start, stop, num)")
    start, stop = _number(name, func, args[0]), _number(name, func, args[1])
    num = args[2]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise FlagError(f"flag {name!r}: {func} num must be a whole number >= 1, got {num!r}")
    _check_count(name, text, num)
    if func == "logspace" and max(abs(start), abs(stop)) > 300:
        raise FlagError(f"flag {name!r}: logspace exponents must lie within -300..300")
    points = [start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1 else [start]
    if func == "logspace":
        return [_round(10.0**p) for p in points]
    return [_round(p) for p in points]


def _check_count(name: str, text: str, count: float) -> None:
    if count > MAX_VALUES:
        raise FlagError(f"flag {name!r}: {text.strip()} gives more than {MAX_VALUES} values")


# -- assignments ------------------------------------------------------------------------------
def split_word(word: str, op: OpDef) -> tuple[str, str]:
    """`k=v` -> (k, v), with the errors a user can act on."""
    if word.startswith("+"):
        raise FlagError(
            f"{word!r}: ops take only the flags they declare ('+' adds keys to a script's "
            "config, not to an op)",
            f"declare it in [ops.{op.name}.config] of the project file",
        )
    key, sep, text = word.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FlagError(f"expected a flag assignment k=v, got {word!r}", _flags_hint(op))
    return key, text


def parse_flags(op: OpDef, words: Sequence[str], multirun: bool = False) -> FlagSpec:
    """Parse `k=v` words against `op`'s flags into fixed values, grid lists and samplers.
    With `multirun` (`-m`), Hydra's sweeps count too: `lr=0.1,0.01`, `n=range(3)`,
    `x=interval(0,1)` (tether.config.sweeps)."""
    spec = FlagSpec()
    for word in words:
        key, text = split_word(word, op)
        check_flag(op, key)
        if key in spec.words:
            raise FlagError(f"flag {key!r} is given twice ({spec.words[key]!r} and {text!r})")
        spec.words[key] = text
        default = op.flags[key].default
        if multirun and _hydra_sweep(op, spec, key, text):
            continue
        if isinstance(default, (list, dict)):
            spec.fixed[key] = fit(op, key, load_value(text, key), text)
            continue
        func = parse_function(key, text)
        if isinstance(func, Sampler):
            spec.sampled[key] = func
            continue
        if func is not None:
            spec.grid[key] = [fit(op, key, v) for v in func]
            continue
        value = load_value(text, key)
        if isinstance(value, list):
            if not value:
                raise FlagError(f"flag {key!r}: an empty list gives no trials")
            spec.grid[key] = [fit(op, key, v) for v in value]
        else:
            spec.fixed[key] = fit(op, key, value, text)
    return spec


def _hydra_sweep(op: OpDef, spec: FlagSpec, key: str, text: str) -> bool:
    """A `-m` sweep in Hydra's spelling (a top-level comma list or choice/range/interval/sort)
    into the spec's grid or samplers; False when `text` is not one."""
    if not is_key(key):
        return False
    try:
        value = parse_override(f"{key}={text}").value
    except TetherError:
        return False  # not Hydra's grammar: read as tether reads a flag
    if not isinstance(value, (Choices, Call)) or (
        isinstance(value, Call) and value.name in FUNCTIONS
    ):
        return False  # tether's own functions keep their reading (parse_function)
    sweep = parse_sweep(key, text)
    if sweep.distribution is not None:
        d = sweep.distribution
        spec.sampled[key] = Sampler(d.kind, (d.low, d.high), text.strip())
    elif sweep.values is not None:
        spec.grid[key] = [fit(op, key, v) for v in sweep.values]
    else:
        raise FlagError(f"flag {key!r}: glob(...) selects options of a config group, not flags")
    return True


def flag_words(flags: dict[str, Any]) -> list[str]:
    """Trial flags back as `k=v` words (the command recorded in run.lock)."""
    return [f"{k}={_word(v)}" for k, v in flags.items()]


def _word(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        # A string that YAML would read as another type keeps its quotes: `tag='1'`.
        import yaml

        try:
            same = yaml.safe_load(value) == value
        except Exception:
            same = False
        if not same or _FUNC.fullmatch(value):
            return "'" + value.replace("'", "''") + "'"
        return value
    return value_text(value)


def describe(flags: dict[str, Any]) -> str:
    return " ".join(f"{k}={value_text(v)}" for k, v in flags.items())


def is_key(text: str) -> bool:
    return bool(_KEY.fullmatch(text))
