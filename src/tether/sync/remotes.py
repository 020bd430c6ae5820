"""Remotes: named places runs are pushed to and pulled from (`tether remote add|list|remove`).

A remote is a plain folder (an absolute or relative path, `~/...`, or `file:///...`) or an
rclone remote (`NAME:path`, the remote defined in rclone's own config or its environment
variables, RCLONE_CONFIG_<NAME>_TYPE and so on). Remotes of a project live in its tether.toml
under `[remotes]` (NAME = "URL"); remotes outside a project live in the user config,
`$XDG_CONFIG_HOME/tether/remotes.toml` (default ~/.config/tether/remotes.toml), in the same
form. A project's remote hides a user one of the same name.

Credentials never go into these files: a URL holding a password, a key or a token is refused,
with a hint to define an rclone remote instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, TetherError
from ..fileformats import toml_module
from ..fsio import atomic_write_text
from ..workspace import find_project_file

SECTION = "remotes"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}$")
# `user:pass@host`, `?key=...`, `access_key_id=...`: what a credential looks like in a URL.
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")
_SECRET_WORDS = re.compile(
    r"(pass(word)?|secret|token|key|access_key_id|secret_access_key|sas_url|"
    r"account_key|session_token|credentials?|auth)\s*=",
    re.IGNORECASE,
)
_RCLONE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_. -]*?):(.*)$")
_HINT = (
    "define an rclone remote (`rclone config`, or RCLONE_CONFIG_<NAME>_TYPE and friends in "
    "the environment) and give `NAME:path`"
)


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    scope: str  # project | user
    source: Path  # the file that defines it

    @property
    def is_folder(self) -> bool:
        return is_folder_url(self.url)

    def folder(self, base: Path | None = None) -> Path:
        """The folder of a folder remote (relative paths from the defining file's folder)."""
        return folder_path(self.url, base or self.source.parent)


def is_folder_url(url: str) -> bool:
    if url.startswith("file://"):
        return True
    if url.startswith(("/", "./", "../", "~")) or url in (".", ".."):
        return True
    return _RCLONE.match(url) is None


def folder_path(url: str, base: Path) -> Path:
    text = url[len("file://") :] if url.startswith("file://") else url
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise TetherError(
            f"remote name {name[:40]!r} is not one tether takes",
            "use a letter, then letters, digits, '-' or '_' (at most 64)",
        )


def check_url(url: str) -> None:
    """Refuse an empty URL and one that carries a credential (one line, with the hint)."""
    if not url.strip():
        raise TetherError("remote URL is empty", "give a folder path or an rclone `NAME:path`")
    if _USERINFO.search(url) or _SECRET_WORDS.search(url):
        raise TetherError(
            "remote URL holds a password or key: tether never writes credentials to "
            "tether.toml or its user config",
            _HINT,
        )
    if "\n" in url or '"' in url or "\\" in url:
        raise TetherError(
            f"remote URL {url[:60]!r} holds a quote, backslash or line break", "give a plain path"
        )


def user_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tether" / "remotes.toml"


def _read(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            data = toml_module().load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror})")
    except Exception as exc:  # tomllib.TOMLDecodeError, named without importing it
        raise ConfigError(f"{path} is not valid TOML ({exc})", "fix the file")
    table = data.get(SECTION) if isinstance(data, dict) else None
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: [{SECTION}] must be a table of NAME = "URL"')
    out: dict[str, str] = {}
    for name, url in table.items():
        if not isinstance(url, str):
            raise ConfigError(
                f"{path}: {SECTION}.{name}: expected a URL string, found {type(url).__name__}",
                'write NAME = "folder or rclone NAME:path"',
            )
        out[str(name)] = url
    return out


def project_toml(start: Path | None = None) -> Path | None:
    project = find_project_file(start)
    return project if project is not None and project.suffix == ".toml" else None


def list_remotes(start: Path | None = None) -> list[Remote]:
    """Every remote: the project's, then the user's not hidden by a project one."""
    out: dict[str, Remote] = {}
    project = project_toml(start)
    if project is not None:
        for name, url in _read(project).items():
            out[name] = Remote(name, url, "project", project)
    user = user_config()
    for name, url in _read(user).items():
        out.setdefault(name, Remote(name, url, "user", user))
    return list(out.values())


def get_remote(name_or_url: str, start: Path | None = None) -> Remote:
    """A remote by name; a folder path or an rclone `NAME:path` given instead is taken as is."""
    for remote in list_remotes(start):
        if remote.name == name_or_url:
            return remote
    if "/" in name_or_url or ":" in name_or_url or name_or_url.startswith((".", "~")):
        check_url(name_or_url)
        return Remote(name_or_url, name_or_url, "given", Path.cwd() / "_")
    names = [r.name for r in list_remotes(start)]
    from ..errors import did_you_mean  # noqa: PLC0415 (only on the failure path)

    close = did_you_mean(name_or_url, names) if names else None
    raise TetherError(
        f"no remote {name_or_url!r}" + (f" (remotes: {', '.join(names)})" if names else ""),
        f"did you mean {close!r}?" if close else "add one with `tether remote add NAME URL`",
    )


def add_remote(name: str, url: str, *, user: bool = False, start: Path | None = None) -> Remote:
    check_name(name)
    check_url(url)
    project = None if user else project_toml(start)
    if not user and project is None and find_project_file(start) is not None:
        raise TetherError(
            f"{find_project_file(start)} is not TOML: tether writes remotes only to tether.toml",
            "add it by hand under `remotes`, or pass --user",
        )
    path = project or user_config()
    if name in _read(path):
        raise TetherError(
            f"remote {name!r} already exists in {path}",
            f"`tether remote remove {name}` first",
        )
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _with_line(text, f'{name} = "{url}"'))
    return Remote(name, url, "project" if project else "user", path)


def remove_remote(name: str, *, start: Path | None = None) -> Remote:
    for remote in list_remotes(start):
        if remote.name == name:
            text = remote.source.read_text(encoding="utf-8")
            new = _without(text, name)
            if new == text:
                raise TetherError(
                    f'remote {name!r} in {remote.source} is not a `NAME = "URL"` line of '
                    f"[{SECTION}]",
                    "remove it by hand",
                )
            atomic_write_text(remote.source, new)
            return remote
    raise TetherError(f"no remote {name!r}", "see `tether remote list`")


_HEADER = re.compile(r"^\s*\[\s*" + SECTION + r"\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def _with_line(text: str, line: str) -> str:
    """`text` with `line` added to its [remotes] table (made at the end when missing); the rest
    of the file is left byte for byte as it was."""
    lines = text.splitlines(keepends=True)
    for i, current in enumerate(lines):
        if _HEADER.match(current.rstrip("\r\n")):
            end = i + 1
            while end < len(lines) and not _ANY_HEADER.match(lines[end]):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1  # before the blank lines that end the table
            return "".join([*lines[:end], line + "\n", *lines[end:]])
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return f"{text}{sep}[{SECTION}]\n{line}\n"


def _without(text: str, name: str) -> str:
    lines = text.splitlines(keepends=True)
    inside = False
    entry = re.compile(r"^\s*(" + re.escape(name) + r'|"' + re.escape(name) + r'")\s*=')
    for i, current in enumerate(lines):
        if _ANY_HEADER.match(current):
            inside = bool(_HEADER.match(current.rstrip("\r\n")))
            continue
        if inside and entry.match(current):
            return "".join(lines[:i] + lines[i + 1 :])
    return text
