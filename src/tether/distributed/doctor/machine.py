"""Checks of this interpreter and of tether itself: `python` (3.10 or newer) and `tether` (the
version imported is the version installed)."""

from __future__ import annotations

from pathlib import Path

from ... import __file__ as where
from ... import __version__
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
