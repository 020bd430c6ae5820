"""Checks of the metric sinks: `wandb` (credentials for its host, or an offline mode; the
host reachable when online) and `mlflow` (the tracking URI tether's sink would use: a server
that answers a TCP connect, a writable folder, the default SQLite database under the runs
root). Servers get one TCP connect with a short timeout, no request. (The `remotes` check of
tether push|pull lives in sync/health.py: cli/doctor.py adds it.)"""

from __future__ import annotations

import importlib.util
import netrc
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from ...mounts import is_network_type
from ...track.sinks.mlflow import default_uri, sqlite_path
from ...workspace import resolve_runs_root
from .base import Check, CheckList, Context
from .storage import unwritable

CHECKS = CheckList()
check = CHECKS.register
CONNECT_TIMEOUT_S = 2.0


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why a TCP connection to `url`'s host and port fails now, or None when it opens."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    try:
        port = parsed.port or (443 if parsed.scheme in ("https", "databricks") else 80)
    except ValueError:
        return f"bad port in {url}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer from {host}:{port} in {timeout:g} s"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


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
    base = env.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    host = urlparse(base).hostname or ""
    offline = "or WANDB_MODE=offline to log locally (wandb sync later)"
    if env.get("WANDB_API_KEY"):
        found = "WANDB_API_KEY is set"
    elif _netrc_has(host, env):
        found = f"credentials for {host} in ~/.netrc"
    else:
        return Check(
            "wandb",
            "warn",
            f"wandb is installed but has no credentials for {host}",
            f"run `wandb login`, set WANDB_API_KEY, {offline}",
            {"host": host},
        )
    problem = unreachable(base)
    if problem:
        return Check(
            "wandb",
            "warn",
            f"{found}, but {base} cannot be reached: {problem}",
            f"open the network to {host}, {offline}",
            {"host": host},
        )
    return Check("wandb", "ok", f"{found}; {host} answers", None, {"host": host})


@check("mlflow")
def check_mlflow(ctx: Context) -> Check:
    given = ctx.env.get("MLFLOW_TRACKING_URI", "")
    installed = _has_module("mlflow", ctx)
    root = resolve_runs_root(ctx.runs_dir or ctx.env.get("TETHER_RUNS"))
    uri = given or default_uri(root)  # what tether's mlflow sink would use
    details = {"uri": uri, "given": bool(given), "installed": installed}
    if not given and not installed:
        return Check(
            "mlflow",
            "ok",
            f"not installed (optional: pip install 'tether[mlflow]'); tether would write {uri}",
            None,
            details,
        )
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return _server(ctx, uri, details)
    if parsed.scheme == "databricks":
        return Check("mlflow", "ok", f"Databricks {uri} (not contacted)", None, details)
    db = sqlite_path(uri)
    if db is not None:
        return _folder(ctx, uri, db.parent, "SQLite store", details)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
        return _folder(ctx, uri, path, "file store", details)
    if parsed.scheme.startswith(("postgresql", "mysql", "mssql")):
        return Check("mlflow", "ok", f"database store {uri} (not contacted)", None, details)
    return Check(
        "mlflow",
        "warn",
        f"MLFLOW_TRACKING_URI={uri}: unknown scheme {parsed.scheme!r}",
        "use http(s)://, file://, a path, or a database URI",
        details,
    )


def _server(ctx: Context, uri: str, details: dict[str, object]) -> Check:
    user = ctx.env.get("MLFLOW_TRACKING_USERNAME")
    password = ctx.env.get("MLFLOW_TRACKING_PASSWORD")
    if bool(user) != bool(password):
        return Check(
            "mlflow",
            "warn",
            f"{uri}: only one of MLFLOW_TRACKING_USERNAME and _PASSWORD is set",
            "set both, or MLFLOW_TRACKING_TOKEN",
            details,
        )
    problem = unreachable(uri)
    if problem:
        return Check(
            "mlflow",
            "fail",
            f"MLFLOW_TRACKING_URI={uri} cannot be reached: {problem}",
            "start the server or fix the URI, or unset MLFLOW_TRACKING_URI to log to the "
            "runs root's SQLite store and `tether mlflow sync` later",
            details,
        )
    return Check("mlflow", "ok", f"tracking server {uri} answers", None, details)


def _folder(ctx: Context, uri: str, folder: Path, what: str, details: dict[str, object]) -> Check:
    name = "MLFLOW_TRACKING_URI" if details["given"] else "the default MLflow URI"
    problem = unwritable(folder)
    if problem:
        return Check(
            "mlflow",
            "fail",
            f"{name} {uri}: {problem}",
            "point MLFLOW_TRACKING_URI at a writable folder (file:///path) or a server",
            details,
        )
    kind = ctx.fstype(str(folder))
    if what == "SQLite store" and is_network_type(kind):
        return Check(
            "mlflow",
            "warn",
            f"{what} {uri} is on {kind}: SQLite locking is unreliable on a shared filesystem",
            "set MLFLOW_TRACKING_URI to a server, or to a sqlite:/// path on a local disk",
            details,
        )
    return Check("mlflow", "ok", f"{what} {uri} (writable)", None, details)
