"""The torch probe of `tether doctor`: torch is imported in a child process (`python -c ...`),
since its import is slow, can crash or hang (a CUDA library, a shared filesystem), and must
not leave CUDA initialised in this one. The child is killed after a timeout."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

TORCH_TIMEOUT_S = 60.0


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
    probe("cuda_version", lambda: getattr(getattr(torch, "version", None), "cuda", None))
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
    out["file"] = str(getattr(torch, "__file__", "") or "")
print("TETHER-PROBE " + json.dumps(out))
"""


def probe_torch(
    executable: str, env: Mapping[str, str], timeout: float = TORCH_TIMEOUT_S
) -> dict[str, Any]:
    """What `executable -c _PROBE` finds of torch: version, devices, backends, or the error
    (`missing`, `broken`, or `timeout` when the import took over `timeout` seconds)."""
    try:
        proc = subprocess.run(
            [executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "detail": f"import torch took over {timeout:g} s"}
    except OSError as exc:
        return {"error": "broken", "detail": f"cannot run {executable}: {exc.strerror}"}
    for line in proc.stdout.splitlines():
        if line.startswith("TETHER-PROBE "):
            result: dict[str, Any] = json.loads(line[len("TETHER-PROBE ") :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return {"error": "broken", "detail": f"the torch probe died: {tail[0]}"}
