"""Slurm: the job's hosts come from SLURM_JOB_NODELIST, a compressed list like
`nid[001-004,010],login1`.

The list is expanded by `python-hostlist` when it is installed (`pip install 'tether[cluster]'`),
else by `scontrol show hostnames`, else by a small built-in expander that covers the syntax
Slurm writes (comma-separated names, bracketed ranges and lists, zero padding, several
brackets in one name).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import ClassVar

from ...errors import TetherError
from .base import Env, Scheduler

_FIRST_INT = re.compile(r"\d+")


class Slurm(Scheduler):
    priority: ClassVar[int] = 50
    default_launcher: ClassVar[str] = "srun"
    description: ClassVar[str] = "Slurm (SLURM_JOB_ID, SLURM_JOB_NODELIST)"

    def detect(self, env: Env) -> bool:
        return bool(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))

    def job_id(self, env: Env) -> str | None:
        return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None

    def hosts(self, env: Env) -> list[str]:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise TetherError(
                "SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not",
                "run inside the Slurm allocation (salloc/sbatch), or give --hostfile",
            )
        return list(dict.fromkeys(expand_nodelist(nodelist)))

    def ranks_per_host(self, env: Env) -> int | None:
        for var in ("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
            m = _FIRST_INT.search(env.get(var, ""))
            if m:
                return int(m.group())
        return None


def expand_nodelist(text: str) -> list[str]:
    """Expand a Slurm node list: python-hostlist, else scontrol, else the built-in expander."""
    try:
        import hostlist  # python-hostlist
    except ImportError:
        pass
    else:
        return [str(h) for h in hostlist.expand_hostlist(text)]
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            proc = subprocess.run(
                [scontrol, "show", "hostnames", text],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            proc = None
        if proc is not None and proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.split()
    return expand_builtin(text)


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise TetherError(f"node list {text!r}: ']' without '['")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise TetherError(f"node list {text!r}: '[' without ']'")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _range_items(body: str, whole: str) -> list[str]:
    items: list[str] = []
    for part in body.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise TetherError(f"node list {whole!r}: cannot read range {part!r}")
        if not sep:
            items.append(lo)
            continue
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        first, last = int(lo), int(hi)
        if last < first:
            raise TetherError(f"node list {whole!r}: range {part!r} runs backwards")
        items.extend(str(i).zfill(width) for i in range(first, last + 1))
    return items


def _expand_one(name: str, whole: str) -> list[str]:
    open_at = name.find("[")
    if open_at < 0:
        return [name]
    close_at = name.find("]", open_at)
    prefix, body, rest = name[:open_at], name[open_at + 1 : close_at], name[close_at + 1 :]
    tails = _expand_one(rest, whole)
    return [prefix + item + tail for item in _range_items(body, whole) for tail in tails]


def expand_builtin(text: str) -> list[str]:
    """`nid[001-003,010],login1` -> nid001 nid002 nid003 nid010 login1."""
    out: list[str] = []
    for name in _split_top(text.strip()):
        out.extend(_expand_one(name, text))
    return out
