"""Data digests: blake3 per file, a manifest digest per folder, a persistent stat cache.

`hash_data(paths)` returns one `DataDigest` per path: a file's digest is the blake3 of its
bytes (what `b3sum FILE` prints), a folder's the blake3 of its manifest (see `manifest`).
`hash_data_background(run_dir, entries)` does the same in a detached process and fills the
`data` entries of `<run_dir>/run.lock`.

Modules: `walk` (which files a path stands for), `reader` (reading and hashing them, one pass
per file), `manifest` (the digest of a folder), `compose` (that manifest from per-folder
pieces), `cache` (the SQLite stat cache),
`hashing` (`hash_data`), `background` (the detached hasher). The public names are here.
"""

from .background import hash_data_background, wait_for_data
from .hashing import hash_data
from .manifest import MANIFEST_HEADER
from .reader import CHUNK
from .records import ALGO, DataDigest, HashError, HashProgress, HashStats

__all__ = [
    "ALGO",
    "CHUNK",
    "MANIFEST_HEADER",
    "DataDigest",
    "HashError",
    "HashProgress",
    "HashStats",
    "hash_data",
    "hash_data_background",
    "wait_for_data",
]
