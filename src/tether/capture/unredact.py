"""Getting redacted values back, for the commands that run a recorded run again: `tether
reproduce`, `tether run --restart`, `--retry-failed` of a batch and the workers of an
operation's batch. Each redacted key's value comes from `TETHER_SECRET_<KEY>`, else from a
prompt when a terminal is there; its keyed hash must match the record's (capture.secrets), or
it is used with a warning."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import TetherError
from .secrets import env_name, is_token, key_path, redacted_keys, reveal, token


def _typed(text: str) -> list[Any]:
    """What a value given as text may have been: the text, or the number it spells."""
    candidates: list[Any] = [text]
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            candidates.append(kind(text))
    return candidates


class Recovered:
    """The real values of a record's redacted tokens, by token."""

    def __init__(self, values: dict[str, Any], warnings: list[str]) -> None:
        self.values = values
        self.warnings = warnings

    def reveal(self, obj: Any) -> Any:
        """`obj` (a config, flags, a word) with the tokens replaced by the real values."""
        return reveal(obj, self.values)


def recover(
    records: Iterable[Any],
    run: str,
    ask: Callable[[str], str] | None = None,
) -> Recovered:
    """The real values of the tokens in `records` (configs, flags), asked for by dotted key:
    `TETHER_SECRET_<KEY>`, else `ask(prompt)` (None: not interactive, and a missing value is a
    TetherError naming the variable to set). A value whose hash differs from the record's is
    used with a warning (another key file, or another value)."""
    recovered = Recovered({}, [])
    for record in records:
        for key, recorded in redacted_keys(record):
            if recorded in recovered.values:
                continue
            name = env_name(key)
            text = os.environ.get(name)
            if text is None and ask is not None:
                text = ask(f"value of {key} (redacted in run {run}; or set {name}): ")
            if text is None:
                raise TetherError(
                    f"run {run} recorded {key} redacted: set {name} to its value",
                    "or run tether reproduce from a terminal to be asked",
                )
            if not is_token(recorded):
                # A credential inside a longer text: the whole value is asked for.
                recovered.values[recorded] = text
                continue
            value = next((c for c in _typed(text) if token(c) == recorded), None)
            if value is None:
                value = text
                recovered.warnings.append(
                    f"{name} does not match the value run {run} recorded for {key} "
                    f"(another value, or another {key_path()}): used as given"
                )
            recovered.values[recorded] = value
    return recovered


def terminal_prompt() -> Callable[[str], str] | None:
    """A prompt for a missing value when stdin is a terminal (the answer is not echoed)."""
    try:
        interactive = os.isatty(0)
    except OSError:
        interactive = False
    if not interactive:
        return None

    def ask(prompt: str) -> str:
        import getpass  # noqa: PLC0415 (only when a value is asked for)

        return getpass.getpass(prompt)

    return ask


def declared_for(records: Iterable[Any]) -> list[str]:
    """The keys redacted in `records`, as declarations (list items by their list's key): a
    re-run redacts them again even where nothing else declares them."""
    keys: list[str] = []
    for record in records:
        for key, _ in redacted_keys(record):
            parts = [p for p in key.split(".") if not p.isdigit()]
            name = ".".join(parts)
            if name and name not in keys:
                keys.append(name)
    return keys
