"""What `tether doctor` says of the remotes `tether push|pull|sync` would use: rclone on PATH
(and its version) for those that are not plain folders, and each folder remote present.

sync/ sits beside distributed/ in the layers, so this returns plain fields and cli/doctor.py
makes them a doctor check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TetherError
from .remotes import list_remotes
from .transport import RCLONE_HINT, rclone_version


@dataclass
class RemotesHealth:
    status: str  # ok | warn | fail
    summary: str
    remedy: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def remotes_health() -> RemotesHealth:
    try:
        remotes = list_remotes()
    except TetherError as exc:
        return RemotesHealth("fail", str(exc), "fix [remotes] in tether.toml or the user config")
    if not remotes:
        return RemotesHealth("ok", "none defined (tether remote add NAME URL)")
    details: dict[str, Any] = {r.name: r.url for r in remotes}
    needs_rclone = [r.name for r in remotes if not r.is_folder]
    version = rclone_version() if needs_rclone else None
    details["rclone"] = version
    if needs_rclone and version is None:
        return RemotesHealth(
            "fail", f"{', '.join(needs_rclone)}: rclone is not on PATH", RCLONE_HINT, details
        )
    missing = [r.name for r in remotes if r.is_folder and not r.folder().is_dir()]
    if missing:
        return RemotesHealth(
            "warn",
            f"folder remote {', '.join(missing)}: the folder does not exist yet",
            "the first push makes it; check the path if it should be there",
            details,
        )
    found = f"{len(remotes)} remote(s)" + (f", rclone {version}" if version else "")
    return RemotesHealth("ok", found, None, details)
