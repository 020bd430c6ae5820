"""Secrets in run records: the one place that decides what is a secret and how it is stored.

A value is a secret when its key is declared one (`experiment(secrets=[...])`, `secrets = [...]`
in tether.toml, `--secret KEY` on the command line, `TETHER_SECRETS` in the environment: a
declared name matches the whole dotted key or its last part), when the last part of its key is
in DEFAULT_KEYS (exactly, ignoring case: `wandb.api_key` is one, `rng_key` and `eos_token` are
not), or when it is shaped like a well-known credential (an OpenAI, GitHub, Hugging Face, AWS,
Slack or Google key). Such a value is recorded as `<redacted:HASH>`: HASH is an HMAC-SHA256
(16 hex digits) under a random key kept in the user's cache folder (`secret.key`), so equal
values give equal records (`--needed` and reproductions compare equal) while a weak secret
cannot be guessed from the record by hashing candidates.

Redaction is applied where a run's record is made (run.lock's config, flags and command, the
command line echoed into output.log, launch.json, the task pool of a batch); the index and the
sinks read those records. The user's code keeps the real values. `tether reproduce` gets them
back (capture.unredact): from `TETHER_SECRET_<KEY>` (the dotted key upper-cased, dots and
dashes as underscores) or a prompt.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import TetherError
from ..mounts import default_cache_dir
from ..patterns import LazyPattern
from ..workspace import find_project_file, read_project_data

# The last part of a key that makes its value a secret wherever it is (case-insensitive).
DEFAULT_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "api_key",
        "apikey",
        "access_key",
        "secret_key",
        "private_key",
        "auth_token",
        "access_token",
        "hf_token",
        "wandb_api_key",
        "aws_secret_access_key",
        "mlflow_tracking_password",
    }
)
DECLARED_ENV = "TETHER_SECRETS"  # comma-separated declared keys, inherited by what tether starts
VALUE_ENV_PREFIX = "TETHER_SECRET_"  # TETHER_SECRET_API_KEY: a redacted value, for reproduce
KEY_FILE = "secret.key"  # in the cache folder: the HMAC key
SECRET_FLAG = "--secret"  # declares a key on the command line of a decorated main / tether run
HASH_DIGITS = 16
_PREFIX = "<redacted:"
_TOKEN = LazyPattern(r"<redacted:([0-9a-f]{16})>")
MIN_EMBEDDED = 6  # a known secret shorter than this is replaced only as a whole word

_key: bytes | None = None  # the HMAC key, loaded at the first redaction
_known: dict[str, str] = {}  # secret text -> its token, seen by this process (argv, echoes)
_values: dict[str, Any] = {}  # token -> the value this process redacted


# -- what is a secret --------------------------------------------------------------------------
def _normal(key: str) -> str:
    return key.strip().lower().replace("-", "_")


class SecretPolicy:
    """The keys whose values are secrets, besides DEFAULT_KEYS (normalised: lower case, `_`).
    A plain class, not a dataclass: made on every run's start-up path (a dataclass costs half a
    millisecond to define)."""

    __slots__ = ("declared",)

    def __init__(self, declared: frozenset[str] = frozenset()) -> None:
        self.declared = declared

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretPolicy) and other.declared == self.declared

    def __hash__(self) -> int:
        return hash(self.declared)

    def __repr__(self) -> str:
        return f"SecretPolicy({sorted(self.declared)})"

    def is_secret(self, key: str) -> bool:
        """Whether the value at dotted `key` is a secret: a declared key (whole or last part),
        or a default key as the last part."""
        full = _normal(key)
        last = full.rpartition(".")[2]
        return last in DEFAULT_KEYS or full in self.declared or last in self.declared

    def plus(self, keys: Iterable[str]) -> SecretPolicy:
        more = {_normal(k) for k in keys if str(k).strip()}
        return self if more <= self.declared else SecretPolicy(self.declared | more)

    def env(self) -> dict[str, str]:
        """The environment that gives a process tether starts the same declared keys."""
        return {DECLARED_ENV: ",".join(sorted(self.declared))} if self.declared else {}


def policy(*declared: Iterable[str]) -> SecretPolicy:
    """DEFAULT_KEYS, the keys in TETHER_SECRETS and the `declared` ones."""
    keys: set[str] = {_normal(k) for k in os.environ.get(DECLARED_ENV, "").split(",") if k.strip()}
    for group in declared:
        keys.update(_normal(k) for k in group if str(k).strip())
    return SecretPolicy(frozenset(keys))


def check_key_names(keys: Iterable[Any], where: str) -> list[str]:
    """Declared secret keys as strings; a TetherError (one line) for one that is not a key."""
    out = []
    for key in keys:
        if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key.strip()):
            raise TetherError(
                f"{where}: {key!r} is not a config key",
                "give dotted key names, such as api_key or wandb.api_key",
            )
        out.append(key.strip())
    return out


# Credentials by shape: prefixes and lengths of the real formats, so ordinary words are not hit.
_SHAPES = (
    r"sk-[A-Za-z0-9_\-]{32,}",  # OpenAI / Anthropic (sk-proj-..., sk-ant-...)
    r"gh[pousr]_[A-Za-z0-9]{36,255}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{50,}",  # GitHub fine-grained tokens
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"(?:AKIA|ASIA)[A-Z0-9]{16}",  # AWS access key ids
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
)


@functools.cache
def _shapes() -> re.Pattern[str]:
    # Compiled at the first use: a run without long strings never needs it.
    return re.compile(r"(?<![A-Za-z0-9_\-])(?:" + "|".join(_SHAPES) + r")(?![A-Za-z0-9_\-])")


def _mixed(text: str) -> bool:
    """Random-looking: upper and lower case letters and a digit (`sk-` and `hf_` prefixes are
    also common in ordinary names: `sk-learn-...`, `hf_datasets_cache`)."""
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )


def _credentials(text: str) -> Iterator[re.Match[str]]:
    if len(text) < 20:
        return
    for m in _shapes().finditer(text):
        found = m.group(0)
        if found[:3] in ("sk-", "hf_") and not _mixed(found[3:]):
            continue
        yield m


def looks_like_credential(text: str) -> bool:
    """Whether `text` holds a value shaped like a well-known credential."""
    return any(True for _ in _credentials(text))


# -- the keyed hash ----------------------------------------------------------------------------
def key_path() -> Path:
    return default_cache_dir() / KEY_FILE


def _load_key() -> bytes:
    """The HMAC key of this user: read from the cache folder, created there (0600, atomically:
    of two creators one wins and both use its key) when missing. A cache folder that cannot be
    written gives a key for this process alone: records stay redacted, only equal values in
    runs of different processes no longer compare equal."""
    path = key_path()
    with contextlib.suppress(OSError, ValueError):
        key = _read_key(path)
        if key is not None:
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32).hex().encode("ascii") + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never over another process's key
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        key = _read_key(path)
        if key is not None:
            return key
    return os.urandom(32)


def _read_key(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    key = bytes.fromhex(text)
    if len(key) < 16:
        raise ValueError(f"{path}: too short a key")
    return key


def _hmac_key() -> bytes:
    global _key
    if _key is None:
        _key = _load_key()
    return _key


def forget_key() -> None:
    """Read the key file again at the next redaction (tests that change the cache folder)."""
    global _key
    _key = None
    _known.clear()
    _values.clear()


def _message(value: Any) -> bytes:
    # The type is part of what is hashed, so a reproduction can tell 1234 from "1234".
    if isinstance(value, str):
        return value.encode("utf-8")
    return f"{type(value).__name__}:{value}".encode()


def digest(value: Any) -> str:
    """The keyed hash of a secret value (16 hex digits)."""
    # 3 ms of start-up (OpenSSL) that a run with no secret never pays
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    return hmac.new(_hmac_key(), _message(value), hashlib.sha256).hexdigest()[:HASH_DIGITS]


def token(value: Any) -> str:
    """`<redacted:HASH>` for a secret value; this process remembers it, so the same text is
    redacted in a command line or an echo that shows it elsewhere."""
    if is_token(value):
        return str(value)
    made = f"{_PREFIX}{digest(value)}>"
    text = str(value)
    if text:
        _known[text] = made
        _values[made] = value
    return made


def reveal_known(obj: Any) -> Any:
    """`obj` with the tokens this process made replaced by their values again: the command an
    operation runs is filled from its run.lock's config, which holds tokens."""
    return reveal(obj, _values) if _values else obj


