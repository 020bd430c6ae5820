"""Checks of the rendezvous and the network the ranks talk over: `master-addr` (the address
rank 0 listens on resolves, and is not loopback for a job on several hosts), `master-port`
(the port can be bound now, on this host) and `network` (the interfaces NCCL_SOCKET_IFNAME and
GLOO_SOCKET_IFNAME name exist and are up; else the interface that routes to MASTER_ADDR).

The address and port are the ones `setup_torch` would use (tether.distributed.ranks: the
variables when set, else the job's first host and a port derived from the job id). Name
lookups can hang on a broken resolver, so they run in a thread with a timeout."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from ...errors import TetherError
from .. import ranks
from ..schedulers.local import this_host
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register
RESOLVE_TIMEOUT_S = 3.0
SYS_NET = Path("/sys/class/net")
ROUTES = Path("/proc/net/route")
IFF_UP = 0x1


# -- facts ------------------------------------------------------------------------------------
def lookup(host: str, timeout: float = RESOLVE_TIMEOUT_S) -> tuple[list[str], str | None]:
    """(addresses of `host`, the error), giving up after `timeout` seconds."""
    found: dict[str, Any] = {}

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            found["ips"] = list(dict.fromkeys(str(i[4][0]) for i in infos))
        except (OSError, UnicodeError) as exc:
            found["error"] = getattr(exc, "strerror", None) or str(exc)

    worker = threading.Thread(target=run, name="doctor-lookup", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return [], f"no answer from the resolver in {timeout:g} s"
    return found.get("ips", []), found.get("error")


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_local(ip: str) -> bool:
    """Whether `ip` is an address of this machine (one can bind it)."""
    if is_loopback(ip):
        return True
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
        return True
    except OSError:
        return False


def port_in_use(port: int) -> str | None:
    """Why `port` cannot be bound on every interface now (as rank 0's store binds it), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", port))
            sock.listen(1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "in use"
        return exc.strerror or str(exc)
    return None


def free_port_near(port: int, tries: int = 100) -> int | None:
    return next((p for p in range(port + 1, min(port + tries, 65535)) if not port_in_use(p)), None)


def interfaces() -> dict[str, bool] | None:
    """{interface: up} from /sys/class/net; None where that is not there (not Linux)."""
    if not SYS_NET.is_dir():
        return None
    found = {}
    for entry in sorted(SYS_NET.iterdir()):
        try:
            flags = int((entry / "flags").read_text().strip(), 16)
        except (OSError, ValueError):
            flags = 0
        found[entry.name] = bool(flags & IFF_UP)
    return found


def route_interface(ip: str) -> str | None:
    """The interface of the most specific IPv4 route to `ip` (/proc/net/route)."""
    if is_loopback(ip):
        return "lo"
    try:
        target = struct.unpack("=I", socket.inet_aton(ip))[0]
        lines = ROUTES.read_text().splitlines()[1:]
    except (OSError, ValueError):
        return None
    best: tuple[int, int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest, mask, metric = int(fields[1], 16), int(fields[7], 16), int(fields[6])
        except ValueError:
            continue
        if target & mask == dest:
            rank = (bin(mask).count("1"), -metric, fields[0])
            if best is None or rank[:2] > best[:2]:
                best = rank
    return best[2] if best else None


def matching(spec: str, names: list[str], exact: bool) -> list[str]:
    """Interfaces a NCCL-style list selects: `eth` (prefix), `=eth0` (exact), `^docker,lo`
    (all but those); `exact` for GLOO_SOCKET_IFNAME (exact names only)."""
    text = spec.strip()
    exclude = text.startswith("^")
    text = text.lstrip("^")
    if text.startswith("="):
        exact, text = True, text[1:]
    items = [i.strip() for i in text.split(",") if i.strip()]

    def hit(name: str) -> bool:
        return any(name == i if exact else name.startswith(i) for i in items)

    return [n for n in names if hit(n) != exclude]


# -- the rendezvous ---------------------------------------------------------------------------
def _world(ctx: Context) -> tuple[int, int, bool]:
    """(ranks, ranks per host, every rank on this host) of the launch, (1, 1, True) unknown."""
    r = ctx.resolved()
    if r.spec is None:
        return 1, 1, True
    return r.spec.nprocs or 1, r.spec.ppn or 1, r.spec.local


def master(ctx: Context) -> dict[str, Any]:
    """The rendezvous address as setup_torch would pick it, and what it resolves to."""

    def compute() -> dict[str, Any]:
        n, ppn, _ = _world(ctx)
        given = ctx.env.get("MASTER_ADDR", "").strip()
        try:
            addr = given or ranks.master_addr(ctx.env, world_size=n, local_world_size=ppn)
        except TetherError as exc:
            return {"addr": None, "source": "MASTER_ADDR", "error": exc.message, "ips": []}
        source = "MASTER_ADDR" if given else "rendezvous address"
        ips, error = lookup(addr)
        return {
            "addr": addr,
            "source": source,
            "ips": ips,
            "error": error,
            "local": any(is_local(ip) for ip in ips),
        }

    result: dict[str, Any] = ctx.memo("master", compute)
    return result


def _first_host(ctx: Context) -> str:
    r = ctx.resolved()
    return r.spec.hosts[0] if r.spec is not None and r.spec.hosts else this_host()


@check("master-addr")
def check_master_addr(ctx: Context) -> Check:
    m = master(ctx)
    addr, source = m["addr"], m["source"]
    shown = f"MASTER_ADDR={addr}" if source == "MASTER_ADDR" else f"{source} {addr}"
    details = {k: m.get(k) for k in ("addr", "source", "ips", "local")}
    if addr is None or m["error"]:
        return Check(
            "master-addr",
            "fail",
            f"{shown} does not resolve: {m['error']}",
            f"set MASTER_ADDR to the first host of the job (e.g. MASTER_ADDR={_first_host(ctx)}) "
            "or unset it to let tether pick",
            details,
        )
    _, _, local = _world(ctx)
    loop = all(is_loopback(ip) for ip in m["ips"])
    if loop and not local:
        return Check(
            "master-addr",
            "fail",
            f"{shown} resolves to loopback ({', '.join(m['ips'])}), but ranks run on other hosts",
            "set MASTER_ADDR to this host's network address (hostname -i), or fix /etc/hosts",
            details,
        )
    where = "this host" if m["local"] else "another host"
    return Check(
        "master-addr", "ok", f"{shown} resolves to {', '.join(m['ips'])} ({where})", None, details
    )


@check("master-port")
def check_master_port(ctx: Context) -> Check:
    try:
        port = ranks.master_port(ctx.env)
    except TetherError as exc:
        return Check(
            "master-port",
            "fail",
            exc.message,
            "set MASTER_PORT to a free port from 1024 to 65535, or unset it",
        )
    given = bool(ctx.env.get("MASTER_PORT", "").strip())
    job = ranks.job_id(ctx.env)
    origin = f"derived from job {job}" if job else "the default"
    shown = f"MASTER_PORT={port}" if given else f"port {port} ({origin})"
    m = master(ctx)
    details = {"port": port, "given": given, "addr": m["addr"]}
    if m["error"] or m["addr"] is None:
        return Check("master-port", "skip", f"{shown}: MASTER_ADDR does not resolve", None, details)
    if not m["local"]:
        return Check(
            "master-port",
            "skip",
            f"{shown}: rank 0 binds it on {m['addr']}, not here",
            None,
            details,
        )
    problem = port_in_use(port)
    if problem:
        free = free_port_near(port)
        suggestion = f"MASTER_PORT={free}" if free else "another MASTER_PORT"
        return Check(
            "master-port",
            "fail",
            f"{shown} cannot be bound on this host now: {problem} (another job or a stale rank?)",
            f"export {suggestion} (a free port), or stop what holds {port} (ss -ltnp)",
            details,
        )
    return Check("master-port", "ok", f"{shown} can be bound on this host", None, details)


@check("network")
def check_network(ctx: Context) -> Check:
    found = interfaces()
    if found is None:
        return Check("network", "skip", "no /sys/class/net here: interfaces not checked")
    up = [n for n, is_up in found.items() if is_up]
    m = master(ctx)
    routed = next((route_interface(ip) for ip in m["ips"] if "." in ip), None)
    details: dict[str, Any] = {"interfaces": found, "route_to_master": routed}
    hint = routed if routed and found.get(routed) else ", ".join(n for n in up if n != "lo")
    for var, exact in (("NCCL_SOCKET_IFNAME", False), ("GLOO_SOCKET_IFNAME", True)):
        spec = ctx.env.get(var, "").strip()
        if not spec:
            continue
        chosen = matching(spec, list(found), exact)
        details[var] = chosen
        down = [n for n in chosen if not found[n]]
        if not chosen or len(down) == len(chosen):
            what = "no such interface" if not chosen else f"{', '.join(down)} is down"
            return Check(
                "network",
                "fail",
                f"{var}={spec}: {what} (up here: {', '.join(up) or 'none'})",
                f"export {var}={hint or 'IFACE'} (it routes to MASTER_ADDR), or unset it",
                details,
            )
    named = [
        f"{v}={ctx.env[v]}" for v in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME") if ctx.env.get(v)
    ]
    if routed:
        route = f"{routed} routes to {m['addr']}"
    elif m["error"] or not m["ips"]:
        route = "MASTER_ADDR does not resolve (see master-addr)"
    else:
        route = f"no IPv4 route to {m['addr']} known"
    lead = ", ".join(named) + " are up" if named else "NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME unset"
    if len(named) == 1:
        lead = named[0] + " is up"
    if routed and not found.get(routed, True):
        return Check(
            "network",
            "fail",
            f"{lead}; {routed}, the interface to {m['addr']}, is down",
            f"bring {routed} up, or set MASTER_ADDR to an address on an interface that is up",
            details,
        )
    return Check("network", "ok", f"{lead}; {route}", None, details)
