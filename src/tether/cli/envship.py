"""`tether env pack` and `tether env yeet`: ship the Python environment to a job's nodes.

The work is in tether.distributed.envpack, imported when a subcommand runs.
"""

from __future__ import annotations

import json

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def env() -> None:
    """Ship the Python environment: pack it into a tarball, copy it to every node."""


@env.command()
@click.argument("prefix", required=False, type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="Archive to write (a folder: <env>.tar in it). Default: ./<env>.tar[.zst|.gz].",
)
@click.option(
    "--compress",
    type=click.Choice(["zstd", "gzip"]),
    help="Compress the tarball (default: none, fastest on a fast network).",
)
@click.option("--name", help="Top folder in the archive (default: the env folder, no dots).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave matching files out.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pack(
    prefix: str | None,
    output: str | None,
    compress: str | None,
    name: str | None,
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """Pack a venv or conda env into a tarball.

    PREFIX defaults to the active environment: VIRTUAL_ENV, else CONDA_PREFIX, else the one
    tether runs in.
    """
    from ..distributed import envpack

    result = envpack.pack(prefix, output, compress=compress, name=name, exclude=exclude)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo(
        f"packed {result.kind} {result.prefix} ({result.files:,} files, "
        f"{envpack.human_bytes(result.bytes)}) into {result.path} "
        f"({envpack.human_bytes(result.size)}, {result.seconds:.1f} s)"
    )


@env.command()
@click.option(
    "--hostfile",
    envvar="TETHER_HOSTFILE",
    type=click.Path(dir_okay=False),
    help="Hosts to copy to, one per line (default: TETHER_HOSTFILE, else the Slurm/PBS job's).",
)
@click.option("--dest", required=True, help="Folder on every host (absolute), e.g. /tmp/env.")
@click.option(
    "--src",
    "source",
    type=click.Path(exists=True),
    help="Tarball or folder to copy (default: pack the active environment first).",
)
@click.option(
    "--transport",
    default="rsync",
    show_default=True,
    help="rsync (over ssh), folders (hosts are folders under --nodes-root), or module:Class.",
)
@click.option(
    "--nodes-root",
    type=click.Path(file_okay=False),
    help="With --transport folders: the folder holding one folder per host.",
)
@click.option(
    "--fanout",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies this machine sends at once (each node sends one at a time).",
)
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--extract/--no-extract", default=None, help="Unpack the tarball on each host (default: yes)."
)
@click.option("--compress", type=click.Choice(["zstd", "gzip"]), help="When packing first.")
@click.option("--dry-run", is_flag=True, help="Print the copies, round by round; copy nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No line per copy.")
def yeet(
    hostfile: str | None,
    dest: str,
    source: str | None,
    transport: str,
    nodes_root: str | None,
    fanout: int,
    retries: int,
    extract: bool | None,
    compress: str | None,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Copy the environment to every host as a tree: hosts that have it send it on.

    `tether env yeet --hostfile hosts --dest /tmp/env` packs the active environment (unless
    --src names a tarball or folder), copies it to /tmp/env on each host and unpacks it there.
    Exits 1 when a host did not get its copy.
    """
    import tempfile
    from pathlib import Path

    from ..distributed import envpack
    from ..errors import TetherError

    hosts = envpack.hosts_from(hostfile)
    options: dict[str, object] = {}
    if transport == "folders":
        if not nodes_root:
            raise TetherError("--transport folders needs --nodes-root DIR")
        options["root"] = nodes_root
    elif nodes_root:
        raise TetherError("--nodes-root applies to --transport folders only")
    carrier = envpack.get_transport(transport, **options)
    with tempfile.TemporaryDirectory(prefix="tether-yeet-") as scratch:
        if source is None:
            if dry_run:
                info = envpack.detect_env()
                source = str(envpack.default_output(info, compress, Path(scratch)))
            else:
                packed = envpack.pack(None, scratch, compress=compress)
                source = str(packed.path)
                if not quiet and not as_json:
                    click.echo(
                        f"packed {packed.prefix} into {packed.path.name} "
                        f"({envpack.human_bytes(packed.size)}, {packed.seconds:.1f} s)",
                        err=True,
                    )
        if dry_run:
            for line in envpack.describe_plan(source, hosts, dest, carrier, fanout, extract):
                click.echo(line)
            return
        say = None if quiet or as_json else (lambda msg: click.echo(msg, err=True))
        result = envpack.yeet(
            source,
            hosts,
            dest,
            carrier,
            fanout=fanout,
            extract=extract,
            retries=retries,
            on_event=say,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for h in result.hosts:
            state = "ok" if h.ok else f"FAILED: {h.error}"
            came = f"from {h.source}" if h.source else ""
            click.echo(f"{h.host:<24} {came:<30} {state}")
        click.echo(
            f"{sum(h.ok for h in result.hosts)}/{len(result.hosts)} hosts in "
            f"{result.seconds:.1f} s, tree depth {result.rounds}"
        )
    if not result.ok:
        click.get_current_context().exit(1)
