"""`tether show RUN`: one run's state, config, metrics and run.lock."""

from __future__ import annotations

import json

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show RUN: where it lives, its state, config, metrics and run.lock."""
    from ..lock import dump_yaml
    from .render import duration

    store = store_from(ctx)
    record = store.resolve_one(run)
    lock = record.lock.to_dict()
    state = record.state.to_dict()
    state["status"] = record.status
    if as_json:
        out = {
            "id": record.id,
            "name": record.name,
            "dir": str(record.dir),
            "state": state,
            "label": record.attrs.label,
            "tags": record.attrs.tags,
            "notes": record.attrs.notes,
            "metrics": record.metrics(),
            "lock": lock,
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.text import Text

    from .render import STATUS_STYLE

    console = Console(highlight=False)
    head = Text()
    head.append(f"{record.id}  ", style="bold")
    head.append(f"{record.name}  ")
    head.append(record.status, style=STATUS_STYLE.get(record.status, ""))
    console.print(head)
    console.print(f"dir:      {record.dir}", soft_wrap=True)
    console.print(
        f"started:  {state.get('started') or '-'}   stopped: {state.get('stopped') or '-'}"
        f"   duration: {duration(state.get('started'), state.get('stopped')) or '-'}"
    )
    if state.get("exit_code") not in (None, 0):
        console.print(f"exit:     {state['exit_code']}   {state.get('error') or ''}")
    if record.attrs.label or record.attrs.tags:
        console.print(
            f"label:    {record.attrs.label or '-'}   tags: {', '.join(record.attrs.tags) or '-'}"
        )
    for note in record.attrs.notes:
        console.print(f"note:     {note['text']} ({note['author']}, {note['t']})")
    _section(
        console, "config", dump_yaml(record.lock.config).rstrip() if record.lock.config else "{}"
    )
    if record.metrics():
        rows = [
            f"{k}: last={v.get('last')} min={v.get('min')} max={v.get('max')}"
            + (f" step={v['step']}" if "step" in v else "")
            for k, v in record.metrics().items()
        ]
        _section(console, "metrics", "\n".join(rows))
    rest = {k: v for k, v in lock.items() if k != "config"}
    _section(console, "run.lock", dump_yaml(rest).rstrip())


def _section(console: object, title: str, body: str) -> None:
    from rich.console import Console

    assert isinstance(console, Console)
    console.print(f"\n[bold]{title}[/bold]")
    console.print(body, markup=False, soft_wrap=True)
