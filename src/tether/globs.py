"""The one file-pattern dialect of tether, the same with git and without it.

A pattern is gitignore-like:
- `*` and `?` stay inside a folder, `[...]` is a set (`[!...]` or `[^...]` negated), `**`
  between slashes crosses folders (`**/x`, `a/**/b`, `a/**`), `\\` escapes the next character;
- a pattern with no `/` but a trailing one matches at any depth (`*.py`, `data/`); a leading
  `/` or a `/` inside anchors it at the base folder (`/a.py`, `src/*.py`);
- a trailing `/` names a folder only (`data/` covers what is inside `data`, not a file `data`);
- a path is selected when it, or one of the folders above it, matches (`lib` covers
  `lib/util.py`; `src/*.py` does not select `src/x/y.py`).

Git applies a pattern through two `:(glob)` pathspecs (`Glob.pathspecs`): the pattern and the
pattern followed by `/**`. `Glob.selects` gives exactly what `git ls-files -- <pathspecs>`
lists (tests/unit/test_globs.py checks it against git): it follows git's wildmatch
(WM_PATHNAME) on the bytes of the path, including its quirks (a `**` right after the literal
start of a pattern counts as starting a folder; a pattern also matches itself literally; a
malformed `[` set matches nothing).

A pattern written `regex:EXPR` is a Python regular expression instead (`regex:.*_v[0-9]+\\.csv`):
it must match the whole posix path relative to the base folder, or a folder above it, as a glob
does (`regex:data/(train|test)` selects everything in those two folders). Git has no regular
expressions: a regex pattern has no pathspecs (`Glob.regex` is true), so a git listing is
narrowed by `Glob.selects` afterwards. A pattern that does not compile is one TetherError
naming it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from .errors import TetherError

_SPECIAL = b"*?[\\"
_ALL_BYTES = frozenset(range(256))
_SLASH = ord("/")
REGEX_PREFIX = "regex:"


def _chars(text: bytes) -> frozenset[int]:
    return frozenset(text)


def _span(lo: str, hi: str) -> frozenset[int]:
    return frozenset(range(ord(lo), ord(hi) + 1))


_UPPER, _LOWER, _DIGIT = _span("A", "Z"), _span("a", "z"), _span("0", "9")
_PRINT = frozenset(range(0x20, 0x7F))
_SPACE = _chars(b" \t\n\r")  # git's own ctype: no \v or \f
_PUNCT = _chars(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# The ASCII classes of git's wildmatch (`[[:alpha:]]`, ...).
_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": _UPPER | _LOWER | _DIGIT,
    b"alpha": _UPPER | _LOWER,
    b"blank": _chars(b" \t"),
    b"cntrl": frozenset(range(0x20)) | {0x7F},
    b"digit": _DIGIT,
    b"graph": _PRINT - _SPACE,
    b"lower": _LOWER,
    b"print": _PRINT,
    b"punct": _PUNCT,
    b"space": _SPACE,
    b"upper": _UPPER,
    b"xdigit": _DIGIT | _span("a", "f") | _span("A", "F"),
}


class _Abort(Exception):
    """A malformed `[` set: git's wildmatch then matches nothing."""


def _encode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def is_regex(pattern: str) -> bool:
    """Written `regex:EXPR`: a regular expression, not a glob."""
    return pattern.strip().startswith(REGEX_PREFIX)


def regex_problem(pattern: str) -> str | None:
    """Why a `regex:` pattern does not compile (None when it does, or is no regex), for the
    one-line messages of the callers that name where the pattern was written."""
    if not is_regex(pattern):
        return None
    expr = _regex_text(pattern)
    if not expr:
        return "the expression after 'regex:' is empty"
    try:
        re.compile(expr)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        return f"not a regular expression ({exc})"
    return None


def _regex_text(pattern: str) -> str:
    # Only the leading whitespace goes: a trailing space may be part of the expression.
    return pattern.lstrip()[len(REGEX_PREFIX) :]


def is_anchored(pattern: str) -> bool:
    """A leading `/`, or a `/` before the last character: matched from the base folder only
    (a `regex:` pattern always is: it matches the whole path)."""
    if is_regex(pattern):
        return True
    p = pattern.strip()
    return p.startswith("/") or "/" in p.rstrip("/")


def has_magic(pattern: str) -> bool:
    """Has a wildcard (else it names one path); a `regex:` pattern always has."""
    return is_regex(pattern) or any(c in pattern for c in "*?[")


