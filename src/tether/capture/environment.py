"""The environment a run executes in, as recorded in run.lock's `env`.

- `python`, `implementation`, `platform`, `host`, `user`, `cwd`, `executable`, `tether`;
- `packages`: every installed distribution as `name==version`, sorted, read from the
  *.dist-info folder names on sys.path; `package_sources`: where an editable, VCS or local
  install came from (its `direct_url.json`). `packages_digest` is blake3 of the list, the
  environment's share of the lock digest. The list is cached across processes in
  `<cache dir>/packages-<key>.json`, valid while the sys.path folders keep their mtimes
  (installing or removing a distribution adds or removes a folder there), so a run reads one
  small file instead of listing site-packages; importlib.metadata's scan costs 100 ms or more;
- `gpu`: CUDA, cuDNN, NCCL and driver versions, device count and models, only when torch is
  already imported and sees a GPU (this never imports torch);
- `container`: Apptainer/Singularity, Podman or Docker, with the image and its digest when one
  is known (`TETHER_CONTAINER_IMAGE` / `TETHER_CONTAINER_DIGEST` name them where the runtime
  does not tell: Docker);
- `job`: the Slurm or PBS job's facts (`scheduler` and `job_id` also stay at the top level).

`diff_environment` compares two recorded environments (tether diff, tether reproduce).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..ids import fnv1a64
from ..mounts import default_cache_dir
from ..store.state import scheduler_job

_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy"}
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
PACKAGES_CACHE_VERSION = 1
_RACY_S = 2.0  # a folder changed this recently may still be changing: do not cache it yet
NVIDIA_PROC = "/proc/driver/nvidia"  # the kernel driver's version and one folder per GPU
PODMAN_ENV_FILE = "/run/.containerenv"  # what podman tells a container about itself
DOCKER_ENV_FILE = "/.dockerenv"

# The facts of a scheduler job worth keeping, by run.lock key.
SLURM_FACTS = {
    "name": "SLURM_JOB_NAME",
    "partition": "SLURM_JOB_PARTITION",
    "account": "SLURM_JOB_ACCOUNT",
    "qos": "SLURM_JOB_QOS",
    "cluster": "SLURM_CLUSTER_NAME",
    "nodes": "SLURM_JOB_NODELIST",
    "num_nodes": "SLURM_JOB_NUM_NODES",
    "ntasks": "SLURM_NTASKS",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "gpus": "SLURM_GPUS_ON_NODE",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",
    "submit_dir": "SLURM_SUBMIT_DIR",
}
PBS_FACTS = {
    "name": "PBS_JOBNAME",
    "queue": "PBS_QUEUE",
    "account": "PBS_ACCOUNT",
    "server": "PBS_SERVER",
    "array_index": "PBS_ARRAY_INDEX",
    "submit_host": "PBS_O_HOST",
    "submit_dir": "PBS_O_WORKDIR",
}
# The environment keys that are inputs of a run (tether diff compares them).
COMPARED = ("python", "implementation", "platform")


# -- packages ---------------------------------------------------------------------------------
def _site_dirs() -> list[str]:
    return [e for e in dict.fromkeys(sys.path) if e and os.path.isdir(e)]


def _scan(dirs: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    found: set[str] = set()
    sources: dict[str, dict[str, Any]] = {}
    for entry in dirs:
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            dist, _, version = name[: -len(".dist-info")].partition("-")
            dist = dist.lower().replace("_", "-")
            found.add(f"{dist}=={version}")
            source = _direct_url(os.path.join(entry, name, "direct_url.json"))
            if source:
                sources[dist] = source
    return sorted(found), dict(sorted(sources.items()))


def _direct_url(path: str) -> dict[str, Any] | None:
    """What PEP 610's direct_url.json says about an install from a URL: the URL, editable,
    and for VCS the system, commit and requested revision."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not raw.get("url"):
        return None
    out: dict[str, Any] = {"url": str(raw["url"])}
    vcs = raw.get("vcs_info")
    if isinstance(vcs, dict):
        out["vcs"] = vcs.get("vcs")
        if vcs.get("commit_id"):
            out["commit"] = vcs["commit_id"]
        if vcs.get("requested_revision"):
            out["revision"] = vcs["requested_revision"]
    info = raw.get("dir_info")
    if isinstance(info, dict) and info.get("editable"):
        out["editable"] = True
    return out


def _cache_path(dirs: list[str]) -> str:
    text = "\0".join([sys.executable, *dirs]).encode("utf-8", "surrogateescape")
    key = f"{fnv1a64(text):016x}"
    return os.path.join(default_cache_dir(), f"packages-{key}.json")


