"""The override grammar against real hydra-core: each row of TABLE is composed by Hydra 1.3.2
(in a virtual environment of its own: hydra-core 1.3 needs omegaconf < 2.4, newer than the dev
environment's) and by tether, on the same config folder, and the two configs must be equal.

The Hydra side composes with `hydra.compose`, the engine `@hydra.main` runs, in one process for
the whole table. A row marked `differs` is a deliberate difference, documented in
docs/configuration.md ("Coming from Hydra"): there tether refuses loudly (one ConfigError
line) or does what the docs say, and the test checks that it does.

The environment is made once per Hydra version under the cache folder ($XDG_CACHE_HOME or
~/.cache, `tether-tests/hydra-core-VERSION`) and reused; making it needs PyPI (about 20 s).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.config.argv import CliArgs
from tether.config.compose import build_config
from tether.errors import ConfigError

pytestmark = pytest.mark.integration

HYDRA_VERSION = "1.3.2"
ROOT = Path(__file__).resolve().parents[2]

PRIMARY = """\
defaults:
  - model: small
  - _self_
a: 1
b: hello
f: 0.5
flag: false
n: null
s: text
lst: [1, 2, 3]
nested:
  k: v
  b:
    c: 1
section:
  x: 1
  y: 2
ref: ${a}
"""
GROUP = {"small": "width: 8\ndepth: 2\n", "wide": "width: 64\ndepth: 2\n"}

# (overrides, note). A note starting with "differs:" marks a deliberate difference.
TABLE: list[tuple[list[str], str]] = [
    (["a=2"], "an int"),
    (["a=-3"], "a negative int"),
    (["a=+4"], "a signed int"),
    (["a=1_000"], "underscores in an int"),
    (["f=-.5"], "a float without a leading digit"),
    (["f=1."], "a float without decimals"),
    (["f=1e-3"], "exponent, no dot (YAML 1.1 reads a string)"),
    (["f=1.5E+2"], "an upper-case exponent"),
    (["f=inf"], "inf"),
    (["f=-inf"], "-inf"),
    (["f=NaN"], "nan, any case"),
    (["f=int(3.5)"], "int() cast"),
    (["f=float(2)"], "float() cast"),
    (["b=str(5)"], "str() cast"),
    (["b=str(true)"], "str() of a bool"),
    (["flag=bool(1)"], "bool() of a number"),
    (["flag=bool('true')"], "bool() of a string"),
    (["b=int('010')"], "int() of a quoted string"),
    (["lst=int([1.5,'2'])"], "a cast goes into a list"),
    (["b=12:30"], "a time stays a string (YAML 1.1: 750)"),
    (["b=010"], "a leading zero stays a string (YAML 1.1: 8)"),
    (["b=yes"], "yes stays a string (YAML 1.1: true)"),
    (["b=off"], "off stays a string"),
    (["b="], "empty is the empty string (YAML: null)"),
    (["b=null"], "null"),
    (["b=NULL"], "null, any case"),
    (["flag=true"], "true"),
    (["flag=False"], "a bool, any case"),
    (["flag=1"], "1 for a bool stays the number 1"),
    (["b=0x10"], "hex stays a string"),
    (["b=1.2.3"], "a version stays a string"),
    (["b=hello world"], "inner spaces kept"),
    (["b= spaced "], "outer spaces trimmed"),
    (["b='quoted, with comma'"], "single quotes"),
    (['b="double quoted"'], "double quotes"),
    (["b='it\\'s'"], "an escaped quote"),
    (["b='5'"], "a quoted number is a string"),
    (["b=a\\,b"], "an escaped comma"),
    (["b=c\\:d"], "an escaped colon"),
    (["b=x\\=y"], "an escaped equals sign"),
    (["b=c:\\dir"], "a lone backslash is kept"),
    (["b=/abs/path.txt"], "a path"),
    (["b=a-b_c.d"], "word characters"),
    (["b=$x%y*z?"], "other bare characters"),
    (["b=???"], "missing marker"),
    (["b=${a}"], "an interpolation kept"),
    (["b=${oc.env:HOME,/tmp}"], "a resolver with a comma kept"),
    (["b=pre_${a}_post"], "an interpolation inside a string"),
    (["lst=[]"], "an empty list"),
    (["lst=[4,5]"], "a list replaces"),
    (["lst=[a, 'b c', 3]"], "a mixed list"),
    (["lst=[[1,2],[3]]"], "nested lists"),
    (["lst=[a\\,b]"], "an escaped comma in a list"),
    (["section={x: 9}"], "a dict merges (keeps y)"),
    (["section={x:9}"], "a dict without a space"),
    (["nested={b: {c: 9}}"], "a nested dict merges (keeps k)"),
    (["section={z: 1}"], "an unknown key inside a dict is refused"),
    (["section={}"], "an empty dict changes nothing"),
    (["+new=1"], "add a key"),
    (["+nested.b.d=5"], "add a nested key"),
    (["+nested.b.c=5"], "add refused on an existing key"),
    (["+n=3"], "add on a null key"),
    (["+section={z: 3}"], "add a dict merges into one there"),
    (["++a=7"], "force-add overrides"),
    (["++brand.new=1"], "force-add creates"),
    (["~a"], "delete"),
    (["~nested.b"], "delete a section"),
    (["~a=1"], "delete with the right value"),
    (["~a=2"], "delete with a wrong value is refused"),
    (["~missing"], "delete of a missing key is refused"),
    (["lst.0=9"], "a list element"),
    (["nope=1"], "an unknown key is refused"),
    (["nested.q=1"], "an unknown nested key is refused"),
    (["a=1,2"], "a sweep without -m is refused"),
    (["a=range(3)"], "a sweep function without -m is refused"),
    (["b=x#y"], "a # must be quoted"),
    (["b=(1)"], "parentheses must be quoted"),
    (["b=[1] "], "text after a list is refused"),
    (["b=foo(1)"], "an unknown function is refused"),
    (["model=wide"], "choose a group option"),
    (["model=wide", "model.width=5"], "then override inside it"),
    (["~model"], "no option of the group"),
    (["a=3", "a=4"], "the last one wins"),
    (["a=abc"], "differs: a number key refuses a word (Hydra: 'abc')"),
    (["flag=3"], "differs: a bool key refuses 3 (Hydra: 3)"),
    (["section=5"], "differs: a mapping key refuses a number (Hydra: 5)"),
    (["~n"], "differs: a null key can be deleted (Hydra: does not exist)"),
]


# -- the Hydra side ---------------------------------------------------------------------------
HYDRA_SIDE = r"""
import json, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

