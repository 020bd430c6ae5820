"""The --where language, compiled to parameterised SQL over the index, and --sort keys.

    status = completed and config.lr >= 0.01 and metrics.loss.last < 0.2
    tag = baseline or label ~ "resnet"
    started > 2026-11-01 and op in (train, eval) and not tag = broken

A hand-written tokenizer and recursive-descent parser turn the text into one SQL fragment over
the `runs` table of the index. Every value the user wrote travels as a `?` parameter, never
inside the SQL text; field names only select among fixed SQL snippets. A condition on a config,
metric, data or source key is an `EXISTS` sub-query on `vals`, an indexed lookup however many
runs there are.

Grammar (keywords `and or not in null` in any case):

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := FIELD OP value | FIELD ["not"] "in" "(" value ("," value)* ")"
    OP         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "!~"
    value      := NUMBER | WORD | "double quoted" | 'single quoted' | null

A value that is missing (no such key, no label, not stopped yet) makes every comparison false
except `= null`; `not` is the exact complement.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import TetherError, did_you_mean
from .records import IndexRow

__all__ = [
    "FIELDS",
    "Field",
    "SortKey",
    "WhereError",
    "compile_sort",
    "compile_where",
    "count",
    "parse_columns",
    "parse_field",
    "parse_sort",
    "select_ids",
    "select_rows",
    "short_ids_of",
    "values_of",
]

# Limits that keep the compiled SQL inside SQLite's parser stack and expression depth.
MAX_DEPTH = 24  # nested parentheses and `not`s
MAX_CONDITIONS = 256
MAX_VALUES = 4096
# Queries with a limit up to this size use the index-driven plan for sorting on a key.
_DRIVEN_LIMIT = 5000
_CHUNK = 500

STATUSES = ("pending", "queued", "running", "completed", "failed", "terminated", "unknown")
KEYWORDS = ("and", "or", "not", "in", "null")
STATS = ("last", "min", "max", "step")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~", "!~")
_OPS_TEXT = "= != < <= > >= ~ !~ in"

# name -> (kind, SQL column, nullable, `=` is a prefix match)
_SIMPLE: dict[str, tuple[str, str, bool, bool]] = {
    "id": ("column", "runs.id", False, True),
    "name": ("column", "runs.name", False, False),
    "op": ("column", "runs.name", False, False),
    "status": ("column", "runs.status", False, False),
    "label": ("column", "runs.label", True, False),
    "tag": ("tag", "", False, False),
    "started": ("time", "runs.started", True, False),
    "stopped": ("time", "runs.stopped", True, False),
    "created": ("time", "runs.created", False, False),
    "host": ("column", "runs.host", True, False),
    "parent": ("column", "runs.parent", True, True),
}
_KEYED = ("config", "metrics", "data", "source")
FIELDS = (*_SIMPLE, "source.commit", "config.<key>", "metrics.<key>", "data.<path>")
_FIELDS_TEXT = (
    "id, name, op, status, label, tag, started, stopped, created, host, parent, "
    "source.commit, config.<key>, metrics.<key>[.last|.min|.max|.step], data.<path>"
)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6})\d*)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?",
    re.IGNORECASE,
)
_STOP = frozenset("()=!<>~,\"'")


class WhereError(TetherError):
    """A --where expression (or --sort/--columns list) that cannot be compiled.

    The message holds what was expected, the text, and a caret under the position:

        invalid where expression at column 11: expected a value, found the end
          config.lr >=
                      ^
    """

    def __init__(self, detail: str, text: str, pos: int, what: str = "where expression") -> None:
        pos = max(0, min(pos, len(text)))
        shown = "".join(c if c.isprintable() else " " for c in text)
        message = f"invalid {what} at column {pos + 1}: {detail}\n  {shown}\n  {' ' * pos}^"
        super().__init__(message)
        self.detail = detail
        self.text = text
        self.pos = pos


# -- tokens ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # word, string, op, (, ), ",", end
    text: str  # the word, the string's value (unescaped), the operator
    pos: int
    end: int

    def shown(self) -> str:
        if self.kind == "end":
            return "the end"
        if self.kind == "string":
            return f"the string {self.text!r}"
        return repr(self.text)

    def keyword(self) -> str | None:
        if self.kind == "word" and self.text.lower() in KEYWORDS:
            return self.text.lower()
        return None


def tokenize(text: str, what: str = "where expression") -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif "\ud800" <= c <= "\udfff":
            raise WhereError("found a character that is not valid text", text, i, what)
        elif c in "(),":
            out.append(Token(c, c, i, i + 1))
            i += 1
        elif c in "\"'":
            out.append(_string(text, i, what))
            i = out[-1].end
        elif c in "<>=!~":
            two = text[i : i + 2]
            if two in ("<=", ">=", "!=", "!~", "=="):
                out.append(Token("op", "=" if two == "==" else two, i, i + 2))
                i += 2
            elif c == "!":
                raise WhereError(f"expected '!=' or '!~', found {text[i : i + 2]!r}", text, i, what)
            else:
                out.append(Token("op", c, i, i + 1))
                i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _STOP:
                if "\ud800" <= text[j] <= "\udfff":
                    raise WhereError("found a character that is not valid text", text, j, what)
                j += 1
            out.append(Token("word", text[i:j], i, j))
            i = j
    out.append(Token("end", "", n, n))
    return out


def _string(text: str, start: int, what: str) -> Token:
    quote = text[start]
    i = start + 1
    chars: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            # Only the quote and the backslash itself are escaped: `"\d+"` stays a regex.
            chars.append(text[i + 1])
            i += 2
        elif c == quote:
            return Token("string", "".join(chars), start, i + 1)
        elif "\ud800" <= c <= "\udfff":
            raise WhereError("found a character that is not valid text", text, i, what)
        else:
            chars.append(c)
            i += 1
    raise WhereError(f"unterminated string: expected a closing {quote}", text, start, what)


# -- fields ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A field of the language: a column of `runs`, the tags, a time, or a key of `vals`."""

    name: str  # as written
    kind: str  # column, tag, time, val
    column: str = ""  # SQL column for column and time fields
    key: str = ""  # the `vals` key for val fields
    nullable: bool = True
    prefix: bool = False  # `=` matches a prefix (ids, commits)


