"""`tether launch` asks `mpiexec --version` once per mpiexec file: the answer is kept in tether's
cache folder, keyed by the file's path, size, mtime and inode."""

from __future__ import annotations

import os
from pathlib import Path

from tether.distributed.resolver import VERSION_CACHE, cached_detect
from tether.mounts import default_cache_dir


def _fake_mpiexec(folder: Path, calls: Path, version: str) -> Path:
    fake = folder / "mpiexec"
    fake.write_text(f"#!/bin/sh\necho x >> '{calls}'\necho 'mpiexec (OpenRTE) {version}'\n")
    fake.chmod(0o755)
    return fake


def test_the_version_is_asked_once_per_mpiexec_file(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = _fake_mpiexec(bin_dir, calls, "4.1.4")
    env = {"PATH": str(bin_dir)}
    first = cached_detect("mpiexec", env)
    again = cached_detect("mpiexec", env)
    assert (first.flavour, first.version) == ("openmpi", "mpiexec (OpenRTE) 4.1.4")
    assert (again.path, again.flavour, again.version) == (first.path, "openmpi", first.version)
    assert calls.read_text().count("x") == 1  # the second answer came from the cache
    assert (default_cache_dir() / VERSION_CACHE).is_file()

    _fake_mpiexec(bin_dir, calls, "5.0.10")  # another mpiexec in its place: asked again
    os.utime(fake, ns=(1, 1))
    assert cached_detect("mpiexec", env).version == "mpiexec (OpenRTE) 5.0.10"
    assert calls.read_text().count("x") == 2


def test_an_unrecognised_mpiexec_is_asked_every_time(tmp_path: Path) -> None:
    fake = tmp_path / "mpiexec"
    calls = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\necho x >> '{calls}'\necho 'something else 1.0'\n")
    fake.chmod(0o755)
    for _ in range(2):
        assert cached_detect("mpiexec", {"PATH": str(tmp_path)}).flavour is None
    assert calls.read_text().count("x") == 2
    assert cached_detect("mpiexec", {"PATH": str(tmp_path / "none")}).error == "no mpiexec on PATH"
