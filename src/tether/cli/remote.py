"""`tether remote add|list|remove|runs`: the places runs are pushed to (docs/sharing.md)."""

from __future__ import annotations

import json

import click


@click.group()
def remote() -> None:
    """Remotes: rclone remotes (`NAME:path`) or plain folders, for push, pull and sync."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--user", is_flag=True, help="Write it to the user config, not tether.toml.")
def add(name: str, url: str, user: bool) -> None:
    """Add remote NAME at URL: a folder path, or an rclone remote `RCLONE_NAME:path`.

    Credentials never go in URL: define them in rclone (its config or environment)."""
    from ..sync.remotes import add_remote

    r = add_remote(name, url, user=user)
    click.echo(f"remote {r.name} = {r.url} (in {r.source})")


@remote.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """List the remotes of the project and of the user config."""
    from ..sync.remotes import list_remotes

    items = [
        {
            "name": r.name,
            "url": r.url,
            "scope": r.scope,
            "file": str(r.source),
            "kind": "folder" if r.is_folder else "rclone",
        }
        for r in list_remotes()
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no remotes; add one with `tether remote add NAME URL`")
    for it in items:
        click.echo(f"{it['name']}\t{it['url']}\t({it['kind']}, {it['scope']})")


@remote.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove remote NAME from the file that defines it (nothing on the remote is touched)."""
    from ..sync.remotes import remove_remote

    r = remove_remote(name)
    click.echo(f"removed remote {r.name} from {r.source}")


@remote.command("runs")
@click.argument("name")
@click.option("--where", metavar="EXPR", help="Only the runs this query selects.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as `tether runs --json`).")
def runs(name: str, where: str | None, as_json: bool) -> None:
    """List the runs REMOTE holds, from its entries (no run is downloaded)."""
    show_remote_runs(name, where, as_json)


def show_remote_runs(name: str, where: str | None, as_json: bool) -> None:
    """The listing of `tether remote runs NAME` and `tether runs --remote NAME`."""
    from ..sync import listing
    from ..sync.push import read_remote
    from .render import listing as render_listing
    from .share import open_remote

    _, transport = open_remote(name)
    entries = read_remote(transport)
    rows = listing.rows(entries, where)
    items = render_listing(rows)
    for it in items:
        it["status"] = listing.remote_status(entries[it["id"]])
        it["dir"] = f"{name}:runs/{it['id']}"
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
        return
    if not items:
        click.echo(f"no runs on {name}")
    for it in items:
        metrics = " ".join(
            f"{k}={v.get('last') if isinstance(v, dict) else v}"
            for k, v in sorted((it.get("metrics") or {}).items())
        )
        click.echo(
            f"{it['short_id']}  {it['name']:<16} {it['status']:<17} {it['created']}  {metrics}"
        )
