"""Fuzz task files (`--tasks FILE` of a batch of tasks): YAML, JSON and plain lines, anchors and
aliases refused. Every answer is data or one ConfigError line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.batches.tasks import read_tasks_file
from tether.errors import ConfigError

from ._support import VALUE

TEXTS = ["- &a {lr: *a}\n", "- &a 1\n- *a\n", "[1, 2", "9" * 5000 + "\n", "{a: 1}", "", "- [" * 50]


def read(path: Path) -> None:
    try:
        read_tasks_file(str(path))
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("suffix", [".yaml", ".json", ".txt"])
def test_listed_task_files(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"tasks{suffix}"
    path.write_text(text)
    read(path)
    if text.startswith("- &a") and suffix == ".yaml":
        with pytest.raises(ConfigError, match="anchors and aliases are not allowed"):
            read_tasks_file(str(path))


@settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(VALUE, max_size=4), suffix=st.sampled_from([".yaml", ".json", ".txt"]))
def test_fuzz_task_files(tmp_path: Path, lines: list[str], suffix: str) -> None:
    path = tmp_path / f"tasks{suffix}"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    read(path)
