"""Data digests: file and folder digests, symlinks, errors, the stat cache, background hashing.

Every test has its own stat cache (TETHER_CACHE_DIR points into tmp_path, see conftest.py).
Reads are counted by wrapping `reader._read_file`, the one function that opens data files.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import blake3
import pytest

from tether.capture.datahash import (
    CHUNK,
    MANIFEST_HEADER,
    DataDigest,
    HashError,
    HashProgress,
    HashStats,
    background,
    hash_data,
    hash_data_background,
    reader,
    wait_for_data,
    walk,
)
from tether.capture.datahash import hashing as hashing_mod
from tether.capture.datahash import manifest as manifest_mod
from tether.capture.datahash.cache import HashCache, default_cache_dir, default_cache_path
from tether.lock import DataRecord, RunLock, locked_run_lock, read_lock, write_lock

OLD = 1_600_000_000  # a time well outside the racy window: files "written long ago"


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write(path: Path, data: bytes, *, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))
    return path


def backdate(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(dirpath, name), (OLD, OLD))


def make_tree(root: Path, n: int = 5) -> Path:
    for i in range(n):
        write(root / f"f{i}.bin", f"file {i}\n".encode() * (i + 1))
    write(root / "sub" / "deep" / "x.txt", b"deep\n")
    return root


def expected_manifest(root: Path) -> bytes:
    rows = []
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            data = full.read_bytes()
            rows.append((rel.encode(), f"{rel}\t{b3(data)}\t{len(data)}\n".encode()))
    return MANIFEST_HEADER + b"".join(line for _, line in sorted(rows))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths read by hash_data, in the order they were read."""
    seen: list[str] = []
    lock = threading.Lock()
    real = reader._read_file

    def counting(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        with lock:
            seen.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reader, "_read_file", counting)
    return seen


# -- digests -------------------------------------------------------------------------------------
def test_file_digest_is_blake3_of_its_bytes(tmp_path: Path):
    f = write(tmp_path / "a.bin", b"hello\n")
    (d,) = hash_data([f])
    assert d == DataDigest(str(f), "blake3", b3(b"hello\n"), 1, 6)


def test_a_single_path_may_be_given_bare(tmp_path: Path):
    f = write(tmp_path / "a.bin", b"x")
    assert hash_data(str(f)) == hash_data([f])


def test_big_file_read_in_chunks(tmp_path: Path):
    data = os.urandom(3 * CHUNK + 123)
    f = write(tmp_path / "big.bin", data)
    (d,) = hash_data([f], cache=False)
    assert (d.digest, d.files, d.bytes) == (b3(data), 1, len(data))


def test_empty_file(tmp_path: Path):
    f = write(tmp_path / "empty", b"")
    (d,) = hash_data([f])
    assert (d.digest, d.files, d.bytes) == (b3(b""), 1, 0)


