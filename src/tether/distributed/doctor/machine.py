"""Checks of this interpreter and of tether itself: `python` (3.10 or newer), `tether` (the
version imported is the version installed) and `shared-env` (the environment is on a network
filesystem that every rank of a job on several hosts would import from)."""

from __future__ import annotations

from pathlib import Path

from ... import __file__ as where
from ... import __version__
from ...mounts import is_network_type
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register


@check("python")
def check_python(ctx: Context) -> Check:
    version = ".".join(map(str, ctx.python))
    details = {"version": version, "executable": ctx.executable}
    if ctx.python[:2] < (3, 10):
        return Check(
            "python",
            "fail",
            f"Python {version} is older than 3.10",
            "use Python 3.10 or newer (a fresh venv: python3.11 -m venv .venv)",
            details,
        )
    return Check("python", "ok", f"Python {version} ({ctx.executable})", None, details)


@check("tether")
def check_tether(ctx: Context) -> Check:
    installed = ctx.installed_version()
    details = {"version": __version__, "installed": installed, "path": str(Path(where).parent)}
    if installed is None:
        return Check(
            "tether",
            "warn",
            f"tether {__version__} runs from {Path(where).parent}, but is not installed here",
            "pip install -e . (or pip install tether) in this environment",
            details,
        )
    if installed != __version__:
        return Check(
            "tether",
            "warn",
            f"tether {__version__} is imported, but {installed} is installed",
            "reinstall: pip install -e . (the installed metadata is stale)",
            details,
        )
    return Check("tether", "ok", f"tether {__version__}", None, details)


@check("shared-env")
def check_shared_env(ctx: Context) -> Check:
    kind = ctx.fstype(ctx.prefix)
    details: dict[str, object] = {"prefix": ctx.prefix, "fstype": kind}
    if not is_network_type(kind):
        return Check("shared-env", "ok", f"{ctx.prefix} is on a local disk ({kind})", None, details)
    r = ctx.resolved()
    _, hosts, _ = ctx.scheduler()
    nhosts = r.spec.nhosts if r.spec is not None and r.spec.nhosts else len(hosts or [])
    details["nhosts"] = nhosts
    if nhosts <= 1:
        return Check(
            "shared-env",
            "ok",
            f"{ctx.prefix} is on {kind} (a shared filesystem; fine for one host)",
            None,
            details,
        )
    return Check(
        "shared-env",
        "warn",
        f"{ctx.prefix} is on {kind}: {nhosts} hosts would import it at once (slow start-up, "
        "metadata load on the file servers)",
        "copy it to each node first: tether env yeet --dest /tmp/env, then launch "
        "/tmp/env/bin/python",
        details,
    )
