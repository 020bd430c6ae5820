"""The launch spec's rank arithmetic and hostfile parsing: bad input fails with the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.distributed.hostfile import parse_hostfile, read_hostfile
from tether.distributed.spec import LaunchSpec, counts
from tether.errors import TetherError

CMD = ["python", "train.py"]


def spec(**kw: object) -> LaunchSpec:
    return LaunchSpec(list(CMD), **kw)  # type: ignore[arg-type]


# -- validation of the request alone -----------------------------------------------------------
def test_inconsistent_combination_shows_the_arithmetic() -> None:
    with pytest.raises(TetherError) as err:
        spec(nprocs=8, ppn=3, nhosts=2)
    assert str(err.value).startswith("-n 8 does not fit -ppn 3 x --nhosts 2 = 6 ranks")
    assert "-ppn 4 for 8 ranks on 2 hosts" in str(err.value)
    assert err.value.exit_code == 2


def test_a_host_left_idle_is_an_error() -> None:
    with pytest.raises(TetherError, match=r"-n 4 leaves a host idle: -ppn 4 x 1 hosts = 4"):
        spec(nprocs=4, ppn=4, nhosts=2)


def test_a_partly_filled_last_host_is_fine() -> None:
    assert counts(spec(nprocs=7, ppn=4, nhosts=2), 2, None) == (7, 4, 2)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"nprocs": 0}, "-n 0 is not a positive whole number"),
        ({"ppn": -1}, "-ppn -1 is not a positive whole number"),
        ({"nhosts": 0}, "--nhosts 0 is not a positive whole number"),
        ({"launcher": "mpirun"}, "--launcher 'mpirun' is not one of mpiexec, srun, torchrun"),
        ({"nprocs": 1, "nhosts": 2}, "-n 1 cannot place a rank on each of --nhosts 2"),
    ],
)
def test_bad_values(kw: dict[str, object], message: str) -> None:
    with pytest.raises(TetherError, match=message):
        spec(**kw)


def test_no_command() -> None:
    with pytest.raises(TetherError, match="no command to launch"):
        LaunchSpec([])


def test_unknown_launcher_suggests_the_close_one() -> None:
    with pytest.raises(TetherError, match="did you mean 'srun'"):
        spec(launcher="sruns")


# -- counts: what is derived from what ----------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "available", "hint", "expected"),
    [
        ({"nprocs": 8, "ppn": 4}, 4, None, (8, 4, 2)),
        ({"nprocs": 8, "nhosts": 2}, 4, None, (8, 4, 2)),
        ({"ppn": 3, "nhosts": 2}, 2, None, (6, 3, 2)),
        ({"nprocs": 8}, 2, None, (8, 4, 2)),  # spread over the job's hosts
        ({"nprocs": 2}, 4, None, (2, 1, 2)),  # fewer ranks than hosts: one per host
        ({"ppn": 2}, 3, None, (6, 2, 3)),  # every host
        ({}, 2, 4, (8, 4, 2)),  # the scheduler's ranks per host
        ({}, 1, None, (1, 1, 1)),  # nothing said, one machine: one rank
        ({"nhosts": 1}, 2, 3, (3, 3, 1)),
    ],
)
def test_counts(
    kw: dict[str, int], available: int, hint: int | None, expected: tuple[int, int, int]
) -> None:
    assert counts(spec(**kw), available, hint) == expected


def test_more_hosts_than_the_job_has() -> None:
    with pytest.raises(TetherError) as err:
        counts(spec(nprocs=8, ppn=2), 1, None)
    assert "8 ranks at 2 per host need 4 hosts, but only 1 is known" in str(err.value)
    assert "--hostfile" in str(err.value)


def test_more_ranks_than_slots_names_the_numbers() -> None:
    with pytest.raises(TetherError) as err:
        counts(spec(nprocs=10), 2, 4, {"a": 4, "b": 4})
    assert str(err.value).startswith("-n 10 is more than the 8 slots of 2 hosts (a:4, b:4)")


def test_ranks_per_host_over_a_hosts_slots() -> None:
    with pytest.raises(TetherError, match=r"-ppn 3 does not fit the hostfile: a gets 3 ranks"):
        counts(spec(nprocs=6, ppn=3), 2, None, {"a": 2, "b": 6})
    # 6 ranks at 4 per host: b gets 2, which fits its 2 slots.
    assert counts(spec(nprocs=6, ppn=4), 2, None, {"a": 4, "b": 2}) == (6, 4, 2)


# -- hostfiles -----------------------------------------------------------------------------------
def test_hostfile_blank_lines_comments_duplicates_and_slots() -> None:
    text = """
# the job's hosts

node01            # a trailing comment
node02 slots=4
node01
node03:2
node04 max_slots=8
"""
    hf = parse_hostfile(text)
    assert hf.hosts == ["node01", "node02", "node03", "node04"]
    assert hf.slots == {"node01": 2, "node02": 4, "node03": 2, "node04": 1}
    assert hf.total_slots == 9
    assert hf.duplicates == ["node01"]
    assert hf.lines == 5


def test_a_plain_host_list_says_nothing_about_slots() -> None:
    hf = parse_hostfile("a\nb\nc\n")
    assert hf.hosts == ["a", "b", "c"]
    assert hf.slots is None and hf.total_slots is None


def test_a_pbs_nodefile_lists_a_host_once_per_slot() -> None:
    hf = parse_hostfile("x1\nx1\nx1\nx2\nx2\nx2\n")
    assert hf.slots == {"x1": 3, "x2": 3}


def test_repeated_slot_lines_add_up() -> None:
    assert parse_hostfile("a slots=2\na slots=2\n").slots == {"a": 4}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a slots=four\n", r"hostfile:1: cannot read 'a slots=four'"),
        ("a\nb banana\n", r"hostfile:2: cannot read 'b banana'"),
        ("a slots=0\n", r"hostfile:1: a has 0 slots"),
    ],
)
def test_malformed_hostfile_lines(text: str, message: str) -> None:
    with pytest.raises(TetherError, match=message):
        parse_hostfile(text)


def test_missing_hostfile(tmp_path: Path) -> None:
    with pytest.raises(TetherError, match=r"hostfile .*nope does not exist"):
        read_hostfile(tmp_path / "nope")


def test_empty_hostfile(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(TetherError, match="lists no hosts"):
        read_hostfile(path)


def test_hostfile_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(TetherError, match="is a folder"):
        read_hostfile(tmp_path)