def to_glob(pattern: str, *, anchored: bool = False) -> str:
    """The git glob (relative to the base folder) a pattern stands for: `*.py` -> `**/*.py`,
    `data/` -> `**/data/**`, `/a.py` -> `a.py`; "" for a pattern that names nothing.
    `anchored`: a pattern without `/` matches at the top only (dependency globs)."""
    p = pattern.strip()
    any_depth = not anchored and not is_anchored(p)
    folder = p.endswith("/")
    parts: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return ""  # above the base folder: nothing there
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        return ""
    glob = "/".join(parts)
    if any_depth:
        glob = "**/" + glob
    if folder:
        glob += "/**"
    return glob


def _bracket(g: bytes, i: int) -> tuple[frozenset[int], int]:
    """The bytes a `[...]` set starting at g[i] matches, and the index after its `]`."""
    n = len(g)
    j = i + 1
    negated = j < n and g[j] in b"!^"
    if negated:
        j += 1
    members: set[int] = set()
    prev = 0
    first = True
    while True:
        if j >= n:
            raise _Abort
        ch = g[j]
        if ch == ord("]") and not first:
            break
        first = False
        cur = ch
        if ch == ord("\\"):
            j += 1
            if j >= n:
                raise _Abort
            cur = g[j]
            members.add(cur)
        elif ch == ord("-") and prev and j + 1 < n and g[j + 1] != ord("]"):
            j += 1
            hi = g[j]
            if hi == ord("\\"):
                j += 1
                if j >= n:
                    raise _Abort
                hi = g[j]
            members.update(range(prev, hi + 1))
            cur = 0
        elif ch == ord("[") and j + 1 < n and g[j + 1] == ord(":"):
            k = j + 2
            while k < n and g[k] != ord("]"):
                k += 1
            if k >= n:
                raise _Abort
            if k - (j + 2) - 1 < 0 or g[k - 1] != ord(":"):
                members.add(ch)  # not a [:class:]: a plain `[`, and go on after it
            else:
                cls = _CLASSES.get(g[j + 2 : k - 1])
                if cls is None:
                    raise _Abort
                members.update(cls)
                cur = 0
                j = k
        else:
            members.add(ch)
        prev = cur
        j += 1
    chosen = (_ALL_BYTES - members) if negated else frozenset(members)
    return chosen - {_SLASH}, j + 1


def _wild_regex(glob: bytes) -> re.Pattern[bytes] | None:
    """git's wildmatch(glob, path, WM_PATHNAME) as a regex over bytes; None: matches nothing."""
    n = len(glob)
    literal = next((k for k, c in enumerate(glob) if c in _SPECIAL), n)
    out: list[bytes] = []
    i = 0
    try:
        while i < n:
            c = glob[i]
            if c == ord("*"):
                j = i
                while j < n and glob[j] == ord("*"):
                    j += 1
                # `**` starts a folder after a `/`, at the start, or right after the literal
                # start of the pattern (git matches that start first, then the rest alone).
                starts = i == 0 or glob[i - 1] == _SLASH or i == literal
                if j - i >= 2 and starts and j < n and glob[j] == _SLASH:
                    out.append(b"(?:.*/)?")
                    j += 1
                elif j - i >= 2 and starts and (j == n or glob[j : j + 2] == b"\\/"):
                    out.append(b".*")
                else:
                    out.append(b"[^/]*")
                i = j
            elif c == ord("?"):
                out.append(b"[^/]")
                i += 1
            elif c == ord("["):
                chosen, i = _bracket(glob, i)
                if chosen:
                    out.append(b"[" + b"".join(b"\\x%02x" % b for b in sorted(chosen)) + b"]")
                else:
                    out.append(b"(?!)")
            elif c == ord("\\"):
                if i + 1 >= n:
                    return None  # a trailing backslash matches nothing
                out.append(re.escape(glob[i + 1 : i + 2]))
                i += 2
            else:
                out.append(re.escape(glob[i : i + 1]))
                i += 1
    except _Abort:
        return None
    return re.compile(b"".join(out), re.DOTALL)


