"""The --where language, compiled to parameterised SQL over the index.

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
except `= null`; `not` is the exact complement. What FIELD can be is defined in `fields`;
`sorting` reads --sort, and `select` runs the queries.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from ..clock import ISO_FORMAT
from ..errors import did_you_mean
from ..patterns import LazyPattern
from .fields import STOP, Field, WhereError, parse_field
from .state import STATUSES

# Limits that keep the compiled SQL inside SQLite's parser stack and expression depth.
MAX_DEPTH = 24  # nested parentheses and `not`s
MAX_CONDITIONS = 256
MAX_VALUES = 4096

KEYWORDS = ("and", "or", "not", "in", "null")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~", "!~")
_OPS_TEXT = "= != < <= > >= ~ !~ in"

_NUMBER = LazyPattern(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TIME = LazyPattern(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6})\d*)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?",
    re.IGNORECASE,
)


# -- tokens ---------------------------------------------------------------------------------
# A NamedTuple, not a frozen dataclass: made at a tenth of the cost on every import (start-up).
class Token(NamedTuple):
    """One token of a --where condition, with its position for caret errors."""

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
            while j < n and not text[j].isspace() and text[j] not in STOP:
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


# -- values ---------------------------------------------------------------------------------
# A NamedTuple, not a frozen dataclass: made at a tenth of the cost on every import (start-up).
class Value(NamedTuple):
    """A literal of a --where condition, as written (quoted or not), with its position."""

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
    return when.replace(tzinfo=timezone.utc).strftime(ISO_FORMAT)


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
# A row of `vals` that holds a value (a key set to null holds neither).
PRESENT = "(v.num IS NOT NULL OR v.txt IS NOT NULL)"


class _Parser:
    def __init__(self, text: str) -> None:
        self.src = text
        self.toks = tokenize(text)
        self.i = 0
        self.params: list[Any] = []
        self.depth = 0
        self.conditions = 0
        self.fields: list[Field] = []  # every field named, in order (for `fields_of`)

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
        self.fields.append(field)
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
                cond = f"{PRESENT} AND NOT (v.txt IS NOT NULL AND {cond})"
        elif op == "!=":
            self.add(field.key, num if num is not None else value.as_text())
            cond = f"{PRESENT} AND v.{'num' if num is not None else 'txt'} IS NOT ?"
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
            sql = f"EXISTS (SELECT 1 FROM vals v WHERE v.run = runs.id AND v.key = ? AND {PRESENT}"
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
                cond = f"{PRESENT} AND NOT {cond}"
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


def fields_of(expr: str) -> list[Field]:
    """The fields a --where expression names, in order (WhereError as `compile_where`)."""
    parser = _Parser(expr)
    parser.parse()
    return parser.fields
