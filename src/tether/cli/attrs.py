"""`tether label`, `tether tag`, `tether note`: append-only events in each run's attrs/ folder.

RUNS is one argument: an index, a slice (`1:3`), an id or name prefix, or several of those
separated by commas (`1,4,0193f1c4`).
"""

from __future__ import annotations

from typing import Any

import click

from .args import complete_runs
from .main import store_from

RUNS_HELP = "RUNS: an index, a slice (1:3), an id or name prefix; commas for several (1,3)."


def _runs(ctx: click.Context, runs: str) -> tuple[Any, list[Any], dict[str, str]]:
    """The store, the run records RUNS names, and short ids to print them with."""
    from ..ids import short_ids
    from ..store.lifecycle import resolve_many

    store = store_from(ctx)
    rows = resolve_many(store, [runs])
    shorts = short_ids(store.index.ids())
    return store, [store.load(r.id) for r in rows], shorts


def _who(record: Any, shorts: dict[str, str]) -> str:
    return f"{shorts.get(record.id, record.id[:13])} ({record.name})"


@click.command(epilog=RUNS_HELP)
@click.argument("runs", metavar="RUNS", shell_complete=complete_runs)
@click.argument("text", metavar="[LABEL]", required=False)
@click.option("--clear", is_flag=True, help="Remove the label instead.")
@click.pass_context
def label(ctx: click.Context, runs: str, text: str | None, clear: bool) -> None:
    """Set the label of RUNS to LABEL (the latest label wins), or --clear it."""
    if clear and text is not None:
        raise click.UsageError("--clear takes no LABEL")
    if not clear and text is None:
        raise click.UsageError("give a LABEL, or --clear to remove the label")
    if text is not None and not text.strip():
        raise click.UsageError("LABEL is empty; use --clear to remove a label")
    store, records, shorts = _runs(ctx, runs)
    for record in records:
        if clear:
            if record.attrs.label is None:
                click.echo(f"{_who(record, shorts)}: no label")
                continue
            store.add_attr(record, "label", None)
            click.echo(f"{_who(record, shorts)}: label cleared")
        else:
            store.add_attr(record, "label", text)
            click.echo(f"{_who(record, shorts)}: label {text!r}")


class TagCommand(click.Command):
    """`tether tag 1 +good -cpu`: `+TAG` adds TAG and `-TAG` removes it, as typed.

    Click would read `-cpu` as the options -c -p -u, so the words are sorted out before it
    parses: `-TAG` becomes `--remove TAG`, `+TAG` and a plain `TAG` become TAG arguments, and
    every argument goes after a `--` (a tag may start with `-` once written `+-x` or after the
    user's own `--`). `-h`, `--help`, `-r TAG` and `--remove[=]TAG` keep their meaning (`-rTAG`
    is the tag `rTAG` removed, not `-r TAG`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options: list[str] = []
        words: list[str] = []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                words.extend(rest)
                break
            if arg in ("-r", "--remove"):
                value = next(rest, None)
                if value is None:  # `-r` last: click says it needs a value (or completes one)
                    return super().parse_args(ctx, [*words, arg])
                options += [arg, value]
            elif arg.startswith("--") or arg == "-h":
                options.append(arg)
            elif arg.startswith("-") and len(arg) > 1:
                options += ["--remove", arg[1:]]
            elif arg.startswith("+") and len(arg) > 1 and words:
                words.append(arg[1:])
            else:
                words.append(arg)
        return super().parse_args(ctx, [*options, "--", *words])


@click.command(cls=TagCommand, epilog=RUNS_HELP)
@click.argument("runs", metavar="RUNS", shell_complete=complete_runs)
@click.argument("tags", metavar="[+TAG|-TAG]...", nargs=-1)
@click.option(
    "-r", "--remove", "removed", multiple=True, metavar="TAG", help="Remove TAG (repeatable)."
)
@click.pass_context
def tag(ctx: click.Context, runs: str, tags: tuple[str, ...], removed: tuple[str, ...]) -> None:
    """Add and remove tags of RUNS: `tether tag 1 +good -cpu` adds `good` and removes `cpu`
    (a TAG without + is added too; --remove TAG removes). With no TAG, print the tags of RUNS.

    Words after `--` are tags to add as written: `tether tag 1 -- -odd` adds `-odd`.
    """
    for t in (*tags, *removed):
        if not t.strip():
            raise click.UsageError("a TAG is empty")
        if t != t.strip() or "," in t:
            raise click.UsageError(f"tag {t!r}: no commas, and no spaces at either end")
    store, records, shorts = _runs(ctx, runs)
    for record in records:
        if not tags and not removed:
            click.echo(f"{_who(record, shorts)}: {' '.join(record.attrs.tags) or '(no tags)'}")
            continue
        changes = []
        for t in tags:
            if t not in record.attrs.tags:
                store.add_attr(record, "tag", t)
                changes.append(f"+{t}")
        for t in removed:
            if t in record.attrs.tags:
                store.add_attr(record, "untag", t)
                changes.append(f"-{t}")
        now = " ".join(record.attrs.tags) or "(no tags)"
        if changes:
            click.echo(f"{_who(record, shorts)}: {' '.join(changes)} -> {now}")
        else:
            click.echo(f"{_who(record, shorts)}: unchanged -> {now}")


@click.command(epilog=RUNS_HELP)
@click.argument("runs", metavar="RUNS", shell_complete=complete_runs)
@click.argument("words", metavar="[TEXT]...", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="List the notes as JSON.")
@click.pass_context
def note(ctx: click.Context, runs: str, words: tuple[str, ...], as_json: bool) -> None:
    """Add a note (TEXT, its words joined by spaces) to RUNS. With no TEXT, list their notes.

    Each note records its author (git config user.name and user.email, else $USER@host) and
    time. Notes are never edited or removed: add another one.
    """
    text = " ".join(words).strip()
    if words and not text:
        raise click.UsageError("the note is empty")
    if text and as_json:
        raise click.UsageError("--json lists notes; it takes no TEXT")
    store, records, shorts = _runs(ctx, runs)
    if text:
        for record in records:
            store.add_attr(record, "note", text)
            click.echo(f"{_who(record, shorts)}: note added")
        return
    if as_json:
        import json

        out = [{"id": r.id, "name": r.name, "notes": r.attrs.notes} for r in records]
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for record in records:
        click.echo(_who(record, shorts))
        if not record.attrs.notes:
            click.echo("  (no notes)")
        for n in record.attrs.notes:
            click.echo(f"  {n.get('t') or '?'}  {n.get('author') or '?'}")
            for line in str(n.get("text") or "").splitlines() or [""]:
                click.echo(f"    {line}")
