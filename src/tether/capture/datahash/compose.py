"""A folder's manifest built from per-folder pieces, so an unchanged folder costs no per-file work.

The manifest format is `manifest.py`'s (its `manifest()` is the reference, and the tests hold
the two to the same bytes). Sorting every path of the tree by its bytes puts the files of a
sub-folder `d` together, between the siblings whose names sort before and after `d/` (no name
holds a `/`, so no sibling is a prefix of `d/`). So each folder keeps its own files' lines,
relative to itself and sorted (`folder_lines`, stored in the stat cache), and the tree's
manifest is those blocks with the folder's path put in front of each line, merged with the
sub-folders' blocks by name: work per folder, not per file, for folders the cache knows.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from operator import itemgetter

from .manifest import MANIFEST_HEADER
from .reader import _blake3
from .walk import Folder, Stat

_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
_SPECIAL = frozenset("\\\t\n\r")
_first = itemgetter(0)
_size = itemgetter(3)


def _enc() -> str:
    return sys.getfilesystemencoding()


def escape(name: str) -> str:
    return name.translate(_ESCAPES) if _SPECIAL.intersection(name) else name


def folder_lines(
    stats: list[Stat], digests: list[bytes], want_keys: bool = True
) -> tuple[bytes, list[bytes]]:
    """The folder's own manifest lines (names relative to it, sorted by their bytes) and, when
    `want_keys`, the sorted name bytes. `digests[i]` is the digest of the file `stats[i]`."""
    enc = _enc()
    names = list(map(_first, stats))
    if "".join(names).isascii():
        # ASCII names sort the same as str and as bytes: no encoding per name to sort.
        # Names in a folder are unique, so the sort never compares past them.
        rows = sorted(zip(names, digests, map(_size, stats), strict=True))
        keys = []
        if want_keys and rows:  # one join and one split, not an encode per name (no NUL in names)
            keys = "\0".join([n for n, _, _ in rows]).encode().split(b"\0")
    else:
        encoded = [n.encode(enc, "surrogateescape") for n in names]
        both = sorted(zip(encoded, names, digests, map(_size, stats), strict=True))
        rows = [(n, d, size) for _, n, d, size in both]
        keys = [k for k, _, _, _ in both]
    text = "".join([f"{n}\t{d.hex()}\t{size}\n" for n, d, size in rows])
    n = len(rows)
    if "\\" in text or "\r" in text or text.count("\t") != 2 * n or text.count("\n") != n:
        # Some name holds a character the line format uses: escape the names one by one.
        text = "".join([f"{escape(n)}\t{d.hex()}\t{size}\n" for n, d, size in rows])
    return text.encode(enc, "surrogateescape"), keys


def _prefixed(lines: bytes, prefix: bytes) -> bytes:
    """Every line of `lines` with `prefix` in front (escaped names hold no raw newline)."""
    if not prefix or not lines:
        return lines
    return prefix + lines[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


def compose(top: Folder) -> bytes:
    """The manifest of the tree below `top` (every folder's `lines` and `keys` already set)."""
    enc = _enc()
    out = [MANIFEST_HEADER]
    # Explicit stack (no recursion limit on deep trees): (folder, its path prefix), or bytes
    # already in order.
    stack: list[tuple[Folder, bytes] | bytes] = [(top, b"")]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        folder, prefix = item
        if not folder.subdirs:
            out.append(_prefixed(folder.lines, prefix))
            continue
        keys = folder.keys or []
        lines = folder.lines.split(b"\n")[:-1] if keys else []
        subs = sorted(
            (
                (name.encode(enc, "surrogateescape") + b"/", name, sub)
                for name, sub in folder.subdirs
            ),
            key=_first,
        )
        # Pieces in order; pushed reversed so the stack pops them first to last.
        pieces: list[tuple[Folder, bytes] | bytes] = []
        start = 0
        for key, name, sub in subs:
            cut = bisect_left(keys, key, start)
            if cut > start:
                pieces.append(_prefixed(b"\n".join(lines[start:cut]) + b"\n", prefix))
            pieces.append((sub, prefix + (escape(name) + "/").encode(enc, "surrogateescape")))
            start = cut
        if start < len(lines):
            pieces.append(_prefixed(b"\n".join(lines[start:]) + b"\n", prefix))
        stack.extend(reversed(pieces))
    return b"".join(out)


def fingerprint(folders: list[Folder]) -> bytes:
    """What a tree's digest is cached by (`cache.TreeRow`): the blake3 of each folder's path
    and signature (its listing's stat tuples), in listing order. The manifest is made of
    nothing else (paths, and the digests and sizes the stats stand for), so an equal
    fingerprint means an equal digest, as far as the stat cache can tell."""
    enc = _enc()
    parts = []
    for f in folders:
        parts.append(b"%s\0%d\0" % (f.prefix.encode(enc, "surrogateescape"), len(f.sig)))
        parts.append(f.sig)
    return _blake3()(b"".join(parts)).digest()
