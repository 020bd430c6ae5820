"""run.lock's `env`: the package list and its cache, the GPU stack, containers, scheduler jobs,
and the comparison of two environments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from tether.capture import environment as envmod
from tether.capture.environment import (
    EnvChange,
    PackageChange,
    capture_environment,
    container_facts,
    diff_environment,
    job_facts,
)

OLD = time.time() - 3600  # an mtime old enough for the package cache to trust


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of distributions on sys.path: one plain, one editable, one from git."""
    folder = tmp_path / "site"
    (folder / "plain_pkg-1.2.dist-info").mkdir(parents=True)
    editable = folder / "mylib-0.3.dev0.dist-info"
    editable.mkdir()
    (editable / "direct_url.json").write_text(
        json.dumps({"url": "file:///home/me/mylib", "dir_info": {"editable": True}})
    )
    vcs = folder / "fromgit-2.0.dist-info"
    vcs.mkdir()
    (vcs / "direct_url.json").write_text(
        json.dumps(
            {
                "url": "https://github.com/me/fromgit",
                "vcs_info": {"vcs": "git", "commit_id": "abc123", "requested_revision": "main"},
            }
        )
    )
    os.utime(folder, (OLD, OLD))
    monkeypatch.setattr(sys, "path", [str(folder)])
    envmod.installed.cache_clear()
    envmod.packages_digest.cache_clear()
    yield folder
    envmod.installed.cache_clear()
    envmod.packages_digest.cache_clear()


def test_packages_sources_and_the_digest_they_keep(site: Path):
    env = capture_environment()
    assert env["packages"] == ["fromgit==2.0", "mylib==0.3.dev0", "plain-pkg==1.2"]
    # The lock digest's meaning is unchanged: blake3 of the sorted `name==version` lines.
    expected = blake3.blake3("\n".join(env["packages"]).encode()).hexdigest()[:32]
    assert env["packages_digest"] == expected
    assert env["package_sources"] == {
        "fromgit": {
            "url": "https://github.com/me/fromgit",
            "vcs": "git",
            "commit": "abc123",
            "revision": "main",
        },
        "mylib": {"url": "file:///home/me/mylib", "editable": True},
    }


def test_the_package_list_is_cached_until_a_folder_changes(site: Path):
    first = envmod.installed()
    cached = list(Path(os.environ["TETHER_CACHE_DIR"]).glob("packages-*.json"))
    assert len(cached) == 1
    # A second process (here: a cleared cache) reads the file, not the folders: prove it by
    # giving the file a list the folders do not have.
    data = json.loads(cached[0].read_text())
    data["packages"] = ["from-the-cache==1"]
    cached[0].write_text(json.dumps(data))
    envmod.installed.cache_clear()
    assert envmod.installed()[0] == ("from-the-cache==1",)
    # Installing a distribution adds a folder: the folder's mtime moves, the cache is stale.
    (site / "newpkg-0.1.dist-info").mkdir()
    envmod.installed.cache_clear()
    names = envmod.installed()[0]
    assert "newpkg==0.1" in names and names != first[0]
    assert "from-the-cache==1" not in names


def test_a_folder_that_just_changed_is_not_cached(site: Path):
    (site / "fresh-1.0.dist-info").mkdir()  # the folder's mtime is now
    assert "fresh==1.0" in envmod.installed()[0]
    assert not list(Path(os.environ["TETHER_CACHE_DIR"]).glob("packages-*.json"))


def test_environment_capture_never_imports_torch():
    code = (
        "import sys, json\n"
        "from tether.capture.environment import capture_environment\n"
        "env = capture_environment()\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'gpu': env.get('gpu')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"torch": False, "gpu": None}


def _fake_torch(available: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(cuda="12.4", hip=None)  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: available,
        device_count=lambda: 2,
        nccl=types.SimpleNamespace(version=lambda: (2, 21, 5)),
    )
    torch.backends = types.SimpleNamespace(  # type: ignore[attr-defined]
        cudnn=types.SimpleNamespace(is_available=lambda: True, version=lambda: 90100)
    )
    return torch


def test_gpu_facts_when_torch_is_imported_and_sees_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # What the NVIDIA kernel driver shows under /proc/driver/nvidia (no CUDA call reads it).
    proc = tmp_path / "nvidia"
    (proc / "gpus" / "0000:01:00.0").mkdir(parents=True)
    (proc / "version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    (proc / "gpus" / "0000:01:00.0" / "information").write_text("Model: \t\t NVIDIA H200\nIRQ: 1\n")
    monkeypatch.setattr(envmod, "NVIDIA_PROC", str(proc))
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(True))
    assert envmod.gpu_facts() == {
        "devices": 2,
        "cuda": "12.4",
        "cudnn": "90100",
        "nccl": "2.21.5",
        "driver": "550.54.15",
        "models": ["NVIDIA H200"],
    }
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(False))
    assert envmod.gpu_facts() is None  # torch without a GPU: nothing to record


