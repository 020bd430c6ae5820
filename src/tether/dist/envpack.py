"""Ship a Python environment to the nodes of a job: `tether env pack` and `tether env yeet`.

Starting hundreds of ranks that all import torch from one shared filesystem is slow; a copy of
the environment on each node's local disk is not. Two steps:

* `pack()`: a tarball of the active environment (a venv: `VIRTUAL_ENV` or this Python's
  `sys.prefix`; a conda env: `CONDA_PREFIX`, or a prefix holding `conda-meta/`), with one top
  folder named after the environment. Uncompressed by default (a fast network moves the bytes
  faster than a compressor makes fewer of them); `compress="zstd"` or `"gzip"` for slow links.
  Made by GNU tar (with `zstd -T0` / `pigz` or `gzip` when compressing), or Python's tarfile
  where there is no tar.
* `yeet()`: copy a tarball (or a folder) to a destination folder on every host of a job, as a
  tree: this machine sends to the first host; then every host that has its copy becomes a
  source too, so the hosts holding it double every round (n hosts in about log2(n) rounds,
  where sending from one machine takes n rounds). Each tarball is then unpacked on its host.
  The copying goes through a `Transport`: `rsync` (rsync over ssh between the nodes: a node
  that is a source runs `ssh SRC rsync ... DST:`), or `folders` (each host is a folder on this
  machine, for tests and dry runs), or a class of your own (`module:Class`).

A venv is not fully relocatable: its `bin/python` links to the base interpreter (which must
exist on the nodes at the same path), and its console scripts' `#!` lines name the folder it
was made in. Run `DEST/<env>/bin/python -m ...` on the nodes, or unpack to the same path.
A conda env holds its interpreter but also hard-codes its prefix in places: unpack it at the
same path, or use conda-pack for a relocatable one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TetherError

COMPRESSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
LOCAL = "local"  # the name of this machine as a source in yeet's records


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
    import fnmatch

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


# -- transports -------------------------------------------------------------------------------
class TransportError(TetherError):
    """A copy or an unpack on one host failed."""


class Transport:
    """How yeet moves bytes. `copy` puts the file or folder `path` of `src` (None: this
    machine) into the folder `dest` of host `dst`, creating it; `extract` unpacks an archive
    on a host. Both raise TransportError. `describe_*` give the commands for --dry-run."""

    name = "base"

    def copy(self, src: str | None, path: str, dst: str, dest: str) -> None:
        raise NotImplementedError

    def extract(self, host: str, archive: str, dest: str) -> None:
        raise NotImplementedError

    def describe_copy(self, src: str | None, path: str, dst: str, dest: str) -> str:
        return f"copy {src or LOCAL}:{path} -> {dst}:{dest}/"

    def describe_extract(self, host: str, archive: str, dest: str) -> str:
        return f"on {host}: {shlex.join(extract_argv(archive, dest))}"


def _run(argv: list[str], what: str, timeout: float | None = None) -> None:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
        )
    except FileNotFoundError:
        raise TransportError(f"{what}: {argv[0]} is not installed")
    except subprocess.TimeoutExpired:
        raise TransportError(f"{what}: no answer in {timeout:.0f} s")
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TransportError(f"{what} failed ({proc.returncode}): {' | '.join(detail)}")


def _this_host_names() -> set[str]:
    name = socket.gethostname()
    return {"localhost", "127.0.0.1", name, name.split(".", 1)[0]}


class RsyncTransport(Transport):
    """rsync over ssh. From this machine: `rsync -a PATH DST:DEST/`; from a node that already
    has the copy: `ssh SRC rsync -a PATH DST:DEST/` (the nodes must reach each other by ssh,
    as MPI launchers need anyway). Unpacking: `ssh HOST tar -x ...`. This host (by name)
    is handled without ssh."""

    name = "rsync"

    def __init__(
        self,
        rsync: str = "rsync",
        ssh: Sequence[str] = ("ssh", "-o", "BatchMode=yes"),
        options: Sequence[str] = ("-a", "-W"),
        timeout: float | None = None,
    ) -> None:
        self.rsync, self.ssh, self.options, self.timeout = rsync, list(ssh), list(options), timeout
        self.here = _this_host_names()

    def _on(self, host: str | None, argv: list[str]) -> list[str]:
        if host is None or host in self.here:
            return argv
        return [*self.ssh, host, shlex.join(argv)]

    def copy_argv(self, src: str | None, path: str, dst: str, dest: str) -> list[list[str]]:
        target = f"{dest.rstrip('/')}/" if dst in self.here else f"{dst}:{dest.rstrip('/')}/"
        mkdir = self._on(dst, ["mkdir", "-p", dest])
        return [mkdir, self._on(src, [self.rsync, *self.options, path.rstrip("/"), target])]

    def copy(self, src: str | None, path: str, dst: str, dest: str) -> None:
        for argv in self.copy_argv(src, path, dst, dest):
            _run(argv, f"{src or LOCAL} -> {dst}", self.timeout)

    def extract(self, host: str, archive: str, dest: str) -> None:
        _run(self._on(host, extract_argv(archive, dest)), f"unpack on {host}", self.timeout)

    def describe_copy(self, src: str | None, path: str, dst: str, dest: str) -> str:
        return " && ".join(shlex.join(a) for a in self.copy_argv(src, path, dst, dest))

    def describe_extract(self, host: str, archive: str, dest: str) -> str:
        return shlex.join(self._on(host, extract_argv(archive, dest)))


class FolderTransport(RsyncTransport):
    """Every host is a folder on this machine (`root/<host>`), and a path on a host is that
    path under its folder; the copies are real rsync runs between those folders. For tests,
    demonstrations and dry runs of a fan-out."""

    name = "folders"

    def __init__(self, root: str | os.PathLike[str], **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(root).absolute()
        self.here = set()

    def where(self, host: str | None, path: str) -> str:
        if host is None:
            return path
        return str(self.root / host / path.lstrip("/"))

    def copy_argv(self, src: str | None, path: str, dst: str, dest: str) -> list[list[str]]:
        target = self.where(dst, dest)
        return [
            ["mkdir", "-p", target],
            [self.rsync, *self.options, self.where(src, path).rstrip("/"), target + "/"],
        ]

    def extract(self, host: str, archive: str, dest: str) -> None:
        argv = extract_argv(self.where(host, archive), self.where(host, dest))
        _run(argv, f"unpack on {host}", self.timeout)

    def describe_extract(self, host: str, archive: str, dest: str) -> str:
        return shlex.join(extract_argv(self.where(host, archive), self.where(host, dest)))


TRANSPORTS: dict[str, Callable[..., Transport]] = {
    "rsync": RsyncTransport,
    "folders": FolderTransport,
}


def get_transport(name: str, **options: Any) -> Transport:
    """A transport by name (`rsync`, `folders`) or `module:Class`."""
    factory = TRANSPORTS.get(name)
    if factory is None and ":" in name:
        from importlib import import_module

        module, _, attr = name.partition(":")
        try:
            factory = getattr(import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise TetherError(f"cannot load the transport {name}: {exc}")
    if factory is None:
        raise TetherError(
            f"unknown transport {name!r}", f"use one of {', '.join(TRANSPORTS)} or module:Class"
        )
    try:
        return factory(**options)
    except TypeError as exc:
        raise TetherError(f"transport {name}: {exc}")


# -- the fan-out ------------------------------------------------------------------------------
def plan(hosts: Sequence[str], fanout: int = 1) -> list[list[tuple[str, str]]]:
    """The copies of a tree fan-out, round by round, if every copy took as long: each round,
    every holder (this machine: `fanout` copies at once; each host: one) sends to a host
    still waiting. [(source, target), ...] per round; the source `local` is this machine."""
    if fanout < 1:
        raise TetherError(f"--fanout must be 1 or more, not {fanout}")
    waiting = list(hosts)
    holders = [LOCAL] * fanout
    rounds: list[list[tuple[str, str]]] = []
    while waiting:
        this = []
        for source in list(holders):
            if not waiting:
                break
            target = waiting.pop(0)
            this.append((source, target))
        holders += [t for _, t in this]
        rounds.append(this)
    return rounds


@dataclass
class HostResult:
    host: str
    ok: bool = False
    source: str | None = None  # where its copy came from (`local`: this machine)
    copied_s: float | None = None  # seconds from the start when its copy was complete
    unpacked_s: float | None = None
    attempts: int = 0
    error: str | None = None


@dataclass
class YeetResult:
    source: str
    dest: str
    transport: str
    hosts: list[HostResult] = field(default_factory=list)
    seconds: float = 0.0
    rounds: int = 0  # the depth of the tree: copies on the longest chain from this machine

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def failed(self) -> list[str]:
        return [h.host for h in self.hosts if not h.ok]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def yeet(
    source: str | os.PathLike[str],
    hosts: Sequence[str],
    dest: str,
    transport: Transport,
    *,
    fanout: int = 1,
    extract: bool | None = None,
    retries: int = 1,
    on_event: Callable[[str], None] | None = None,
) -> YeetResult:
    """Copy `source` (a file or folder on this machine) into folder `dest` on every host, as a
    tree (see the module doc and `plan`), then unpack it there if it is an archive (`extract`:
    default when it is one). A failed copy is tried again from another holder up to `retries`
    times; a host that still fails is reported and never becomes a source."""
    src = Path(source).absolute()
    if not src.exists():
        raise TetherError(f"{source} does not exist", "make it with `tether env pack`")
    if fanout < 1:
        raise TetherError(f"--fanout must be 1 or more, not {fanout}")
    unique = list(dict.fromkeys(h for h in hosts if h))
    if not unique:
        raise TetherError("no hosts to copy to")
    if not dest.startswith("/"):
        raise TetherError(f"--dest {dest!r} must be an absolute path (the same on every host)")
    do_extract = is_archive(src.name) if extract is None else extract
    if do_extract and not (src.is_file() and is_archive(src.name)):
        raise TetherError(f"{source} is not a tarball to unpack", "drop --extract")
    remote_path = f"{dest.rstrip('/')}/{src.name}"
    say = on_event or (lambda _msg: None)
    results = {h: HostResult(h) for h in unique}
    depth: dict[str, int] = {LOCAL: 0}
    started = time.perf_counter()

    def copy(holder: str, target: str) -> None:
        origin = None if holder == LOCAL else holder
        path = str(src) if origin is None else remote_path
        transport.copy(origin, path, target, dest)

    def unpack_on(host: str) -> None:
        transport.extract(host, remote_path, dest)

    waiting = list(unique)
    free: list[str] = [LOCAL] * fanout  # holders not sending right now
    tries: dict[str, int] = {}
    running: dict[Future[None], tuple[str, str, str]] = {}  # future -> (kind, holder, target)
    workers = max(4, min(64, 2 * len(unique) + fanout))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yeet") as pool:
        while waiting or running:
            while waiting and free:
                holder, target = free.pop(0), waiting.pop(0)
                tries[target] = tries.get(target, 0) + 1
                results[target].attempts = tries[target]
                say(f"{holder} -> {target}")
                running[pool.submit(copy, holder, target)] = ("copy", holder, target)
            if not running:
                break  # hosts left but no holder: all sources failed
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                kind, holder, target = running.pop(future)
                exc = future.exception()
                now = round(time.perf_counter() - started, 3)
                if kind == "copy":
                    free.append(holder)  # the sender is free again, whatever happened
                    if exc is None:
                        results[target].source = holder
                        results[target].copied_s = now
                        depth[target] = depth[holder] + 1
                        free.append(target)  # a host with its copy becomes a source
                        if do_extract:
                            running[pool.submit(unpack_on, target)] = ("extract", target, target)
                        else:
                            results[target].ok = True
                    else:
                        results[target].error = str(exc)
                        say(f"{holder} -> {target} failed: {exc}")
                        if tries[target] <= retries:
                            waiting.append(target)
                else:
                    if exc is None:
                        results[target].ok = True
                        results[target].unpacked_s = now
                        results[target].error = None
                    else:
                        results[target].error = str(exc)
                        say(f"unpack on {target} failed: {exc}")
    for host in waiting:
        results[host].error = results[host].error or "no source left to copy from"
    return YeetResult(
        source=str(src),
        dest=dest,
        transport=transport.name,
        hosts=[results[h] for h in unique],
        seconds=round(time.perf_counter() - started, 3),
        rounds=max(depth.values()),
    )


def describe_plan(
    source: str, hosts: Sequence[str], dest: str, transport: Transport, fanout: int = 1,
    extract: bool | None = None,
) -> list[str]:  # fmt: skip
    """The commands of a yeet, round by round, for --dry-run."""
    src = str(Path(source).absolute())
    name = Path(src).name
    remote = f"{dest.rstrip('/')}/{name}"
    do_extract = is_archive(name) if extract is None else extract
    lines: list[str] = []
    for number, copies in enumerate(plan(hosts, fanout), 1):
        lines.append(f"# round {number}")
        for holder, target in copies:
            origin = None if holder == LOCAL else holder
            lines.append(transport.describe_copy(origin, src if origin is None else remote,
                                                 target, dest))  # fmt: skip
    if do_extract:
        lines.append("# then on each host as its copy arrives")
        lines.extend(transport.describe_extract(h, remote, dest) for h in hosts)
    return lines


def hosts_from(hostfile: str | None, env: dict[str, str] | None = None) -> list[str]:
    """The hosts of `hostfile`, else of the detected scheduler's job (Slurm, PBS)."""
    if hostfile:
        from .hostfile import read_hostfile

        return read_hostfile(hostfile).hosts
    env = dict(os.environ) if env is None else env
    from .schedulers import select

    scheduler = select(env)
    hosts = list(scheduler.hosts(env)) if scheduler.name != "local" else []
    if not hosts:
        raise TetherError(
            "no hosts: not inside a Slurm or PBS job", "give --hostfile FILE (one host per line)"
        )
    return hosts


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
