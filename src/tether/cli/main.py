"""The root `tether` command. Subcommands load on first use, so `tether --help` stays fast."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from importlib import import_module
from typing import Any

import click

from .. import __version__

# name -> (module, attribute, one-line help). The help is here so listing commands imports nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "runs": ("tether.cli.runs", "runs", "List runs, newest first (and `runs reindex`)."),
    "show": ("tether.cli.show", "show", "Show one run: state, config and run.lock."),
    "diff": (
        "tether.cli.diff",
        "diff",
        "Show what differs between two runs: config, code, data, stages.",
    ),
    "lineage": (
        "tether.cli.lineage",
        "lineage",
        "Show the upstream runs a run consumed (--down: the runs that consumed it).",
    ),
    "reproduce": (
        "tether.cli.reproduce",
        "reproduce",
        "Re-run a run from its snapshot, config and data; compare metrics.",
    ),
    "hash": ("tether.cli.hash", "hash_cmd", "Print blake3 digests of files and folders."),
    "init": ("tether.cli.init", "init", "Write a commented starter tether.toml."),
    "check": ("tether.cli.check", "check", "Validate tether.toml and report the setup's health."),
    "ops": ("tether.cli.ops", "ops", "List the operations of tether.toml and their flags."),
    "run": ("tether.cli.run", "run", "Run an operation of tether.toml: tether run OP k=v ..."),
    "compare": ("tether.cli.compare", "compare", "Compare runs side by side: config and metrics."),
    "label": ("tether.cli.attrs", "label", "Set or clear the label of runs."),
    "tag": ("tether.cli.attrs", "tag", "Add or remove tags of runs."),
    "note": ("tether.cli.attrs", "note", "Add a note to runs."),
    "delete": (
        "tether.cli.lifecycle",
        "delete",
        "Move runs to the trash (restore brings them back).",
    ),
    "restore": ("tether.cli.lifecycle", "restore", "Bring deleted runs back from the trash."),
    "purge": ("tether.cli.lifecycle", "purge", "Delete runs in the trash for good."),
    "archive": ("tether.cli.archive", "archive", "Export runs to a .tar.gz, or import them."),
    "cat": ("tether.cli.cat", "cat", "Print a file of a run."),
    "plot": ("tether.cli.plot", "plot", "Plot metrics of runs in the terminal or to PNG."),
    "report": (
        "tether.cli.report",
        "report",
        "Write report.md for a run: summary table and plots.",
    ),
    "mlflow": ("tether.cli.mlflow", "mlflow", "MLflow: sync runs into an MLflow tracking store."),
    "launch": (
        "tether.cli.launch",
        "launch",
        "Launch a command on MPI/Slurm/PBS ranks: tether launch -n 2 -- CMD",
    ),
    "doctor": (
        "tether.cli.doctor",
        "doctor",
        "Check this machine for launching: MPI, scheduler, torch, sinks.",
    ),
    "env": ("tether.cli.envship", "env", "Ship the Python environment: env pack | env yeet."),
    "completion": (
        "tether.cli.completion",
        "completion",
        "Print the shell completion script for bash, zsh, fish or nu.",
    ),
    "help": ("tether.cli.help", "help_cmd", "Print a docs page (tether help TOPIC), or list them."),
    "view": ("tether.cli.view", "view", "Serve the runs in a browser and over an HTTP API."),
    "remote": ("tether.cli.remote", "remote", "Remotes for sharing runs: add, list, remove, runs."),
    "push": ("tether.cli.share", "push", "Copy runs to a remote (rclone or a folder)."),
    "pull": ("tether.cli.share", "pull", "Bring runs from a remote, with their snapshot commits."),
    "sync": ("tether.cli.share", "sync", "Push then pull runs (--check: verify by blake3)."),
    "checkout": ("tether.cli.share", "checkout", "Make a git branch of a run's snapshot."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attr, _ = entry
        command = getattr(import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            from ..errors import TetherError, did_you_mean

            hint = did_you_mean(name, list(COMMANDS))
            raise TetherError(
                f"no command {name!r}",
                f"did you mean {hint!r}?" if hint else "see `tether --help`",
            )
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="tether")
@click.option(
    "--runs-dir",
    envvar="TETHER_RUNS",
    metavar="DIR",
    help="Runs root (default: TETHER_RUNS, tether.toml runs-dir, <project>/.tether/runs).",
)
@click.pass_context
def cli(ctx: click.Context, runs_dir: str | None) -> None:
    """tether: every run tied to its exact code, config and data.

    RUN arguments take an index from `tether runs` (1 = newest), a slice (1:5),
    or a prefix of a run id or name.
    """
    ctx.obj = {"runs_dir": runs_dir}


def store_from(ctx: click.Context) -> Any:
    from ..store import open_store

    obj = ctx.find_root().obj or {}
    return open_store(obj.get("runs_dir"))


def lower_first(message: str) -> str:
    """click capitalises its messages ("No such option"); tether's voice starts lower case.
    A word in capitals (an environment variable, `PATH`) is left as it is."""
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        return message[0].lower() + message[1:]
    return message


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print one line and exit 2 (traceback with TETHER_DEBUG=1)."""
    from ..errors import TetherError

    # What a command made lives until the exit; the interpreter's last collection would walk
    # all of it (~4 ms of `tether --help`, more of a listing). tether's commands close their
    # files and connections themselves, so nothing waits on that pass.
    atexit.register(gc.freeze)
    if "_TETHER_COMPLETE" in os.environ:  # a shell asks what completes a word: completion.py
        from .completion import register

        register()
    try:
        rc = cli.main(args=argv, prog_name="tether", standalone_mode=False)
    except TetherError as exc:
        from ..debug import debug_enabled

        if debug_enabled():
            raise
        click.echo(f"tether: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("tether: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other user mistake; --help has the rest.
        where = exc.ctx.command_path if exc.ctx is not None else "tether"
        message = lower_first(exc.format_message().rstrip("."))
        click.echo(f"tether: error: {message}; see `{where} --help`", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"tether: error: {lower_first(exc.format_message().rstrip('.'))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("tether: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # `tether runs | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
