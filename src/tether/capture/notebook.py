"""A run started from Jupyter (or any IPython shell): the notebook's path and the source of the
cells run so far, which no file on disk holds (the .ipynb may be unsaved, or edited since).

The shell is found without importing IPython: only when the `IPython` module is already loaded
and `get_ipython()` returns a shell is this a notebook or IPython session. The cells are the
shell's input history (`In`, which already holds the cell being run). The notebook's path comes,
most reliable first, from VS Code's `__vsc_ipynb_file__`, then ipykernel's `__session__` (set
from `JPY_SESSION_NAME`, which jupyter_server sets to the notebook's path when it starts the
kernel), then `JPY_SESSION_NAME` itself; a value that does not end in `.ipynb` (JupyterLab
names a session by a UUID at first) counts as unknown.

The cells are written to `<run>/notebook.py`, in the `# %%` cell format editors and jupytext
read, and recorded as one more source entry of run.lock: `path` the notebook (or `<ipython>`),
`root` its folder, `manifest` the digest of that one-file copy (as a source copy's).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text
from ..lock import SourceRecord
from ..workspace import find_project_file

CELLS_FILE = "notebook.py"
UNKNOWN_PATH = "<ipython>"
_PATH_VARIABLES = ("__vsc_ipynb_file__", "__session__")


@dataclass
class NotebookSource:
    """The notebook a run started from, and the cells run so far."""

    path: str | None  # the .ipynb, absolute, when the shell tells
    cells: list[tuple[int, str]]  # (execution number, source) of the cells run so far


def ipython_shell() -> Any | None:
    """The running IPython shell, or None (IPython not loaded, or loaded without a shell)."""
    module = sys.modules.get("IPython")
    get = getattr(module, "get_ipython", None)
    if get is None:
        return None
    try:
        return get()
    except Exception:  # a half-imported or broken IPython is no shell
        return None


def notebook_path(shell: Any) -> str | None:
    namespace = getattr(shell, "user_ns", None) or {}
    candidates = [namespace.get(name) for name in _PATH_VARIABLES]
    candidates.append(os.environ.get("JPY_SESSION_NAME"))
    for value in candidates:
        if isinstance(value, str) and value.endswith(".ipynb"):
            return str(Path(value).expanduser().absolute())
    return None


def cells_of(shell: Any) -> list[tuple[int, str]]:
    """(number, source) of each non-empty cell in the shell's input history."""
    namespace = getattr(shell, "user_ns", None) or {}
    history = namespace.get("In")
    if not isinstance(history, list):
        manager = getattr(shell, "history_manager", None)
        history = getattr(manager, "input_hist_raw", None)
    if not isinstance(history, list):
        return []
    return [(n, src) for n, src in enumerate(history) if isinstance(src, str) and src.strip()]


def current() -> NotebookSource | None:
    """The notebook (or IPython session) this process runs in, or None."""
    shell = ipython_shell()
    if shell is None:
        return None
    return NotebookSource(notebook_path(shell), cells_of(shell))


def cells_text(source: NotebookSource) -> str:
    where = source.path or "an IPython session"
    lines = [f"# The cells run in {where} before this run started, in the order they ran."]
    for number, cell in source.cells:
        lines += ["", f"# %% In[{number}]", cell.rstrip("\n")]
    return "\n".join(lines) + "\n"


def capture_notebook(run_dir: Path) -> list[SourceRecord]:
    """Write `<run>/notebook.py` and return its source entry, when this is a notebook or an
    IPython session; nothing otherwise. The path is relative to the project's folder when the
    notebook lies inside it."""
    source = current()
    if source is None:
        return []
    import blake3  # loaded for notebooks only

    project = find_project_file()
    project_root = project.parent if project else None
    text = cells_text(source)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CELLS_FILE, text)
    data = text.encode("utf-8")
    line = f"{CELLS_FILE}\t{blake3.blake3(data).hexdigest()}\t{len(data)}\n"
    folder = Path(source.path).parent if source.path else Path.cwd()
    path = source.path or UNKNOWN_PATH
    if source.path and project_root is not None:
        try:
            path = os.path.relpath(source.path, project_root)
        except ValueError:  # another drive
            pass
        if path.startswith(".."):
            path = source.path
    return [
        SourceRecord(
            path=path,
            root=str(folder.absolute()),
            manifest=blake3.blake3(line.encode("utf-8")).hexdigest(),
            include=[CELLS_FILE],
        )
    ]
