"""Checks of the trackers' settings, without contacting them: `wandb` (credentials for its
host, or an offline mode) and `mlflow` (the tracking URI: a server, a writable folder, a
database)."""

from __future__ import annotations

import importlib.util
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from .base import Check, CheckList, Context
from .storage import unwritable

CHECKS = CheckList()
check = CHECKS.register


def _netrc_has(host: str, env: Mapping[str, str]) -> bool:
    home = env.get("HOME") or str(Path.home())
    path = env.get("NETRC") or os.path.join(home, ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _has_module(name: str, ctx: Context) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@check("wandb")
def check_wandb(ctx: Context) -> Check:
    env = ctx.env
    mode = env.get("WANDB_MODE", "").lower()
    installed = _has_module("wandb", ctx)
    if not installed:
        return Check("wandb", "ok", "not installed (optional: pip install 'tether[wandb]')")
    if mode in ("offline", "disabled", "dryrun"):
        return Check("wandb", "ok", f"WANDB_MODE={mode}: no credentials needed", None, {})
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    if env.get("WANDB_API_KEY"):
        return Check("wandb", "ok", "WANDB_API_KEY is set", None, {"host": host})
    if _netrc_has(host, env):
        return Check("wandb", "ok", f"credentials for {host} in ~/.netrc", None, {"host": host})
    return Check(
        "wandb",
        "warn",
        f"wandb is installed but has no credentials for {host}",
        "run `wandb login`, set WANDB_API_KEY, or WANDB_MODE=offline to log locally",
        {"host": host},
    )


@check("mlflow")
def check_mlflow(ctx: Context) -> Check:
    uri = ctx.env.get("MLFLOW_TRACKING_URI", "")
    installed = _has_module("mlflow", ctx)
    if not uri:
        summary = (
            "MLFLOW_TRACKING_URI unset: MLflow writes ./mlruns"
            if installed
            else "not installed (optional: pip install 'tether[mlflow]')"
        )
        return Check("mlflow", "ok", summary, None, {"installed": installed})
    parsed = urlparse(uri)
    details = {"uri": uri, "installed": installed}
    if parsed.scheme in ("http", "https", "databricks"):
        user, password = (
            ctx.env.get("MLFLOW_TRACKING_USERNAME"),
            ctx.env.get("MLFLOW_TRACKING_PASSWORD"),
        )
        if bool(user) != bool(password):
            return Check(
                "mlflow",
                "warn",
                f"{uri}: only one of MLFLOW_TRACKING_USERNAME and _PASSWORD is set",
                "set both, or MLFLOW_TRACKING_TOKEN",
                details,
            )
        return Check("mlflow", "ok", f"tracking server {uri} (not contacted)", None, details)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
        problem = unwritable(path)
        if problem:
            return Check(
                "mlflow",
                "fail",
                f"MLFLOW_TRACKING_URI={uri}: {problem}",
                "point MLFLOW_TRACKING_URI at a writable folder (file:///path) or a server",
                details,
            )
        return Check("mlflow", "ok", f"file store {path}", None, details)
    if parsed.scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        return Check("mlflow", "ok", f"database store {uri} (not contacted)", None, details)
    return Check(
        "mlflow",
        "warn",
        f"MLFLOW_TRACKING_URI={uri}: unknown scheme {parsed.scheme!r}",
        "use http(s)://, file://, a path, or a database URI",
        details,
    )