def parse_field(word: str, text: str = "", pos: int = 0, what: str = "where expression") -> Field:
    """The field named `word`; WhereError (with did-you-mean) when there is none."""
    text = text or word
    if word in _SIMPLE:
        kind, column, nullable, prefix = _SIMPLE[word]
        return Field(word, kind, column=column, nullable=nullable, prefix=prefix)
    if word == "source.commit":
        return Field(word, "val", key="source.commit", prefix=True)
    head, dot, rest = word.partition(".")
    if dot and head in ("config", "metrics", "data"):
        if not rest or rest.startswith(".") or rest.endswith("."):
            spot = pos + len(head) + 1 + (len(rest) if rest.endswith(".") and rest else 0)
            noun = "path" if head == "data" else "key"
            raise WhereError(f"expected a {noun} after '{head}.'", text, spot, what)
        if head == "metrics":
            stem, _, stat = rest.rpartition(".")
            key = f"metrics.{rest}" if stem and stat in STATS else f"metrics.{rest}.last"
            return Field(word, "val", key=key)
        return Field(word, "val", key=word)
    hint = did_you_mean(word, [*_SIMPLE, "source.commit"])
    if hint is None and dot:
        near = did_you_mean(head, _KEYED)
        if near == "source":
            hint = "source.commit"
        elif near is not None:
            hint = f"{near}.{rest}"
    if hint is None and word in _KEYED:
        hint = "source.commit" if word == "source" else f"{word}.<key>"
    if hint is not None:
        raise WhereError(f"unknown field {word!r}; did you mean {hint!r}?", text, pos, what)
    raise WhereError(f"unknown field {word!r}; fields: {_FIELDS_TEXT}", text, pos, what)


# -- values ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    text: str
    quoted: bool
    pos: int
    is_null: bool = False

    def number(self) -> float | None:
        if self.quoted or self.is_null or not _NUMBER.fullmatch(self.text):
            return None
        return float(self.text)

    def as_text(self) -> str:
        if not self.quoted and self.text.lower() in ("true", "false"):
            return self.text.lower()  # booleans are indexed as the text true/false
        return self.text