def test_container_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(envmod, "PODMAN_ENV_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(envmod, "DOCKER_ENV_FILE", str(tmp_path / ".dockerenv"))
    assert container_facts({}) is None
    (tmp_path / ".dockerenv").touch()
    assert container_facts({}) == {"runtime": "docker"}
    assert container_facts({"APPTAINER_CONTAINER": "/images/a.sif", "APPTAINER_NAME": "a.sif"}) == {
        "runtime": "apptainer",
        "image": "/images/a.sif",
        "name": "a.sif",
    }
    assert container_facts({"SINGULARITY_CONTAINER": "/x.sif"}) == {
        "runtime": "singularity",
        "image": "/x.sif",
    }
    digest = "sha256:" + "0" * 64
    given = container_facts(
        {"TETHER_CONTAINER_IMAGE": "ghcr.io/me/img:1", "TETHER_CONTAINER_DIGEST": digest}
    )
    assert given is not None and given["image"] == "ghcr.io/me/img:1" and given["digest"] == digest


def test_podman_image_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    containerenv = tmp_path / ".containerenv"
    containerenv.write_text(
        'engine="podman-4.3.1"\nname="box"\nid="c0ffee"\n'
        'image="docker.io/library/python:3.11"\nimageid="abcd"\nrootless=1\n'
    )
    monkeypatch.setattr(envmod, "PODMAN_ENV_FILE", str(containerenv))
    assert container_facts({}) == {
        "runtime": "podman",
        "image": "docker.io/library/python:3.11",
        "digest": "sha256:abcd",
        "name": "box",
    }


def test_job_facts():
    slurm = {
        "SLURM_JOB_ID": "812",
        "SLURM_JOB_NAME": "train",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_NTASKS": "8",
    }
    assert job_facts(slurm) == {
        "scheduler": "slurm",
        "id": "812",
        "name": "train",
        "partition": "gpu",
        "nodes": "node[01-02]",
        "ntasks": "8",
    }
    pbs = {"PBS_JOBID": "77.server", "PBS_QUEUE": "workq", "PBS_O_WORKDIR": "/home/me"}
    assert job_facts(pbs) == {
        "scheduler": "pbs",
        "id": "77.server",
        "queue": "workq",
        "submit_dir": "/home/me",
    }
    assert job_facts({}) is None


def _env(packages: list[str], **more: object) -> dict[str, object]:
    return {"python": "3.11.7", "platform": "linux-x86_64", "packages": packages, **more}


def test_diff_environment_names_packages_and_facts():
    old = _env(
        ["numpy==1.26.4", "old==1.0", "torch==2.3.0"],
        package_sources={},
        gpu={"cuda": "12.1", "devices": 8},
        host="a",
    )
    new = _env(
        ["new==0.1", "numpy==2.0.0", "torch==2.3.0"],
        package_sources={
            "torch": {"url": "https://github.com/pytorch/pytorch", "vcs": "git", "commit": "f00"}
        },
        gpu={"cuda": "12.4", "devices": 4},
        host="b",
    )
    facts, packages = diff_environment(old, new)
    assert facts == [EnvChange("gpu.cuda", "12.1", "12.4")]  # host and device count: where
    assert packages == [
        PackageChange("new", "added", None, "0.1"),
        PackageChange("numpy", "changed", "1.26.4", "2.0.0"),
        PackageChange("old", "removed", "1.0", None),
        PackageChange(
            "torch", "changed", "2.3.0", "2.3.0 (git+https://github.com/pytorch/pytorch@f00)"
        ),
    ]
    assert [str(p) for p in packages[:3]] == ["+new 0.1", "numpy 1.26.4 -> 2.0.0", "-old 1.0"]
    assert diff_environment(old, old) == ([], [])


def test_diff_environment_of_a_run_recorded_with_a_digest_only():
    """Runs recorded before the package list: their digests are compared, and GPU and
    container facts (not recorded then) are not."""
    old = {"python": "3.11.7", "platform": "linux-x86_64", "packages": 157, "packages_digest": "aa"}
    new = _env(["numpy==2.0.0"], packages_digest="bb", container={"runtime": "docker"})
    assert diff_environment(old, new) == ([EnvChange("packages_digest", "aa", "bb")], [])
    assert diff_environment(old, {**new, "packages_digest": "aa"}) == ([], [])
