"""Hydra's override grammar, read without Hydra: `key=value`, `+key=value`, `++key=value`,
`~key[=value]`, and the value language (primitives, quoted strings, lists, dicts, functions).

This is a hand-written reader of the grammar Hydra documents ("basic override syntax" and
"extended override syntax"), with the same results as hydra-core 1.3's parser on the same text
(tests/integration/test_hydra_parity.py compares them). It never evaluates user text: a value
is read character by character into Python data.

Value rules, as in Hydra (not YAML 1.1): a bare word is an int, a float (`1e-3`, `-.5`, `inf`,
`nan`), a bool (`true`, any case), null, or else a string: `010`, `12:30`, `yes` and the empty
value stay strings. `'quoted'` and `"quoted"` are strings. `[...]` is a list, `{k: v}` a dict,
`${...}` an interpolation kept as text, `\\,` an escaped comma. `int() float() str() bool()` cast
their argument; the sweep functions (`range`, `choice`, `interval`, `glob`, ...) and a top-level
`a,b` are sweeps, which only `-m` accepts (tether.config.sweeps expands them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..patterns import LazyPattern

# Token rules of Hydra's lexer (value mode), used on a whole bare word: a word that is one such
# token gets its type, any other word is a string.
_DIGITS = r"[0-9](?:_?[0-9])*"
_POINT = rf"(?:(?:{_DIGITS})?\.[0-9]+|{_DIGITS}\.)"
_FLOAT = LazyPattern(
    rf"[+-]?(?:(?:{_POINT}|{_DIGITS})[eE][+-]?[0-9]+|{_POINT}|[Ii][Nn][Ff]|[Nn][Aa][Nn])"
)
_INT = LazyPattern(r"[+-]?(?:0|[1-9](?:_?[0-9])*)")
_BOOL = LazyPattern(r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]")
_NULL = LazyPattern(r"[Nn][Uu][Ll][Ll]")
_ID = LazyPattern(r"[A-Za-z_][A-Za-z0-9_-]*")
# Keys: dotted segments (a segment of digits is a list index), or a group path a/b, then an
# optional @package (which tether refuses).
_KEY_ID = r"[A-Za-z_$][A-Za-z0-9_$-]*"
_KEY_SEG = rf"(?:{_KEY_ID}|[0-9]+)"
_KEY = LazyPattern(
    rf"(?P<key>{_KEY_ID}(?:/{_KEY_ID})+|{_KEY_ID}(?:\.{_KEY_SEG})*|[0-9]+(?:\.{_KEY_SEG})+)"
    rf"(?:@(?P<package>(?:{_KEY_SEG}(?:\.{_KEY_SEG})*)?))?"
)
_BARE = set("/-\\+.$%*@?|_:") | set(" \t")  # beside letters and digits
_ESCAPABLE = set("\\()[]{}:=, \t")
_WS = " \t"

CASTS = ("int", "float", "str", "bool")
MAX_DIGITS = 4000  # an int longer than this is refused (Python's own limit is 4300)
MAX_DEPTH = 100  # nested lists, dicts and calls
# Functions whose value is a sweep: Hydra's, then tether's (see tether.config.sweeps).
SWEEP_FUNCTIONS = (
    "choice",
    "range",
    "interval",
    "glob",
    "sort",
    "shuffle",
    "tag",
    "linspace",
    "logspace",
    "uniform",
    "loguniform",
)


class OverrideError(ConfigError):
    """An override that the grammar cannot read (one line: the text, where, what was expected)."""


@dataclass(frozen=True)
class Call:
    """A sweep function as written: `range(1,5)`, `choice(a,b)`, `interval(0,1)`."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Choices:
    """A top-level comma list, `a,b,c` (Hydra's simple choice sweep)."""

    items: tuple[Any, ...]
    text: str = ""


@dataclass(frozen=True)
class Override:
    """One override word, read.

    `op`: "set" (`key=value`), "add" (`+key=value`), "force" (`++key=value`) or "delete"
    (`~key`, `~key=value`). `value`: Python data, or a `Call` / `Choices` for a sweep.
    `bare`: the value was one unquoted word (so `@file.yaml` and group option names apply).
    """

    op: str
    key: str
    value: Any
    has_value: bool
    text: str
    raw: str
    bare: bool = False

    @property
    def is_sweep(self) -> bool:
        return isinstance(self.value, (Call, Choices))


