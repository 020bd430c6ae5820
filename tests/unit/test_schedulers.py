"""The scheduler plug-in registry and the built-in plug-ins (local, slurm, pbs)."""

from __future__ import annotations

import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.distributed import schedulers
from tether.distributed.schedulers import EntryPoint
from tether.distributed.schedulers.base import Scheduler
from tether.distributed.schedulers.pbs import PBS
from tether.distributed.schedulers.slurm import Slurm, expand_builtin, expand_nodelist
from tether.errors import TetherError


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    schedulers.clear_cache()
    yield
    schedulers.clear_cache()


# -- the registry ---------------------------------------------------------------------------------
def test_builtins_come_from_the_entry_point_group() -> None:
    eps = {ep.name: ep for ep in schedulers.entry_points() if ep.dist == "tether"}
    assert eps["local"].value == "tether.distributed.schedulers.local:Local"
    assert eps["slurm"].value == "tether.distributed.schedulers.slurm:Slurm"
    assert eps["pbs"].value == "tether.distributed.schedulers.pbs:PBS"
    names = [p.name for p in schedulers.available()]
    assert {"local", "slurm", "pbs"} <= set(names)
    assert names[-1] == "local"  # asked last: it always says yes
    assert names.index("pbs") < names.index("local") and names.index("slurm") < names.index("local")


def test_entry_points_are_read_from_dist_info_folders(tmp_path: Path) -> None:
    for dist, text in {
        "site_a-1.0.dist-info": "[tether.schedulers]\nsitea = site_a.sched:SiteA\n",
        "site_b-2.0.dist-info": "[console_scripts]\nb = b:main\n",
        "site_c.egg-info": "[tether.schedulers]\n# a comment\nsitec = site_c:C [extra]\n",
        "site_a-0.9.dist-info": "[tether.schedulers]\nold = site_a.old:Old\n",
    }.items():
        (tmp_path / dist).mkdir()
        (tmp_path / dist / "entry_points.txt").write_text(text)
    found = schedulers.entry_points(path=[str(tmp_path)])
    # site_a's first folder (in sorted order: 0.9, then 1.0) wins, as importlib.metadata does.
    assert found == [
        EntryPoint("old", "site_a.old:Old", "site-a"),
        EntryPoint("sitec", "site_c:C", "site-c"),
    ]


class _Fake(Scheduler):
    priority = 100

    def __init__(self, var: str = "FAKE_JOB") -> None:
        self.var = var

    def detect(self, env: object) -> bool:
        return self.var in env  # type: ignore[operator]


def _install(monkeypatch: pytest.MonkeyPatch, extra: list[EntryPoint]) -> None:
    real = schedulers.entry_points()
    monkeypatch.setattr(schedulers, "entry_points", lambda *a, **k: [*real, *extra])
    schedulers.clear_cache()


def test_detection_order_env_var_then_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_site_sched")
    module.Site = _Fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_site_sched", module)
    _install(monkeypatch, [EntryPoint("site", "fake_site_sched:Site", "fake")])
    slurm_job = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1"}
    # A site plug-in (priority 100) is asked before the generic slurm (50)...
    assert schedulers.select({**slurm_job, "FAKE_JOB": "1"}).name == "site"
    # ...and only says yes inside its own jobs.
    assert schedulers.select(slurm_job).name == "slurm"
    assert schedulers.select({}).name == "local"
    # TETHER_SCHEDULER (or --scheduler) wins over detection.
    assert schedulers.select({**slurm_job, "TETHER_SCHEDULER": "pbs"}).name == "pbs"
    assert schedulers.select(slurm_job, "local").name == "local"


def test_unknown_scheduler_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TetherError) as err:
        schedulers.select({"TETHER_SCHEDULER": "slrum"})
    assert "no scheduler plug-in 'slrum'" in str(err.value)
    assert "did you mean 'slurm'?" in str(err.value)


def test_a_broken_plugin_is_skipped_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(
        monkeypatch,
        [
            EntryPoint("gone", "no_such_module_xyz:Thing", "broken-dist"),
            EntryPoint("halfway", "os:getcwd", "odd-dist"),  # not a scheduler
        ],
    )
    assert schedulers.select({}).name == "local"
    errors = dict(schedulers.load_errors())
    assert "ModuleNotFoundError" in errors["gone"] and "broken-dist" in errors["gone"]
    assert "has no detect() method" in errors["halfway"]
    with pytest.raises(TetherError, match="scheduler plug-in 'gone' failed to load"):
        schedulers.select({"TETHER_SCHEDULER": "gone"})


