"""A report as blocks (headings, tables, paragraphs, charts), written as Markdown or as one
self-contained HTML page.

Reports build a `Document` once; `to_markdown` links each chart's file relative to the report,
`to_html` inlines each chart as SVG markup, so the page can be mailed or archived alone.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Code:
    """Text shown as code (an id, a command, a digest)."""

    text: str


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Paragraph:
    text: str
    quote: bool = False


@dataclass
class Chart:
    """A chart: its file (linked from Markdown) and its SVG markup (inlined in HTML)."""

    name: str
    path: Path | None = None
    svg: str | None = None


Block = Heading | Table | Paragraph | Chart


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Heading(level, text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(Table(list(header), [list(r) for r in rows]))

    def para(self, text: str, *, quote: bool = False) -> None:
        self.blocks.append(Paragraph(text, quote))

    def chart(self, name: str, path: Path | None = None, svg: str | None = None) -> None:
        self.blocks.append(Chart(name, path, svg))


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


def plain(value: Any) -> str:
    """A cell's text: numbers to 6 significant digits, None as -, booleans in lower case."""
    if isinstance(value, Code):
        return value.text
    if isinstance(value, float):
        return number(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _md_cell(value: Any) -> str:
    text = plain(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    if isinstance(value, Code) and text:
        return "`" + text.replace("`", "'") + "`"
    return text or " "


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(doc: Document, report_path: Path) -> str:
    """The Markdown text; chart links are relative to the folder of `report_path`."""
    out = [f"# {doc.title}"]
    base = report_path.parent.resolve()
    for block in doc.blocks:
        out.append("")
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Table):
            out.append(markdown_table(block.header, block.rows))
        elif isinstance(block, Paragraph):
            out.append(f"> {block.text}" if block.quote else block.text)
        elif block.path is not None:
            link = Path(os.path.relpath(block.path.resolve(), base)).as_posix()
            out.append(f"![{block.name}]({link})")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; }
blockquote { color: #555; border-left: 3px solid #ccc; margin-left: 0; padding-left: 1rem; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
"""


def _html_cell(value: Any) -> str:
    text = html.escape(plain(value))
    if isinstance(value, Code):
        return f"<td><code>{text}</code></td>"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _inline(text: str) -> str:
    """A paragraph's text with `code` spans, everything else escaped."""
    parts = text.split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _svg_body(svg: str) -> str:
    """SVG markup without its XML prolog and DOCTYPE, to sit inside an HTML page."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def to_html(doc: Document) -> str:
    """One HTML page holding everything: tables, and the charts as inline SVG."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Table):
            out.append("<table><thead><tr>")
            out.append("".join(f"<th>{html.escape(h)}</th>" for h in block.header))
            out.append("</tr></thead><tbody>")
            for row in block.rows:
                out.append("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Paragraph):
            tag = "blockquote" if block.quote else "p"
            out.append(f"<{tag}>{_inline(block.text)}</{tag}>")
        elif block.svg is not None:
            out.append(f'<figure aria-label="{html.escape(block.name)}">')
            out.append(_svg_body(block.svg))
            out.append("</figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
