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

from .fanout import HostResult, YeetResult, describe_plan, hosts_from, plan, yeet
from .pack import (
    COMPRESSIONS,
    EnvInfo,
    PackResult,
    default_output,
    detect_env,
    env_kind,
    extract_argv,
    human_bytes,
    is_archive,
    pack,
    unpack,
)
from .transport import (
    LOCAL,
    TRANSPORTS,
    FolderTransport,
    RsyncTransport,
    Transport,
    TransportError,
    get_transport,
)

__all__ = [
    "COMPRESSIONS",
    "LOCAL",
    "TRANSPORTS",
    "EnvInfo",
    "FolderTransport",
    "HostResult",
    "PackResult",
    "RsyncTransport",
    "Transport",
    "TransportError",
    "YeetResult",
    "default_output",
    "describe_plan",
    "detect_env",
    "env_kind",
    "extract_argv",
    "get_transport",
    "hosts_from",
    "human_bytes",
    "is_archive",
    "pack",
    "plan",
    "unpack",
    "yeet",
]