def _time_range(value: Value, src: str, what: str) -> tuple[str, str]:
    """The UTC span a date or time stands for: a day for a date, a minute for 10:30, ..."""
    m = _TIME.fullmatch(value.text.strip())
    bad = WhereError(
        f"expected a date or time like 2026-11-01 or 2026-11-01T10:30, found {value.text!r}",
        src,
        value.pos,
        what,
    )
    if m is None:
        raise bad
    g = m.groupdict()
    try:
        y = int(g["y"])
        if g["mo"] is None:
            lo, step = datetime(y, 1, 1), None
            hi = datetime(y + 1, 1, 1) if y < 9999 else datetime.max
        elif g["d"] is None:
            mo = int(g["mo"])
            lo, step = datetime(y, mo, 1), None
            hi = datetime(y + (mo == 12), mo % 12 + 1, 1) if y < 9999 or mo < 12 else datetime.max
        else:
            day = datetime(y, int(g["mo"]), int(g["d"]))
            if g["h"] is None:
                lo, step = day, timedelta(days=1)
            else:
                lo = day.replace(hour=int(g["h"]), minute=int(g["mi"]))
                step = timedelta(minutes=1)
                if g["s"] is not None:
                    lo = lo.replace(second=int(g["s"]))
                    step = timedelta(seconds=1)
                    if g["f"] is not None:
                        lo = lo.replace(microsecond=int(g["f"].ljust(6, "0")))
                        step = timedelta(microseconds=10 ** (6 - len(g["f"])))
            tz = g["tz"]
            if tz and tz.upper() != "Z":
                sign = 1 if tz[0] == "+" else -1
                digits = tz[1:].replace(":", "")
                offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                if offset >= timedelta(hours=24):
                    raise bad
                lo = lo - sign * offset
            hi = lo + step
    except (ValueError, OverflowError):
        raise bad
    return _iso(lo), _iso(hi)


def _iso(when: datetime) -> str:
    # The format state.json and run.lock use (UTC, microseconds, Z), so text order is time order.
    return when.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_regex(value: Value, src: str, what: str) -> str:
    pattern = value.text
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        reason = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise WhereError(f"invalid regular expression: {reason}", src, value.pos, what)
    return pattern


def _unindexed(column: str) -> str:
    """`+runs.name`: keeps SQLite from reading every run of one name through its index and
    sorting them all, when walking runs in the order wanted stops after the first few."""
    return "+runs.name" if column == "runs.name" else column


# -- the parser -----------------------------------------------------------------------------
_PRESENT = "(v.num IS NOT NULL OR v.txt IS NOT NULL)"


