"""`tether view`: serve the runs root as a web page and a JSON API (docs/view.md)."""

from __future__ import annotations

import click

from .main import store_from


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: a free one).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any address but loopback requires the token in the URL.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--runs-dir", "runs_dir", metavar="DIR", help="Runs root to serve.")
@click.pass_context
def view(
    ctx: click.Context, port: int, host: str, open_browser: bool, runs_dir: str | None
) -> None:
    """Serve the runs in a browser: the runs table, run pages, compare; and the HTTP API.

    Prints the URL (with its token); Ctrl-C stops the server."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import TetherError

        raise TetherError(
            "tether view needs starlette and uvicorn", "pip install 'tether[view]'"
        ) from None
    from ..store import open_store
    from ..web.server import serve

    store = open_store(runs_dir) if runs_dir else store_from(ctx)

    def announce(policy: object) -> None:
        url = policy.url()  # type: ignore[attr-defined]
        click.echo(f"tether view: serving {store.root} at {url}", nl=True)
        click.echo("tether view: Ctrl-C stops it", err=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    serve(store.root, host, port, announce)
    click.echo("tether view: stopped", err=True)
