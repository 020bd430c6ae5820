"""Fuzz the `tether` command line in-process: --where, --sort, --columns, RUN specs, operation
flags, batch files, project files and archive manifests. Every answer is exit 0, or exit 2 with
one error line and no traceback."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.ops import batch as batch_module

from ._support import VALUE, WORD, call, chdir

BOUNDED = settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
FIELDS = ["id", "name", "op", "status", "label", "tag", "started", "config.lr", "metrics.acc"]
TOKENS = [*FIELDS, "=", "!=", "<", ">=", "~", "and", "or", "not", "(", ")", "'x'", "1", "-", ","]
TOML = (
    "[ops.train]\n"
    'exec = "python train.py"\n'
    'config = [{lr = 0.1, epochs = 3, opt = {default = "adam", choices = ["adam", "sgd"]}}]\n'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TETHER_DEBUG", raising=False)
    monkeypatch.delenv("TETHER_RUNS", raising=False)
    monkeypatch.setenv("CI", "true")  # no prompts
    (tmp_path / "tether.toml").write_text(TOML)
    (tmp_path / "train.py").write_text("print('hi')\n")
    return tmp_path


expression = st.lists(st.one_of(st.sampled_from(TOKENS), VALUE), max_size=6).map(" ".join)


@BOUNDED
@given(text=expression, option=st.sampled_from(["--where", "--sort", "--columns"]))
def test_fuzz_query_options(project: Path, text: str, option: str) -> None:
    with chdir(project):
        call(["runs", option, text], multiline_ok=True)  # the caret lines follow the error


@pytest.mark.parametrize("spec", ["99999999999999999999999", "9" * 5000, "1:" + "9" * 5000, "0"])
def test_listed_run_specs(project: Path, spec: str) -> None:
    with chdir(project):
        code, _, err = call(["show", spec])
    assert code == 2 and len(err) < 400, err


@BOUNDED
@given(spec=st.one_of(VALUE, st.from_regex(r"[0-9:]{1,30}", fullmatch=True)))
def test_fuzz_run_specs(project: Path, spec: str) -> None:
    with chdir(project):
        call(["show", spec])


flag_word = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["lr", "epochs", "opt", "nope", ""]), VALUE),
    st.sampled_from(["--random", "--max-runs", "--seed", "99999999", "0", "-1", "--batch"]),
    WORD,
)


@BOUNDED
@given(words=st.lists(flag_word, max_size=5))
def test_fuzz_operation_flags(project: Path, words: list[str]) -> None:
    with chdir(project):
        call(["run", "train", *words, "--preview"])


def test_huge_random_preview_expands_only_what_it_shows(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    real = batch_module.iter_random_trials

    def counting(*a: object, **kw: object):
        for trial in real(*a, **kw):  # type: ignore[arg-type]
            drawn.append(trial)
            yield trial

    monkeypatch.setattr(batch_module, "iter_random_trials", counting)
    argv = ["run", "train", "lr=uniform(0,1)", "--random", "--max-runs", "99999999", "--preview"]
    with chdir(project):
        code, out, _ = call(argv)
    assert code == 0
    assert "batch: 99999999 trials (random)" in out and "... and 99999949 more" in out
    assert len(drawn) == 50
    with chdir(project):
        code, _, err = call(argv[:-1])
    assert code == 2 and "--yes" in err and "99999999" in err


BATCH_TEXTS = [
    "- &a {lr: *a}\n",
    "- &a {lr: 0.1}\n- *a\n",
    "[1, 2",
    "lr\n[1,2\n",
    '[{"lr": {"x": 1}}]',
    '{"lr": 1}',
    "lr,epochs\n1\n",
    "\ufeff",
    "",
]


@pytest.mark.parametrize("text", BATCH_TEXTS)
@pytest.mark.parametrize("suffix", [".csv", ".json", ".yaml"])
def test_listed_batch_files(project: Path, text: str, suffix: str) -> None:
    (project / f"b{suffix}").write_text(text)
    with chdir(project):
        code, _, err = call(["run", "train", "--batch", f"b{suffix}", "--preview"])
    if text.startswith("- &a") and suffix == ".yaml":
        assert code == 2 and "alias" in err, err


@BOUNDED
@given(
    text=st.one_of(st.sampled_from(BATCH_TEXTS), WORD, VALUE),
    suffix=st.sampled_from([".csv", ".json", ".yaml"]),
)
def test_fuzz_batch_files(project: Path, text: str, suffix: str) -> None:
    (project / f"b{suffix}").write_text(text)
    with chdir(project):
        call(["run", "train", "--batch", f"b{suffix}", "--preview"])


project_value = st.one_of(
    st.sampled_from(['"x"', "1", "[]", "{}", '["a", 1]', "{exec = 1}", "true", '"${x}"']), VALUE
)


@BOUNDED
@given(
    key=st.sampled_from(["exec", "config", "depends", "sourcecode", "needed", "output-scalars"]),
    value=project_value,
    name=st.sampled_from(["tether.toml", "tether.yaml", "tether.json"]),
)
def test_fuzz_project_files(project: Path, key: str, value: str, name: str) -> None:
    (project / "tether.toml").unlink(missing_ok=True)
    for other in ("tether.yaml", "tether.json"):
        (project / other).unlink(missing_ok=True)
    if name == "tether.toml":
        text = f'[ops.train]\nexec = "python train.py"\n{key} = {value}\n'
    elif name == "tether.yaml":
        text = f"ops:\n  train:\n    exec: python train.py\n    {key}: {value}\n"
    else:
        text = '{"ops": {"train": {"exec": "python train.py", ' + f'"{key}": {value}' + "}}}"
    (project / name).write_text(text)
    with chdir(project):
        call(["ops"], multiline_ok=True)  # one line per problem of the file
        call(["run", "train", "--preview"], multiline_ok=True)


def write_archive(path: Path, manifest: object) -> None:
    data = (manifest if isinstance(manifest, str) else json.dumps(manifest)).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


manifest_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.mark.parametrize("version", ["x", None, 1.5, [], 10**30, True])
def test_listed_archive_manifests(project: Path, version: object) -> None:
    write_archive(project / "a.tar.gz", {"format": "tether-archive", "version": version})
    with chdir(project):
        call(["archive", "import", "a.tar.gz"])


@BOUNDED
@given(
    fields=st.dictionaries(
        st.sampled_from(["format", "version", "runs", "snapshots", "bytes"]), manifest_value
    )
)
def test_fuzz_archive_manifests(project: Path, fields: dict[str, object]) -> None:
    write_archive(project / "a.tar.gz", {"format": "tether-archive", "version": 1, **fields})
    with chdir(project):
        call(["archive", "import", "a.tar.gz"])
