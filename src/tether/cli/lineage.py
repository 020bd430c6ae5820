"""`tether lineage RUN [--down]`: the runs a run consumed (or, with --down, that consumed it)."""

from __future__ import annotations

import json
from typing import Any

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option("--down", is_flag=True, help="Show the runs that consumed RUN (recursively) instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON.")
@click.pass_context
def lineage(ctx: click.Context, run: str, down: bool, as_json: bool) -> None:
    """Show the upstream tree of RUN: the previous stages it consumed, and theirs.

    Each line shows the run's short id, name and status, and the stage name it was consumed
    as. An upstream run that is no longer in the store shows as missing.
    """
    from ..capture.lineage import downstream_tree, upstream_tree
    from ..ids import short_ids

    store = store_from(ctx)
    record = store.resolve_one(run)
    root = downstream_tree(store, record) if down else upstream_tree(store, record)
    shorts = short_ids(store.index.ids())
    if as_json:
        out = _node_dict(root, shorts)
        out["direction"] = "down" if down else "up"
        click.echo(json.dumps(out, indent=2))
        return
    _print_tree(root, shorts, down)


def _node_dict(node: Any, shorts: dict[str, str]) -> dict[str, Any]:
    return {
        "id": node.id,
        "short_id": shorts.get(node.id, node.id[:13]),
        "name": None if node.missing else node.name,
        "status": node.status,
        "stage": node.stage,
        "missing": node.missing,
        "children": [_node_dict(c, shorts) for c in node.children],
    }


def _label(node: Any, shorts: dict[str, str], down: bool) -> Any:
    from rich.text import Text

    from .render import STATUS_STYLE

    text = Text()
    text.append(shorts.get(node.id, node.id[:13]), style="bold")
    if node.missing:
        text.append("  missing", style="red")
        text.append("  (not in this runs root)", style="dim")
    else:
        text.append(f"  {node.name}  ")
        text.append(node.status, style=STATUS_STYLE.get(node.status, ""))
    if node.stage:
        # Upstream: the child was consumed by its parent as this stage; downstream: the child
        # consumed its parent as this stage.
        text.append(f"  {'consumed it as' if down else 'as'} {node.stage}", style="dim")
    return text


def _print_tree(root: Any, shorts: dict[str, str], down: bool) -> None:
    from rich.console import Console
    from rich.tree import Tree

    tree = Tree(_label(root, shorts, down))

    def add(branch: Any, node: Any) -> None:
        for child in node.children:
            add(branch.add(_label(child, shorts, down)), child)

    add(tree, root)
    console = Console(highlight=False)
    console.print(tree)
    if not root.children:
        console.print("[dim]no run consumed it[/dim]" if down else "[dim]no previous stages[/dim]")
