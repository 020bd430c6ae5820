"""Launch templates: site settings in TOML under the user's flags (`tether launch --template`).

The shipped ones are the files in the `templates/` folder beside this module (`aurora`,
`polaris`, `perlmutter`, `frontier`, `generic-slurm`, `generic-openmpi`); `--template` also
takes the path of a `.toml` file. A template may set `description`, `scheduler`, `launcher`,
`mpi`, `ppn`, `cpu-bind`, `args` (launcher flags), `env` and `forward`; `apply_template` merges
it under what the user gave (see its docstring).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import TetherError, did_you_mean
from ..fileformats import toml_module
from .mpi import FLAVOURS
from .spec import LaunchSpec

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_KEYS = (
    "description",
    "scheduler",
    "launcher",
    "mpi",
    "ppn",
    "cpu-bind",
    "args",
    "env",
    "forward",
)
_TYPES: dict[str, type] = {
    "description": str,
    "scheduler": str,
    "launcher": str,
    "mpi": str,
    "ppn": int,
    "cpu-bind": str,
    "args": list,
    "env": dict,
    "forward": list,
}


def template_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.toml"))


def template_path(name: str) -> Path:
    """A shipped template by name, or a TOML file by path."""
    if name.endswith(".toml") or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise TetherError(f"template file {name} does not exist")
        return path
    path = TEMPLATES_DIR / f"{name}.toml"
    if not path.is_file():
        hint = did_you_mean(name, template_names())
        raise TetherError(
            f"no launch template {name!r}",
            (f"did you mean {hint!r}? " if hint else "")
            + "see `tether launch --list-templates`, or give a path to a .toml file",
        )
    return path


def load_template(name: str) -> dict[str, Any]:
    path = template_path(name)
    try:
        data: dict[str, Any] = toml_module().loads(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise TetherError(f"template {path}: {exc}")
    unknown = sorted(set(data) - set(TEMPLATE_KEYS))
    if unknown:
        raise TetherError(
            f"template {path}: unknown key {unknown[0]!r}",
            f"known keys: {', '.join(TEMPLATE_KEYS)}",
        )
    for key, value in data.items():
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
            raise TetherError(f"template {path}: {key} must be a {_TYPES[key].__name__}")
    return data


def apply_template(spec: LaunchSpec, name: str) -> LaunchSpec:
    """The template's values under the user's: a flag the user gave wins; launcher args from
    the template come first; env merges with the user's values winning."""
    t = load_template(name)
    if "mpi" in t and t["mpi"] not in FLAVOURS:
        raise TetherError(f"template {name}: mpi {t['mpi']!r} is not one of {list(FLAVOURS)}")
    return spec.replace(
        launcher=spec.launcher or t.get("launcher"),
        mpi=spec.mpi or t.get("mpi"),
        ppn=spec.ppn if spec.ppn is not None else _template_ppn(spec, t),
        cpu_bind=spec.cpu_bind or t.get("cpu-bind"),
        extra_args=[*(str(a) for a in t.get("args", [])), *spec.extra_args],
        env={**{k: str(v) for k, v in t.get("env", {}).items()}, **spec.env},
        forward=list(dict.fromkeys([*(str(f) for f in t.get("forward", [])), *spec.forward])),
    )


def _template_ppn(spec: LaunchSpec, t: dict[str, Any]) -> int | None:
    ppn = t.get("ppn")
    if ppn is None:
        return None
    # -n with --nhosts already fixes the ranks per host: the template's default steps aside.
    if spec.nprocs is not None and spec.nhosts is not None:
        return None
    return int(ppn)


def template_summaries() -> list[tuple[str, str]]:
    return [(n, str(load_template(n).get("description", ""))) for n in template_names()]


def template_table() -> list[str]:
    """`tether launch --list-templates`: one line per shipped template, name and description."""
    rows = template_summaries()
    width = max((len(name) for name, _ in rows), default=0)
    return [f"{name:<{width}}  {description}" for name, description in rows]
