"""Bad input through the real CLI and a real decorated script: exit code 2, one line on stderr
that names the file, key or value, no traceback, and no run left behind. TETHER_DEBUG=1 shows
the traceback instead."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ._support import TIMEOUT, World, wait_for

pytestmark = pytest.mark.integration

CONF = """\
learning_rate: 0.1
lr: 0.01
epochs: 3
model:
  depth: 2
  name: mlp
"""

# Line 3 is indented under a scalar: "mapping values are not allowed here".
BAD_YAML = """\
learning_rate: 0.1
lr: 0.01
  epochs: 3
"""


@pytest.fixture
def train(world: World) -> Path:
    """train.py with conf.yaml beside it, in the test's working folder."""
    script = world.script("train.py")
    (world.work / "conf.yaml").write_text(CONF)
    return script


def assert_one_line_error(proc: object, *names: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr naming each of `names`."""
    rc, out, err = proc.returncode, proc.stdout, proc.stderr  # type: ignore[attr-defined]
    assert rc == 2, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err, err
    assert out == "", f"stdout should be empty: {out!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"stderr is not one line: {err!r}"
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


def assert_no_runs(world: World) -> None:
    assert world.run_dirs() == [], "bad input must not leave a run behind"


# -- config mistakes in a decorated script ----------------------------------------------------
@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["nothere.yaml"], ["nothere.yaml", "not found"]),
        (["--config", "missing/cfg.yaml"], ["missing/cfg.yaml", "not found"]),
        (["lr=abc"], ["'lr'", "abc", "number"]),
        (["model=3"], ["'model'", "3", "mapping"]),
        (["epochs=true"], ["'epochs'", "True"]),
        (["model.depht=3"], ["'model.depht'", "'model.depth'"]),
        (["lerning_rate"], ["'lerning_rate'"]),
        (["--lerning-rate", "0.1"], ["'--lerning-rate'"]),
        (["model=@nofile.yaml"], ["nofile.yaml", "'model'"]),
        (["--experiment", "modle"], ["'modle'", "'model'"]),
    ],
    ids=[
        "missing-file",
        "missing-config-option",
        "wrong-type",
        "scalar-for-mapping",
        "bool-for-number",
        "unknown-nested-key",
        "not-an-override",
        "unknown-option",
        "missing-merge-file",
        "unknown-experiment",
    ],
)
def test_config_mistake_is_one_line(
    world: World, train: Path, args: list[str], names: list[str]
) -> None:
    assert_one_line_error(world.python(train, *args), *names)
    assert_no_runs(world)


def test_unknown_key_suggests_the_right_one(world: World, train: Path) -> None:
    line = assert_one_line_error(world.python(train, "lerning_rate=0.5"))
    assert line == "tether: error: unknown config key 'lerning_rate'; did you mean 'learning_rate'?"
    assert_no_runs(world)


def test_yaml_syntax_error_names_file_and_line(world: World, train: Path) -> None:
    (world.work / "bad.yaml").write_text(BAD_YAML)
    line = assert_one_line_error(world.python(train, "bad.yaml"), "bad.yaml:3:", "YAML")
    assert "mapping values are not allowed" in line
    assert_no_runs(world)


def test_missing_default_config_names_it(world: World) -> None:
    script = world.script("train.py")  # no conf.yaml beside it
    assert_one_line_error(world.python(script), "conf.yaml", "not found")
    assert_no_runs(world)


def test_unknown_key_in_overrides_file(world: World, train: Path) -> None:
    (world.work / "over.yaml").write_text("model:\n  dept: 4\n")
    assert_one_line_error(
        world.python(train, "--overrides-path", "over.yaml"), "'model.dept'", "over.yaml"
    )
    assert_no_runs(world)


def test_plus_new_key_is_accepted(world: World, train: Path) -> None:
    from tether.lock import read_lock

    proc = world.python(train, "+new_key=1", "lr=0.5")
    assert proc.returncode == 0, proc.stderr
    assert "learning_rate=0.1 lr=0.5 new=1" in proc.stdout
    (run_dir,) = world.run_dirs()
    config = read_lock(run_dir).config
    assert config["new_key"] == 1 and config["lr"] == 0.5
    # ...while the same key without `+` is still refused.
    assert_one_line_error(world.python(train, "other_key=1"), "'other_key'")


# -- the runs root cannot be used -------------------------------------------------------------
def _root_under_a_file(world: World) -> str:
    blocker = world.tmp / "x" / "file"
    blocker.parent.mkdir()
    blocker.write_text("a regular file, not a folder\n")
    return str(blocker / "runs")


def test_runs_root_under_a_file_script(world: World, train: Path) -> None:
    root = _root_under_a_file(world)
    proc = world.python(train, env={"TETHER_RUNS": root})
    assert_one_line_error(proc, root)


@pytest.mark.parametrize("command", [["runs"], ["runs", "reindex"], ["show", "1"]])
def test_runs_root_under_a_file_cli(world: World, command: list[str]) -> None:
    root = _root_under_a_file(world)
    assert_one_line_error(world.tether(*command, env={"TETHER_RUNS": root}), root)
    assert_one_line_error(world.tether("--runs-dir", root, *command), root)


def test_read_only_runs_root(world: World, train: Path) -> None:
    if os.geteuid() == 0:
        # root writes into 0o500 folders anyway; sysfs refuses even root.
        root = Path("/sys/fs/tether-runs-test")
        assert_one_line_error(world.python(train, env={"TETHER_RUNS": str(root)}), str(root))
        return
    root = world.tmp / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        assert_one_line_error(world.python(train, env={"TETHER_RUNS": str(root)}), str(root))
        assert_one_line_error(world.tether("runs", env={"TETHER_RUNS": str(root)}), str(root))
    finally:
        root.chmod(0o700)


# -- RUN references ---------------------------------------------------------------------------
def test_run_not_found(world: World, train: Path) -> None:
    assert world.python(train).returncode == 0
    assert_one_line_error(world.tether("show", "zzzz"), "'zzzz'")
    assert_one_line_error(world.tether("show", "7"), "7")


def test_no_runs_at_all(world: World) -> None:
    assert_one_line_error(world.tether("show", "zzzz"), "'zzzz'")


def _common_prefix(ids: list[str]) -> str:
    first, last = min(ids), max(ids)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    prefix = first[:n]
    assert len(prefix) >= 4, ids
    return prefix


def _shows_each_apart(line: str, ids: list[str]) -> None:
    """Each candidate appears as a prefix that selects it and no other candidate."""
    words = {w.strip(",;:()") for w in line.split()}
    for rid in ids:
        own = [w for w in words if len(w) >= 4 and rid.startswith(w)]
        apart = [w for w in own if not any(o.startswith(w) for o in ids if o != rid)]
        assert apart, f"candidate {rid} cannot be told apart in: {line}"


def test_ambiguous_prefix_lists_candidates(world: World, train: Path) -> None:
    for _ in range(3):
        assert world.python(train).returncode == 0
    listed = world.listing()
    ids = [r["id"] for r in listed]
    prefix = _common_prefix(ids)
    line = assert_one_line_error(world.tether("show", prefix), repr(prefix), "3 runs", "train")
    _shows_each_apart(line, ids)
    # The short id that `tether runs` shows picks one run.
    shown = json.loads(world.tether_ok("show", listed[1]["short_id"], "--json"))
    assert shown["id"] == ids[1]


MAKE_BATCH = """
import tether
from tether.store import open_store
store = open_store()
# Three ids made back to back, as a batch or parallel workers make them: same millisecond.
while True:
    locks = [store.new_lock("batch") for _ in range(3)]
    if len({lock.id[:13] for lock in locks}) == 1:
        break
for lock in locks:
    store.create(lock)
print(" ".join(lock.id for lock in locks))
"""


def test_ambiguous_prefix_of_runs_made_in_one_millisecond(world: World) -> None:
    """Runs created together share their whole 13-character time prefix; the candidates listed
    must still be told apart (as `tether runs` does with its short ids)."""
    script = world.work / "batch.py"
    script.write_text(MAKE_BATCH)
    made = world.python(script)
    assert made.returncode == 0, made.stderr
    ids = made.stdout.split()
    prefix = _common_prefix(ids)
    line = assert_one_line_error(world.tether("show", prefix), repr(prefix), "3 runs")
    _shows_each_apart(line, ids)


def test_ambiguous_name_prefix(world: World) -> None:
    script = world.work / "names.py"
    script.write_text(
        "import tether\n"
        "for name in ('train', 'trainer'):\n"
        "    with tether.start_run({}, name=name, snapshot=False):\n"
        "        pass\n"
    )
    assert world.python(script).returncode == 0
    assert_one_line_error(world.tether("show", "trai"), "'trai'", "(train)", "(trainer)")
    # An exact name picks the newest run of that name.
    assert '"name": "train"' in world.tether_ok("show", "train", "--json")


# -- the CLI's own usage mistakes -------------------------------------------------------------
def test_unknown_command_is_one_line(world: World) -> None:
    assert_one_line_error(world.tether("shwo", "1"), "'shwo'", "'show'")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["runs", "-n", "0"], ["'-n'", "0"]),
        (["runs", "--bogus"], ["'--bogus'"]),
        (["show"], ["'RUN'"]),
    ],
    ids=["bad-option-value", "unknown-option", "missing-argument"],
)
def test_cli_usage_mistake(world: World, args: list[str], names: list[str]) -> None:
    """Option and argument mistakes: exit 2, no traceback, one line that says what is wrong and
    where the help is."""
    proc = world.tether(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tether: error: ") and "--help" in lines[0], proc.stderr
    for name in names:
        assert name in lines[0], lines[0]


# -- TETHER_DEBUG=1 ---------------------------------------------------------------------------
def test_debug_shows_traceback_from_cli(world: World) -> None:
    proc = world.tether("show", "zzzz", env={"TETHER_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RunNotFound" in proc.stderr and "zzzz" in proc.stderr


def test_debug_shows_traceback_from_script(world: World, train: Path) -> None:
    proc = world.python(train, "lerning_rate=0.5", env={"TETHER_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr and "lerning_rate" in proc.stderr
    assert_no_runs(world)


def test_debug_off_values_mean_off(world: World, train: Path) -> None:
    """TETHER_DEBUG=0 is not debugging: the usual one line."""
    proc = world.python(train, "lerning_rate=0.5", env={"TETHER_DEBUG": "0"})
    assert_one_line_error(proc, "'lerning_rate'")


def test_debug_does_not_hang_a_failing_run_without_a_terminal(world: World) -> None:
    """With TETHER_DEBUG=1 a failing run opens pdb; with stdin closed (a batch job, CI) that
    must end instead of waiting for input."""
    script = world.script("exp_main.py")
    proc = world.popen(script, "mode=raise", env={"TETHER_DEBUG": "1"}, stdin=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None, "the failing run to end", timeout=TIMEOUT / 2)
    _, err = proc.communicate()
    assert proc.returncode != 0
    assert "ValueError: boom tok" in err


def test_an_argparse_style_option_names_the_override_meant(world: World, train: Path) -> None:
    line = assert_one_line_error(world.python(train, "--depth", "4"))
    assert line == (
        "tether: error: unknown option '--depth'; config keys are set as key=value: "
        "write model.depth=4"
    )
    line = assert_one_line_error(world.python(train, "--epochs=5"))
    assert line.endswith("write epochs=5")
    assert_no_runs(world)


def test_a_word_for_a_mapping_names_the_file_a_hydra_user_meant(world: World, train: Path) -> None:
    (world.work / "conf/model").mkdir(parents=True)
    (world.work / "conf/model/wide.yaml").write_text("depth: 8\n")
    line = assert_one_line_error(world.python(train, "model=wide"))
    assert line.endswith("; to merge that file, write model=@conf/model/wide.yaml")
    assert_no_runs(world)


def test_help_lists_the_batch_options(world: World, train: Path) -> None:
    proc = world.python(train, "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--task-to", "--tasks ", "--n-jobs", "--executor", "--retry-failed", "-m "):
        assert option in proc.stdout, option
