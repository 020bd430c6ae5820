"""`tether doctor`: is this machine ready to launch? One check per concern, each with a status
(`ok`, `warn`, `fail`), a one-line summary, details, and a remedy when it is not ok.

Checks are small functions registered with `@check(name)` and run in order against a `Context`
(the environment, the hostfile, the runs root, the thresholds, and the few facts tests replace:
Python's version, the installed tether version, how a program is found on PATH). torch is
probed in a child process (`python -c ...`): its import is slow, can crash, and must not leave
CUDA initialised in this one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("ok", "warn", "fail")
TORCH_TIMEOUT_S = 180.0
GIB = 1 << 30


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    summary: str
    remedy: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "remedy": self.remedy,
            "details": self.details,
        }


def _installed_tether() -> str | None:
    """The version pip installed (the dist-info folder's), without importlib.metadata."""
    from ..capture.environment import packages

    return next((p.split("==", 1)[1] for p in packages() if p.startswith("tether==")), None)


@dataclass
class Context:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    hostfile: str | None = None
    runs_dir: str | None = None
    min_free_gb: float = 1.0
    python: tuple[int, int, int] = (
        sys.version_info.major,
        sys.version_info.minor,
        sys.version_info.micro,
    )
    executable: str = sys.executable
    installed_version: Callable[[], str | None] = _installed_tether
    which: Callable[[str, Mapping[str, str]], str | None] | None = None
    torch_probe: Callable[[Context], dict[str, Any]] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def find(self, program: str) -> str | None:
        """Where `tether launch` would find `program`: PATH, with this Python's bin/ first."""
        if self.which is not None:
            return self.which(program, self.env)
        path = os.pathsep.join([str(Path(self.executable).parent), self.env.get("PATH", "")])
        return shutil.which(program, path=path)

    def torch(self) -> dict[str, Any]:
        if "torch" not in self._cache:
            probe = self.torch_probe or _probe_torch
            self._cache["torch"] = probe(self)
        result: dict[str, Any] = self._cache["torch"]
        return result


CHECKS: list[tuple[str, Callable[[Context], Check]]] = []


def check(name: str) -> Callable[[Callable[[Context], Check]], Callable[[Context], Check]]:
    def register(fn: Callable[[Context], Check]) -> Callable[[Context], Check]:
        CHECKS.append((name, fn))
        return fn

    return register


def run_checks(ctx: Context | None = None, only: list[str] | None = None) -> list[Check]:
    """Every check in order (or those named in `only`); a check that crashes is a failure."""
    ctx = ctx or Context()
    out: list[Check] = []
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        try:
            result = fn(ctx)
        except Exception as exc:
            result = Check(
                name,
                "fail",
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "run with TETHER_DEBUG=1 and report this",
            )
        out.append(result)
    return out


def overall(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=STATUSES.index, default="ok")


def report(checks: list[Check]) -> dict[str, Any]:
    return {"status": overall(checks), "checks": [c.as_dict() for c in checks]}


# -- the checks -------------------------------------------------------------------------------
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
    from .. import __file__ as where
    from .. import __version__

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


LAUNCHER_PROGRAMS = ("mpiexec", "srun", "torchrun")


@check("launchers")
def check_launchers(ctx: Context) -> Check:
    found = {name: ctx.find(name) for name in LAUNCHER_PROGRAMS}
    present = [n for n, p in found.items() if p]
    if not present:
        return Check(
            "launchers",
            "fail",
            "no launcher on PATH: none of mpiexec, srun, torchrun",
            "install Open MPI (Debian/Ubuntu: apt install openmpi-bin; macOS: brew install "
            "open-mpi), `module load` your site's MPI, or pip install torch for torchrun",
            {"found": found},
        )
    shown = ", ".join(f"{n} ({found[n]})" for n in present)
    return Check("launchers", "ok", f"found {shown}", None, {"found": found})


@check("mpi")
def check_mpi(ctx: Context) -> Check:
    from . import mpi

    path = ctx.find("mpiexec")
    if path is None:
        return Check(
            "mpi",
            "warn",
            "no mpiexec on PATH (--launcher mpiexec will not work)",
            "install Open MPI (apt install openmpi-bin libopenmpi-dev) or MPICH, or "
            "`module load` your site's MPI; srun and torchrun do not need it",
            {"path": None},
        )
    env = dict(ctx.env)
    env["PATH"] = os.pathsep.join([str(Path(path).parent), env.get("PATH", "")])
    found = mpi.detect("mpiexec", env)
    details = {"path": found.path, "flavour": found.flavour, "version": found.version}
    if found.flavour is None and found.version == "" and found.error:
        return Check(
            "mpi",
            "fail",
            f"{path} --version failed: {found.error}",
            "check the MPI installation (a broken module, a missing library: run "
            f"`{path} --version` to see)",
            details,
        )
    if found.flavour is None:
        return Check(
            "mpi",
            "warn",
            f"{path} is not a recognised MPI: {found.version!r}",
            "tell tether which it is with --mpi openmpi|mpich|pals|intel",
            details,
        )
    title = mpi.FLAVOURS[found.flavour].title
    summary = f"{title}: {found.version} ({path})"
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if found.flavour == "openmpi" and is_root:
        summary += "; running as root: launch adds --allow-run-as-root"
    return Check("mpi", "ok", summary, None, details)


@check("scheduler")
def check_scheduler(ctx: Context) -> Check:
    from ..errors import TetherError
    from . import schedulers

    broken = schedulers.load_errors()
    names = [p.name for p in schedulers.available()]
    wanted = ctx.env.get(schedulers.ENV_VAR)
    if wanted and wanted not in names:
        try:
            schedulers.get(wanted)
        except TetherError as exc:
            return Check(
                "scheduler",
                "fail",
                f"{schedulers.ENV_VAR}={wanted}: {exc.message}",
                f"unset {schedulers.ENV_VAR}, or set it to one of: {', '.join(names)}",
                {"plugins": names, "broken_plugins": dict(broken)},
            )
    try:
        sched = schedulers.select(ctx.env)
        info = sched.info(ctx.env)
    except TetherError as exc:
        return Check(
            "scheduler",
            "fail",
            str(exc.message),
            exc.hint or "check the scheduler's environment variables",
            {"plugins": names, "broken_plugins": dict(broken)},
        )
    except Exception as exc:
        return Check(
            "scheduler",
            "fail",
            f"scheduler plug-in failed: {type(exc).__name__}: {exc}",
            "fix or uninstall the plug-in, or set TETHER_SCHEDULER to another one",
            {"plugins": names, "broken_plugins": dict(broken)},
        )
    details = {**info, "plugins": names, "broken_plugins": dict(broken)}
    job = f", job {info['job_id']}" if info.get("job_id") else ""
    hosts = info.get("hosts") or []
    shown = ", ".join(hosts[:4]) + (f" and {len(hosts) - 4} more" if len(hosts) > 4 else "")
    summary = f"{sched.name}{job}: {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({shown})"
    if broken:
        first = broken[0]
        return Check(
            "scheduler",
            "warn",
            f"{summary}; plug-in {first[0]!r} failed to load",
            f"fix or uninstall it: {first[1]}",
            details,
        )
    return Check("scheduler", "ok", summary, None, details)


@check("hostfile")
def check_hostfile(ctx: Context) -> Check:
    from ..errors import TetherError
    from .hostfile import read_hostfile

    path, source = ctx.hostfile, "--hostfile"
    if not path and ctx.env.get("TETHER_HOSTFILE"):
        path, source = ctx.env["TETHER_HOSTFILE"], "TETHER_HOSTFILE"
    if not path and ctx.env.get("PBS_NODEFILE"):
        path, source = ctx.env["PBS_NODEFILE"], "PBS_NODEFILE"
    if not path:
        return Check("hostfile", "ok", "none given: hosts come from the scheduler or this machine")
    try:
        parsed = read_hostfile(path)
    except TetherError as exc:
        return Check(
            "hostfile",
            "fail",
            f"{source}: {exc.message}",
            exc.hint or f"fix {path}, or point {source} at a readable hostfile",
            {"path": path, "source": source},
        )
    slots = f", {parsed.total_slots} slots" if parsed.total_slots is not None else ""
    details = {"path": path, "source": source, "hosts": parsed.hosts, "slots": parsed.slots}
    return Check(
        "hostfile",
        "ok",
        f"{source} {path}: {len(parsed.hosts)} host{'s' if len(parsed.hosts) != 1 else ''}{slots}",
        None,
        details,
    )


_PROBE = r"""
import json, sys
out = {}
try:
    import torch
except ModuleNotFoundError as exc:
    out = {"error": "missing", "detail": str(exc)}
except BaseException as exc:
    out = {"error": "broken", "detail": f"{type(exc).__name__}: {exc}"}
else:
    out["version"] = str(getattr(torch, "__version__", "?"))
    def probe(name, fn):
        try:
            out[name] = fn()
        except BaseException as exc:
            out[name] = False
            out.setdefault("problems", []).append(f"{name}: {type(exc).__name__}: {exc}")
    probe("cuda", lambda: bool(torch.cuda.is_available()))
    probe("cuda_devices", lambda: int(torch.cuda.device_count()) if out["cuda"] else 0)
    probe("cuda_names", lambda: [torch.cuda.get_device_name(i)
                                 for i in range(out["cuda_devices"])])
    probe("xpu", lambda: bool(hasattr(torch, "xpu") and torch.xpu.is_available()))
    probe("xpu_devices", lambda: int(torch.xpu.device_count()) if out["xpu"] else 0)
    probe("mps", lambda: bool(torch.backends.mps.is_available()))
    probe("distributed", lambda: bool(torch.distributed.is_available()))
    if out["distributed"]:
        d = torch.distributed
        probe("gloo", lambda: bool(d.is_gloo_available()))
        probe("nccl", lambda: bool(d.is_nccl_available()))
        probe("mpi", lambda: bool(d.is_mpi_available()))
        probe("xccl", lambda: bool(getattr(d, "is_xccl_available", lambda: False)()))
print("TETHER-PROBE " + json.dumps(out))
"""


def _probe_torch(ctx: Context) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [ctx.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=TORCH_TIMEOUT_S,
            env=dict(ctx.env),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": "broken", "detail": f"import torch took over {TORCH_TIMEOUT_S:g} s"}
    except OSError as exc:
        return {"error": "broken", "detail": f"cannot run {ctx.executable}: {exc.strerror}"}
    for line in proc.stdout.splitlines():
        if line.startswith("TETHER-PROBE "):
            result: dict[str, Any] = json.loads(line[len("TETHER-PROBE ") :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return {"error": "broken", "detail": f"the torch probe died: {tail[0]}"}


_TORCH_MISSING = (
    "pip install 'tether[torch]' (CPU-only wheels: add "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


@check("torch")
def check_torch(ctx: Context) -> Check:
    t = ctx.torch()
    if t.get("error") == "missing":
        return Check(
            "torch",
            "warn",
            "torch is not installed (only needed for tether.dist.setup_torch and torchrun)",
            _TORCH_MISSING,
            t,
        )
    if t.get("error"):
        return Check(
            "torch",
            "fail",
            f"torch cannot be imported: {t.get('detail')}",
            "reinstall torch for this Python and platform (pip install --force-reinstall "
            "torch), and check CUDA/driver libraries on LD_LIBRARY_PATH",
            t,
        )
    return Check("torch", "ok", f"torch {t.get('version')}", None, t)


@check("accelerators")
def check_accelerators(ctx: Context) -> Check:
    t = ctx.torch()
    if t.get("error"):
        return Check(
            "accelerators",
            "warn",
            "unknown: torch is not importable",
            _TORCH_MISSING if t["error"] == "missing" else "fix the torch check first",
            {},
        )
    found = []
    if t.get("cuda"):
        names = ", ".join(t.get("cuda_names") or [])
        found.append(f"CUDA x{t.get('cuda_devices')}" + (f" ({names})" if names else ""))
    if t.get("xpu"):
        found.append(f"XPU x{t.get('xpu_devices')}")
    if t.get("mps"):
        found.append("MPS")
    details = {k: t.get(k) for k in ("cuda", "cuda_devices", "cuda_names", "xpu", "mps")}
    details["cpu_cores"] = _cores()
    if not found:
        return Check(
            "accelerators",
            "ok",
            f"CPU only ({details['cpu_cores']} cores): ranks use the gloo backend",
            None,
            details,
        )
    return Check("accelerators", "ok", ", ".join(found) + " and the CPU", None, details)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@check("backends")
def check_backends(ctx: Context) -> Check:
    t = ctx.torch()
    if t.get("error"):
        return Check(
            "backends",
            "warn",
            "unknown: torch is not importable",
            _TORCH_MISSING if t["error"] == "missing" else "fix the torch check first",
            {},
        )
    names = ("gloo", "nccl", "xccl", "mpi")
    details = {n: bool(t.get(n)) for n in names}
    details["distributed"] = bool(t.get("distributed"))
    if not t.get("distributed"):
        return Check(
            "backends",
            "fail",
            "torch.distributed is not available in this torch build",
            "install a torch build with distributed support (the pytorch.org wheels have it)",
            details,
        )
    have = [n for n in names if details[n]]
    if not details["gloo"]:
        return Check(
            "backends",
            "fail",
            f"gloo is missing (have: {', '.join(have) or 'none'}); CPU ranks need it",
            "install the pytorch.org torch wheels, which include gloo",
            details,
        )
    if t.get("cuda") and not details["nccl"]:
        return Check(
            "backends",
            "warn",
            "CUDA is present but NCCL is not: GPU ranks would fall back to gloo (slow)",
            "install a CUDA build of torch that includes NCCL",
            details,
        )
    if t.get("xpu") and not details["xccl"]:
        return Check(
            "backends",
            "warn",
            "XPU is present but XCCL is not",
            "install torch with XPU support (or oneCCL bindings for your torch)",
            details,
        )
    return Check("backends", "ok", "available: " + ", ".join(have), None, details)


def _netrc_has(host: str, env: Mapping[str, str]) -> bool:
    import netrc

    home = env.get("HOME") or str(Path.home())
    path = env.get("NETRC") or os.path.join(home, ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _has_module(name: str, ctx: Context) -> bool:
    import importlib.util

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
    from urllib.parse import urlparse

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
    from urllib.parse import unquote, urlparse

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
        problem = _unwritable(path)
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


def _nearest_existing(path: Path) -> Path | None:
    return next((p for p in (path, *path.parents) if p.exists()), None)


def _unwritable(path: Path) -> str | None:
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
    from ..store.layout import resolve_runs_root

    root = resolve_runs_root(ctx.runs_dir or ctx.env.get("TETHER_RUNS"))
    problem = _unwritable(root)
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
    from ..store.layout import resolve_runs_root

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
