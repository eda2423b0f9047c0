"""The hostile document through every output format.

tests/fixtures/docs/hostile.json carries ANSI escapes (and the one-byte C1
CSI), '|', backticks, '<script>', '=HYPERLINK(...)', a Cookie, an
Authorization bearer, a token in the query and a JWT in
Sec-WebSocket-Protocol. Every expected value below is read from that input
document (and transformed with the documented rule, e.g. visible()), never
from a renderer's output.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import pathlib
import re

import lxml.html
from markdown_it import MarkdownIt

from wscap.render import escape
from wscap.render.csv import COLUMNS, render_csv
from wscap.render.har import render_har_json
from wscap.render.html import render_html
from wscap.render.markdown import render_markdown
from wscap.render.mermaid import sequence_diagram
from wscap.render.redact import redact_document
from wscap.render.report import report_html, report_markdown

DOC = json.loads((pathlib.Path(__file__).parent / "fixtures" / "docs" / "hostile.json").read_text())
MD = MarkdownIt("commonmark", {"html": True}).enable("table")

REQ = DOC["handshakes"][0]["request"]
HDR = {n.lower(): v for n, v in REQ["headers"]}
BACKEND_NAME = DOC["endpoints"][2]["name"]
REASON = DOC["handshakes"][0]["response"]["reason"]

SECRETS = [
    HDR["cookie"].split(";")[0].split("=", 1)[1],                           # session cookie value
    HDR["authorization"].split(" ", 1)[1],                                  # bearer token
    HDR["sec-websocket-protocol"].split("authorization.bearer.", 1)[1],     # JWT subprotocol
    REQ["target"].split("token=", 1)[1].split("&", 1)[0],                   # query token
]
HOSTILE_VALUES = [HDR["host"], HDR["user-agent"], HDR["x-note"], HDR["x-formula"], HDR["x-pipe"],
                  HDR["x-newline"], BACKEND_NAME, REASON, DOC["chains"][0]["verdict"]["summary"]]
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")   # anything but LF


def h(v: str) -> str:
    return f"[redacted sha256:{hashlib.sha256(v.encode('latin-1')).hexdigest()[:8]}]"


def assert_redacted(text: str, shows_cookie: bool = True) -> None:
    for s in SECRETS:
        assert s not in text, s
    if shows_cookie:  # the format shows the Cookie header: its value's hash is there
        assert h(SECRETS[0]) in text


def test_the_fixture_is_as_hostile_as_claimed():
    assert "\x1b[" in HDR["user-agent"] and "\x9b" in HDR["user-agent"]
    assert "<script>" in HDR["x-note"]
    assert HDR["x-formula"].startswith("=HYPERLINK(") and HDR["origin"] == HDR["x-formula"]
    assert "|" in HDR["x-pipe"] and "`" in HDR["x-pipe"]
    assert SECRETS[2].startswith("eyJ")


# ---- Markdown ----------------------------------------------------------------

def _md_texts(md: str) -> tuple[list[str], list[str]]:
    """(every inline text run, every html token) of a Markdown document."""
    texts, html = [], []
    for tok in MD.parse(md):
        if tok.type in ("html_block",):
            html.append(tok.content)
        if tok.type == "fence":
            texts.append(tok.content)
        for ch in tok.children or []:
            if ch.type == "html_inline":
                html.append(ch.content)
            if ch.type in ("text", "code_inline"):
                texts.append(ch.content)
    return texts, html


def _md_cells(md: str) -> list[str]:
    cells, cell = [], None
    for tok in MD.parse(md):
        if tok.type in ("td_open", "th_open"):
            cell = ""
        elif tok.type == "inline" and cell is not None:
            cell = "".join(ch.content for ch in tok.children or [])
        elif tok.type in ("td_close", "th_close"):
            cells.append(cell)
            cell = None
    return cells


def test_markdown_listing():
    md = render_markdown(redact_document(DOC))
    assert not RAW_CONTROL.search(md)
    assert_redacted(md, shows_cookie=False)
    texts, html = _md_texts(md)
    assert html == []
    cells = _md_cells(md)
    # Cells read back as exactly the visible form of the input values.
    assert escape.visible(HDR["host"]) in cells
    assert escape.visible(HDR["origin"]) in cells
    assert any(escape.visible(BACKEND_NAME) in c for c in cells)
    summary = redact_document(DOC)["chains"][0]["verdict"]["summary"]
    assert escape.visible(summary) in cells
    # Column count never broken by a '|' in a value.
    for line in md.splitlines():
        if line.startswith("| "):
            assert len(re.findall(r"(?<!\\)\|", line.replace("\\\\", ""))) in (8, 13, 6, 11)


def test_markdown_report():
    md = report_markdown(redact_document(DOC))
    assert not RAW_CONTROL.search(md)
    assert_redacted(md, shows_cookie=False)
    texts, html = _md_texts(md)
    assert html == []
    joined = "\n".join(texts)
    assert_redacted(joined)
    for v in (HDR["x-note"], HDR["x-formula"], HDR["x-pipe"], HDR["user-agent"], REASON):
        assert escape.visible(v) in joined, v
    # The request head, as a fence whose content is the visible raw head (redacted).
    raw = redact_document(DOC)["handshakes"][0]["request"]["raw"]
    fences = [t.content for t in MD.parse(md) if t.type == "fence" and t.info == "http"]
    assert escape.raw_head_lines(raw) + "\n" in fences
    # The diff table keeps its 6 columns with '|' and backticks in values.
    cells = _md_cells(md)
    assert escape.visible(HDR["x-pipe"]) in cells and escape.visible(HDR["x-pipe"] + "|") in cells


def test_markdown_without_redaction_shows_secrets_escaped():
    md = report_markdown(DOC)
    texts, html = _md_texts(md)
    assert html == []
    joined = "\n".join(texts)
    for s in SECRETS:
        assert s in joined


# ---- HTML ----------------------------------------------------------------------

def _check_html(text: str) -> str:
    assert not RAW_CONTROL.search(text)
    tree = lxml.html.document_fromstring(text.encode("utf-8"))
    assert not tree.xpath("//script|//img|//iframe|//i|//b"), "markup from a wire value became an element"
    return tree.text_content()


def test_html_listing():
    out = render_html(redact_document(DOC))
    assert_redacted(out, shows_cookie=False)
    content = _check_html(out)
    for v in (HDR["host"], HDR["origin"], BACKEND_NAME, DOC["handshakes"][0]["anomalies"][0]["message"]):
        assert escape.visible(v) in content, v


def test_html_report():
    out = report_html(redact_document(DOC))
    assert_redacted(out)
    content = _check_html(out)
    for v in (HDR["x-note"], HDR["x-formula"], HDR["x-pipe"], HDR["user-agent"], REASON, BACKEND_NAME):
        assert escape.visible(v) in content, v


# ---- CSV -----------------------------------------------------------------------

def test_csv():
    out = render_csv(redact_document(DOC))
    assert not RAW_CONTROL.search(out.replace("\r\n", "\n"))
    assert_redacted(out, shows_cookie=False)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0].keys()) == COLUMNS
    r0 = rows[0]
    assert r0["origin"] == "'" + escape.visible(HDR["origin"])     # formula defused
    assert r0["host"] == escape.visible(HDR["host"])
    assert r0["reason"] == escape.visible(REASON)
    assert r0["server_name"] == DOC["endpoints"][1]["name"]
    assert rows[1]["server_name"] == escape.visible(BACKEND_NAME)
    for row in rows:
        for v in row.values():
            assert not v.startswith(("=", "+", "-", "@")), v


# ---- HAR -----------------------------------------------------------------------

def test_har_is_exact_json_and_redactable():
    full = json.loads(render_har_json(DOC))
    e = full["log"]["entries"][0]
    assert {x["name"]: x["value"] for x in e["request"]["headers"]}["User-Agent"] == HDR["user-agent"]
    assert e["request"]["cookies"][0] == {"name": "session", "value": SECRETS[0]}
    red = render_har_json(redact_document(DOC))
    assert_redacted(red)


# ---- Mermaid ---------------------------------------------------------------------

STATEMENT = re.compile(r"^(sequenceDiagram|    participant P\d+ as (<br/>|#\d+;|[^;#<>\n])*"
                       r"|    P\d+(->>|-->>|--x)P\d+: .*|    Note over P\d+,P\d+: .*)$")


def test_mermaid_source_has_only_our_syntax():
    src = sequence_diagram(DOC, DOC["chains"][0])
    assert not RAW_CONTROL.search(src)
    for line in src.rstrip("\n").split("\n"):
        assert STATEMENT.match(line), line
        body = line.split(": ", 1)[1] if ": " in line and not line.startswith("    participant") else line
        # After removing our own <br/> and entity codes nothing special is left.
        rest = re.sub(r"#\d+;", "", body.replace("<br/>", ""))
        assert not re.search(r"[;#<>%`|&\\]", rest), line


# ---- terminal ----------------------------------------------------------------------

def test_term_neutralises_every_hostile_value():
    for v in HOSTILE_VALUES:
        out = escape.term(v)
        assert "\x1b" not in out and "\x9b" not in out and "\n" not in out and "\r" not in out
        assert out == escape.visible(v)