def reveal(obj: Any, values: Mapping[str, Any]) -> Any:
    """`obj` (a config, flags, a word) with the tokens in `values` replaced by their values."""
    if isinstance(obj, Mapping):
        return {k: reveal(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [reveal(v, values) for v in obj]
    if isinstance(obj, str) and _PREFIX in obj:
        if obj in values:
            return values[obj]
        return _TOKEN.sub(lambda m: str(values.get(m.group(0), m.group(0))), obj)
    return obj


def is_token(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def _redactable(value: Any) -> bool:
    """A value worth hiding: not None, not a flag, not empty or `???` (nothing given)."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, str):
        return value not in ("", "???") and not is_token(value)
    return isinstance(value, (int, float))


# -- redaction ---------------------------------------------------------------------------------
def _shaped(text: str) -> str:
    """`text` with its credential-shaped parts redacted."""
    found = list(_credentials(text))
    if not found:
        return text
    out, last = [], 0
    for m in found:
        out += [text[last : m.start()], token(m.group(0))]
        last = m.end()
    return "".join([*out, text[last:]])


def _redact_value(value: Any, secret: bool, key: str, rules: SecretPolicy) -> Any:
    if isinstance(value, Mapping):
        return _redact_mapping(value, rules, key, secret)
    if isinstance(value, (list, tuple)):
        return [_redact_value(v, secret, key, rules) for v in value]
    if secret:
        return token(value) if _redactable(value) else value
    if isinstance(value, str):
        return _shaped(value)
    return value


def _redact_mapping(
    config: Mapping[str, Any], rules: SecretPolicy, prefix: str = "", inherited: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out[k] = _redact_value(v, inherited or rules.is_secret(key), key, rules)
    return out


def redact_config(config: Mapping[str, Any], rules: SecretPolicy) -> dict[str, Any]:
    """A copy of a (nested) config with its secret values redacted: everything under a secret
    key, and credential-shaped text anywhere."""
    return _redact_mapping(config, rules)


def redact_flat(flags: Mapping[str, Any], rules: SecretPolicy) -> dict[str, Any]:
    """The same for flags by dotted name (run.lock `flags` of an operation)."""
    return {k: _redact_value(v, rules.is_secret(str(k)), str(k), rules) for k, v in flags.items()}


def _option_key(word: str) -> str | None:
    """`--api-key` -> `api_key`; None for what is not an option name."""
    if not word.startswith("-") or len(word) < 2 or word.startswith("---"):
        return None
    name = word.lstrip("-")
    return name if name and (name[0].isalpha() or name[0] == "_") else None


def redact_argv(
    argv: Iterable[str], rules: SecretPolicy, *, declarations: bool = True
) -> list[str]:
    """A command line with its secrets redacted: the values of `key=value` words and of
    `--key value` / `--key=value` options whose key is a secret, the secrets this process has
    redacted elsewhere, and credential-shaped text. With `declarations`, `--secret KEY` words
    (tether's own option) stay as they are: they name a key, not a value."""
    words = [str(w) for w in argv]
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if declarations and word == SECRET_FLAG and i < len(words):
            out += [word, words[i]]
            i += 1
            continue
        if declarations and word.startswith(SECRET_FLAG + "="):
            out.append(word)
            continue
        name, eq, value = word.partition("=")
        option = _option_key(name)
        key = option if option is not None else name.lstrip("+~")
        if eq and key and rules.is_secret(key):
            out.append(f"{name}={_word_token(value)}")
            continue
        if not eq and option is not None and rules.is_secret(option) and i < len(words):
            out += [word, _word_token(words[i])]
            i += 1
            continue
        out.append(redact_text(word))
    return out


def _word_token(text: str) -> str:
    """The token of a value given as a word: the one its typed value got in the config or the
    flags (`pin=1234` is the number 1234 there), so a reproduction fills both alike."""
    if not text:
        return text
    return _known.get(text) or token(text)


def redact_known(text: str) -> str:
    """Text with the secrets this process redacted so far replaced by their tokens, and nothing
    else touched: for what a run prints (a traceback quoting a secret), where matching the
    credential shapes on every line would cost too much. Free while no secret is known."""
    if not _known or not text:
        return text
    for secret, made in sorted(_known.copy().items(), key=lambda kv: -len(kv[0])):
        if len(secret) >= MIN_EMBEDDED and secret in text:
            text = text.replace(secret, made)
    return text


def redact_text(text: str) -> str:
    """Text (an echoed command, a message) with the secrets this process redacted so far and
    credential-shaped parts replaced by their tokens."""
    if _known and text:
        if text in _known:
            return _known[text]
        # a copy: another thread (a batch's workers) may be adding to it
        for secret, made in sorted(_known.copy().items(), key=lambda kv: -len(kv[0])):
            if len(secret) >= MIN_EMBEDDED and secret in text:
                text = text.replace(secret, made)
    return _shaped(text)


# -- the names redacted values go by -----------------------------------------------------------
def env_name(key: str) -> str:
    """The variable that gives the value of a redacted key: TETHER_SECRET_WANDB_API_KEY."""
    return VALUE_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def redacted_keys(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of the values holding tokens, in order (list items as `key.N`)."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out += redacted_keys(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for n, v in enumerate(obj):
            out += redacted_keys(v, f"{prefix}.{n}")
    elif isinstance(obj, str) and _PREFIX in obj and _TOKEN.search(obj):
        out.append((prefix, obj))
    return out


# -- the policy of a run -----------------------------------------------------------------------
def project_secrets(start: Path | None = None) -> list[str]:
    """`secrets = [...]` of the nearest project file (its checks are project.validate's)."""
    found = find_project_file(start)
    raw = read_project_data(found).get("secrets") if found is not None else None
    if not isinstance(raw, list):
        return []
    return [str(k) for k in raw if isinstance(k, str)]


def run_policy(declared: Iterable[str] = ()) -> SecretPolicy:
    """The secrets of a run made here: DEFAULT_KEYS, `declared` (the run's options and command
    line), TETHER_SECRETS and the project file's `secrets`."""
    return policy(declared, project_secrets())


def for_workers(items: list[Any], rules: SecretPolicy) -> tuple[list[Any], dict[str, str]]:
    """Items of a task pool (flags by name) with their secrets redacted, and the variables
    (`TETHER_SECRET_<KEY>`) that give workers the values back (`recover`): the pool is a file
    in the runs root, the environment of the workers is not."""
    redacted = [redact_flat(i, rules) if isinstance(i, Mapping) else i for i in items]
    env: dict[str, str] = {}
    for item in redacted:
        for key, recorded in redacted_keys(item) if isinstance(item, Mapping) else []:
            value = _values.get(recorded)
            if value is not None:
                env.setdefault(env_name(key), str(value))
    return redacted, env