class _Parser:
    def __init__(self, text: str) -> None:
        self.src = text
        self.toks = tokenize(text)
        self.i = 0
        self.params: list[Any] = []
        self.depth = 0
        self.conditions = 0

    # tokens
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def error(self, detail: str, pos: int | None = None) -> WhereError:
        return WhereError(detail, self.src, self.tok.pos if pos is None else pos)

    def expected(self, what: str) -> WhereError:
        return self.error(f"expected {what}, found {self.tok.shown()}")

    # grammar
    def parse(self) -> str:
        if self.tok.kind == "end":
            raise self.expected("a condition such as `status = completed`")
        sql = self.or_expr()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                raise self.error("found ')' without a matching '('")
            raise self.expected("'and', 'or' or the end")
        return sql

    def or_expr(self) -> str:
        items = [self.and_expr()]
        while self.tok.keyword() == "or":
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else "(" + " OR ".join(items) + ")"

    def and_expr(self) -> str:
        items = [self.not_expr()]
        while self.tok.keyword() == "and":
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else "(" + " AND ".join(items) + ")"

    def not_expr(self) -> str:
        tok = self.tok
        if tok.keyword() == "not" or tok.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"nested too deeply: at most {MAX_DEPTH} levels of ( and not")
            self.advance()
            if tok.kind == "(":
                inner = self.or_expr()
                if self.tok.kind != ")":
                    raise self.expected("')' or 'and'/'or'")
                self.advance()
                sql = inner
            else:
                sql = "NOT " + self.not_expr()
            self.depth -= 1
            return sql
        return self.comparison()

    def comparison(self) -> str:
        tok = self.tok
        if tok.kind != "word" or tok.keyword() is not None:
            raise self.expected("a field such as status, config.<key> or metrics.<key>")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.error(f"too many conditions: at most {MAX_CONDITIONS}")
        field = parse_field(tok.text, self.src, tok.pos)
        self.advance()
        op_tok = self.tok
        negate = False
        if op_tok.keyword() == "not":
            self.advance()
            if self.tok.keyword() != "in":
                raise self.expected("'in' after 'not'")
            negate = True
        if self.tok.keyword() == "in":
            self.advance()
            values = self.value_list()
            sql = self.compile_in(field, values, op_tok)
            return f"NOT {sql}" if negate else sql
        if op_tok.kind != "op":
            raise self.expected(f"an operator ({_OPS_TEXT}) after {tok.text}")
        self.advance()
        value = self.value()
        return self.compile_op(field, op_tok, value)

    def value(self) -> Value:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Value(tok.text, True, tok.pos)
        if tok.kind == "word":
            kw = tok.keyword()
            if kw == "null":
                self.advance()
                return Value(tok.text, False, tok.pos, is_null=True)
            if kw is not None:
                raise self.error(
                    f"expected a value, found {tok.shown()} (quote it to use it as text)"
                )
            self.advance()
            return Value(tok.text, False, tok.pos)
        raise self.expected("a value")

    def value_list(self) -> list[Value]:
        if self.tok.kind != "(":
            raise self.expected("'(' after 'in'")
        self.advance()
        values = [self.value()]
        while self.tok.kind == ",":
            self.advance()
            values.append(self.value())
        if self.tok.kind != ")":
            raise self.expected("',' or ')'")
        self.advance()
        for v in values:
            if v.is_null:
                raise self.error("null cannot be in a list; use `= null`", v.pos)
        return values

    # compiling one condition
    def add(self, *values: Any) -> None:
        self.params.extend(values)
        if len(self.params) > MAX_VALUES:
            raise self.error(f"too many values: at most {MAX_VALUES}")

    def compile_op(self, field: Field, op_tok: Token, value: Value) -> str:
        op = op_tok.text
        if field.kind == "tag" and op not in ("=", "!=", "~", "!~"):
            raise self.error(f"tag takes =, !=, ~, !~ or in, found {op!r}", op_tok.pos)
        if value.is_null:
            if op not in ("=", "!="):
                raise self.error(f"null goes with = or !=, found {op!r}", op_tok.pos)
            return self.compile_null(field, op == "=")
        if field.kind == "column" and field.name == "status" and op in ("=", "!="):
            self.check_status(value)
        if op in ("~", "!~"):
            return self.compile_regex(field, _check_regex(value, self.src, "where expression"), op)
        if field.kind == "tag":
            self.add(value.text)
            sql = "EXISTS (SELECT 1 FROM tags t WHERE t.run = runs.id AND t.tag = ?)"
            return sql if op == "=" else "NOT " + sql
        if field.kind == "time":
            lo, hi = _time_range(value, self.src, "where expression")
            col = field.column
            if op == "=":
                self.add(lo, hi)
                cond = f"{col} >= ? AND {col} < ?"
            elif op == "!=":
                self.add(lo, hi)
                cond = f"({col} < ? OR {col} >= ?)"
            else:
                self.add({"<": lo, "<=": hi, ">": hi, ">=": lo}[op])
                cond = f"{col} {'<' if op in ('<', '<=') else '>='} ?"
            return self.present(field, cond)
        if field.kind == "column":
            col = _unindexed(field.column)
            text = value.text.lower() if field.prefix else value.text
            if field.prefix and op in ("=", "!="):
                self.add(text, text + "\uffff")
                cond = f"{col} >= ? AND {col} < ?"
                cond = cond if op == "=" else f"NOT ({cond})"
            else:
                self.add(text)
                cond = f"{col} {op} ?"
            return self.present(field, cond)
        # A key of vals: numbers compare with numbers, text with text.
        num = value.number()
        if field.prefix and op in ("=", "!="):
            text = value.text.lower()
            self.add(field.key, text, text + "\uffff")
            cond = "v.txt >= ? AND v.txt < ?"
            if op == "!=":
                cond = f"{_PRESENT} AND NOT (v.txt IS NOT NULL AND {cond})"
        elif op == "!=":
            self.add(field.key, num if num is not None else value.as_text())
            cond = f"{_PRESENT} AND v.{'num' if num is not None else 'txt'} IS NOT ?"
        else:
            self.add(field.key, num if num is not None else value.as_text())
            cond = f"v.{'num' if num is not None else 'txt'} {op} ?"
        return f"EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {cond})"

    def compile_in(self, field: Field, values: list[Value], op_tok: Token) -> str:
        if field.kind == "column" and field.name == "status":
            for v in values:
                self.check_status(v)
        if field.kind == "tag":
            self.add(*(v.text for v in values))
            marks = ", ".join("?" * len(values))
            return f"EXISTS (SELECT 1 FROM tags t WHERE t.run = runs.id AND t.tag IN ({marks}))"
        if field.kind == "time":
            spans = []
            for v in values:
                lo, hi = _time_range(v, self.src, "where expression")
                self.add(lo, hi)
                spans.append(f"({field.column} >= ? AND {field.column} < ?)")
            return self.present(field, "(" + " OR ".join(spans) + ")")
        if field.kind == "column":
            if field.prefix:
                spans = []
                for v in values:
                    text = v.text.lower()
                    self.add(text, text + "\uffff")
                    spans.append(f"({field.column} >= ? AND {field.column} < ?)")
                return self.present(field, "(" + " OR ".join(spans) + ")")
            self.add(*(v.text for v in values))
            col = _unindexed(field.column)
            return self.present(field, f"{col} IN ({', '.join('?' * len(values))})")
        self.add(field.key)
        if field.prefix:
            spans = []
            for v in values:
                text = v.text.lower()
                self.add(text, text + "\uffff")
                spans.append("(v.txt >= ? AND v.txt < ?)")
            cond = "(" + " OR ".join(spans) + ")"
        else:
            nums = [n for n in (v.number() for v in values) if n is not None]
            texts = [v.as_text() for v in values if v.number() is None]
            parts = []
            if nums:
                self.add(*nums)
                parts.append(f"(v.num IS NOT NULL AND v.num IN ({', '.join('?' * len(nums))}))")
            if texts:
                self.add(*texts)
                parts.append(f"(v.txt IS NOT NULL AND v.txt IN ({', '.join('?' * len(texts))}))")
            cond = "(" + " OR ".join(parts) + ")"
        return f"EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {cond})"

    def compile_null(self, field: Field, is_null: bool) -> str:
        if field.kind == "tag":
            sql = "EXISTS (SELECT 1 FROM tags t WHERE t.run = runs.id)"
        elif field.kind == "val":
            self.add(field.key)
            sql = f"EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {_PRESENT}"
            sql += ")"
        else:
            return f"({field.column} IS {'' if is_null else 'NOT '}NULL)"
        return "NOT " + sql if is_null else sql

    def compile_regex(self, field: Field, pattern: str, op: str) -> str:
        if field.kind == "tag":
            self.add(pattern)
            sql = "EXISTS (SELECT 1 FROM tags t WHERE t.run = runs.id AND t.tag REGEXP ?)"
            return sql if op == "~" else "NOT " + sql
        if field.kind == "val":
            self.add(field.key, pattern)
            cond = "coalesce(v.txt, v.num) REGEXP ?"
            if op == "!~":
                cond = f"{_PRESENT} AND NOT {cond}"
            return f"EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {cond})"
        self.add(pattern)
        cond = f"{_unindexed(field.column)} REGEXP ?"
        return self.present(field, cond if op == "~" else f"NOT {cond}")

    def present(self, field: Field, cond: str) -> str:
        """`cond` made two-valued: false, not NULL, when the column is NULL."""
        if field.nullable:
            return f"({field.column} IS NOT NULL AND {cond})"
        return f"({cond})"

    def check_status(self, value: Value) -> None:
        if value.text not in STATUSES:
            hint = did_you_mean(value.text, STATUSES)
            tail = f"did you mean {hint!r}?" if hint else "statuses: " + ", ".join(STATUSES)
            raise self.error(f"unknown status {value.text!r}; {tail}", value.pos)


