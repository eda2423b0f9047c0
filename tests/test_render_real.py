"""Every renderer on the analyzer's real output for the recorded lab captures."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re

import lxml.html
import pytest
from markdown_it import MarkdownIt

from wscap.render import escape
from wscap.render.csv import render_csv
from wscap.render.har import render_har
from wscap.render.html import render_html
from wscap.render.markdown import render_markdown
from wscap.render.redact import redact_document
from wscap.render.report import filter_document, report_html, report_markdown

ROOT = os.path.join(os.path.dirname(__file__), "..")
REAL = sorted(glob.glob(os.path.join(ROOT, "pcaps", "*.pcap")))
MD = MarkdownIt("commonmark", {"html": True}).enable("table")
pytestmark = pytest.mark.skipif(not REAL, reason="no recorded captures in pcaps/")
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@pytest.fixture(scope="module")
def doc():
    from wscap import analyze_paths

    return analyze_paths(REAL)


def _check_markdown(md: str) -> list:
    tokens = MD.parse(md)
    for tok in tokens:
        assert tok.type != "html_block"
        for ch in tok.children or []:
            assert ch.type != "html_inline", ch.content
    widths, width = [], None
    for tok in tokens:
        if tok.type == "tr_open":
            width = 0
        elif tok.type in ("th_open", "td_open"):
            width += 1
        elif tok.type == "tr_close":
            widths.append(width)
        elif tok.type == "table_close":
            assert len(set(widths)) == 1, widths
            widths = []
    return tokens


def test_every_format_renders_all_captures(doc):
    for d in (doc, redact_document(doc)):
        for md in (render_markdown(d), report_markdown(d)):
            assert not RAW_CONTROL.search(md)
            _check_markdown(md)
        for page in (render_html(d), report_html(d)):
            tree = lxml.html.document_fromstring(page.encode())
            assert not tree.xpath("//script")
        rows = list(csv.DictReader(io.StringIO(render_csv(d))))
        assert len(rows) == len(d["handshakes"])
        har = render_har(d)
        assert len(har["log"]["entries"]) == sum(1 for h in d["handshakes"] if h["request"] is not None)
        json.dumps(har)


def test_report_has_a_ladder_per_broken_chain_and_every_head(doc):
    md = report_markdown(doc)
    tokens = _check_markdown(md)
    fences = [(t.info, t.content) for t in tokens if t.type == "fence"]
    broken = [c for c in doc["chains"] if c["verdict"]["broken"]]
    tolerated = [c for c in doc["chains"] if not c["verdict"]["broken"] and c["verdict"]["cause"] != "ok"]
    assert sum(1 for info, _ in fences if info == "mermaid") == len(broken) + len(tolerated)
    bodies = {c for info, c in fences if info == "http"}
    by_id = {h["id"]: h for h in doc["handshakes"]}
    for ch in broken:
        for hid in ch["hops"]:
            for side in ("request", "response"):
                head = by_id[hid][side]
                if head and len(head["raw"]) <= 4096:
                    assert escape.raw_head_lines(head["raw"]) + "\n" in bodies


def test_origin_rewrite_report():
    from wscap import analyze_paths

    path = os.path.join(ROOT, "pcaps", "origin-rewrite.pcap")
    if not os.path.exists(path):
        pytest.skip("pcaps/origin-rewrite.pcap not recorded")
    doc = analyze_paths([path])
    ch = next(c for c in doc["chains"] if c["verdict"]["broken"])
    assert ch["verdict"]["cause"] == "origin-rejected"
    md = report_markdown(redact_document(doc))
    tokens = _check_markdown(md)
    # The breaking Origin change is the first row of the request diff table.
    change = next(c for d in ch["diffs"] if d["direction"] == "request" for c in d["changes"]
                  if c["class"] == "breaking")
    rows, in_table, row = [], False, None
    for tok in tokens:
        if tok.type == "inline" and not in_table and tok.content.startswith("**Request: as the proxy"):
            in_table = True
        elif in_table and tok.type == "tr_open":
            row = []
        elif in_table and tok.type == "inline" and row is not None:
            row.append("".join(c.content for c in tok.children or []))
        elif in_table and tok.type == "tr_close":
            rows.append(row)
            row = None
        elif in_table and tok.type == "table_close":
            break
    assert rows[1][:5] == [change["kind"], change["name"], change["before"], change["after"], "breaking"]
    mer = next(t.content for t in tokens if t.type == "fence" and t.info == "mermaid")
    assert f"#10006; origin: {change['after']}" in mer
    assert "Note over P1,P2: #10006; failing hop 1: origin-rejected" in mer


def test_filters_on_real_captures(doc):
    broken = filter_document(doc, only_broken=True)
    assert broken["chains"] and all(c["verdict"]["broken"] for c in broken["chains"])
    one = filter_document(doc, chain=doc["chains"][0]["id"])
    assert [c["id"] for c in one["chains"]] == [doc["chains"][0]["id"]]
    hmr = filter_document(doc, path="/ws")
    for c in hmr["chains"]:
        targets = [h["request"]["target"].split("?")[0] for h in hmr["handshakes"]
                   if h["id"] in c["hops"] and h["request"]]
        assert "/ws" in targets
