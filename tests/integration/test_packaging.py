"""`python -m build` makes a wheel and an sdist that install cleanly and run."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.integration
def test_wheel_and_sdist_install_and_run(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    wheels = list(dist.glob("tether-*.whl"))
    sdists = list(dist.glob("tether-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "tether/py.typed" in names and "tether/cli/main.py" in names
    for artifact in (wheels[0], sdists[0]):
        env_dir = tmp_path / f"venv-{artifact.suffix}"
        venv.create(env_dir, with_pip=True, system_site_packages=True)
        py = env_dir / "bin" / "python"
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--no-deps", str(artifact)],
            check=True,
            capture_output=True,
            text=True,
        )
        out = subprocess.run(
            [str(env_dir / "bin" / "tether"), "--version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert "0.1.0" in out
