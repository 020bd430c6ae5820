"""Checks of where runs are written: `runs-root` (writable, or can be made) and `disk` (free
space under it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...workspace import resolve_runs_root
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register
GIB = 1 << 30


def _nearest_existing(path: Path) -> Path | None:
    return next((p for p in (path, *path.parents) if p.exists()), None)


def unwritable(path: Path) -> str | None:
    """Why `path` (a folder, made if missing) cannot be written, or None."""
    existing = _nearest_existing(path.absolute())
    if existing is None:
        return f"{path}: no part of it exists"
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        return f"{path} {what}"
    return None


@check("runs-root")
def check_runs_root(ctx: Context) -> Check:
    root = resolve_runs_root(ctx.runs_dir or ctx.env.get("TETHER_RUNS"))
    problem = unwritable(root)
    details = {"path": str(root), "exists": root.is_dir()}
    if problem:
        return Check(
            "runs-root",
            "fail",
            f"runs root {problem}",
            "set TETHER_RUNS or --runs-dir to a writable folder (or fix its permissions)",
            details,
        )
    state = "" if root.is_dir() else " (made on the first run)"
    return Check("runs-root", "ok", f"{root} is writable{state}", None, details)


@check("disk")
def check_disk(ctx: Context) -> Check:
    root = resolve_runs_root(ctx.runs_dir or ctx.env.get("TETHER_RUNS"))
    where = _nearest_existing(root.absolute()) or Path("/")
    usage = shutil.disk_usage(where)
    free_gb = usage.free / GIB
    details = {"path": str(where), "free_gb": round(free_gb, 2), "min_free_gb": ctx.min_free_gb}
    text = f"{free_gb:.1f} GiB free under {where}"
    if free_gb < ctx.min_free_gb:
        return Check(
            "disk",
            "fail",
            f"{text}: less than {ctx.min_free_gb:g} GiB",
            "free space (tether purge, old checkpoints) or move the runs root (TETHER_RUNS)",
            details,
        )
    if free_gb < 5 * ctx.min_free_gb:
        return Check(
            "disk",
            "warn",
            f"{text}: less than {5 * ctx.min_free_gb:g} GiB",
            "free space soon, or move the runs root (TETHER_RUNS) to a larger disk",
            details,
        )
    return Check("disk", "ok", text, None, details)
