"""`tether completion SHELL`: print the completion script for bash, zsh or fish."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(tether completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(tether completion zsh)"    (in ~/.zshrc)
    fish:  tether completion fish > ~/.config/fish/completions/tether.fish
    """
    from click.shell_completion import get_completion_class

    from .main import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "tether", "_TETHER_COMPLETE").source())
