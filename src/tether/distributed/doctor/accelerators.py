"""Checks of torch, from the probe's report (tether.distributed.doctor.probe): `torch`
(importable with the loaded environment modules: version, CUDA, backends), `accelerators`
(CUDA, XPU, MPS, or the CPU), `backends` (gloo, nccl, xccl, mpi as the devices need them) and
`timeouts` (whether a hung collective ends the job on the backend the ranks will use)."""

from __future__ import annotations

from typing import Any

from ..resolver import usable_cores
from ..torch import pick_backend
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register

_TORCH_MISSING = (
    "pip install 'tether[torch]' (CPU-only wheels: add "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


def _modules(ctx: Context) -> list[str]:
    """The environment modules loaded (Lmod and Environment Modules set LOADEDMODULES)."""
    return [m for m in ctx.env.get("LOADEDMODULES", "").split(":") if m]


def _backends(t: dict[str, Any]) -> list[str]:
    return [n for n in ("nccl", "xccl", "gloo", "mpi") if t.get(n)]


@check("torch")
def check_torch(ctx: Context) -> Check:
    t = ctx.torch()
    modules = _modules(ctx)
    loaded = f" with modules {' '.join(modules)}" if modules else ""
    details = {**t, "modules": modules}
    if t.get("error") == "missing":
        return Check(
            "torch",
            "warn",
            "torch is not installed (only needed for tether.distributed.setup_torch and torchrun)",
            _TORCH_MISSING,
            details,
        )
    if t.get("error") == "timeout":
        return Check(
            "torch",
            "fail",
            f"{t.get('detail')}{loaded} (killed)",
            "copy the environment to node-local disk with `tether env yeet` (a shared "
            "filesystem is slow to import from), or raise --torch-timeout",
            details,
        )
    if t.get("error"):
        return Check(
            "torch",
            "fail",
            f"torch cannot be imported{loaded}: {t.get('detail')}",
            "reinstall torch for this Python and platform (pip install --force-reinstall "
            "torch), or `module load` the CUDA/driver libraries it was built for",
            details,
        )
    cuda = f"CUDA {t['cuda_version']}" if t.get("cuda_version") else "no CUDA"
    backends = ", ".join(_backends(t)) or "no distributed backend"
    summary = f"torch {t.get('version')} ({cuda}; {backends}){loaded}"
    return Check("torch", "ok", summary, None, details)


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
    details["cpu_cores"] = usable_cores()
    if not found:
        return Check(
            "accelerators",
            "ok",
            f"CPU only ({details['cpu_cores']} cores): ranks use the gloo backend",
            None,
            details,
        )
    return Check("accelerators", "ok", ", ".join(found) + " and the CPU", None, details)


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


_NCCL_OFF = ("0",)


def _flag(ctx: Context, *names: str) -> tuple[str, str] | None:
    """(name, value) of the first of `names` that is set."""
    for name in names:
        value = ctx.env.get(name, "").strip()
        if value:
            return name, value
    return None


@check("timeouts")
def check_timeouts(ctx: Context) -> Check:
    t = ctx.torch()
    if t.get("error"):
        return Check("timeouts", "skip", "torch is not importable: no collectives to time out")
    device = "cuda" if t.get("cuda") else "xpu" if t.get("xpu") else "cpu"
    backend = pick_backend(device, ctx.env)
    raw = ctx.env.get("TETHER_DIST_TIMEOUT", "").strip()
    try:
        limit = float(raw) if raw else None
    except ValueError:
        return Check(
            "timeouts",
            "fail",
            f"TETHER_DIST_TIMEOUT={raw!r} is not a number of seconds (setup_torch refuses it)",
            "set TETHER_DIST_TIMEOUT to seconds, e.g. TETHER_DIST_TIMEOUT=600",
            {"backend": backend},
        )
    shown = f"TETHER_DIST_TIMEOUT={limit:g} s" if limit is not None else "torch's default"
    details: dict[str, Any] = {"backend": backend, "timeout_s": limit}
    if backend == "nccl":
        handling = _flag(ctx, "TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING")
        blocking = _flag(ctx, "TORCH_NCCL_BLOCKING_WAIT", "NCCL_BLOCKING_WAIT")
        details.update(async_error_handling=handling, blocking_wait=blocking)
        if blocking and blocking[1] not in _NCCL_OFF:
            return Check("timeouts", "ok", f"nccl: {blocking[0]}=1 enforces {shown}", None, details)
        if handling and handling[1] in _NCCL_OFF:
            return Check(
                "timeouts",
                "warn",
                f"nccl: {handling[0]}=0, so a timed-out collective is only logged and the job "
                "hangs",
                f"unset {handling[0]} (torch's default tears the job down) or set it to 3",
                details,
            )
        major = _major(t.get("version"))
        if not handling and major is not None and major < 2:
            return Check(
                "timeouts",
                "warn",
                f"nccl on torch {t.get('version')}: timeouts are not enforced by default",
                "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1 (or upgrade torch to 2.x)",
                details,
            )
        how = f"{handling[0]}={handling[1]}" if handling else "asynchronous error handling"
        return Check("timeouts", "ok", f"nccl: {how} enforces {shown}", None, details)
    if backend == "gloo":
        return Check("timeouts", "ok", f"gloo enforces {shown} in every collective", None, details)
    if backend == "mpi":
        return Check(
            "timeouts",
            "warn",
            "the mpi backend ignores collective timeouts: a hung rank hangs the job",
            "stop a silent job with `tether launch --idle-timeout SECONDS`, or use gloo/nccl",
            details,
        )
    return Check(
        "timeouts",
        "warn",
        f"{backend}: tether cannot tell whether it enforces collective timeouts",
        "stop a silent job with `tether launch --idle-timeout SECONDS`",
        details,
    )


def _major(version: Any) -> int | None:
    head = str(version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None
