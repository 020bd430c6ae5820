"""capture.secrets and capture.unredact: which keys and values are secrets, the keyed hash,
redaction of configs, flags and command lines, and getting the values back (`tether
reproduce`)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.capture import secrets
from tether.capture.secrets import (
    DEFAULT_KEYS,
    SecretPolicy,
    env_name,
    is_token,
    looks_like_credential,
    policy,
    redact_argv,
    redact_config,
    redact_flat,
    redact_text,
)
from tether.capture.unredact import declared_for, recover
from tether.config.argv import parse_argv
from tether.errors import TetherError
from tether.fsio import current_umask, follow_umask

NONE = SecretPolicy()


@pytest.fixture(autouse=True)
def _fresh_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("TETHER_SECRETS", raising=False)
    secrets.forget_key()  # the key of this test's cache folder (conftest sets TETHER_CACHE_DIR)
    yield
    secrets.forget_key()


# -- which keys -------------------------------------------------------------------------------
DEFAULTS = [
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
]


def test_the_default_list_is_the_documented_one() -> None:
    assert set(DEFAULTS) == DEFAULT_KEYS


@pytest.mark.parametrize("key", DEFAULTS)
def test_every_default_key_is_a_secret_alone_prefixed_and_in_any_case(key: str) -> None:
    assert NONE.is_secret(key)
    assert NONE.is_secret(f"wandb.{key}")
    assert NONE.is_secret(f"a.b.c.{key}")
    assert NONE.is_secret(key.upper())
    assert NONE.is_secret(key.replace("_", "-"))  # --api-key spells api_key


@pytest.mark.parametrize(
    "key",
    [
        "rng_key",
        "sort_key",
        "eos_token",
        "bos_token",
        "token_budget",
        "max_tokens",
        "token",
        "key",
        "secret_sauce",
        "api_key_file",
        "password_min_length",
        "secrets_dir",
        "lr",
        "model.hidden",
    ],
)
def test_ordinary_keys_are_never_touched(key: str) -> None:
    assert not NONE.is_secret(key)
    config: dict[str, object] = {}
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[last] = "value-1234567"
    assert redact_config(config, NONE) == config


def test_declared_keys_match_the_whole_key_or_its_last_part() -> None:
    rules = policy(["token", "db.conn"])
    assert rules.is_secret("token") and rules.is_secret("hub.token")
    assert rules.is_secret("db.conn") and rules.is_secret("DB.Conn")
    assert not rules.is_secret("eos_token") and not rules.is_secret("token_budget")
    assert not rules.is_secret("other.db")


def test_declared_keys_come_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SECRETS", "pin, hub.user")
    rules = policy()
    assert rules.is_secret("pin") and rules.is_secret("hub.user") and not rules.is_secret("user")
    assert rules.env() == {"TETHER_SECRETS": "hub.user,pin"}


# -- which values -----------------------------------------------------------------------------
CREDENTIALS = [
    "sk-" + "Ab1" * 16,
    "sk-proj-" + "aB3_" * 10 + "Zz9",
    "sk-ant-api03-" + "Qw7e" * 20,
    "ghp_" + "a1B2" * 9,
    "gho_" + "Z9y8" * 9,
    "github_pat_" + "11ABCDEFG0" * 6,
    "hf_" + "AbCdEfGh12" * 3 + "Xy9k",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAY34FZKBOKMUTVV7A",
    "xoxb-1234567890-abcdefghij",
    "AIza" + "SyD-1234567890abcdefghijklmnopqrstu",
]
ORDINARY = [
    "sk-learn",
    "sk-learn-tutorial-notebook-for-beginners",  # long, but one case and no digits
    "hf_datasets_cache_directory_name",
    "hf_" + "a" * 40,
    "ghp_short123",
    "AKIA",
    "AKIAlowercase1234567",
    "/data/imagenet/train",
    "https://example.org/models/bert-base-uncased",
    "the quick brown fox jumps over the lazy dog",
    "0123456789abcdef0123456789abcdef",  # a digest is not a credential
]


@pytest.mark.parametrize("text", CREDENTIALS)
def test_credential_shaped_values_are_redacted_under_any_key(text: str) -> None:
    assert looks_like_credential(text)
    out = redact_config({"model": {"note": text}, "n": 1}, NONE)
    assert is_token(out["model"]["note"]) and out["n"] == 1
    inside = redact_config({"url": f"https://host/?key={text}&x=1"}, NONE)["url"]
    assert text not in inside and inside.startswith("https://host/?key=<redacted:")
    assert inside.endswith("&x=1")


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_values_are_not_credentials(text: str) -> None:
    assert not looks_like_credential(text)
    assert redact_config({"value": text}, NONE) == {"value": text}


# -- redaction ---------------------------------------------------------------------------------
def test_redact_config_hides_secrets_keeps_the_rest_and_copies() -> None:
    config = {
        "api_key": "SUPERSECRET123",
        "wandb": {"api_key": "w" * 12, "project": "p"},
        "password": 1234,
        "secret": {"a": "x1", "b": ["y1", "y2"]},
        "hf_token": None,  # nothing given
        "access_token": "???",
        "secret_key": "",
        "passwd": True,
        "rng_key": 7,
        "lr": 0.1,
    }
    before = repr(config)
    out = redact_config(config, NONE)
    assert repr(config) == before  # the caller's config is left as it was
    assert is_token(out["api_key"]) and is_token(out["wandb"]["api_key"])
    assert out["wandb"]["project"] == "p"
    assert is_token(out["password"])
    assert is_token(out["secret"]["a"]) and all(is_token(v) for v in out["secret"]["b"])
    assert (out["hf_token"], out["access_token"], out["secret_key"]) == (None, "???", "")
    assert out["passwd"] is True and out["rng_key"] == 7 and out["lr"] == 0.1
    assert redact_config(out, NONE) == out  # tokens stay themselves


def test_flags_by_dotted_name() -> None:
    out = redact_flat({"wandb.api_key": "abc", "token": "t", "lr": 1}, policy(["token"]))
    assert is_token(out["wandb.api_key"]) and is_token(out["token"]) and out["lr"] == 1


def test_command_lines() -> None:
    rules = policy(["other", "token"])
    argv = [
        "python",
        "train.py",
        "api_key=SUPERSECRET123",
        "+wandb.api_key=W123456",
        "--secret",
        "other",
        "other=hello",
        "--token",
        "abc",
        "--password=pw",
        "--api-key",
        "zzz",
        "lr=0.1",
        "--sort-key",
        "name",
    ]
    out = redact_argv(argv, rules)
    assert out[:2] == ["python", "train.py"]
    assert out[2].startswith("api_key=<redacted:") and out[3].startswith("+wandb.api_key=<red")
    assert out[4:6] == ["--secret", "other"]  # a declaration names a key: it stays
    assert out[6].startswith("other=<redacted:")
    assert out[7] == "--token" and is_token(out[8])
    assert out[9].startswith("--password=<redacted:")
    assert out[10] == "--api-key" and is_token(out[11])
    assert out[12:] == ["lr=0.1", "--sort-key", "name"]
    # another program's --secret takes a value
    assert is_token(redact_argv(["--secret", "s3cr3t"], NONE, declarations=False)[1])


def test_a_value_redacted_once_is_redacted_wherever_it_shows() -> None:
    out = redact_config({"api_key": "SUPERSECRET123"}, NONE)
    assert redact_text("curl -H 'auth: SUPERSECRET123' host") == (
        f"curl -H 'auth: {out['api_key']}' host"
    )
    assert redact_argv(["--header", "SUPERSECRET123"], NONE) == ["--header", out["api_key"]]


def test_a_word_gets_the_token_of_its_typed_value() -> None:
    flags = redact_flat({"pin": 1234}, policy(["pin"]))
    assert redact_argv(["pin=1234"], policy(["pin"])) == [f"pin={flags['pin']}"]


# -- the keyed hash ----------------------------------------------------------------------------
def test_the_hash_is_stable_for_one_key_file_and_differs_across_key_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "a"))
    first = secrets.token("hunter2")
    key_file = tmp_path / "a" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secrets.forget_key()
    assert secrets.token("hunter2") == first  # read back from the file
    assert secrets.token("hunter3") != first
    assert secrets.token(1234) != secrets.token("1234")  # the type counts
    secrets.forget_key()
    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "b"))
    assert secrets.token("hunter2") != first
    assert b"hunter2" not in key_file.read_bytes()


def test_the_key_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    secrets.token("x")
    assert (tmp_path / "xdg" / "tether" / "secret.key").is_file()


def test_a_cache_that_cannot_be_written_gives_a_key_for_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TETHER_CACHE_DIR", str(blocker / "cache"))
    made = secrets.token("hunter2")
    assert is_token(made) and secrets.token("hunter2") == made
    secrets.forget_key()
    assert secrets.token("hunter2") != made  # another process, another key


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    code = "from tether.capture import secrets; print(secrets.token('v'))"
    env = {**os.environ, "TETHER_CACHE_DIR": str(tmp_path / "c")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = {p.communicate()[0].strip() for p in procs}
    assert len(outs) == 1 and all(p.returncode == 0 for p in procs)


# -- getting the values back -------------------------------------------------------------------
def test_env_names() -> None:
    assert env_name("api_key") == "TETHER_SECRET_API_KEY"
    assert env_name("wandb.api_key") == "TETHER_SECRET_WANDB_API_KEY"
    assert env_name("hub-token") == "TETHER_SECRET_HUB_TOKEN"


def test_recover_from_the_environment_with_types(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = redact_config({"api_key": "SUPERSECRET123", "password": 1234, "lr": 1}, NONE)
    monkeypatch.setenv("TETHER_SECRET_API_KEY", "SUPERSECRET123")
    monkeypatch.setenv("TETHER_SECRET_PASSWORD", "1234")
    got = recover([recorded], "r1")
    assert got.reveal(recorded) == {"api_key": "SUPERSECRET123", "password": 1234, "lr": 1}
    assert got.warnings == []
    word = redact_argv(["api_key=SUPERSECRET123"], NONE)[0]
    assert got.reveal(word) == "api_key=SUPERSECRET123"


def test_recover_asks_and_else_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = redact_config({"wandb": {"api_key": "k-123456"}}, NONE)
    with pytest.raises(TetherError) as err:
        recover([recorded], "r1")
    assert "set TETHER_SECRET_WANDB_API_KEY" in str(err.value)
    assert "\n" not in str(err.value)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "k-123456"

    got = recover([recorded], "r1", ask)
    assert got.reveal(recorded) == {"wandb": {"api_key": "k-123456"}}
    assert len(asked) == 1 and "wandb.api_key" in asked[0]


def test_a_value_that_does_not_match_is_used_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = redact_config({"api_key": "right"}, NONE)
    monkeypatch.setenv("TETHER_SECRET_API_KEY", "wrong")
    got = recover([recorded], "r1")
    assert got.reveal(recorded) == {"api_key": "wrong"}
    assert "does not match" in got.warnings[0] and "TETHER_SECRET_API_KEY" in got.warnings[0]


def test_declared_for_names_the_redacted_keys() -> None:
    recorded = redact_config({"a": {"password": "p" * 8}, "secret": ["x", "y"]}, NONE)
    assert declared_for([recorded]) == ["a.password", "secret"]


# -- declarations on the command line and in the project file ----------------------------------
def test_the_secret_option_of_a_decorated_main() -> None:
    args = parse_argv(["api_key=1", "--secret", "other", "--secret=third", "other=2"])
    assert args.secrets == ["other", "third"]
    assert args.overrides == ["api_key=1", "other=2"]


def test_project_file_secrets(tmp_path: Path) -> None:
    from tether.project.messages import ProjectError
    from tether.project.parse import parse_project_file

    good = tmp_path / "good" / "tether.toml"
    good.parent.mkdir()
    good.write_text('secrets = ["token", "hub.pass"]\n[ops.a]\nexec = "true"\n')
    project = parse_project_file(good)
    assert project.secrets == ["token", "hub.pass"] and project.warnings == []
    assert secrets.project_secrets(good.parent) == ["token", "hub.pass"]
    bad = tmp_path / "bad" / "tether.toml"
    bad.parent.mkdir()
    bad.write_text('secrets = "token"\n[ops.a]\nexec = "true"\n')
    with pytest.raises(ProjectError) as err:
        parse_project_file(bad)
    assert "secrets" in str(err.value) and "a list of config key names" in str(err.value)


# -- files follow the umask --------------------------------------------------------------------
def test_current_umask_reads_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
    finally:
        os.umask(old)


def test_follow_umask(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o600)
    old = os.umask(0o002)
    try:
        follow_umask(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    follow_umask(tmp_path / "missing")  # nothing to change: no error
