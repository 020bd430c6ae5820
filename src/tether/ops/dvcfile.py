"""`dvcfile:` dependencies: the `outs` of a .dvc file (as `dvc add` writes it), read as run.lock
data records with the md5 DVC recorded (tether does not hash them again)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..lock import DataRecord

DVC_SUFFIX = ".dvc"
DVC_ALGO = "dvc-md5"  # the digest DVC wrote into the .dvc file (not one tether computed)


def read_dvc_outs(root: Path, dvc_rel: str, key_path: str) -> list[DataRecord]:
    """The `outs` of a .dvc file (paths relative to `root`): each needs `path` and `md5`, as
    `dvc add` writes them; a missing or malformed file is one TetherError naming it."""
    import yaml  # heavy: only an op with a dvcfile dependency reads YAML

    path = root / dvc_rel
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TetherError(
            f"{key_path}: {dvc_rel} does not exist in {root}",
            "a dvcfile dependency reads the .dvc file `dvc add` writes beside the data",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TetherError(f"{dvc_rel}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise TetherError(f"{dvc_rel}{where}: not valid YAML", "expected `outs:` entries") from None
    outs = data.get("outs") if isinstance(data, dict) else None
    if not isinstance(outs, list) or not outs:
        raise TetherError(
            f"{dvc_rel}: expected an `outs:` list, found {_shown(outs)}",
            "`dvc add DATA` writes one",
        )
    base = Path(dvc_rel).parent
    records = []
    for i, item in enumerate(outs):
        rel = item.get("path") if isinstance(item, dict) else None
        md5 = item.get("md5") if isinstance(item, dict) else None
        if not isinstance(rel, str) or not rel.strip() or not isinstance(md5, str) or not md5:
            raise TetherError(
                f"{dvc_rel}: outs[{i}]: expected `md5` and `path`, found {_shown(item)}",
                "`dvc add DATA` writes them",
            )
        joined = os.path.normpath((base / rel).as_posix()).replace(os.sep, "/")
        if joined.startswith("../") or joined == ".." or Path(rel).is_absolute():
            raise TetherError(f"{dvc_rel}: outs[{i}].path {rel!r} leads outside the project")
        size, files = item.get("size"), item.get("nfiles")
        records.append(
            DataRecord(
                path=joined,
                algo=DVC_ALGO,
                digest=md5,
                files=files if isinstance(files, int) else 1,
                bytes=size if isinstance(size, int) else 0,
            )
        )
    return records


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
