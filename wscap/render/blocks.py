"""The report's block model and its two writers.

A report is built once as a list of blocks (headings, paragraphs, tables, preformatted heads,
ladder diagrams) holding plain, unescaped strings; the Markdown and HTML writers here escape
every piece of text they are given, so the two formats cannot drift apart."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, Union

from wscap.render import escape
from wscap.render import html as H
from wscap.render.markdown import md_table
from wscap.render.mermaid import ladder, sequence_diagram


@dataclass
class Code:
    """Generated text (filters, frame numbers) shown as code."""
    text: str


@dataclass
class Strong:
    text: str
    cls: str = ""    # "bad" / "ok": colour in HTML


@dataclass
class Link:
    """A link to a heading of this report (never to anything outside it)."""
    text: str
    heading: str     # the target heading's text (Markdown: GitHub's anchor for it)
    anchor: str      # the target's id (HTML)


Inline = Union[str, Code, Strong, Link]
Cell = Union[Inline, Sequence[Inline]]


@dataclass
class Heading:
    level: int
    parts: Sequence[Inline]
    anchor: str = ""


@dataclass
class Para:
    parts: Sequence[Inline]
    cls: str = ""


@dataclass
class Bullets:
    items: Sequence[Sequence[Inline]]


@dataclass
class Table:
    header: Sequence[str]
    rows: Iterable[Sequence[Cell]]      # a generator when the rows come from the spool
    row_classes: Sequence[str] = field(default_factory=list)


@dataclass
class Pre:
    caption: Sequence[Inline]
    text: str        # display text, control characters already visible


@dataclass
class Diagram:
    doc: dict[str, Any]
    chain: dict[str, Any]


Block = Union[Heading, Para, Bullets, Table, Pre, Diagram]


def rich(text: str) -> list[Inline]:
    """Split *our own* advice text on `backticks` into text and code parts."""
    parts: list[Inline] = []
    for k, piece in enumerate(text.split("`")):
        if piece:
            parts.append(Code(piece) if k % 2 else piece)
    return parts



def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def md_inline(parts: Iterable[Inline] | Inline, cell: bool) -> str:
    if isinstance(parts, (str, Code, Strong, Link)):
        parts = [parts]
    out = []
    for k, p in enumerate(parts):
        if isinstance(p, Link):
            out.append(f"[{escape.md_cell(p.text)}]({github_anchor(escape.visible(p.heading))})")
        elif isinstance(p, Code):
            t = escape.visible(p.text)
            if cell:
                t = t.replace("|", "\\|")
            # A fence longer than any backtick run inside cannot be closed early.
            n = 1
            while "`" * n in t:
                n += 1
            fence = "`" * n
            pad = " " if t.startswith("`") or t.endswith("`") else ""
            out.append(f"{fence}{pad}{t}{pad}{fence}")
        elif isinstance(p, Strong):
            inner = escape.md_cell(p.text)
            trail = ""
            # '**x **' does not close emphasis: keep trailing spaces outside.
            while inner.endswith(" "):
                inner, trail = inner[:-1], trail + " "
            out.append(f"**{inner}**{trail}" if inner else trail)
        else:
            out.append(escape.md_cell(p) if (cell or k > 0) else escape.md_text(p))
    return "".join(out)


def md_block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + md_inline(b.parts, cell=True)
    if isinstance(b, Para):
        return md_inline(b.parts, cell=False)
    if isinstance(b, Bullets):
        return "\n".join("- " + md_inline(item, cell=True) for item in b.items)
    if isinstance(b, Table):
        return md_table([escape.md_cell(h) for h in b.header],
                        [[md_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c), cell=True)
                          for c in row] for row in b.rows])
    if isinstance(b, Pre):
        return md_inline(b.caption, cell=False) + ":\n\n" + escape.md_fence(b.text, "http")
    if isinstance(b, Diagram):
        return escape.md_fence(sequence_diagram(b.doc, b.chain).rstrip("\n"), "mermaid")
    raise TypeError(b)



def html_inline(parts: Iterable[Inline] | Inline) -> str:
    if isinstance(parts, (str, Code, Strong, Link)):
        parts = [parts]
    out = []
    for p in parts:
        if isinstance(p, Link):
            out.append(f'<a href="#{escape.html(p.anchor)}">{escape.html(p.text)}</a>')
        elif isinstance(p, Code):
            out.append(f"<code>{escape.html(p.text)}</code>")
        elif isinstance(p, Strong):
            cls = f' class="{escape.html(p.cls)}"' if p.cls else ""
            out.append(f"<strong{cls}>{escape.html(p.text)}</strong>")
        else:
            out.append(escape.html(p))
    return "".join(out)


def html_block(b: Block) -> str:
    if isinstance(b, Heading):
        anchor = f' id="{escape.html(b.anchor)}"' if b.anchor else ""
        return f"<h{b.level}{anchor}>{html_inline(b.parts)}</h{b.level}>"
    if isinstance(b, Para):
        cls = f' class="{escape.html(b.cls)}"' if b.cls else ""
        return f"<p{cls}>{html_inline(b.parts)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{html_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return H.table([escape.html(h) for h in b.header],
                       [[html_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c)) for c in row]
                        for row in b.rows], list(b.row_classes))
    if isinstance(b, Pre):
        return f"<p>{html_inline(b.caption)}:</p>\n<pre>{escape.html_pre(b.text)}</pre>"
    if isinstance(b, Diagram):
        return f'<div class="diagram">{H.ladder_svg(ladder(b.doc, b.chain))}</div>'
    raise TypeError(b)

