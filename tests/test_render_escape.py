"""Escaping functions: each output context gets text that is inert there."""
from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from wscap.render import escape

MD = MarkdownIt("commonmark", {"html": True}).enable("table")

# Every code point a latin-1 decoded wire byte can be, plus the Unicode
# format characters that names or previews could carry.
wire_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40)
any_text = st.one_of(wire_text, st.text(alphabet=st.sampled_from(
    list("|`<>&*_[]\\#!:/=+-@ \t\r\n\x1b\x9b") + ["\u202e", "\u200b", "a", "1"]), max_size=30))


def test_term_makes_controls_visible():
    assert escape.term("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert escape.term("a\rb\nc\td") == "a\\rb\\nc\\td"
    assert escape.term("\x9b2J\x00\x7f") == "\\x9b2J\\x00\\x7f"
    assert escape.term("\u202eevil") == "\\u202eevil"
    assert escape.term("plain text: é ü") == "plain text: é ü"
    assert escape.term(None) == ""


@given(any_text)
@settings(max_examples=300)
def test_term_output_has_no_control_characters(s):
    out = escape.term(s)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert "\u202e" not in out


def test_md_cell_escapes_table_syntax():
    assert escape.md_cell("a|b") == "a\\|b"
    assert escape.md_cell("`x`") == "\\`x\\`"
    assert escape.md_cell("<script>") == "\\<script\\>"
    assert escape.md_cell("a\nb") == "a\\\\nb"           # visible \n, backslash escaped for Markdown
    assert escape.md_cell("http://x") == "http\\://x"    # no autolink


def _cell_texts(md: str) -> list[list[str]]:
    rows, row, text, cell = [], None, [], False
    for tok in MD.parse(md):
        if tok.type == "tr_open":
            row = []
        elif tok.type in ("td_open", "th_open"):
            cell, text = True, []
        elif tok.type == "inline" and cell:
            for ch in tok.children or []:
                assert ch.type in ("text", "code_inline", "softbreak"), ch.type
                text.append(ch.content)
        elif tok.type in ("td_close", "th_close"):
            row.append("".join(text))
            cell = False
        elif tok.type == "tr_close":
            rows.append(row)
    return rows


@given(any_text, any_text)
@settings(max_examples=300, deadline=None)
def test_md_cell_round_trips_through_a_real_parser(a, b):
    """Whatever the value, the table keeps 3 columns and each cell reads back as visible(value)."""
    md = "| x | y | z |\n|---|---|---|\n| " + " | ".join([escape.md_cell(a), escape.md_cell(b), "end"]) + " |\n"
    rows = _cell_texts(md)
    assert rows[1] == [escape.visible(a).strip(), escape.visible(b).strip(), "end"]


@given(any_text)
@settings(max_examples=200, deadline=None)
def test_md_text_is_one_plain_paragraph(s):
    md = "Value: " + escape.md_text(s)
    tokens = MD.parse(md)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    kids = tokens[1].children or []
    assert all(k.type == "text" for k in kids), [k.type for k in kids]
    # (trailing whitespace of a paragraph is not content)
    assert "".join(k.content for k in kids).rstrip() == ("Value: " + escape.visible(s)).rstrip()


@given(any_text)
@settings(max_examples=200, deadline=None)
def test_md_text_at_line_start_is_still_a_paragraph(s):
    t = escape.md_text(s)
    if not escape.visible(s).strip():
        return
    tokens = MD.parse(t)
    assert tokens[0].type == "paragraph_open", (s, t, [x.type for x in tokens])


def test_md_fence_cannot_be_closed_from_inside():
    body = "```\n````\nx"
    md = escape.md_fence(body, "http")
    tokens = MD.parse(md)
    assert [t.type for t in tokens] == ["fence"]
    assert tokens[0].content == body + "\n"


def test_html_escapes_markup_and_controls():
    assert escape.html('<script>alert("x")</script>') == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert escape.html("a\x1bb'") == "a\\x1bb&#x27;"


@pytest.mark.parametrize("value", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx",
                                   '=HYPERLINK("http://evil","x")'])
def test_csv_cell_defuses_formulas(value):
    out = escape.csv_cell(value)
    assert out.startswith("'")
    assert out[1:] == escape.visible(value)


def test_csv_cell_leaves_plain_text_alone():
    assert escape.csv_cell("GET /ws") == "GET /ws"
    assert escape.csv_cell("a=b") == "a=b"


@given(any_text)
@settings(max_examples=200)
def test_csv_cell_never_starts_with_a_trigger_and_round_trips(s):
    out = escape.csv_cell(s)
    assert not out.startswith(("=", "+", "-", "@", "\t", "\r"))
    buf = io.StringIO()
    csv.writer(buf).writerow([out, "x"])
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == [out, "x"]


def test_mermaid_label_encodes_statement_syntax():
    assert escape.mermaid("a;b") == "a#59;b"
    assert escape.mermaid("#x") == "#35;x"
    assert escape.mermaid("<br>") == "#60;br#62;"
    assert escape.mermaid("%%") == "#37;#37;"
    assert escape.mermaid("\n") == "#92;n"
    assert escape.mermaid("GET /ws: ok") == "GET /ws: ok"


def test_raw_head_lines():
    assert escape.raw_head_lines("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "GET / HTTP/1.1\nHost: x"
    # bare LF ends the line but stays visible; a stray CR is visible
    assert escape.raw_head_lines("GET / HTTP/1.1\nHost: a\rb\r\n\r\n") == "GET / HTTP/1.1\\n\nHost: a\\rb"
    assert escape.raw_head_lines("X: \x1b[2J\r\n") == "X: \\x1b[2J"


def test_md_text_with_leading_spaces_stays_a_paragraph():
    tokens = MD.parse(escape.md_text("    code?"))
    assert tokens[0].type == "paragraph_open"
    assert tokens[1].children[0].content == "    code?"