def test_a_plugin_whose_detect_raises_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    class Crashy(_Fake):
        def detect(self, env: object) -> bool:
            raise RuntimeError("boom")

    module = types.ModuleType("fake_crashy_sched")
    module.Crashy = Crashy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_crashy_sched", module)
    _install(monkeypatch, [EntryPoint("crashy", "fake_crashy_sched:Crashy", "x")])
    assert schedulers.select({}).name == "local"


# -- Slurm ----------------------------------------------------------------------------------------
NODELISTS = [
    ("nid001", ["nid001"]),
    ("nid[001-003]", ["nid001", "nid002", "nid003"]),
    ("nid[001-002,010],login1", ["nid001", "nid002", "nid010", "login1"]),
    ("a[1-2]-b[08-09]", ["a1-b08", "a1-b09", "a2-b08", "a2-b09"]),
    ("gpu[9-11]", ["gpu9", "gpu10", "gpu11"]),
]
# HPE Cray names: a range with digits after it. Slurm 22's scontrol calls this invalid (and
# prints nothing), so expand_nodelist falls back to the built-in expander for it.
CRAY = ("x1000c0s[0-1]b0n0,x1001c0s0b0n0", ["x1000c0s0b0n0", "x1000c0s1b0n0", "x1001c0s0b0n0"])


@pytest.mark.parametrize(("text", "hosts"), [*NODELISTS, CRAY])
def test_builtin_expander(text: str, hosts: list[str]) -> None:
    assert expand_builtin(text) == hosts


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="scontrol is not installed")
@pytest.mark.parametrize(("text", "hosts"), NODELISTS)
def test_builtin_expander_agrees_with_scontrol(text: str, hosts: list[str]) -> None:
    import subprocess

    out = subprocess.run(
        ["scontrol", "show", "hostnames", text], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == hosts == expand_builtin(text)


@pytest.mark.parametrize("text", ["nid[001-", "nid]1[", "nid[a-b]", "nid[5-2]"])
def test_builtin_expander_rejects_nonsense(text: str) -> None:
    with pytest.raises(TetherError, match="node list"):
        expand_builtin(text)


def test_python_hostlist_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("hostlist")
    module.expand_hostlist = lambda text: [f"hl-{text}"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hostlist", module)
    assert expand_nodelist("n[1-2]") == ["hl-n[1-2]"]


def test_scontrol_then_builtin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "hostlist", None)  # not installed
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\necho from-scontrol-1\necho from-scontrol-2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert expand_nodelist("n[1-2]") == ["from-scontrol-1", "from-scontrol-2"]
    fake.write_text("#!/bin/sh\nexit 1\n")  # scontrol without a cluster: the built-in steps in
    assert expand_nodelist("n[1-2]") == ["n1", "n2"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert expand_nodelist("n[3-4]") == ["n3", "n4"]
    assert expand_nodelist(CRAY[0]) == CRAY[1]


def test_slurm_plugin() -> None:
    s = Slurm()
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NODELIST": "c[1-2],c1",
        "SLURM_TASKS_PER_NODE": "4(x2)",
    }
    assert s.detect(env) and not s.detect({})
    assert s.job_id(env) == "77"
    assert s.hosts(env) == ["c1", "c2"]  # each host once
    assert s.ranks_per_host(env) == 4
    assert s.default_launcher == "srun"
    with pytest.raises(TetherError, match="SLURM_JOB_NODELIST is not"):
        s.hosts({"SLURM_JOB_ID": "77"})


# -- PBS ------------------------------------------------------------------------------------------
def test_pbs_plugin(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("h1\nh1\nh2\nh2\n")
    env = {"PBS_JOBID": "5.server", "PBS_NODEFILE": str(nodefile)}
    p = PBS()
    assert p.detect(env) and not p.detect({})
    assert p.hosts(env) == ["h1", "h2"]
    assert p.slots(env) == {"h1": 2, "h2": 2}
    assert p.ranks_per_host(env) == 2
    assert p.hostfile(env) == str(nodefile)
    assert p.info(env) == {
        "scheduler": "",
        "job_id": "5.server",
        "hosts": ["h1", "h2"],
        "nhosts": 2,
        "hostfile": str(nodefile),
    }
    nodefile.write_text("h1\nh2\n")  # ALCF style: one line per host says nothing about slots
    assert p.slots(env) is None and p.ranks_per_host(env) is None
