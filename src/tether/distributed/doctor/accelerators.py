"""Checks of torch, from the probe's report (tether.distributed.doctor.probe): `torch`
(importable), `accelerators` (CUDA, XPU, MPS, or the CPU) and `backends` (gloo, nccl, xccl,
mpi as the devices need them)."""

from __future__ import annotations

from ..resolver import usable_cores
from .base import Check, CheckList, Context

CHECKS = CheckList()
check = CHECKS.register

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
            "torch is not installed (only needed for tether.distributed.setup_torch and torchrun)",
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
