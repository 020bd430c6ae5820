"""`tether init`: write a commented starter tether.toml into the current folder."""

from __future__ import annotations

from pathlib import Path

import click

TEMPLATE = """\
# tether.toml: the operations of this project.
#   tether ops          lists them
#   tether run train    runs one (tether run train lr=0.01 sets a flag)
#   tether check        validates this file and the setup
# The format is described in docs/projects.md.

# Ties runs to this project, even after the folder moves. Keep it; do not copy it elsewhere.
project-id = "{project_id}"

# Where runs are stored (default: .tether/runs beside this file; TETHER_RUNS and --runs-dir win).
# runs-dir = "~/tether-runs"

[ops.train]
description = "Train the model"
# A string runs through the shell; a list runs as argv: ["python", "train.py"].
# {{name}} is replaced by the value of the flag `name`. A table picks by platform:
# exec = {{ linux = "...", darwin = "...", windows = "..." }}
exec = "python train.py --lr {{lr}} --epochs {{epochs}}"
# Files saved with each run; a leading "-" excludes.
sourcecode = ["**/*.py", "-tests/**"]
# Lines like `loss: 0.25` or `loss=0.25` in the output become metrics. A list of regexes with
# named groups replaces the default patterns: ['(?P<key>\\w+) = (?P<value>\\S+)'].
output-scalars = true
# Reuse a completed run with the same code, config and data instead of running again.
needed = false

# Flags and their defaults: `tether run train lr=0.01`. Config files can add flags:
# config = ["conf/train.yaml", {{ lr = 0.1 }}] takes the keys of conf/train.yaml as flags too.
[ops.train.config]
lr = 0.1
epochs = 10
# A flag with a description and the values it allows:
# optimizer = {{ default = "adam", description = "update rule", choices = ["adam", "sgd"] }}

# Inputs put into the run folder before the operation starts:
# [[ops.train.depends]]
# type = "project-files"          # files of this project
# files = ["data/*.csv"]
#
# [[ops.train.depends]]
# type = "run-files"              # files written by the latest run of another operation
# op = "prepare"
# files = ["features.npz"]
#
# The same in short: depends = ["project-files: data/*.csv", "run-files: op=prepare features.npz"]
"""


def starter_text(project_id: str | None = None) -> str:
    import uuid

    return TEMPLATE.format(project_id=project_id or str(uuid.uuid4()))


@click.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing tether.toml.")
def init(force: bool) -> None:
    """Write a commented starter tether.toml into the current folder.

    It holds a fresh project-id and an example `train` operation; `tether check` validates it.
    """
    from ..errors import TetherError
    from ..workspace import PROJECT_FILES

    here = Path.cwd()
    target = here / "tether.toml"
    if not force:
        for name in PROJECT_FILES:
            if (here / name).exists():
                raise TetherError(
                    f"{name} already exists in {here}", "use --force to write tether.toml anyway"
                )
    from ..fsio import atomic_write_text

    try:
        atomic_write_text(target, starter_text())
    except OSError as exc:
        raise TetherError(f"cannot write {target} ({exc.strerror})")
    click.echo(f"wrote {target.name}: edit [ops.train], then `tether check` and `tether ops`")