class Glob:
    """One compiled pattern (a plain class: a dataclass costs a millisecond of import)."""

    __slots__ = ("_literal", "_regex", "_text_regex", "glob", "pattern", "regex")

    def __init__(self, pattern: str, glob: str, regex: re.Pattern[str] | None = None) -> None:
        self.pattern = pattern  # as written
        # The git glob it stands for ("" when it names nothing); a `regex:` pattern's text.
        self.glob = glob
        self.regex = regex is not None  # `regex:EXPR`: no git pathspec can stand for it
        self._text_regex = regex  # matched on the text of the path, as the user wrote it
        self._literal = b"" if regex is not None else _encode(glob)
        self._regex = _wild_regex(self._literal) if glob and regex is None else None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r} -> {self.glob!r})"

    def match(self, path: str) -> bool:
        """The path itself (posix, relative to the base folder) matches."""
        if not self.glob:
            return False
        if self._text_regex is not None:
            return self._text_regex.fullmatch(path) is not None
        data = _encode(path)
        return data == self._literal or bool(self._regex and self._regex.fullmatch(data))

    def selects(self, path: str) -> bool:
        """The path, or a folder above it, matches: what git's pathspecs select."""
        if not self.glob:
            return False
        if self._text_regex is not None:
            return self._selects_text(path, self._text_regex)
        data = _encode(path)
        cut = len(data)
        while True:
            head = data[:cut]
            if head == self._literal or (self._regex and self._regex.fullmatch(head)):
                return True
            cut = data.rfind(b"/", 0, cut)
            if cut <= 0:
                return False

    @staticmethod
    def _selects_text(path: str, regex: re.Pattern[str]) -> bool:
        cut = len(path)
        while cut > 0:
            if regex.fullmatch(path, 0, cut):
                return True
            cut = path.rfind("/", 0, cut)
        return False

    def covers_dir(self, folder: str) -> bool:
        """Everything below `folder` is selected (so a walk need not enter it)."""
        if self.selects(folder):
            return True
        if self.regex:
            return False  # what a regex makes of the paths below is known only path by path
        if self.glob.endswith("/**") and len(self.glob) > 3:
            return compile_glob("/" + self.glob[:-3]).selects(folder)
        return False

    def pathspecs(self, *, exclude: bool = False) -> list[str]:
        """The git pathspecs that select the same paths (none for a `regex:` pattern: the
        caller narrows git's listing with `selects`)."""
        if not self.glob or self.regex:
            return []
        magic = ":(exclude,glob)" if exclude else ":(glob)"
        specs = [self.glob] if self.glob.endswith("/**") else [self.glob, self.glob + "/**"]
        return [magic + s for s in specs]


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str, *, anchored: bool = False) -> Glob:
    """A pattern of this dialect, ready to match paths relative to its base folder; a
    `regex:` pattern that does not compile is a TetherError naming it."""
    if is_regex(pattern):
        problem = regex_problem(pattern)
        if problem is not None:
            raise TetherError(
                f"pattern {pattern!r}: {problem}",
                "write a Python regular expression after 'regex:', such as 'regex:.*\\.csv'",
            )
        text = _regex_text(pattern)
        return Glob(pattern, text, re.compile(text, re.DOTALL))
    return Glob(pattern, to_glob(pattern, anchored=anchored))


def matches(path: str, globs: Iterable[Glob]) -> bool:
    """One of `globs` selects `path`."""
    return any(g.selects(path) for g in globs)


def select(
    paths: Iterable[str], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[str]:
    """The paths some include pattern selects (all when there is none) and no exclude does."""
    inc = [compile_glob(p) for p in include]
    exc = [compile_glob(p) for p in exclude]
    return [p for p in paths if (not inc or matches(p, inc)) and not matches(p, exc)]


def split_patterns(patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """An operation's `sourcecode` list: `-pattern` excludes, anything else includes."""
    include = [p for p in patterns if p and not p.startswith("-")]
    exclude = [p[1:] for p in patterns if p.startswith("-") and p[1:]]
    return include, exclude


def rebase(pattern: str, folder: str) -> str:
    """A pattern relative to `folder` (posix, relative to a top folder) as one relative to the
    top: `*.py` under `proj` -> `/proj/**/*.py`, `src/a.py` -> `/proj/src/a.py`."""
    if is_regex(pattern):
        return f"{REGEX_PREFIX}{re.escape(folder)}/(?:{_regex_text(pattern)})"
    p = pattern.strip()
    if is_anchored(p):
        return f"/{folder}/{p.lstrip('/')}"
    return f"/{folder}/**/{p}"