def _mtimes(dirs: list[str]) -> dict[str, int]:
    out = {}
    for d in dirs:
        try:
            out[d] = os.stat(d).st_mtime_ns
        except OSError:
            out[d] = -1
    return out


@functools.lru_cache(maxsize=1)
def installed() -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """(`name==version` of every installed distribution, sorted; the sources of those
    installed from a URL), from the cross-process cache when the sys.path folders are
    unchanged."""
    dirs = _site_dirs()
    path = _cache_path(dirs)
    mtimes = _mtimes(dirs)
    try:
        with open(path, encoding="utf-8") as fh:
            cached = json.load(fh)
        if cached.get("version") == PACKAGES_CACHE_VERSION and cached.get("mtimes") == mtimes:
            return tuple(cached["packages"]), dict(cached["sources"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    names, sources = _scan(dirs)
    if all(time.time() - m / 1e9 > _RACY_S for m in mtimes.values()):
        _write_cache(path, {"version": 1, "mtimes": mtimes, "packages": names, "sources": sources})
    return tuple(names), sources


def _write_cache(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)  # a cache: atomic, not durable
    except OSError:
        pass


def packages() -> tuple[str, ...]:
    """Installed distributions as `name==version`, sorted."""
    return installed()[0]


@functools.lru_cache(maxsize=1)
def packages_digest() -> str:
    import blake3

    return blake3.blake3("\n".join(packages()).encode()).hexdigest()[:32]


# -- GPU, container, job ----------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no CUDA call)."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", _read(f"{NVIDIA_PROC}/version"))
    return m.group(1) if m else None


def _gpu_models() -> list[str]:
    models = []
    try:
        gpus = sorted(os.listdir(f"{NVIDIA_PROC}/gpus"))
    except OSError:
        gpus = []
    for gpu in gpus:
        m = re.search(r"^Model:\s*(.+)$", _read(f"{NVIDIA_PROC}/gpus/{gpu}/information"), re.M)
        if m:
            models.append(m.group(1).strip())
    return models


def gpu_facts() -> dict[str, Any] | None:
    """CUDA, cuDNN, NCCL and driver versions when torch is already imported and sees a GPU."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        out: dict[str, Any] = {"devices": int(torch.cuda.device_count())}
        version = getattr(torch, "version", None)
        for key in ("cuda", "hip"):
            value = getattr(version, key, None)
            if value:
                out[key] = str(value)
        cudnn = getattr(getattr(torch, "backends", None), "cudnn", None)
        if cudnn is not None and cudnn.is_available():
            out["cudnn"] = str(cudnn.version())
        nccl = getattr(torch.cuda, "nccl", None)
        if nccl is not None:
            raw = nccl.version()
            out["nccl"] = ".".join(map(str, raw)) if isinstance(raw, tuple) else str(raw)
    except Exception:  # a broken CUDA install must not stop the run
        return None
    driver = nvidia_driver()
    if driver:
        out["driver"] = driver
    models = _gpu_models()
    if models:
        out["models"] = models
    return out


def container_facts(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The container this process runs in, with its image (and digest) when known."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for runtime in ("apptainer", "singularity"):
        image = env.get(f"{runtime.upper()}_CONTAINER")
        if image:
            out = {"runtime": runtime, "image": image}
            if env.get(f"{runtime.upper()}_NAME"):
                out["name"] = env[f"{runtime.upper()}_NAME"]
            break
    if not out:
        podman = _read(PODMAN_ENV_FILE)
        if podman or env.get("container") == "podman":
            out = {"runtime": "podman"}
            fields = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', podman, re.M))
            if fields.get("image"):
                out["image"] = fields["image"]
            if fields.get("imageid"):
                out["digest"] = "sha256:" + fields["imageid"].removeprefix("sha256:")
            if fields.get("name"):
                out["name"] = fields["name"]
        elif os.path.exists(DOCKER_ENV_FILE) or env.get("container") == "docker":
            out = {"runtime": "docker"}
    if env.get("TETHER_CONTAINER_IMAGE"):
        out.setdefault("runtime", "container")
        out["image"] = env["TETHER_CONTAINER_IMAGE"]
    if env.get("TETHER_CONTAINER_DIGEST"):
        out.setdefault("runtime", "container")
        out["digest"] = env["TETHER_CONTAINER_DIGEST"]
    return out or None


def job_facts(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The Slurm or PBS job this process runs in: scheduler, id and the facts set."""
    env = dict(os.environ) if environ is None else environ
    scheduler, job_id = scheduler_job(env)
    if scheduler is None:
        return None
    table = SLURM_FACTS if scheduler == "slurm" else PBS_FACTS if scheduler == "pbs" else {}
    out: dict[str, Any] = {"scheduler": scheduler, "id": job_id}
    out.update({key: env[var] for key, var in table.items() if env.get(var)})
    return out


def _user() -> str:
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd  # noqa: PLC0415 (POSIX only)

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"


def capture_environment() -> dict[str, Any]:
    names, sources = installed()
    world = next((os.environ[v] for v in _WORLD_VARS if os.environ.get(v)), None)
    env: dict[str, Any] = {
        # From sys and os.uname: the platform module costs milliseconds of start-up.
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "implementation": _IMPLEMENTATIONS.get(sys.implementation.name, sys.implementation.name),
        "platform": f"{sys.platform}-{os.uname().machine}",
        "host": os.uname().nodename,
        "user": _user(),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "tether": __version__,
        "packages_digest": packages_digest(),
        "packages": list(names),
    }
    if sources:
        env["package_sources"] = sources
    job = job_facts()
    if job:
        env["scheduler"] = job["scheduler"]
        env["job_id"] = job["id"]
        env["job"] = job
    if world:
        env["world_size"] = int(world) if world.isdigit() else world
    for key, facts in (("gpu", gpu_facts()), ("container", container_facts())):
        if facts:
            env[key] = facts
    return env


# -- comparing two environments ---------------------------------------------------------------
@dataclass
class EnvChange:
    """One environment fact that differs (`gpu.cuda`, `container.digest`, `python`, ...)."""

    key: str
    old: Any = None
    new: Any = None


@dataclass
class PackageChange:
    """One distribution added, removed, or at another version or source."""

    name: str
    change: str  # added | removed | changed
    old: str | None = None  # the version, with its source when installed from a URL
    new: str | None = None

    def __str__(self) -> str:
        if self.change == "added":
            return f"+{self.name} {self.new}"
        if self.change == "removed":
            return f"-{self.name} {self.old}"
        return f"{self.name} {self.old} -> {self.new}"


def package_versions(env: dict[str, Any]) -> dict[str, str] | None:
    """{name: version (source)} of a recorded environment; None when it kept only a digest
    (runs recorded before the list was)."""
    raw = env.get("packages")
    if not isinstance(raw, list):
        return None
    sources = env.get("package_sources") or {}
    out = {}
    for item in raw:
        name, _, version = str(item).partition("==")
        source = sources.get(name)
        out[name] = f"{version} ({describe_source(source)})" if source else version
    return out


def describe_source(source: dict[str, Any]) -> str:
    url = str(source.get("url", "?"))
    if source.get("vcs"):
        url = f"{source['vcs']}+{url}@{source.get('commit') or source.get('revision') or '?'}"
    return f"editable {url}" if source.get("editable") else url


def diff_packages(old: dict[str, Any], new: dict[str, Any]) -> list[PackageChange] | None:
    """Distributions that differ between two recorded environments, by name; None when one
    of them recorded no list (compare `packages_digest` then)."""
    a, b = package_versions(old), package_versions(new)
    if a is None or b is None:
        return None
    out = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x == y:
            continue
        change = "added" if x is None else "removed" if y is None else "changed"
        out.append(PackageChange(name, change, x, y))
    return out


def _flat(env: dict[str, Any], key: str) -> dict[str, Any]:
    value = env.get(key)
    if not isinstance(value, dict):
        return {}
    return {f"{key}.{k}": v for k, v in value.items()}


def diff_environment(
    old: dict[str, Any], new: dict[str, Any]
) -> tuple[list[EnvChange], list[PackageChange]]:
    """(facts that differ: python, platform, GPU stack, container image; packages that
    differ). Without a package list on both sides, differing digests are one fact."""
    facts = []
    for key in COMPARED:
        if old.get(key) != new.get(key):
            facts.append(EnvChange(key, old.get(key), new.get(key)))
    # A record without a package list was made before GPU and container facts were kept.
    recorded = package_versions(old) is not None and package_versions(new) is not None
    for group in ("gpu", "container") if recorded else ():
        a, b = _flat(old, group), _flat(new, group)
        for key in [*a, *(k for k in b if k not in a)]:
            if key in (f"{group}.name", "gpu.devices", "gpu.models"):
                continue  # where it ran, not what it ran with
            if a.get(key) != b.get(key):
                facts.append(EnvChange(key, a.get(key), b.get(key)))
    changes = diff_packages(old, new)
    if changes is None:
        changes = []
        if old.get("packages_digest") != new.get("packages_digest"):
            facts.append(
                EnvChange("packages_digest", old.get("packages_digest"), new.get("packages_digest"))
            )
    return facts, changes
