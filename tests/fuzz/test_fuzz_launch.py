"""Fuzz the options of `tether launch --dry-run` in-process: nothing is launched, and every
answer is exit 0, or exit 2 with one error line and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._support import VALUE, call, chdir

OPTIONS = [
    "-n", "-ppn", "--nhosts", "--hostfile", "--cpu-bind", "--launcher", "--mpi", "--scheduler",
    "--template", "--env", "--idle-timeout", "--retries", "--backoff", "--label", "--tag",
]  # fmt: skip
NUMBERS = ["0", "-1", "1", "2", "99999999999999999999999", "9" * 5000, "1.5", "nan", "x"]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TETHER_DEBUG", raising=False)
    monkeypatch.setenv("TETHER_RUNS", str(tmp_path / "runs"))
    (tmp_path / "hosts").write_text("a slots=2\nb slots=x\n")
    return tmp_path


option = st.tuples(st.sampled_from(OPTIONS), st.one_of(st.sampled_from(NUMBERS), VALUE))


@settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(options=st.lists(option, max_size=3))
def test_fuzz_launch_options(work: Path, options: list[tuple[str, str]]) -> None:
    argv = ["launch", "--dry-run", *[w for pair in options for w in pair], "--", "true"]
    with chdir(work):
        call(argv)
