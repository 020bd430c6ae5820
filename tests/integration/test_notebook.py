"""A run started from Jupyter records the notebook's path and the cells run so far: in a real
ipykernel kernel (driven by jupyter_client, as JupyterLab drives it), and in IPython's
in-process shell (the same code path, without a kernel)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tether.capture.notebook import CELLS_FILE, UNKNOWN_PATH


def _lock(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "run.lock").read_text())


def _notebook_entry(run_dir: Path) -> dict:
    entries = [s for s in _lock(run_dir)["sources"] if s.get("include") == [CELLS_FILE]]
    assert len(entries) == 1, _lock(run_dir)["sources"]
    return entries[0]


def test_a_run_in_a_jupyter_kernel_records_the_notebook(tmp_path: Path, runs_root: Path):
    pytest.importorskip("ipykernel", reason="ipykernel is not installed in this environment")
    manager_mod = pytest.importorskip("jupyter_client.manager")
    notebook = tmp_path / "work" / "analysis.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")  # the server names the file; its content is not read
    env = {
        **os.environ,
        "JPY_SESSION_NAME": str(notebook),  # what jupyter_server sets for the kernel
        "TETHER_RUNS": str(runs_root),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    km, kc = manager_mod.start_new_kernel(
        kernel_name="python3", cwd=str(notebook.parent), env=env, startup_timeout=120
    )
    try:
        cells = [
            "import tether\nlr = 0.25",
            "def loss(step):\n    return lr / (step + 1)",
            (
                "with tether.start_run({'lr': lr}, name='nb', capture_output=False) as run:\n"
                "    run.log_metrics({'loss': loss(0)}, step=0)\n"
                "run_dir = str(run.dir)"
            ),
        ]
        for cell in cells:
            reply = kc.execute_interactive(cell, timeout=120, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok", reply["content"]
        printed: list[str] = []
        reply = kc.execute_interactive(
            "print(run_dir)",
            timeout=60,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    run_dir = Path("".join(printed).strip())
    entry = _notebook_entry(run_dir)
    assert entry["path"] == str(notebook)  # outside any project: the absolute path
    assert entry["root"] == str(notebook.parent) and entry["manifest"]
    text = (run_dir / CELLS_FILE).read_text()
    assert str(notebook) in text.splitlines()[0]
    # Every cell run so far, in order, including the one that started the run.
    assert text.index("lr = 0.25") < text.index("def loss(step)") < text.index("start_run")
    assert "# %% In[1]" in text and "print(run_dir)" not in text


def test_an_ipython_shell_records_its_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    interactive = pytest.importorskip("IPython.core.interactiveshell")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = interactive.InteractiveShell.instance()
    try:
        shell.run_cell("import tether\nwidth = 3", store_history=True)
        result = shell.run_cell(
            "with tether.start_run({'width': width}, name='shell', capture_output=False) as r:\n"
            "    pass",
            store_history=True,
        )
        result.raise_error()
        run_dir = Path(shell.user_ns["r"].dir)
        entry = _notebook_entry(run_dir)
        assert entry["path"] == UNKNOWN_PATH and entry["root"] == str(tmp_path)
        text = (run_dir / CELLS_FILE).read_text()
        assert "width = 3" in text and "start_run" in text
        # VS Code names the notebook in the shell's namespace: that path wins.
        shell.user_ns["__vsc_ipynb_file__"] = str(tmp_path / "vs.ipynb")
        shell.run_cell(
            "with tether.start_run({}, name='vs', capture_output=False) as r2:\n    pass",
            store_history=True,
        ).raise_error()
        assert _notebook_entry(Path(shell.user_ns["r2"].dir))["path"] == str(tmp_path / "vs.ipynb")
    finally:
        interactive.InteractiveShell.clear_instance()


def test_a_plain_python_process_records_no_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import tether

    monkeypatch.chdir(tmp_path)
    with tether.start_run({}, name="plain", capture_output=False) as run:
        pass
    assert not (run.dir / CELLS_FILE).exists()
    assert all(s.get("include") != [CELLS_FILE] for s in _lock(run.dir)["sources"])
