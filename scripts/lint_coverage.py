"""Fail when a tracked Python file escapes ruff.

ruff skips some folders by default (`dist`, `build`, `.venv`, ...): a package folder with such a
name went unlinted for a whole release. This compares `git ls-files '*.py'` with the files ruff
says it checks (`ruff check --show-files .`) and names every file ruff would not look at.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    ruff = Path(sys.executable).with_name("ruff")
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    wanted = {(root / name).resolve() for name in tracked.split("\0") if name}
    shown = subprocess.run(
        [str(ruff), "check", "--show-files", "."], cwd=root, capture_output=True, text=True
    ).stdout
    checked = {Path(line.strip()).resolve() for line in shown.splitlines() if line.strip()}
    missed = sorted(wanted - checked)
    for path in missed:
        print(f"lint: ruff does not check {path.relative_to(root)} (see [tool.ruff] exclude)")
    if missed:
        return 1
    print(f"lint: ruff checks all {len(wanted)} tracked Python files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
