"""The digest of a folder: the blake3 of its manifest.

The manifest is the line `tether-manifest-v1`, then one line per file below the folder,
`<relative posix path>\\t<blake3 hex>\\t<size>`, sorted by the path's bytes (backslash, tab,
newline and carriage return in names are written `\\\\`, `\\t`, `\\n`, `\\r`). Empty folders
add nothing; an empty folder's digest is that of the header alone. A file's digest is the
blake3 of its bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from operator import itemgetter

from .walk import Entry

MANIFEST_HEADER = b"tether-manifest-v1\n"

_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def manifest(tree_entries: Iterable[Entry]) -> bytes:
    """The manifest bytes whose blake3 is a folder's digest (see the module docstring)."""
    enc = sys.getfilesystemencoding()
    rows = [(e.rel.encode(enc, "surrogateescape"), e) for e in tree_entries]
    rows.sort(key=itemgetter(0))
    lines = [f"{e.rel}\t{e.digest.hex()}\t{e.size}\n" for _, e in rows]  # type: ignore[union-attr]
    text = "".join(lines)
    if (
        "\\" in text
        or "\r" in text
        or text.count("\t") != 2 * len(lines)
        or (text.count("\n") != len(lines))
    ):
        # Some name holds a character the line format uses: escape names one by one.
        lines = [
            f"{e.rel.translate(_ESCAPES)}\t{e.digest.hex()}\t{e.size}\n"  # type: ignore[union-attr]
            for _, e in rows
        ]
        text = "".join(lines)
    return MANIFEST_HEADER + text.encode(enc, "surrogateescape")
