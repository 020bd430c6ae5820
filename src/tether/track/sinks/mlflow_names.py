"""Names MLflow accepts: metric and param keys mapped reversibly, tracking URIs normalised.

Keys. MLflow takes names of letters, digits, `_`, `-`, `.`, space, `/` and `:`, and refuses
names that a path would read differently (`a//b`, `/a`, `a/`, `..`). A key that is already
such a name and holds no `:` goes as it is (nearly every key: `train/loss`, `lr`, `acc_1`). In
any other key each character MLflow refuses, and `:` itself, becomes `:<hex code point>:`
(`top@1` -> `top:40:1`, `a:b` -> `a:3a:b`); in a key that a path would read differently, `/`
and `.` are escaped too (`/abs` -> `:2f:abs`). Every `:` of a name then opens an escape, so
`original_key` reads the key back and two different keys never share a name (`top@1` and
`top_1` stay apart). A name over MLflow's 250 characters keeps its first part and ends with
`:h<16 hex digits>:`, a digest of the whole key (not reversible, still apart).

URIs. `store_key` is the form a tracking URI is remembered under in summary.json: a SQLite
file or a folder as its absolute real path, an http(s) server with its scheme and host in
lower case and no trailing `/`, so `sqlite:///./mlflow.db` and the same file by its absolute
path are one store.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

MAX_KEY = 250  # MLflow's limit on a metric, param or tag name
_SAFE = re.compile(r"[/\w.\- ]")  # what goes unescaped: MLflow's set without `:`
_ESCAPE = re.compile(r":([0-9a-f]+):")
EMPTY = ":-:"  # the empty key (`-` is no hex digit: no other key is written so)


def _bad_path(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def _escape(key: str, also: str = "") -> str:
    return "".join(c if _SAFE.fullmatch(c) and c not in also else f":{ord(c):x}:" for c in key)


def mlflow_key(key: str) -> str:
    """The MLflow name of a tether metric or param key (see the module docstring)."""
    if not key:
        return EMPTY
    name = _escape(key)
    if _bad_path(name):
        name = _escape(key, "/.")
    if len(name) <= MAX_KEY:
        return name
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    head = name[: MAX_KEY - len(digest) - 3]
    if head.count(":") % 2:  # do not cut an escape in two
        head = head[: head.rfind(":")]
    return f"{head}:h{digest}:"


def original_key(name: str) -> str:
    """The tether key an MLflow name was made from (the inverse of `mlflow_key`, except for
    names shortened with a digest, which come back as they are)."""
    if name == EMPTY:
        return ""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def store_key(uri: str) -> str:
    """The normalised form of a tracking URI (see the module docstring)."""
    text = uri.strip()
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
        path, _, query = path.partition("?")
        return f"sqlite:///{os.path.realpath(path)}" + (f"?{query}" if query else "")
    parts = urlsplit(text)
    if scheme == "file":
        return Path(os.path.realpath(unquote(parts.path) or ".")).as_uri()
    if scheme in ("http", "https"):
        return urlunsplit((scheme, parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))
    if not text.startswith("databricks") and "://" not in text and (not sep or len(scheme) == 1):
        # a bare path (a Windows drive letter too): MLflow makes it a file store
        return Path(os.path.realpath(os.path.expanduser(text))).as_uri()
    return text.rstrip("/")  # another kind of store (postgresql://, databricks): as given