def compile_where(expr: str) -> tuple[str, list[Any]]:
    """A --where expression as an SQL condition over `runs` and its parameters.

    Raises WhereError (a TetherError) for anything it cannot compile, with a caret under the
    position; nothing else escapes, whatever the text.
    """
    parser = _Parser(expr)
    return parser.parse(), parser.params


# -- sorting --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SortKey:
    field: Field
    desc: bool


def _field_list(spec: str, what: str, signs: bool) -> list[tuple[Field, bool]]:
    """Comma-separated fields, each with a leading `-` (descending) when `signs`."""
    out: list[tuple[Field, bool]] = []
    pos = 0
    for part in spec.split(","):
        stripped = part.strip()
        start = pos + (len(part) - len(part.lstrip()))
        pos += len(part) + 1
        if not stripped:
            raise WhereError("expected a field, found nothing", spec, start, what)
        desc = signs and stripped.startswith("-")
        name = stripped[1:].lstrip() if signs and stripped[:1] in "+-" else stripped
        at = start + (len(stripped) - len(name))
        if not name:
            raise WhereError("expected a field after the sign", spec, at, what)
        for j, c in enumerate(name):
            if c.isspace() or c in _STOP or "\ud800" <= c <= "\udfff":
                raise WhereError(f"expected ',' or the end, found {c!r}", spec, at + j, what)
        field = parse_field(name, spec, at, what)
        if signs and field.kind == "tag":
            raise WhereError("cannot sort by tag (a run has several)", spec, at, what)
        out.append((field, desc))
    return out


