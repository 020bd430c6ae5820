"""The tree fan-out of `tether env yeet`: this machine sends to the first host, then every host
holding its copy sends too, so the holders double every round (n hosts in about log2(n)
rounds). `plan` gives the rounds, `yeet` does the copies (and unpacks), `describe_plan` prints
them for --dry-run, `hosts_from` finds the hosts (a hostfile, else the scheduler's job).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TetherError
from ..hostfile import read_hostfile
from ..schedulers import select
from .pack import is_archive
from .transport import LOCAL, Transport


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
        return read_hostfile(hostfile).hosts
    env = dict(os.environ) if env is None else env
    scheduler = select(env)
    hosts = list(scheduler.hosts(env)) if scheduler.name != "local" else []
    if not hosts:
        raise TetherError(
            "no hosts: not inside a Slurm or PBS job", "give --hostfile FILE (one host per line)"
        )
    return hosts
