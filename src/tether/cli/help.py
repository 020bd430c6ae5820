"""`tether help [TOPIC]`: the pages of docs/ in the terminal.

The pages are looked for inside the installed package first (`tether/docs/*.md`, where a build
that ships them puts them), then in the checkout tether runs from (`<repo>/docs`, next to
`src/`). On a terminal a page is rendered with rich's Markdown; piped, it is printed as written.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

# Not a topic: the table of contents (`tether help` is that list).
_SKIPPED = {"index"}


def docs_folder() -> Path | None:
    """The folder of the docs pages, or None when this copy of tether has none."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "docs"
    if (shipped / "cli.md").is_file():
        return shipped
    checkout = package.parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "docs" / "cli.md").is_file():
        return checkout / "docs"
    return None


def topics(folder: Path) -> dict[str, tuple[Path, str]]:
    """topic -> (page, title): every docs/*.md but the index, titled by its first heading."""
    out: dict[str, tuple[Path, str]] = {}
    for page in sorted(folder.glob("*.md")):
        if page.stem in _SKIPPED:
            continue
        title = ""
        with page.open(encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("# "):
                    title = line[2:].strip()
                    break
        out[page.stem] = (page, title.replace("`", ""))
    return out


def _missing() -> None:
    from ..errors import TetherError

    raise TetherError(
        "the docs pages are not installed with this copy of tether",
        "read them in the docs/ folder of tether's repository",
    )


@click.command("help", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("topic", required=False, shell_complete=lambda ctx, p, inc: complete_topics(inc))
def help_cmd(topic: str | None) -> None:
    """Print the docs page TOPIC (operations, queries, launch, ...); with no TOPIC, list them.

    On a terminal the page is rendered; piped, it is printed as Markdown.
    """
    folder = docs_folder()
    if folder is None:
        _missing()
        return
    pages = topics(folder)
    if topic is None:
        width = max(len(name) for name in pages)
        lines = ["topics (tether help TOPIC):"]
        lines += [f"  {name:<{width}}  {title}" for name, (_, title) in pages.items()]
        lines.append("a command's options: tether COMMAND --help")
        _out("\n".join(lines) + "\n")
        return
    key = topic.removesuffix(".md")
    if key not in pages:
        from ..errors import TetherError, did_you_mean

        near = [name for name in pages if name.startswith(key)]
        hint = near[0] if len(near) == 1 else did_you_mean(key, list(pages))
        raise TetherError(
            f"no help topic {topic!r}",
            f"did you mean {hint!r}?" if hint else f"topics: {', '.join(pages)}",
        )
    text = pages[key][0].read_text(encoding="utf-8")
    if not sys.stdout.isatty():
        _out(text)
        return
    _render(text)


def _out(text: str) -> None:
    # Flushed here, so that a reader that stops early (`| head`) is seen by `main` (exit 0),
    # not by the interpreter's last flush (exit 1).
    click.echo(text, nl=False)
    sys.stdout.flush()


def _render(text: str) -> None:
    # rich only when a page is rendered: `tether help` piped starts as fast as `--help`
    from rich.console import Console
    from rich.markdown import Markdown

    # The test suite's markers (`<!-- doctest: ... -->`) say nothing to a reader.
    text = re.sub(r"(?m)^<!--.*?-->\n", "", text)
    Console().print(Markdown(text))


def complete_topics(incomplete: str) -> list[str]:
    folder = docs_folder()
    if folder is None:
        return []
    return [name for name in topics(folder) if name.startswith(incomplete)]
