"""How yeet moves bytes: a `Transport` copies a file or folder to a host and unpacks it there.

`rsync` (rsync over ssh between the nodes), `folders` (each host a folder on this machine, for
tests and dry runs), or a class of your own named `module:Class` (`get_transport`).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from ...errors import TetherError
from .pack import extract_argv

LOCAL = "local"  # the name of this machine as a source in yeet's records


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
