"""Errors a user can act on. The CLI prints them as one line and exits with their code."""

from __future__ import annotations


class TetherError(Exception):
    """Bad input or a state the user must fix: printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class ConfigError(TetherError):
    """A config file, key or value is wrong."""


class RunNotFound(TetherError):
    """No run matches what the user asked for."""


class AmbiguousRun(TetherError):
    """A prefix matches several runs."""


class StoreError(TetherError):
    """The runs root or a run folder cannot be used."""


def did_you_mean(word: str, candidates: list[str] | set[str] | tuple[str, ...]) -> str | None:
    import difflib  # noqa: PLC0415 (only when a suggestion is made)

    options = sorted(candidates)
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]  # only the case differs: model.c -> model.C
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def disk_full(path: object) -> str:
    """The one line for a write that found no space left (ENOSPC, SQLite's "disk is full")."""
    return f"disk full at {path}: free space and run `tether runs reindex`"


def is_disk_full(exc: BaseException) -> bool:
    import errno  # noqa: PLC0415 (only on a failure path)

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc) or "disk full at" in str(exc)