def parse_sort(spec: str) -> list[SortKey]:
    """`-metrics.loss.last,config.lr`: comma-separated fields, `-` for descending."""
    return [SortKey(f, desc) for f, desc in _field_list(spec, "sort keys", signs=True)]


def parse_columns(spec: str) -> list[Field]:
    """`config.lr,metrics.loss,host`: the extra columns of a listing."""
    return [f for f, _ in _field_list(spec, "column list", signs=False)]


# The plain listing's order, which RUN numbers count in; and the last word of every --sort:
# ties newest first (run ids are UUIDv7, so their order is their creation order).
_NEWEST = "runs.created DESC, runs.id DESC"
_TIE = "runs.id DESC"


def _order_terms(keys: Sequence[SortKey]) -> tuple[list[str], list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    for k in keys:
        direction = " DESC" if k.desc else ""
        if k.field.kind == "val":
            sub = "(SELECT coalesce(v.num, v.txt) FROM vals v WHERE v.run = runs.id AND v.key = ?)"
            terms += [f"{sub} IS NULL", sub + direction]
            params += [k.field.key, k.field.key]
        elif k.field.nullable:
            terms += [f"{k.field.column} IS NULL", k.field.column + direction]
        else:
            terms.append(k.field.column + direction)
    return terms, params


def compile_sort(spec: str) -> tuple[str, list[Any]]:
    """An ORDER BY clause (without the words) for --sort, and its parameters.

    Runs without a value for a key sort after those with one, in either direction; numbers sort
    before text (descending reverses that); ties go newest first.
    """
    terms, params = _order_terms(parse_sort(spec))
    return ", ".join([*terms, _TIE]), params


# -- running queries ------------------------------------------------------------------------
def select_ids(
    conn: sqlite3.Connection,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Ids of the runs matching `where`, in `sort` order (newest first by default)."""
    where_sql, where_params = compile_where(where) if where is not None else ("", [])
    keys = parse_sort(sort) if sort else []
    if limit is not None and limit <= 0:
        return []
    first = keys[0].field if keys else None
    if (
        first is not None
        and (first.kind == "val" or first.nullable)
        and limit is not None
        and limit <= _DRIVEN_LIMIT
    ):
        return _driven(conn, where_sql, where_params, keys, limit)
    terms, order_params = _order_terms(keys)
    sql = "SELECT runs.id FROM runs"
    if where_sql:
        sql += f" WHERE {where_sql}"
    sql += " ORDER BY " + ", ".join([*terms, _TIE] if keys else [_NEWEST])
    params = [*where_params, *order_params]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [r[0] for r in conn.execute(sql, params)]


def _driven(
    conn: sqlite3.Connection,
    where_sql: str,
    where_params: list[Any],
    keys: list[SortKey],
    limit: int,
) -> list[str]:
    """Sort on a key that may be missing by walking an index instead of sorting every run.

    A plain ORDER BY puts missing values last with a `x IS NULL` term, which no index can
    serve: then every matching run is looked up and sorted, however few are wanted. Instead,
    one query per group, each only while rows are still wanted: for a key of `vals`, the runs
    whose value is a number (walking the (key, num) index, so the first `limit` matches end
    the walk), then those whose value is text (descending: text first), then the runs without
    it; for a column that may be empty (started, label, ...), the runs with a value, then the
    rest.
    """
    first, rest = keys[0], keys[1:]
    rest_terms, rest_params = _order_terms(rest)
    direction = " DESC" if first.desc else ""
    extra = f" AND ({where_sql})" if where_sql else ""
    queries: list[tuple[str, list[Any]]] = []
    if first.field.kind == "val":
        # With no other key, (num, run) is the index's own order: no sorting at all.
        tie = ", ".join([*rest_terms, _TIE]) if rest else "s.run DESC"
        groups = [
            ("s.num IS NOT NULL", f"s.num{direction}"),
            ("s.num IS NULL AND s.txt IS NOT NULL", f"s.txt{direction}"),
        ]
        if first.desc:
            groups.reverse()
        for cond, order in groups:
            sql = (
                "SELECT runs.id FROM vals s CROSS JOIN runs ON runs.id = s.run "
                f"WHERE s.key = ? AND {cond}{extra} ORDER BY {order}, {tie} LIMIT ?"
            )
            queries.append((sql, [first.field.key, *where_params, *rest_params]))
        missing = (
            f"NOT EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {_PRESENT})"
        )
        missing_params = [first.field.key]
    else:
        col = first.field.column
        sql = (
            f"SELECT runs.id FROM runs WHERE {col} IS NOT NULL{extra} "
            f"ORDER BY {', '.join([col + direction, *rest_terms, _TIE])} LIMIT ?"
        )
        queries.append((sql, [*where_params, *rest_params]))
        missing, missing_params = f"{col} IS NULL", []
    sql = (
        f"SELECT runs.id FROM runs WHERE {missing}{extra} "
        f"ORDER BY {', '.join([*rest_terms, _TIE])} LIMIT ?"
    )
    queries.append((sql, [*missing_params, *where_params, *rest_params]))
    out: list[str] = []
    for sql, params in queries:
        out += [r[0] for r in conn.execute(sql, [*params, limit - len(out)])]
        if len(out) >= limit:
            break
    return out


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def select_rows(
    index: Any,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[IndexRow]:
    """IndexRows (with tags and last metrics) of the matching runs, in order."""
    ids = select_ids(index._connect(), where, sort, limit)
    found: dict[str, IndexRow] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for row in index.rows(where_sql=f"runs.id IN ({marks})", params=list(chunk)):
            found[row.id] = row
    return [found[i] for i in ids if i in found]


def count(index: Any, where: str | None = None) -> int:
    """How many runs match `where` (all runs without one)."""
    if where is None:
        return int(index.count())
    sql, params = compile_where(where)
    row = index._connect().execute(f"SELECT count(*) FROM runs WHERE {sql}", params).fetchone()
    return int(row[0])


def values_of(index: Any, ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{run id: {vals key: number or text}} for the given runs and keys."""
    out: dict[str, dict[str, Any]] = {i: {} for i in ids}
    if not ids or not keys:
        return out
    conn = index._connect()
    key_marks = ", ".join("?" * len(keys))
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for run, key, num, txt in conn.execute(
            f"SELECT run, key, num, txt FROM vals WHERE run IN ({marks}) AND key IN ({key_marks})",
            [*chunk, *keys],
        ):
            if num is not None and txt in ("true", "false"):
                out[run][key] = txt == "true"  # indexed booleans carry both columns
            else:
                out[run][key] = num if num is not None else txt
    return out


def short_ids_of(index: Any, ids: Sequence[str], minimum: int = 8) -> dict[str, str]:
    """The short id of each of `ids` among all runs of the index, from its sorted neighbours.

    The same prefixes as `tether.ids.short_ids(all ids)`, without reading every id: each id only
    needs comparing with the ids just before and after it.
    """
    from ..ids import short_ids

    if len(ids) > 2000:
        every = index.ids()
        shorts = short_ids(every, minimum)
        return {i: shorts.get(i, i[:13]) for i in ids}
    conn = index._connect()
    out = {}
    for rid in ids:
        near = [rid]
        for sql in (
            "SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1",
            "SELECT id FROM runs WHERE id > ? ORDER BY id LIMIT 1",
        ):
            row = conn.execute(sql, (rid,)).fetchone()
            if row is not None:
                near.append(row[0])
        out[rid] = short_ids(near, minimum)[rid]
    return out
