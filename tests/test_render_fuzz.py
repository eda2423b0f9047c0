"""Property test: any wire string anywhere in a document, every format stays inert.

Hypothesis replaces the string values of a contract document (header names
and values, targets, reasons, names, summaries, previews, paths...) with
arbitrary latin-1 text and checks each renderer: no crash, no raw control
character, Markdown parses with no HTML token and constant table widths,
HTML has no element that came from the data, CSV cells never start a
formula, Mermaid lines keep their statement shape.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import pathlib
import re

import lxml.html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from wscap.render.csv import render_csv
from wscap.render.har import render_har_json
from wscap.render.html import render_html
from wscap.render.markdown import render_markdown
from wscap.render.mermaid import sequence_diagram
from wscap.render.redact import redact_document
from wscap.render.report import report_html, report_markdown

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"
BASE = [json.loads((DOCS / f"{n}.json").read_text()) for n in ("origin-rejected-2hop", "refused-v6")]
MD = MarkdownIt("commonmark", {"html": True}).enable("table")
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# Keys whose values the analyzer computes itself (addresses are parsed
# ip:port, enums are fixed): leave them so the document stays well-formed.
KEEP = {"client", "server", "outcome", "direction", "kind", "class", "severity", "opcode_name", "dir",
        "format", "role", "ip", "by", "version"}

nasty = st.lists(st.one_of(
    st.characters(min_codepoint=0, max_codepoint=255),
    st.sampled_from(["|", "`", "<script>", "</td>", "\x1b[31m", "\r\n", "=", "#59;", ";", "%%", "-->>",
                     "\u202e", "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2ln", "**", "[x](javascript:1)",
                     "http://evil.example/", "    "])),
    max_size=12).map("".join)


def _string_paths(obj, path=()):
    if isinstance(obj, str):
        yield path
    elif isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from _string_paths(x, path + (i,))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in KEEP:
                yield from _string_paths(v, path + (k,))


PATHS = [list(_string_paths(d)) for d in BASE]


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


@st.composite
def documents(draw):
    k = draw(st.integers(0, len(BASE) - 1))
    doc = copy.deepcopy(BASE[k])
    for path in draw(st.lists(st.sampled_from(PATHS[k]), min_size=1, max_size=25)):
        _set(doc, path, draw(nasty))
    return doc


def _check_md(md: str) -> None:
    assert not RAW_CONTROL.search(md)
    widths: list[int] = []
    width = 0
    for tok in MD.parse(md):
        assert tok.type != "html_block", tok.content
        for ch in tok.children or []:
            assert ch.type not in ("html_inline", "image"), ch
            if ch.type == "link_open":  # only the report's own contents list
                assert ch.attrs["href"].startswith("#chain-"), ch.attrs
        if tok.type == "tr_open":
            width = 0
        elif tok.type in ("th_open", "td_open"):
            width += 1
        elif tok.type == "tr_close":
            widths.append(width)
        elif tok.type == "table_close":
            assert len(set(widths)) == 1, widths
            widths = []


def _check_html(page: str) -> None:
    assert not RAW_CONTROL.search(page)
    tree = lxml.html.document_fromstring(page.encode())
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "h5", "p", "strong",
               "code", "pre", "table", "thead", "tbody", "tr", "th", "td", "div", "ul", "li", "svg", "line",
               "rect", "path", "text", "tspan", "a"}
    for el in tree.iter():
        if isinstance(el.tag, str):
            assert el.tag.split("}")[-1] in allowed, el.tag
            assert not any(a.lower().startswith("on") for a in el.attrib)
            if el.tag == "a":
                assert set(el.attrib) == {"href"} and el.attrib["href"].startswith("#chain-")


STATEMENT = re.compile(r"^(sequenceDiagram|    participant P\d+ as .*|    P\d+(->>|-->>|--x)P\d+: .*"
                       r"|    Note over P\d+,P\d+: .*)$")


@given(documents(), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_format_stays_inert(doc, redact):
    d = redact_document(doc) if redact else doc
    _check_md(render_markdown(d))
    _check_md(report_markdown(d))
    _check_html(render_html(d))
    _check_html(report_html(d))
    for row in csv.reader(io.StringIO(render_csv(d))):
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")) and not RAW_CONTROL.search(cell)
            assert not (cell.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", cell))
    json.loads(render_har_json(d))
    for ch in d["chains"]:
        for line in sequence_diagram(d, ch).rstrip("\n").split("\n"):
            assert STATEMENT.match(line), line
            rest = re.sub(r"#\d+;", "", line.replace("<br/>", ""))
            assert not re.search(r"[;<>%`|&\\\n\r]", rest.split(": ", 1)[-1] if "P" in line[:6] else rest)
