"""Escaping for every output wscap writes.

Everything shown to a person comes off the wire, so every string is hostile
until escaped for the exact place it goes: a terminal, a Markdown table, an
HTML page, a CSV cell or a Mermaid label. Each function here takes any ``str``
(wire bytes arrive decoded as ISO-8859-1, one code point per byte) and returns
text that is inert in its target.

The first step is always the same: control characters become visible escapes
(``\\x1b``, ``\\r``, ``\\n``, ``\\t``, ``\\x9b``), because an invisible byte in a
header is exactly what a person debugging a handshake needs to see. That
covers C0, DEL, C1 (0x9b is a one-byte CSI on some terminals) and the Unicode
bidi/zero-width format characters that can reorder or hide text.
"""
from __future__ import annotations

import html as _html
import re

__all__ = [
    "visible",
    "term",
    "md_cell",
    "md_text",
    "md_fence",
    "html",
    "html_pre",
    "csv_cell",
    "mermaid",
    "raw_head_lines",
]

_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}

# C0, DEL, C1, and the Unicode format characters used for "trojan source"
# tricks (bidi embeddings/overrides/isolates, zero-width chars, BOM).
_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]"
)


def _visible_char(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named is not None:
        return named
    o = ord(c)
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def visible(s: object) -> str:
    """Make every control/format character visible as a backslash escape."""
    if s is None:
        return ""
    return _CONTROL_RE.sub(_visible_char, str(s))


def term(s: object) -> str:
    """Text safe to print on a terminal.

    ANSI escape sequences cannot survive: their ESC (or the one-byte C1 CSI
    0x9b) is shown as ``\\x1b``/``\\x9b``, so the rest of the sequence is
    printed as harmless text. CR, LF and TAB are shown as ``\\r``, ``\\n``,
    ``\\t`` so one value can never fake extra lines or overwrite a line.
    """
    return visible(s)


# Characters with meaning somewhere in CommonMark/GFM inline syntax. Every
# ASCII punctuation character may be backslash-escaped in CommonMark, so
# escaping a few too many is harmless, while missing one (a backslash before
# a '|', say) would let a value split a table cell.
_MD_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>|~&#!{}$])")


def md_text(s: object) -> str:
    """Inline Markdown text (paragraphs, list items, headings).

    Control characters become visible, then Markdown punctuation is
    backslash-escaped: ``|`` cannot split a table cell, backticks cannot open
    a code span, ``<`` cannot open raw HTML or an autolink, ``*``/``_``/``~``
    cannot add emphasis, ``[``/``]`` cannot make links. A leading ``+``,
    ``-``, ``=`` or ``N.`` could start a list or setext heading when the text
    begins a line, so those are escaped at the start too.
    """
    t = _md_inline(s)
    # Line-start constructs: lists (-, +, 1.), headings (#, handled above),
    # setext underline (=), blockquote (>, handled above).
    # Up to three leading spaces still count as "line start" for these (CommonMark §5.2).
    t = re.sub(r"^( {0,3})([+\-=])", r"\1\\\2", t)
    t = re.sub(r"^( {0,3})(\d+)([.)])", r"\1\2\\\3", t)
    # Four leading spaces would make an indented code block: the first one
    # becomes a character reference, which is text.
    if t.startswith("    "):
        t = "&#32;" + t[1:]
    return t


def md_cell(s: object) -> str:
    """Text for one cell of a GFM table.

    Same inline rules as :func:`md_text` (a cell holds inline content only,
    so line-start constructs need no escaping). Newlines are shown as
    ``\\n``, so a value never ends the row; ``|`` is ``\\|``.
    """
    return _md_inline(s)


# GFM's extended autolinks: bare URLs, `www.` names and e-mail addresses become links. An escaped
# ':' stops the first, an escaped '.' after `www` the second; nothing inside the text stops the
# third (escapes and entities are merged back first), so an address goes into a code span,
# where no autolink applies (it holds only [A-Za-z0-9._+-@]: nothing to escape).
_EMAIL_RE = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+")
_WWW_RE = re.compile(r"(?i)(www)\.")


def _md_escape(v: str) -> str:
    return _WWW_RE.sub(r"\1\\.", _MD_SPECIAL_RE.sub(r"\\\1", v).replace("://", "\\://"))


def _md_inline(s: object) -> str:
    v = visible(s)
    if "@" not in v:
        return _md_escape(v)
    out, last = [], 0
    for m in _EMAIL_RE.finditer(v):
        out.append(_md_escape(v[last:m.start()]))
        out.append(f"`{m.group(0)}`")
        last = m.end()
    out.append(_md_escape(v[last:]))
    return "".join(out)


def md_fence(s: str, info: str = "") -> str:
    """A fenced code block holding ``s`` verbatim (after :func:`visible` per line).

    The fence is made of more backticks than the longest backtick run in the
    content, so the content can never close it early. Lines are kept as lines;
    callers pass text whose control characters are already made visible
    (see :func:`raw_head_lines`).
    """
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{s}\n{fence}"


def html(s: object) -> str:
    """Text for HTML element content or a quoted attribute value.

    Control characters are made visible first (they are invisible or invalid
    in HTML), then ``& < > " '`` are entity-encoded.
    """
    return _html.escape(visible(s), quote=True)


def html_pre(s: str) -> str:
    """Multi-line display text for ``<pre>``: line breaks kept, all else as :func:`html`.

    For text that already went through :func:`raw_head_lines`; any control
    character other than LF left in it is still made visible.
    """
    return "\n".join(html(line) for line in str(s).split("\n"))


# Spreadsheet formula triggers (OWASP CSV injection): a cell starting with one
# of these is evaluated by Excel/LibreOffice/Sheets.
_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(s: object) -> str:
    """Text for one CSV cell.

    A cell starting with ``= + - @``, TAB or CR gets a leading ``'`` so
    spreadsheets treat it as text, not a formula. Control characters are then
    made visible so ``cat report.csv`` on a terminal is safe as well.
    (Quoting of commas and quotes is left to the ``csv`` module.)
    """
    if s is None:
        return ""
    t = str(s)
    if t.startswith(_CSV_TRIGGERS):
        t = "'" + t
    return visible(t)


# Characters passed through unchanged in Mermaid labels; everything else is
# written as a Mermaid entity code (#NN;), which Mermaid decodes itself.
# ';' ends a statement, '#' starts an entity, '<' can inject <br>/HTML,
# '%%' starts a comment. (':' is fine inside labels: checked with mmdc.)
_MERMAID_SAFE_RE = re.compile(r"[^A-Za-z0-9 ._/=,:()\-+*@?!'\[\]]")


def mermaid(s: object) -> str:
    """Text for a Mermaid label (participant alias, message or note text)."""
    t = visible(s)
    return _MERMAID_SAFE_RE.sub(lambda m: f"#{ord(m.group(0))};", t)


def raw_head_lines(raw: str) -> str:
    """A raw HTTP head as display lines, control characters made visible.

    CRLF ends a line silently (the normal case); a bare LF ends the line too
    but is shown as a visible ``\\n`` at the end, because bare-LF heads are a
    real interoperability problem. A stray CR stays visible as ``\\r``.
    """
    if not raw:
        return ""
    out: list[str] = []
    parts = raw.split("\n")
    for i, line in enumerate(parts):
        last = i == len(parts) - 1
        if last:
            if line:
                out.append(visible(line))
            break
        if line.endswith("\r"):
            out.append(visible(line[:-1]))
        else:
            out.append(visible(line) + "\\n")
    # A head ends with an empty line (CRLF CRLF); drop trailing blank display lines.
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out)