conf_dir, rows = sys.argv[1], json.loads(sys.stdin.read())
out = []
with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
    for overrides in rows:
        try:
            cfg = compose(config_name="config", overrides=overrides)
            out.append({"config": OmegaConf.to_container(cfg, resolve=False)})
        except Exception as exc:
            out.append({"error": type(exc).__name__ + ": " + str(exc).splitlines()[0]})
print(json.dumps(out))
"""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tether-tests" / f"hydra-core-{HYDRA_VERSION}"


@pytest.fixture(scope="session")
def hydra_python() -> Path:
    """The Python of a virtual environment with hydra-core, made once and reused."""
    venv = _cache_dir()
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one makes it, the others wait
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            proc = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", f"hydra-core=={HYDRA_VERSION}"],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                pytest.fail(f"pip install hydra-core=={HYDRA_VERSION} failed:\n{proc.stderr}")
            ready.write_text(HYDRA_VERSION + "\n")
    return python


@pytest.fixture(scope="module")
def conf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hydra-conf")
    (root / "config.yaml").write_text(PRIMARY)
    (root / "model").mkdir()
    for name, text in GROUP.items():
        (root / "model" / f"{name}.yaml").write_text(text)
    return root


def _hydra(python: Path, conf: Path, rows: list[list[str]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(python), "-c", HYDRA_SIDE, str(conf)],
        input=json.dumps(rows),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tether(conf: Path, overrides: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        cfg = build_config(conf / "config.yaml", CliArgs(overrides=list(overrides)))
    except ConfigError as exc:
        return {"error": str(exc)}
    return {"config": json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=False)))}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def results(hydra_python: Path, conf_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rows = [overrides for overrides, _ in TABLE]
    hydra = _hydra(hydra_python, conf_dir, rows)
    return [(h, _tether(conf_dir, row)) for h, row in zip(hydra, rows, strict=True)]


def test_the_table_is_big_enough():
    assert len(TABLE) >= 65
    assert len({tuple(o) for o, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize("index", range(len(TABLE)), ids=[" ".join(o) for o, _ in TABLE])
def test_tether_composes_what_hydra_composes(
    results: list[tuple[dict[str, Any], dict[str, Any]]], index: int
):
    overrides, note = TABLE[index]
    hydra, tether = results[index]
    if note.startswith("differs:"):
        assert hydra != tether or "error" not in hydra, note
        return
    if "error" in hydra:
        assert "error" in tether, f"{overrides}: Hydra refuses ({hydra['error']}), tether gave "
        f"{tether.get('config')}"
        assert "\n" not in tether["error"]
        return
    assert "config" in tether, f"{overrides}: Hydra gives a config, tether: {tether['error']}"
    assert _same(tether["config"], hydra["config"]), (overrides, tether, hydra)


def test_each_deliberate_difference_is_refused_loudly_or_documented(
    results: list[tuple[dict[str, Any], dict[str, Any]]],
):
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Coming from Hydra") :]
    for (overrides, note), (_, tether) in zip(TABLE, results, strict=True):
        if not note.startswith("differs:"):
            continue
        word = overrides[0]
        if "error" in tether:
            assert "\n" not in tether["error"]
        assert f"`{word}`" in section, f"{word} ({note}) is not in the Hydra section of the docs"


def test_the_hydra_environment_has_the_version_it_is_named_after(hydra_python: Path):
    out = subprocess.run(
        [str(hydra_python), "-c", "import hydra; print(hydra.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == HYDRA_VERSION


# -- sweeps: the points of `-m`, in Hydra's basic sweeper's order ------------------------------
SWEEP_ROWS: list[list[str]] = [
    ["a=1,2", "b=x,y,z"],
    ["s=range(3)", "t=range(0,1,0.25)"],
    ["a=sort(3,1,2)", "b=choice(q,p)"],
    ["a=range(5,0,-2)"],
    ["a=sort(b,c,a,reverse=true)", "f=-.5,inf,1e-3"],
    ["lst=[1,2],[3]", "d={x: 1},{y: 2}"],
    ["b='a,b',c\\,d"],
    ["x=1", "a=1,2"],
]

SWEEP_SIDE = r"""
import json, sys
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

parser = OverridesParser.create()
out = []
for row in json.loads(sys.stdin.read()):
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(row), None)
    out.append([job for batch in jobs for job in batch])
print(json.dumps(out))
"""


def test_sweep_points_come_in_hydras_order(hydra_python: Path):
    from tether.config.overrides import parse_override
    from tether.config.sweeps import grid_points, split_multirun

    proc = subprocess.run(
        [str(hydra_python), "-c", SWEEP_SIDE],
        input=json.dumps(SWEEP_ROWS),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    hydra_jobs = json.loads(proc.stdout.strip().splitlines()[-1])
    for row, jobs in zip(SWEEP_ROWS, hydra_jobs, strict=True):
        fixed, sweeps = split_multirun(row)
        fixed_values = {parse_override(w).key: parse_override(w).value for w in fixed}
        ours = [{**fixed_values, **point} for point in grid_points(sweeps)]
        # Hydra gives each job as override words; read them back with the same grammar.
        theirs = [{parse_override(w).key: parse_override(w).value for w in job} for job in jobs]
        assert [sorted(p) for p in ours] == [sorted(p) for p in theirs], row
        assert all(_same(o, t) for o, t in zip(ours, theirs, strict=True)), (row, ours, theirs)
