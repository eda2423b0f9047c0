"""`analyze --format markdown|html` listings, checked cell by cell."""
from __future__ import annotations

import json
import pathlib

import lxml.html
from markdown_it import MarkdownIt

from wscap.render.html import render_html
from wscap.render.markdown import HANDSHAKE_HEADER, render_markdown
from wscap.render.mermaid import fmt_ts

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"
MD = MarkdownIt("commonmark", {"html": True}).enable("table")


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def md_tables(md: str) -> list[list[list[str]]]:
    tables, rows, row, cell = [], None, None, None
    for tok in MD.parse(md):
        if tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            cell = ""
        elif tok.type == "inline" and cell is not None:
            assert all(c.type in ("text", "code_inline") for c in tok.children or [])
            cell = "".join(c.content for c in tok.children or [])
        elif tok.type in ("th_close", "td_close"):
            row.append(cell)
            cell = None
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close":
            tables.append(rows)
    return tables


def expected_handshake_rows(doc: dict) -> list[list[str]]:
    names = {e["ip"]: e["name"] for e in doc["endpoints"]}
    chain_of = {h: (c["id"], i) for c in doc["chains"] for i, h in enumerate(c["hops"])}

    def who(addr: str) -> str:
        ip = addr[1:].split("]")[0] if addr.startswith("[") else addr.rsplit(":", 1)[0]
        return f"{names[ip]} {addr}" if names.get(ip) else addr

    rows = []
    for hs in doc["handshakes"]:
        req = hs["request"] or {}
        hdr = {n.lower(): v for n, v in req.get("headers", [])}
        c = chain_of.get(hs["id"])
        rows.append([str(hs["id"]), f"{c[0]}/{c[1]}" if c else "", who(hs["client"]), who(hs["server"]),
                     f"{req.get('method', '')} {req.get('target', '')}".strip(), hdr.get("host", ""),
                     hdr.get("origin", ""), str(hs["status"]) if hs["status"] is not None else "",
                     hs["outcome"], ", ".join(f"{a['severity']}:{a['code']}" for a in hs["anomalies"]),
                     f"{hs['first_frame']}\u2013{hs['last_frame']}", fmt_ts(hs["first_ts"])])
    return rows


def test_markdown_listing_handshake_table():
    for name in ("healthy-2hop", "origin-rejected-2hop", "refused-v6"):
        doc = load(name)
        tables = md_tables(render_markdown(doc))
        hs_table = next(t for t in tables if t[0] == HANDSHAKE_HEADER)
        assert hs_table[1:] == expected_handshake_rows(doc)


def test_markdown_listing_chain_and_capture_tables():
    doc = load("origin-rejected-2hop")
    md = render_markdown(doc)
    assert "2 handshakes (2 WebSocket), 1 chain, 1 broken (origin-rejected: 1)." in md
    tables = md_tables(md)
    chains = tables[0]
    assert chains[1][0] == "1" and chains[1][1] == "\u2716 origin-rejected"
    assert chains[1][3] == "GET /ws?room=standup"
    assert chains[1][5] == doc["chains"][0]["verdict"]["summary"]
    caps = tables[-1]
    src = doc["source"][0]
    assert caps[1][:5] == ["0", src["path"], src["format"], str(src["packets"]), str(src["bytes"])]
    assert caps[1][7] == "276 LINUX_SLL2 (any)"


def test_markdown_listing_of_an_empty_document():
    doc = {"version": 1, "tool": "wscap 0.1.0", "source": [], "handshakes": [], "chains": [],
           "endpoints": [], "stats": {}, "summary": {"handshakes": 0, "websocket": 0, "chains": 0,
                                                     "broken": 0, "by_cause": {}}}
    md = render_markdown(doc)
    assert "No handshakes found." in md
    assert "<!DOCTYPE html>" in render_html(doc)


def test_html_listing_table_matches_markdown():
    doc = load("refused-v6")
    tree = lxml.html.document_fromstring(render_html(doc).encode())
    tables = tree.xpath("//table")
    hs_table = next(t for t in tables if [th.text_content() for th in t.xpath(".//th")] == HANDSHAKE_HEADER)
    rows = [[td.text_content() for td in tr.xpath("./td")] for tr in hs_table.xpath(".//tbody/tr")]
    assert rows == expected_handshake_rows(doc)
    # broken chain rows are highlighted
    assert tree.xpath("//tr[@class='breaking']")


def _live_events(doc: dict) -> list[dict]:
    ev = [{"type": "handshake", "handshake": h} for h in doc["handshakes"]]
    ev += [{"type": "chain", "chain": c} for c in doc["chains"]]
    ev.append({"type": "summary", **{k: v for k, v in doc.items() if k not in ("handshakes", "chains")}})
    return ev


def test_live_markdown_stream_is_one_table_then_summary():
    from wscap.render.markdown import LIVE_HEADER, LiveMarkdown

    doc = load("hostile")
    lm = LiveMarkdown()
    chunks = [lm.event(e) for e in _live_events(doc)]
    assert all(c.endswith("\n") for c in chunks)
    md = "".join(chunks)
    tables = md_tables(md)
    assert len(tables) == 1 and tables[0][0] == LIVE_HEADER
    rows = tables[0][1:]
    assert [r[1] for r in rows] == ["handshake"] * len(doc["handshakes"]) + ["chain"] * len(doc["chains"])
    cookie = dict((n.lower(), v) for n, v in doc["handshakes"][0]["request"]["headers"])["cookie"]
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert secret not in md                      # the verdict quotes it: redacted with its hops
    assert rows[-1][5] == "\u2716 origin-rejected at hop 1"
    assert md.rstrip().endswith("1 broken (origin-rejected: 1).")
    plain = LiveMarkdown(redact=False)
    rows = md_tables("".join(plain.event(e) for e in _live_events(doc)))[0][1:]
    assert secret in rows[-1][6]