def test_folder_digest_is_blake3_of_the_sorted_manifest(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    (d,) = hash_data([root])
    assert d.digest == b3(expected_manifest(root))
    assert d.files == 6
    assert d.bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_folder_digest_does_not_depend_on_threads_or_order(tmp_path: Path):
    a = make_tree(tmp_path / "a", n=40)
    b = tmp_path / "b"
    for p in sorted(a.rglob("*"), reverse=True):  # same content, created in another order
        if p.is_file():
            write(b / p.relative_to(a), p.read_bytes())
    one = hash_data([a], threads=1, cache=False)[0].digest
    many = hash_data([a], threads=4, cache=False)[0].digest
    assert one == many == hash_data([b], threads=3, cache=False)[0].digest


def test_renaming_or_editing_a_file_changes_the_digest(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    before = hash_data([root])[0].digest
    (root / "f1.bin").rename(root / "f1-renamed.bin")
    renamed = hash_data([root])[0].digest
    write(root / "f2.bin", b"other")
    edited = hash_data([root])[0].digest
    assert len({before, renamed, edited}) == 3


def test_empty_folders(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (d,) = hash_data([tmp_path / "empty"])
    assert (d.files, d.bytes, d.digest) == (0, 0, b3(MANIFEST_HEADER))
    # Empty sub-folders add nothing, as in git.
    root = make_tree(tmp_path / "data")
    before = hash_data([root])[0].digest
    (root / "nothing" / "here").mkdir(parents=True)
    assert hash_data([root])[0].digest == before


def test_several_paths_keep_their_order(tmp_path: Path):
    a = write(tmp_path / "a", b"a")
    root = make_tree(tmp_path / "data")
    out = hash_data([root, a, root])
    assert [d.path for d in out] == [str(root), str(a), str(root)]
    assert out[0] == out[2]


def test_names_with_tabs_newlines_and_non_utf8_bytes(tmp_path: Path):
    root = tmp_path / "odd"
    write(root / "tab\there", b"1")
    write(root / "new\nline", b"2")
    write(root / "back\\slash", b"3")
    write(Path(os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9")), b"4")
    (d,) = hash_data([root])
    lines = [
        (b"back\\slash", b"back\\\\slash", b"3"),
        (b"caf\xe9", b"caf\xe9", b"4"),
        (b"new\nline", b"new\\nline", b"2"),
        (b"tab\there", b"tab\\there", b"1"),
    ]
    text = MANIFEST_HEADER + b"".join(
        esc + b"\t" + b3(data).encode() + b"\t1\n" for _, esc, data in sorted(lines)
    )
    assert d.digest == b3(text)
    assert d.files == 4


# Digests computed by the code of before the single-pass reader (issue 19): a stored run keeps
# matching its data only while these stay exactly the same.
_PINNED_SIZES = {
    "empty": 0,
    "one": 1,
    "k1.bin": 1024,
    "a/k16.bin": 16 << 10,
    "a/b/c/deep.txt": 77,
    "a/big.bin": 1048576 + 12345,
    "a/big2.bin": 3 * 1048576,
    "a/huge.bin": (9 << 20) + 7,
    "a.txt": 5,
    "a-b/x": 3,
    "a0/y": 9,
    "z/edge.bin": 1048576 - 1,
    "z/mid.bin": 300_000,
    "odd/tab\tname": 4,
    "odd/back\\slash": 2,
    "odd/sub/n": 1,
}
_PINNED = {
    "": ("774be75dbe26baa41fed513771bb1f43d08806b4b4bc55a27413ced30fe7a86c", 16, 15009925),
    "a": ("cbd52ea6ecc41dffb5172e5173a076324862f4a33f2815fcc6e87c4597c3129c", 5, 13660301),
    "a/big.bin": ("cfa796e8147e2a0725ac4884c412845979ee3e1579535756c99c1e90445a57f1", 1, 1060921),
    "empty": ("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", 1, 0),
    "emptydir": ("253e7634b75bbd48072033de743c2624d58cdb78e79f039604d8336aba2b9902", 0, 0),
    "odd": ("738db423e8f815e37ea29bb8c128ad7fd036b0051771e65c5c6128353977f34e", 3, 7),
}


def build_pinned_tree(root: Path) -> Path:
    rng = random.Random(19)
    for rel, size in _PINNED_SIZES.items():
        write(root / rel, rng.randbytes(size))
    (root / "emptydir" / "inner").mkdir(parents=True)
    return root


@pytest.mark.parametrize("threads", [1, 4])
def test_digests_of_a_fixed_tree_never_change(tmp_path: Path, threads: int):
    root = build_pinned_tree(tmp_path / "tree")
    paths = [root / rel if rel else root for rel in _PINNED]
    want = [_PINNED[rel] for rel in _PINNED]
    cold = hash_data(paths, threads=threads)
    assert [(d.digest, d.files, d.bytes) for d in cold] == want
    stats = HashStats()
    warm = hash_data(paths, threads=threads, stats=stats)  # every answer from the stat cache
    assert stats.files_read == 0
    assert warm == cold
    # One file edited: only its folders' digests move, and moving it back restores them.
    victim = root / "a" / "b" / "c" / "deep.txt"
    old = victim.read_bytes()
    write(victim, b"x" + old[1:])
    os.utime(victim, (OLD + 1, OLD + 1))
    edited = hash_data(paths, threads=threads)
    assert [d.digest != c.digest for d, c in zip(edited, cold, strict=True)] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    write(victim, old)
    assert hash_data(paths, threads=threads) == cold


def test_composed_manifest_matches_the_reference(tmp_path: Path):
    # Files and folders whose names sort around each other ("a.txt" < "a/" < "a0"), odd
    # characters, non-UTF-8 bytes: the per-folder composition gives manifest.manifest's bytes.
    root = tmp_path / "t"
    rels = ["a.txt", "a/x", "a/b/y", "a0", "a-b/z", "a/b.c", "b", "tab\tdir/n", "s\\/k", "zz/q"]
    for i, rel in enumerate(rels):
        write(root / rel, bytes([i]) * (i + 1))
    write(Path(os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9/f")), b"4")
    write(root / "café" / "g", b"5")
    entries: list[walk.Entry] = []
    walk.scan(str(root), entries.append, lambda f: entries.extend(f.make_entries()))
    for e in entries:
        e.digest = blake3.blake3(Path(e.path).read_bytes()).digest()
    reference = b3(manifest_mod.manifest(entries))
    assert len(entries) == 12
    for threads in (1, 3):
        assert hash_data([root], threads=threads, cache=False)[0].digest == reference
        assert hash_data([root], threads=threads)[0].digest == reference  # cold, then warm


def test_unchanged_folders_are_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    for i in range(60):
        write(root / f"d{i % 3}" / f"f{i}.bin", i.to_bytes(2, "little") * 50)
    write(root / "top.bin", b"top")
    built: list[int] = []
    real = hashing_mod.folder_lines

    def counting(entries, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(len(entries))
        return real(entries, *args, **kwargs)

    monkeypatch.setattr(hashing_mod, "folder_lines", counting)
    first = hash_data([root])
    assert sorted(built) == [1, 20, 20, 20]
    built.clear()
    assert hash_data([root]) == first  # every folder answered by the cache as a whole
    assert built == []
    write(root / "d1" / "f4.bin", b"changed")
    os.utime(root / "d1" / "f4.bin", (OLD + 9, OLD + 9))
    stats = HashStats()
    second = hash_data([root], stats=stats)
    assert built == [20] and stats.files_read == 1
    assert second[0].digest == b3(expected_manifest(root)) != first[0].digest


def test_a_file_still_being_written_leaves_its_folder_to_be_checked(
    tmp_path: Path, reads: list[str]
):
    root = make_tree(tmp_path / "data")
    fresh = write(root / "live.log", b"line\n", old=False)
    first = hash_data([root])
    reads.clear()
    assert hash_data([root]) == first
    assert reads == [str(fresh)]  # the others come from the cache, file by file


def test_big_files_old_and_fresh(tmp_path: Path, reads: list[str]):
    data = os.urandom(reader.MMAP_MIN + 4097)
    old = write(tmp_path / "old.bin", data)  # mapped and hashed on blake3's threads
    new = write(tmp_path / "new.bin", data, old=False)  # maybe still written: read in chunks
    for threads in (1, 2):
        assert [d.digest for d in hash_data([old, new], threads=threads, cache=False)] == [
            b3(data)
        ] * 2


def test_cached_digests_are_known_without_reading(tmp_path: Path):
    from tether.capture.datahash.known import known_digests

    root = make_tree(tmp_path / "data")
    hash_data([root])
    files = [str(p) for p in sorted(root.rglob("*")) if p.is_file()]
    assert known_digests(files) == {f: b3(Path(f).read_bytes()) for f in files}


def test_to_record():
    d = DataDigest("data", "blake3", "ab", 2, 10)
    assert d.to_record(key="dataset.path") == DataRecord(
        path="data", key="dataset.path", algo="blake3", digest="ab", files=2, bytes=10
    )


# -- symlinks and special files -----------------------------------------------------------------
def test_links_to_files_and_folders_are_followed(tmp_path: Path):
    target = make_tree(tmp_path / "target")
    real = tmp_path / "real"
    linked = tmp_path / "linked"
    write(real / "a", b"A")
    write(linked / "a", b"A")
    write(tmp_path / "outside", b"B")
    (real / "b").write_bytes(b"B")
    os.utime(real / "b", (OLD, OLD))
    (linked / "b").symlink_to(tmp_path / "outside")
    (real / "t").mkdir()
    for p in target.rglob("*"):
        if p.is_file():
            write(real / "t" / p.relative_to(target), p.read_bytes())
    (linked / "t").symlink_to(target, target_is_directory=True)
    assert hash_data([linked])[0].digest == hash_data([real])[0].digest
    # The path itself may be a link.
    (tmp_path / "root-link").symlink_to(real, target_is_directory=True)
    assert hash_data([tmp_path / "root-link"])[0].digest == hash_data([real])[0].digest


def test_symlink_loop_is_an_error_naming_the_link(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    (root / "sub" / "deep" / "up").symlink_to(root, target_is_directory=True)
    with pytest.raises(HashError, match=r"sub/deep/up: symlink loop"):
        hash_data([root])


def test_self_referencing_link_is_an_error(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    (root / "me").symlink_to(root / "me")
    with pytest.raises(HashError, match=r"me: symlink loop"):
        hash_data([root])


def test_the_same_folder_reached_twice_is_not_a_loop(tmp_path: Path):
    shared = make_tree(tmp_path / "shared")
    root = tmp_path / "data"
    root.mkdir()
    (root / "one").symlink_to(shared, target_is_directory=True)
    (root / "two").symlink_to(shared, target_is_directory=True)
    (d,) = hash_data([root])
    assert d.files == 12


def test_broken_link_is_an_error(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(HashError, match=r"dangling: broken symlink"):
        hash_data([root])
    with pytest.raises(HashError, match=r"dangling: broken symlink"):
        hash_data([root / "dangling"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos here")
def test_fifo_is_an_error_not_a_hang(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    os.mkfifo(root / "pipe")
    with pytest.raises(HashError, match=r"pipe: cannot hash a fifo"):
        hash_data([root])


# -- bad input ----------------------------------------------------------------------------------
def test_missing_path_is_an_error_naming_it(tmp_path: Path):
    with pytest.raises(HashError, match=r"nope: no such file or folder"):
        hash_data([tmp_path / "nope"])


def test_unreadable_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = make_tree(tmp_path / "data")

    def denied(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(reader, "_read_file", denied)
    with pytest.raises(HashError, match=r"data/f\d\.bin: cannot read \(Permission denied\)"):
        hash_data([root], cache=False)


if os.name == "posix" and os.geteuid() != 0:
    # Only defined where permissions bind (root reads anything, and CI runs as root): the
    # patched read above covers the same error path everywhere.
    def test_unreadable_file_for_real(tmp_path: Path):
        root = make_tree(tmp_path / "data")
        (root / "f0.bin").chmod(0)
        with pytest.raises(HashError, match=r"f0\.bin: cannot read"):
            hash_data([root], cache=False)


def test_file_changing_while_read_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = write(tmp_path / "grows", b"first")
    real = reader._read_file
    calls = []

    def racing(path: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 1:  # a writer appends between the listing and the first read
            with open(path, "ab") as fh:
                fh.write(b" and more")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "_read_file", racing)
    (d,) = hash_data([f])
    assert len(calls) == 2
    assert (d.digest, d.bytes) == (b3(b"first and more"), 14)


def test_file_that_keeps_changing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = write(tmp_path / "busy.log", b"start")
    real = reader._read_file

    def always_racing(path: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        with open(path, "ab") as fh:  # a writer that never stops
            fh.write(b".")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "_read_file", always_racing)
    monkeypatch.setattr(reader.time, "sleep", lambda s: None)
    with pytest.raises(HashError, match=r"busy\.log: changed while being hashed"):
        hash_data([f])


# -- the stat cache -----------------------------------------------------------------------------
def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_path() == tmp_path / "mine" / "hashes.db"
    monkeypatch.delenv("TETHER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tether"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tether"


def test_unchanged_files_are_not_read_again(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    first = hash_data([root])
    assert len(reads) == 6
    reads.clear()
    stats = HashStats()
    assert hash_data([root], stats=stats) == first
    assert reads == []
    assert (stats.files, stats.files_read, stats.files_cached) == (6, 0, 6)
    assert (tmp_path / "cache" / "hashes.db").is_file()


def test_one_byte_changed_in_1000_files_rereads_only_that_file(tmp_path: Path, reads: list[str]):
    root = tmp_path / "data"
    for i in range(1000):
        write(root / f"d{i % 10}" / f"f{i:04d}.bin", i.to_bytes(4, "little") * 64)
    before = hash_data([root])[0].digest
    assert len(reads) == 1000
    reads.clear()

    victim = root / "d7" / "f0417.bin"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))  # same size, new content, mtime now
    stats = HashStats()
    after = hash_data([root], stats=stats)[0].digest
    assert after != before
    assert reads == [str(victim)]
    assert (stats.files_read, stats.files_cached) == (1, 999)
    assert after == b3(expected_manifest(root))


def test_modified_file_with_same_size_is_rehashed(tmp_path: Path, reads: list[str]):
    f = write(tmp_path / "a.bin", b"AAAA")
    assert hash_data([f])[0].digest == b3(b"AAAA")
    f.write_bytes(b"BBBB")
    os.utime(f, (OLD + 5, OLD + 5))  # "touched": a new mtime, same size
    reads.clear()
    assert hash_data([f])[0].digest == b3(b"BBBB")
    assert reads == [str(f)]


def test_recently_written_files_are_not_cached(tmp_path: Path, reads: list[str]):
    # Written just now: a second write within the same timestamp tick could go unseen.
    f = write(tmp_path / "fresh.bin", b"new", old=False)
    hash_data([f])
    hash_data([f])
    assert reads == [str(f), str(f)]
    os.utime(f, (OLD, OLD))
    hash_data([f])
    hash_data([f])
    assert len(reads) == 3


def test_no_cache_reads_everything_and_writes_nothing(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    hash_data([root], cache=False)
    hash_data([root], cache=False)
    assert len(reads) == 12
    assert not (tmp_path / "cache").exists()


def test_hard_links_are_read_once(tmp_path: Path, reads: list[str]):
    root = tmp_path / "data"
    a = write(root / "a", b"same inode")
    os.link(a, root / "b")
    (d,) = hash_data([root], cache=False)
    assert d.files == 2
    assert len(reads) == 1


def test_deleted_files_leave_the_cache(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    hash_data([root])
    (root / "f0.bin").unlink()
    write(root / "new.bin", b"new")
    hash_data([root])
    key = os.stat(root)
    with HashCache() as db:
        names = set(db.lookup([(key.st_dev, key.st_ino)])[(key.st_dev, key.st_ino)])
    assert names == {"f1.bin", "f2.bin", "f3.bin", "f4.bin", "new.bin"}


def test_corrupted_cache_file_is_replaced(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "hashes.db").write_bytes(b"this is not a database" * 100)
    stats = HashStats()
    first = hash_data([root], stats=stats)
    assert stats.cache_error is None
    reads.clear()
    assert hash_data([root]) == first
    assert reads == []  # the new cache works


def test_cache_truncated_mid_file_is_replaced(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    first = hash_data([root])
    db = tmp_path / "cache" / "hashes.db"
    with open(db, "r+b") as fh:  # keep the header, scramble the pages
        fh.seek(100)
        fh.write(os.urandom(8000))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert hash_data([root]) == first
    assert hash_data([root]) == first


def test_damaged_cache_value_is_a_miss_not_a_wrong_digest(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    first = hash_data([root])
    top = os.stat(root)
    with sqlite3.connect(tmp_path / "cache" / "hashes.db") as con:
        con.execute(
            "UPDATE dirs SET entries = substr(entries, 1, length(entries) - 3) || 'xyz'"
            " WHERE dev = ? AND ino = ?",
            (top.st_dev, top.st_ino),
        )
        con.execute("DELETE FROM trees")  # else the tree's row answers without folder rows
    reads.clear()
    assert hash_data([root]) == first
    assert len(reads) == 5  # the top folder's files again, not those of sub/deep


def test_damaged_tree_value_falls_back_to_the_folder_rows(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    first = hash_data([root])
    with sqlite3.connect(tmp_path / "cache" / "hashes.db") as con:
        assert con.execute("SELECT count(*) FROM trees").fetchone() == (1,)
        con.execute("UPDATE trees SET value = substr(value, 1, length(value) - 3) || 'xyz'")
    reads.clear()
    assert hash_data([root]) == first
    assert reads == []  # every folder's row still answers


def test_unusable_cache_folder_does_not_stop_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    blocker = write(tmp_path / "a-file", b"not a folder")
    monkeypatch.setenv("TETHER_CACHE_DIR", str(blocker))
    root = make_tree(tmp_path / "data")
    stats = HashStats()
    (d,) = hash_data([root], stats=stats)
    assert d.digest == b3(expected_manifest(root))
    assert stats.cache_error is not None


def test_explicit_cache_file(tmp_path: Path, reads: list[str]):
    root = make_tree(tmp_path / "data")
    db = tmp_path / "elsewhere" / "h.db"
    hash_data([root], cache=db)
    hash_data([root], cache=db)
    assert db.is_file() and len(reads) == 6


_CONCURRENT = """
import sys
from tether.capture.datahash import hash_data
print(hash_data([sys.argv[1]])[0].digest)
"""


def test_concurrent_processes_share_the_cache(tmp_path: Path):
    root = tmp_path / "data"
    for i in range(300):
        write(root / f"d{i % 30}" / f"f{i}.bin", os.urandom(64))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(root)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    assert outs[0] == hash_data([root])[0].digest


def test_progress_reports_the_totals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hashing_mod, "_PROGRESS_EVERY_S", 0.0)
    root = make_tree(tmp_path / "data")
    write(root / "big.bin", os.urandom(2 * CHUNK + 5))
    events: list[HashProgress] = []
    (d,) = hash_data([root], progress=events.append, threads=2)
    assert {e.phase for e in events} >= {"scan", "hash", "done"}
    last = events[-1]
    assert last.phase == "done"
    assert (last.files_done, last.files_total) == (7, 7)
    assert last.bytes_done == last.bytes_total == d.bytes
    hashing = [e for e in events if e.phase == "hash"]
    assert all(e.bytes_total == d.bytes for e in hashing)
    assert all(0 <= e.bytes_done <= e.bytes_total for e in hashing)


# -- run.lock updates and the background hasher -------------------------------------------------
def make_run(tmp_path: Path, data: list[DataRecord] | None = None) -> Path:
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    lock = RunLock(id="0193f1c4-0000-7000-8000-000000000001", name="t", created="2026-01-01")
    lock.data = list(data or [])
    write_lock(run_dir, lock)
    return run_dir


def wait_proc(proc: subprocess.Popen[bytes]) -> None:
    assert proc.wait(timeout=120) is not None


def test_background_hash_fills_run_lock(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    f = write(tmp_path / "labels.csv", b"a,b\n")
    pending = DataRecord(path=str(root), key="dataset.path", status="pending")
    run_dir = make_run(tmp_path, [pending])
    proc = hash_data_background(run_dir, [pending, DataRecord(path=str(f))])
    lock = wait_for_data(run_dir, timeout=120)
    wait_proc(proc)
    assert proc.returncode == 0
    by_path = {d.path: d for d in lock.data}
    assert len(lock.data) == 2  # the existing entry was updated, the new one added
    want = hash_data([root])[0]
    got = by_path[str(root)]
    assert (got.status, got.key, got.digest, got.files, got.bytes) == (
        "done",
        "dataset.path",
        want.digest,
        want.files,
        want.bytes,
    )
    assert by_path[str(f)].digest == b3(b"a,b\n")
    assert not (run_dir / background.LOG_NAME).exists()  # nothing went wrong


def test_background_hash_with_plain_paths_matches_keyed_entries(tmp_path: Path):
    root = make_tree(tmp_path / "data")
    run_dir = make_run(tmp_path, [DataRecord(path="data", key="dataset.path", status="pending")])
    proc = hash_data_background(run_dir, ["data"], base=tmp_path)
    assert [d.status for d in read_lock(run_dir).data] == ["pending"]
    wait_proc(proc)
    (entry,) = read_lock(run_dir).data
    assert (entry.key, entry.status) == ("dataset.path", "done")
    assert entry.digest == hash_data([root])[0].digest


def test_background_failure_is_recorded(tmp_path: Path):
    run_dir = make_run(tmp_path)
    proc = hash_data_background(run_dir, [tmp_path / "gone"])
    wait_proc(proc)
    assert proc.returncode == 1
    (entry,) = read_lock(run_dir).data
    assert entry.status == "failed"
    assert "gone: no such file or folder" in (run_dir / background.LOG_NAME).read_text()


def test_wait_for_data_times_out(tmp_path: Path):
    run_dir = make_run(tmp_path, [DataRecord(path="x", status="pending")])
    with pytest.raises(TimeoutError):
        wait_for_data(run_dir, timeout=0.2, poll=0.05)


_UPDATER = """
import sys, time
from tether.lock import locked_run_lock
run_dir, index = sys.argv[1], int(sys.argv[2])
for round in range(10):
    with locked_run_lock(run_dir) as lock:
        rec = lock.data[index]
        time.sleep(0.002)  # widen the window between read and write
        rec.files += 1
        rec.status = "done" if round == 9 else "pending"
"""


def test_concurrent_updates_of_different_entries_are_not_lost(tmp_path: Path):
    n = 6
    run_dir = make_run(tmp_path, [DataRecord(path=f"p{i}", status="pending") for i in range(n)])
    procs = [
        subprocess.Popen([sys.executable, "-c", _UPDATER, str(run_dir), str(i)]) for i in range(n)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    lock = read_lock(run_dir)
    assert [(d.files, d.status) for d in lock.data] == [(10, "done")] * n


def test_locked_run_lock_in_threads(tmp_path: Path):
    run_dir = make_run(tmp_path, [DataRecord(path="p", files=0)])
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with locked_run_lock(run_dir) as lock:
                    lock.data[0].files += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert read_lock(run_dir).data[0].files == 80


def test_killed_background_hasher_leaves_a_readable_pending_lock(tmp_path: Path):
    root = tmp_path / "data"
    for i in range(200):
        write(root / f"f{i}.bin", os.urandom(1024))
    run_dir = make_run(tmp_path)
    proc = hash_data_background(run_dir, [root])
    time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    (entry,) = read_lock(run_dir).data  # never a broken run.lock
    assert entry.status in ("pending", "done")
