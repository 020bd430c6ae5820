"""Packing an environment: which one (`detect_env`), the tarball (`pack`), unpacking it.

A venv (`VIRTUAL_ENV`, or this Python's `sys.prefix`) or a conda env (`CONDA_PREFIX`, or a
prefix holding `conda-meta/`) becomes one tarball with one top folder named after it, made by
GNU tar (with `zstd -T0` / `pigz` or `gzip` when compressing), or Python's tarfile where there
is no tar. See tether.distributed.envpack for what shipping it involves.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...errors import TetherError

COMPRESSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz"}


# -- which environment ------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvInfo:
    kind: str  # "venv" or "conda"
    prefix: Path
    how: str  # what told us: VIRTUAL_ENV, CONDA_PREFIX, sys.prefix, or the path given

    @property
    def name(self) -> str:
        """The archive's top folder: the prefix's name without leading dots (`.venv` -> venv)."""
        return self.prefix.name.lstrip(".") or "env"


def env_kind(prefix: Path) -> str | None:
    if (prefix / "pyvenv.cfg").is_file():
        return "venv"
    if (prefix / "conda-meta").is_dir():
        return "conda"
    return None


def detect_env(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> EnvInfo:
    """The environment to pack: `path` if given, else the active venv (`VIRTUAL_ENV`), else the
    active conda env (`CONDA_PREFIX`), else the one this Python runs in."""
    env = dict(os.environ) if env is None else env
    if path is not None:
        prefix = Path(path).expanduser().absolute()
        if not prefix.is_dir():
            raise TetherError(f"{path} is not a folder")
        kind = env_kind(prefix)
        if kind is None:
            raise TetherError(
                f"{path} is neither a venv (no pyvenv.cfg) nor a conda env (no conda-meta/)",
                "give the folder of a Python environment",
            )
        return EnvInfo(kind, prefix, str(path))
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(var)
        if value and env_kind(Path(value)) is not None:
            prefix = Path(value).absolute()
            return EnvInfo(env_kind(prefix) or "venv", prefix, var)
    prefix = Path(sys.prefix).absolute()
    kind = env_kind(prefix)
    if kind is None:
        raise TetherError(
            f"no environment to pack: no VIRTUAL_ENV or CONDA_PREFIX, and {prefix} is the "
            "system Python",
            "activate a venv or conda env, or give its folder",
        )
    return EnvInfo(kind, prefix, "sys.prefix")


# -- pack -------------------------------------------------------------------------------------
@dataclass
class PackResult:
    path: Path
    kind: str
    prefix: Path
    name: str
    compression: str | None
    files: int
    bytes: int  # of the files packed (before compression)
    size: int  # of the archive
    seconds: float
    tool: str  # "tar" or "tarfile"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"], out["prefix"] = str(self.path), str(self.prefix)
        return out


def _count(prefix: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(prefix):
        for name in names:
            files += 1
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size += st.st_size
    return files, size


def default_output(info: EnvInfo, compress: str | None, where: Path | None = None) -> Path:
    suffix = COMPRESSIONS.get(compress or "", ".tar")
    return (where or Path.cwd()) / f"{info.name}{suffix}"


def _compressor(compress: str) -> list[str]:
    if compress == "zstd":
        if not shutil.which("zstd"):
            raise TetherError("--compress zstd needs the zstd program", "install zstd, or use gzip")
        return ["zstd", "-q", "-T0"]
    if shutil.which("pigz"):
        return ["pigz"]
    return ["gzip"]


def pack(
    path: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    compress: str | None = None,
    name: str | None = None,
    exclude: Sequence[str] = (),
    use_tar: bool | None = None,
) -> PackResult:
    """Pack an environment (see `detect_env`) into `out` (default `./<name>.tar[.zst|.gz]`;
    a folder, existing or ending in `/`: that file name in it).

    The archive holds one folder, `name` (default: the environment's folder name without
    leading dots). Symbolic links stay links. `exclude`: glob patterns (tar's --exclude).
    The archive is written beside its final name and renamed when complete.
    """
    if compress not in (None, *COMPRESSIONS):
        raise TetherError(f"unknown compression {compress!r}", "use zstd or gzip")
    info = detect_env(path)
    top = name or info.name
    target = Path(out).absolute() if out is not None else default_output(info, compress)
    if target.is_dir() or str(out).endswith(("/", os.sep)):
        target = default_output(info, compress, target)  # a folder: <name>.tar in it
    try:
        target.resolve().relative_to(info.prefix.resolve())
    except ValueError:
        pass
    else:
        raise TetherError(f"{target} is inside the environment it would pack", "write it elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    tar = shutil.which("tar") if use_tar is not False else None
    if use_tar and not tar:
        raise TetherError("tar is not installed")
    try:
        if tar:
            _pack_tar(tar, info.prefix, top, partial, compress, exclude)
        else:
            _pack_tarfile(info.prefix, top, partial, compress, exclude)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    files, size = _count(info.prefix)
    return PackResult(
        path=target,
        kind=info.kind,
        prefix=info.prefix,
        name=top,
        compression=compress,
        files=files,
        bytes=size,
        size=target.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
        tool="tar" if tar else "tarfile",
    )


def _pack_tar(
    tar: str, prefix: Path, top: str, out: Path, compress: str | None, exclude: Sequence[str]
) -> None:
    argv = [tar, "-c", "-f", str(out)]
    if compress:
        argv += ["--use-compress-program", shlex.join(_compressor(compress))]
    argv += [f"--exclude={pattern}" for pattern in exclude]
    # Name the top folder `top` whatever the prefix is called: GNU tar's --transform.
    if top != prefix.name:
        argv += ["--transform", f"s,^{_sed_escape(prefix.name)},{_sed_escape(top)},"]
    argv += ["-C", str(prefix.parent), prefix.name]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode not in (0, 1):  # 1: a file changed while being read (a live env)
        raise TetherError(f"tar failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def _sed_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\,.*[]^$&" else c for c in text)


def _pack_tarfile(
    prefix: Path, top: str, out: Path, compress: str | None, exclude: Sequence[str]
) -> None:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        base = info.name.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(base, p) or fnmatch.fnmatch(info.name, p) for p in exclude):
            return None
        return info

    if compress == "zstd":
        # No zstd in this Python's tarfile: stream through the zstd program.
        proc = subprocess.Popen(
            [*_compressor("zstd"), "-o", str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tf:
            tf.add(prefix, arcname=top, filter=keep)
        proc.stdin.close()
        if proc.wait() != 0:
            raise TetherError("zstd failed while packing")
        return
    mode = "w:gz" if compress == "gzip" else "w"
    with tarfile.open(out, mode) as tf:  # type: ignore[call-overload]
        tf.add(prefix, arcname=top, filter=keep)


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack a tarball made by `pack` into `dest`; returns the folder it made there."""
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    argv = extract_argv(str(archive), str(dest_path))
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise TetherError(f"unpacking {archive} failed: {proc.stderr.strip()[-500:]}")
    # The top folder: the first member's first part (read one line, not the whole listing).
    with subprocess.Popen(
        ["tar", *_decompress_flags(str(archive)), "-t", "-f", str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as listing:
        assert listing.stdout is not None
        first = listing.stdout.readline().strip()
        listing.kill()
    return dest_path / first.lstrip("./").split("/", 1)[0]


def _decompress_flags(archive: str) -> list[str]:
    if archive.endswith((".zst", ".zstd")):
        return ["--use-compress-program", "zstd -d -q"]
    if archive.endswith((".gz", ".tgz")):
        return ["-z"]
    return []


def extract_argv(archive: str, dest: str) -> list[str]:
    """The command that unpacks `archive` into the existing folder `dest`."""
    return ["tar", *_decompress_flags(archive), "-x", "-f", archive, "-C", dest]


def is_archive(path: str) -> bool:
    return path.endswith((".tar", ".tar.zst", ".tar.zstd", ".tar.gz", ".tgz"))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
