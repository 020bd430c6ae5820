"""The fields of the query language: what `--where`, `--sort` and `--columns` can name.

    id name op status label tag started stopped created host parent source.commit project
    config.<key>  flags.<name>  metrics.<key>[.last|.min|.max|.step]  data.<path>

Each field selects a fixed SQL snippet over the index (a column of `runs`, the tags, or a key
of `vals`); nothing the user writes becomes SQL text.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import TetherError, did_you_mean

STATS = ("last", "min", "max", "step")

# name -> (kind, SQL column, nullable, `=` is a prefix match)
_SIMPLE: dict[str, tuple[str, str, bool, bool]] = {
    "id": ("column", "runs.id", False, True),
    "name": ("column", "runs.name", False, False),
    "op": ("column", "runs.name", False, False),
    # What `tether runs` shows: a live run whose process is gone reads `unknown` (state.py).
    "status": (
        "column",
        "(CASE WHEN runs.status IN ('pending', 'running') THEN "
        "tether_status(runs.status, runs.host, runs.pid, runs.proc_start) ELSE runs.status END)",
        False,
        False,
    ),
    "label": ("column", "runs.label", True, False),
    "tag": ("tag", "", False, False),
    "started": ("time", "runs.started", True, False),
    "stopped": ("time", "runs.stopped", True, False),
    "created": ("time", "runs.created", False, False),
    "host": ("column", "runs.host", True, False),
    "parent": ("column", "runs.parent", True, True),
}
_KEYED = ("config", "flags", "metrics", "data", "source")
FIELDS = (
    *_SIMPLE,
    "source.commit",
    "project",
    "config.<key>",
    "flags.<name>",
    "metrics.<key>",
    "data.<path>",
)
_FIELDS_TEXT = (
    "id, name, op, status, label, tag, started, stopped, created, host, parent, "
    "source.commit, project, config.<key>, flags.<name>, metrics.<key>[.last|.min|.max|.step], "
    "data.<path>"
)

# Characters that end a word of the language (a field name, an unquoted value).
STOP = frozenset("()=!<>~,\"'")


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


# A NamedTuple, not a frozen dataclass: made at a tenth of the cost on every import (start-up).
class Field(NamedTuple):
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
    if word in ("source.commit", "project"):  # project: run.lock's project-id, or adopted
        return Field(word, "val", key=word, prefix=True)
    if word in ("version", "namespace"):  # a gage op's, recorded in run.lock's env.op
        return Field(word, "val", key=word)
    head, dot, rest = word.partition(".")
    if dot and head in ("config", "flags", "metrics", "data"):
        if not rest or rest.startswith(".") or rest.endswith("."):
            spot = pos + len(head) + 1 + (len(rest) if rest.endswith(".") and rest else 0)
            noun = "path" if head == "data" else "key"
            raise WhereError(f"expected a {noun} after '{head}.'", text, spot, what)
        if head == "metrics":
            stem, _, stat = rest.rpartition(".")
            key = f"metrics.{rest}" if stem and stat in STATS else f"metrics.{rest}.last"
            return Field(word, "val", key=key)
        return Field(word, "val", key=word)
    hint = did_you_mean(word, [*_SIMPLE, "source.commit", "project"])
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


def field_names(key: str) -> list[str]:
    """The names a `vals` key is written as in the language: `metrics.loss.last` is
    `metrics.loss` and `metrics.loss.last`; any other key is its own name."""
    if key.startswith("metrics."):
        stem, _, stat = key.rpartition(".")
        if stat in STATS and stem != "metrics":
            return [stem, key] if stat == "last" else [key]
    return [key]


def suggest(field: Field, keys: list[str] | set[str]) -> str | None:
    """The field name closest to `field` among those of the `vals` keys the index has: the
    nearest key under the same head (`config.lr` for `config.lrate`: the shared `config.` is no
    likeness), else the same key under another head (`metrics.acc` for `config.acc`)."""
    names = {name for key in keys for name in field_names(key)}
    head, _, rest = field.name.partition(".")
    under: dict[str, list[str]] = {}
    for name in names:
        under.setdefault(name.partition(".")[2], []).append(name)
    same = [n.partition(".")[2] for n in names if n.partition(".")[0] == head]
    hit = did_you_mean(rest, same)
    if hit is not None:
        return f"{head}.{hit}"
    hit = did_you_mean(rest, list(under))
    return sorted(under[hit])[0] if hit is not None else None