def _w(text: str) -> str:
    """An override as an error line shows it: quoted, cut at 80 characters."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _bad(text: str, pos: int, expected: str, hint: str | None = None) -> OverrideError:
    shown = text[pos] if pos < len(text) else "the end"
    where = f"at {shown!r} (column {pos + 1})" if pos < len(text) else "at the end"
    return OverrideError(
        f"override {_w(text)}: cannot read it {where}: expected {expected}",
        hint or "quote a value with special characters: key='a#b', or escape it: key=a\\,b",
    )


# -- the value reader -------------------------------------------------------------------------
class _Reader:
    """Recursive descent over one value text; `whole` is the full override for messages."""

    def __init__(self, text: str, offset: int, whole: str) -> None:
        self.s = text
        self.i = 0
        self.offset = offset
        self.whole = whole
        self.depth = 0

    def error(self, expected: str, hint: str | None = None) -> OverrideError:
        return _bad(self.whole, self.offset + self.i, expected, hint)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def value(self) -> Any:
        """value: element | element (',' element)+  (the latter a sweep)."""
        start = self.i
        first = self.element()
        items = [first]
        while self.peek() == ",":
            self.i += 1
            self.skip_ws()
            items.append(self.element())
        if self.i < len(self.s):
            raise self.error("the end of the value")
        if len(items) > 1:
            return Choices(tuple(items), self.s[start:])
        return first

    def element(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"at most {MAX_DEPTH} nested lists, dicts and calls")
        try:
            return self._element()
        finally:
            self.depth -= 1

    def _element(self) -> Any:
        c = self.peek()
        if c == "[":
            return self.list_()
        if c == "{":
            return self.dict_()
        if c in ("'", '"'):
            return self.quoted()
        m = _ID.match(self.s, self.i)
        if m:
            j = m.end()
            while j < len(self.s) and self.s[j] in _WS:
                j += 1
            if j < len(self.s) and self.s[j] == "(":
                return self.function(m.group(0), j)
        return self.primitive()

    def list_(self) -> list[Any]:
        self.i += 1
        self.skip_ws()
        out: list[Any] = []
        if self.peek() == "]":
            self.i += 1
            return out
        while True:
            out.append(self.element())
            self.skip_ws()
            c = self.peek()
            self.i += 1
            if c == "]":
                return out
            if c != ",":
                self.i -= 1
                raise self.error("',' or ']' in a list")
            self.skip_ws()

    def dict_(self) -> dict[Any, Any]:
        self.i += 1
        self.skip_ws()
        out: dict[Any, Any] = {}
        if self.peek() == "}":
            self.i += 1
            return out
        while True:
            key = self.dict_key()
            if self.peek() != ":":
                raise self.error("':' after a dict key")
            self.i += 1
            self.skip_ws()
            if self.peek() in (",", "}", ""):
                raise self.error("a value after ':'")
            out[key] = self.element()
            self.skip_ws()
            c = self.peek()
            self.i += 1
            if c == "}":
                return out
            if c != ",":
                self.i -= 1
                raise self.error("',' or '}' in a dict")
            self.skip_ws()

    def dict_key(self) -> Any:
        start = self.i
        text, plain = self._word(allow_colon=False, allow_interp=False)
        if not text.strip():
            self.i = start
            raise self.error("a dict key")
        return _typed(text) if plain else text.strip(_WS)

    def quoted(self) -> str:
        q = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise self.error(f"a closing {q}")
            c = self.s[self.i]
            if c == "\\":
                j = self.i
                while j < len(self.s) and self.s[j] == "\\":
                    j += 1
                run = j - self.i
                if j < len(self.s) and self.s[j] == q:
                    # n backslashes before the quote: an odd run escapes it, an even run ends
                    # the string; either way each pair stands for one backslash.
                    out.append("\\" * (run // 2))
                    self.i = j + 1
                    if run % 2:
                        out.append(q)
                        continue
                    return "".join(out)
                out.append("\\" * run)
                self.i = j
                continue
            self.i += 1
            if c == q:
                return "".join(out)
            out.append(c)

    def function(self, name: str, paren: int) -> Any:
        start = self.i
        self.i = paren + 1
        self.skip_ws()
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if self.peek() != ")":
            while True:
                m = _ID.match(self.s, self.i)
                if m and m.end() < len(self.s) and self.s[m.end()] == "=":
                    self.i = m.end() + 1
                    self.skip_ws()
                    kwargs[m.group(0)] = self.element()
                else:
                    if kwargs:
                        raise self.error("a keyword argument (positional ones come first)")
                    args.append(self.element())
                self.skip_ws()
                c = self.peek()
                if c == ")":
                    break
                if c != ",":
                    raise self.error(f"',' or ')' in {name}(...)")
                self.i += 1
                self.skip_ws()
        self.i += 1
        text = self.s[start : self.i]
        if name in CASTS:
            if kwargs and set(kwargs) != {"value"}:
                raise OverrideError(
                    f"override {_w(self.whole)}: {name}() takes no argument "
                    f"{next(iter(set(kwargs) - {'value'}))!r}"
                )
            values = [*args, *kwargs.values()]
            if len(values) != 1:
                raise OverrideError(
                    f"override {_w(self.whole)}: {name}() takes one value, got {len(values)}"
                )
            return cast(name, values[0], self.whole)
        if name in SWEEP_FUNCTIONS:
            return Call(name, tuple(args), kwargs, text)
        raise OverrideError(
            f"override {_w(self.whole)}: unknown function {name!r}",
            f"the functions are {', '.join(CASTS + SWEEP_FUNCTIONS)}; quote the value to "
            "pass it as a string",
        )

    def primitive(self) -> Any:
        text, plain = self._word(allow_colon=True, allow_interp=True)
        # Only a whole value may be empty (`key=` is ''); `a,` and `[1,]` miss one.
        if not text.strip(_WS) and self.s.strip(_WS):
            raise self.error("a value")
        return _typed(text) if plain else text.strip(_WS)

    def _word(self, *, allow_colon: bool, allow_interp: bool) -> tuple[str, bool]:
        """A run of bare characters, escapes unescaped; `plain` when it holds no escape or
        interpolation (only then may it be typed)."""
        out: list[str] = []
        plain = True
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c.isascii() and (c.isalnum() or c in _BARE):
                if c == ":" and not allow_colon:
                    break
                if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in _ESCAPABLE:
                    out.append(s[self.i + 1])
                    self.i += 2
                    plain = False
                    continue
                if c == "$" and allow_interp and s.startswith("${", self.i):
                    end = _interpolation_end(s, self.i)
                    if end < 0:
                        raise self.error("'}' closing the interpolation '${'")
                    out.append(s[self.i : end])
                    self.i = end
                    plain = False
                    continue
                out.append(c)
                self.i += 1
                continue
            if c in ",]})([{=\"'" or not (c.isascii() and c.isprintable()) or c == "#":
                if c in ",]})":
                    break
                if c in "'\"" and not out:
                    break
                raise self.error("a value character (letters, digits, /-\\+.$%*@?|_: )")
            raise self.error("a value character (letters, digits, /-\\+.$%*@?|_: )")
        return "".join(out), plain


def _interpolation_end(s: str, start: int) -> int:
    """The index after the `}` that closes the `${` at `start`, or -1."""
    depth = 0
    i = start
    while i < len(s):
        if s.startswith("${", i):
            depth += 1
            i += 2
            continue
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _typed(word: str) -> Any:
    """A bare word as Hydra types it: one int/float/bool/null token, else the string."""
    text = word.strip(_WS)
    if _INT.fullmatch(text):
        if len(text) > MAX_DIGITS:
            raise OverrideError(
                f"the number {text[:20]}... has {len(text)} digits, more than {MAX_DIGITS}",
                "quote it to pass a string: key='...'",
            )
        return int(text.replace("_", ""))
    if _FLOAT.fullmatch(text):
        return float(text.replace("_", ""))
    if _BOOL.fullmatch(text):
        return text.lower() == "true"
    if _NULL.fullmatch(text):
        return None
    return text


# -- casts ------------------------------------------------------------------------------------
def cast(name: str, value: Any, whole: str = "") -> Any:
    """int() float() str() bool() as Hydra applies them: element-wise into lists and dict
    values; null cannot be cast."""
    if isinstance(value, list):
        return [cast(name, v, whole) for v in value]
    if isinstance(value, dict):
        return {k: cast(name, v, whole) for k, v in value.items()}
    if isinstance(value, (Call, Choices)):
        raise OverrideError(f"override {_w(whole)}: {name}() cannot cast a sweep")
    shown = f"{name}({_shown(value)})"
    if value is None:
        raise OverrideError(f"override {_w(whole)}: {shown}: null cannot be cast")
    try:
        if name == "int":
            return int(value)
        if name == "float":
            return float(value)
        if name == "str":
            return str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, str):
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"cannot cast {value!r} to bool")
        return bool(value)
    except (ValueError, OverflowError) as exc:
        raise OverrideError(f"override {_w(whole)}: {shown}: {exc}")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# -- one override -----------------------------------------------------------------------------
def parse_override(text: str) -> Override:
    """Read one override word; OverrideError (one line, with the column) when it is not one."""
    i = 0
    op = "set"
    if text.startswith("++"):
        op, i = "force", 2
    elif text.startswith("+"):
        op, i = "add", 1
    elif text.startswith("~"):
        op, i = "delete", 1
    m = _KEY.match(text, i)
    if not m or not m.group("key"):
        raise _bad(
            text,
            i,
            "a key (letters, digits, _ and -, dotted: model.lr)",
            "write key=value, +key=value, ++key=value or ~key",
        )
    key = m.group("key")
    if m.group("package") is not None:
        raise OverrideError(
            f"override {_w(text)}: package overrides (@pkg) are not supported",
            f"write the key where the value goes: {key}=...",
        )
    j = m.end()
    if j == len(text):
        if op == "delete":
            return Override(op, key, None, False, text, "")
        raise _bad(text, j, "'=' and a value", f"write {text}=VALUE (or {text}= for '')")
    if text[j] != "=":
        raise _bad(text, j, "'=' after the key")
    raw = text[j + 1 :]
    reader = _Reader(raw, j + 1, text)
    reader.skip_ws()
    try:
        value = reader.value()
    except OverrideError as exc:
        if str(exc).startswith("override "):
            raise
        raise OverrideError(f"override {_w(text)}: {exc}") from None
    bare = bool(raw.strip(_WS)) and raw.lstrip(_WS)[0] not in "'\"[{" and isinstance(value, str)
    return Override(op, key, value, True, text, raw, bare and not _has_call(raw))


def _has_call(raw: str) -> bool:
    m = _ID.match(raw.lstrip(_WS))
    return m is not None and raw.lstrip(_WS)[m.end() :].lstrip(_WS).startswith("(")


def is_finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
