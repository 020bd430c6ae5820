"""Slurm's compressed node lists, expanded without Slurm: `nid[001-003,010],login1` -> nid001
nid002 nid003 nid010 login1.

The syntax Slurm writes: comma-separated names, bracketed ranges and lists, zero padding,
several brackets in one name. Used by the Slurm plug-in (when neither python-hostlist nor
scontrol is there) and by tether.distributed.ranks (which must not start programs).
"""

from __future__ import annotations

from ..errors import TetherError


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
