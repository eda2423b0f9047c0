"""Incident report (Markdown + HTML) and document filters.

The Markdown report is parsed with markdown-it-py (CommonMark + GFM tables,
raw HTML *enabled* as on GitHub, so injected markup would show up as tokens)
and its tables are checked cell by cell against values taken from the input
document. The HTML report is parsed with lxml.
"""
from __future__ import annotations

import json
import pathlib
import re

import lxml.html
import pytest
from markdown_it import MarkdownIt

from wscap.render import escape
from wscap.render.mermaid import fmt_ts
from wscap.render.redact import redact_document
from wscap.render.report import (CAUSE_ADVICE, advice_for, filter_document, report_html, report_markdown,
                                 write_report)

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"
MD = MarkdownIt("commonmark", {"html": True}).enable("table")


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def _inline_text(tok) -> str:
    out = []
    for ch in tok.children or []:
        assert ch.type in ("text", "code_inline", "softbreak", "strong_open", "strong_close",
                           "link_open", "link_close"), ch.type
        if ch.type == "link_open":
            assert ch.attrs["href"].startswith("#chain-")
        out.append(ch.content)
    return "".join(out)


def md_tables(md: str) -> list[tuple[str, list[list[str]]]]:
    """Every table with the text of the heading or paragraph just before it."""
    tokens = MD.parse(md)
    out, last, rows, row, cell = [], "", None, None, None
    for tok in tokens:
        if tok.type == "inline" and cell is None and rows is None:
            last = _inline_text(tok)
        elif tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            cell = ""
        elif tok.type == "inline" and cell is not None:
            cell = _inline_text(tok)
        elif tok.type in ("th_close", "td_close"):
            row.append(cell)
            cell = None
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close":
            out.append((last, rows))
            rows = None
    return out


def table_after(md: str, title: str) -> list[list[str]]:
    found = [rows for t, rows in md_tables(md) if t.startswith(title)]
    assert found, f"no table after {title!r}: {[t for t, _ in md_tables(md)]}"
    return found[0]


def fences(md: str) -> list[tuple[str, str]]:
    return [(t.info, t.content) for t in MD.parse(md) if t.type == "fence"]


def no_html_tokens(md: str) -> None:
    for tok in MD.parse(md):
        assert tok.type != "html_block", tok.content
        for ch in tok.children or []:
            assert ch.type != "html_inline", ch.content


def expected_filter(client: str, server: str) -> str:
    def part(a: str) -> str:
        host, port = (a[1:].split("]:") if a.startswith("[") else a.rsplit(":", 1))
        return f"{'ipv6' if ':' in host else 'ip'}.addr=={host} && tcp.port=={port}"
    return f"{part(client)} && {part(server)}"


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["healthy-2hop", "origin-rejected-2hop", "refused-v6", "hostile"])
def test_markdown_report_is_clean_markdown(name):
    doc = load(name)
    for d in (doc, redact_document(doc)):
        md = report_markdown(d)
        no_html_tokens(md)
        # every table row has exactly as many cells as its header
        for _, rows in md_tables(md):
            assert len({len(r) for r in rows}) == 1


def test_origin_rejected_report_tables_cell_by_cell():
    doc = load("origin-rejected-2hop")
    md = report_markdown(doc)
    ch = doc["chains"][0]
    v = ch["verdict"]

    summary = dict((r[0], r[1]) for r in table_after(md, "Summary")[1:])
    assert summary["Broken, by cause"] == "origin-rejected: 1"
    assert summary["Chains"] == "1: 1 broken, 0 healthy"
    assert summary["Handshakes"] == f"{len(doc['handshakes'])} (2 WebSocket)"

    eps = table_after(md, "Endpoints")
    assert eps[0] == ["IP", "Name", "Role", "Ports"]
    assert eps[1:] == [[e["ip"], e["name"] or "", e["role"], ", ".join(map(str, e["ports"]))]
                       for e in doc["endpoints"]]

    ev = table_after(md, "Evidence")
    assert ev[1:] == [[str(e["frame"]), doc["source"][e["source"]]["path"], e["what"]] for e in v["evidence"]]

    req_diff = next(d for d in ch["diffs"] if d["direction"] == "request")
    rows = table_after(md, "Request: as the proxy received it")
    assert rows[0] == ["Change", "Header", "Before (hop 0)", "After (hop 1)", "Class", "Why"]
    assert rows[1:] == [[c["kind"], c["name"], c["before"] if c["before"] is not None else "(absent)",
                         c["after"] if c["after"] is not None else "(absent)", c["class"], c["why"]]
                        for c in req_diff["changes"]]

    by_cause = table_after(md, "Broken chains by cause")
    assert by_cause[1:] == [["origin-rejected", "1", "1"]]

    advice = table_after(md, "What to check, by cause")
    assert advice[1][0] == "origin-rejected"
    assert "rewriteWsOrigin: true" in advice[1][1] and "ALLOWED_ORIGINS" in advice[1][1]


def test_report_shows_every_raw_head_and_leg_filter():
    doc = load("origin-rejected-2hop")
    md = report_markdown(doc)
    bodies = [c for info, c in fences(md) if info == "http"]
    for hs in doc["handshakes"]:
        for side in ("request", "response"):
            assert escape.raw_head_lines(hs[side]["raw"]) + "\n" in bodies
    codes = [ch.content for t in MD.parse(md) for ch in (t.children or []) if ch.type == "code_inline"]
    for hs in doc["handshakes"]:
        assert expected_filter(hs["client"], hs["server"]) in codes


def test_ipv6_leg_filter_and_missing_heads():
    doc = load("refused-v6")
    md = report_markdown(doc)
    codes = [ch.content for t in MD.parse(md) for ch in (t.children or []) if ch.type == "code_inline"]
    assert "ipv6.addr==::1 && tcp.port==50000 && ipv6.addr==::1 && tcp.port==5173" in codes
    assert "ip.addr==127.0.0.1 && tcp.port==41000 && ip.addr==127.0.0.1 && tcp.port==24678" in codes
    assert "no request was sent" in md
    ev = table_after(md, "Evidence")
    assert ev[0] == ["Frame", "Hop", "Capture", "What"]
    assert ev[1:] == [[str(e["frame"]), f"{doc['chains'][0]['hops'].index(e['hop_id'])} (handshake {e['hop_id']})",
                       doc["source"][0]["path"], e["what"]] for e in doc["chains"][0]["verdict"]["evidence"]]
    lone = table_after(md, "Handshakes outside any chain")
    h3 = doc["handshakes"][2]
    assert lone[1][0] == str(h3["id"]) and lone[1][5] == h3["outcome"]
    assert lone[1][6] == expected_filter(h3["client"], h3["server"])
    summary = dict((r[0], r[1]) for r in table_after(md, "Summary")[1:])
    assert summary["Capture problems"] == doc["source"][0]["errors"][0]


def test_mermaid_block_marks_the_failing_hop():
    doc = load("origin-rejected-2hop")
    md = report_markdown(doc)
    mer = [c for info, c in fences(md) if info == "mermaid"]
    assert len(mer) == 1
    src = mer[0]
    assert src.startswith("sequenceDiagram\n")
    assert "P2--xP1: #10006; 403 Forbidden" in src
    assert "Note over P1,P2: #10006; failing hop 1: origin-rejected" in src
    # 3 participants for 2 hops, named from the endpoint table
    assert src.count("participant ") == 3
    assert "meetsonar-backend (backend)" in src


def test_raw_heads_are_cut_at_the_bound():
    doc = load("origin-rejected-2hop")
    md = report_markdown(doc, max_head=40)
    raw = doc["handshakes"][0]["request"]["raw"]
    bodies = [c for info, c in fences(md) if info == "http"]
    assert escape.raw_head_lines(raw[:40]) + "\n" in bodies
    assert f"cut at 40 characters, {len(raw) - 40} more not shown" in md


def test_healthy_chains_in_one_table():
    doc = load("healthy-2hop")
    md = report_markdown(doc)
    rows = table_after(md, "Healthy chains")
    assert rows[0][:4] == ["Chain", "Path (status per hop)", "Request", "Verdict"]
    assert rows[1][0] == "1" and rows[1][2] == "GET /ws" and rows[1][3] == "ok"
    assert rows[1][1] == ("172.18.0.1:51234 \u2192 meetsonar-frontend 172.18.0.2:5173 (101) \u2192 "
                          "meetsonar-backend 172.18.0.3:5000 (101)")
    assert "No broken chains." in md


def test_advice_table_covers_core_causes():
    for cause in ("origin-rejected", "upgrade-header-stripped", "connection-header-stripped",
                  "upstream-refused", "no-upstream-connection", "timeout"):
        assert CAUSE_ADVICE[cause]
    text = " ".join(" ".join(v) for v in CAUSE_ADVICE.values())
    for needle in ("proxyReqWs", "changeOrigin", "rewriteWsOrigin", "ALLOWED_ORIGINS", "hmr.clientPort",
                   "Compose service name", "`localhost` inside a container", "proxy_http_version 1.1",
                   "proxy_set_header Upgrade", "proxy_set_header Connection"):
        assert needle in text, needle
    assert advice_for("ok") == []
    assert advice_for("some-new-origin-thing") == CAUSE_ADVICE["origin-rejected"]
    assert advice_for("???")  # generic fallback


# ---------------------------------------------------------------------------
# HTML report

def _html_tree(text: str):
    return lxml.html.document_fromstring(text.encode("utf-8"))


def test_html_report_is_self_contained_and_inert():
    for name in ("origin-rejected-2hop", "hostile", "refused-v6", "healthy-2hop"):
        text = report_html(redact_document(load(name)))
        tree = _html_tree(text)
        assert not tree.xpath("//script|//iframe|//object|//embed|//link|//img|//foreignObject")
        for el in tree.iter():
            if not isinstance(el.tag, str):
                continue
            for attr, val in el.attrib.items():
                assert not attr.lower().startswith("on"), (el.tag, attr)
                if attr in ("src", "href"):
                    assert not val.startswith(("http:", "https:", "//")), val
        assert "Content-Security-Policy" in text


def test_html_report_tables_and_svg():
    doc = load("origin-rejected-2hop")
    tree = _html_tree(report_html(doc))
    svgs = tree.xpath("//*[local-name()='svg']")
    assert len(svgs) == 1
    svg_text = " ".join(t.strip() for t in svgs[0].xpath(".//text()") if t.strip())
    assert "\u2716 403 Forbidden" in svg_text
    assert "failing hop 1: origin-rejected" in svg_text
    for e in doc["endpoints"]:
        if e["name"]:
            assert e["name"] in svg_text
    # the evidence table, cell by cell
    h4 = [h for h in tree.xpath("//h4") if h.text_content() == "Evidence"][0]
    table = h4.getnext()
    rows = [[td.text_content() for td in tr.xpath("./td")] for tr in table.xpath(".//tbody/tr")]
    assert rows == [[str(e["frame"]), doc["source"][0]["path"], e["what"]] for e in doc["chains"][0]["verdict"]["evidence"]]
    pres = [p.text_content() for p in tree.xpath("//pre")]
    for hs in doc["handshakes"]:
        assert escape.raw_head_lines(hs["request"]["raw"]) in pres


def test_write_report_picks_format_by_suffix(tmp_path):
    doc = load("healthy-2hop")
    assert write_report(doc, str(tmp_path / "r.html")) == "html"
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert write_report(doc, str(tmp_path / "r.md")) == "markdown"
    assert (tmp_path / "r.md").read_text().startswith("# WebSocket incident report")


# ---------------------------------------------------------------------------
# filters

def _merged() -> dict:
    """healthy + origin-rejected as one document with distinct ids."""
    a, b = load("healthy-2hop"), load("origin-rejected-2hop")
    for hs in b["handshakes"]:
        hs["id"] += 10
        hs["source"] = 1
    for ch in b["chains"]:
        ch["id"] = 2
        ch["hops"] = [x + 10 for x in ch["hops"]]
        ch["links"] = [{**ln, "from": ln["from"] + 10, "to": ln["to"] + 10} for ln in ch["links"]]
    b["handshakes"][0]["request"]["headers"][0][1] = "app.example:5173"
    a["source"] += b["source"]
    a["handshakes"] += b["handshakes"]
    a["chains"] += b["chains"]
    a["summary"] = {"handshakes": 4, "websocket": 4, "chains": 2, "broken": 1,
                    "by_cause": {"ok": 1, "origin-rejected": 1}}
    return a


def test_filter_none_is_a_copy():
    doc = _merged()
    out = filter_document(doc)
    assert out == doc and out is not doc


def test_filter_only_broken():
    out = filter_document(_merged(), only_broken=True)
    assert [c["id"] for c in out["chains"]] == [2]
    assert [h["id"] for h in out["handshakes"]] == [11, 12]
    assert out["summary"]["broken"] == 1 and out["summary"]["by_cause"] == {"origin-rejected": 1}
    assert out["summary"]["handshakes"] == 2
    assert out["filter"]["only_broken"] is True
    assert out["source"] == _merged()["source"]


def test_filter_chain_id_int_or_str():
    for cid in (1, "1"):
        out = filter_document(_merged(), chain=cid)
        assert [c["id"] for c in out["chains"]] == [1]
        assert [h["id"] for h in out["handshakes"]] == [1, 2]


def test_filter_host_header_ip_or_name_glob():
    doc = _merged()
    assert [c["id"] for c in filter_document(doc, host="app.example")["chains"]] == [2]
    assert [c["id"] for c in filter_document(doc, host="APP.example:5173")["chains"]] == [2]
    assert [c["id"] for c in filter_document(doc, host="*.example")["chains"]] == [2]
    assert [c["id"] for c in filter_document(doc, host="meetsonar-backend")["chains"]] == [1, 2]
    assert [c["id"] for c in filter_document(doc, host="172.18.0.3")["chains"]] == [1, 2]
    assert filter_document(doc, host="nothing.here")["chains"] == []
    assert filter_document(doc, host="nothing.here")["endpoints"] == []


def test_filter_path_glob_ignores_query():
    doc = _merged()
    assert [c["id"] for c in filter_document(doc, path="/ws")["chains"]] == [1, 2]
    assert [c["id"] for c in filter_document(doc, path="/w*")["chains"]] == [1, 2]
    assert filter_document(doc, path="/api/*")["chains"] == []
    assert [c["id"] for c in filter_document(doc, path="/ws", only_broken=True)["chains"]] == [2]


def test_filter_lone_handshakes():
    doc = load("refused-v6")  # handshake 3 is in no chain and got no response
    out = filter_document(doc, only_broken=True)
    assert [h["id"] for h in out["handshakes"]] == [1, 2, 3]
    out = filter_document(doc, chain=1)
    assert [h["id"] for h in out["handshakes"]] == [1, 2]
    out = filter_document(doc, host="api.internal")
    assert [h["id"] for h in out["handshakes"]] == [3] and out["chains"] == []


def test_ladder_marks_headers_a_proxy_broke():
    doc = load("origin-rejected-2hop")
    ch = doc["chains"][0]
    ch["diffs"][0]["changes"].append({"kind": "changed", "name": "origin", "before": "http://localhost:5173",
                                      "after": "http://meetsonar-backend:5000", "class": "breaking",
                                      "why": "Origin rewritten"})
    src = [c for info, c in fences(report_markdown(doc)) if info == "mermaid"][0]
    hop1 = next(line for line in src.splitlines() if line.startswith("    P1->>P2: "))
    assert "#10006; origin: http://meetsonar-backend:5000" in hop1
    assert "Origin: " not in hop1  # the unmarked line is replaced, not repeated


def test_filtered_documents_say_so():
    from wscap.render.html import render_html
    from wscap.render.markdown import render_markdown

    out = filter_document(_merged(), only_broken=True, host="app*")
    for text in (render_markdown(out), report_markdown(out), render_html(out), report_html(out)):
        plain = re.sub(r"<[^>]+>", "", text).replace("**", "").replace("\\*", "*")
        assert "Filtered: only broken, host=app*" in plain


def test_only_the_first_broken_chains_are_detailed():
    doc = load("origin-rejected-2hop")
    ch = doc["chains"][0]
    doc["chains"] = [dict(ch, id=k) for k in range(1, 6)]
    md = report_markdown(doc, max_chains=2)
    assert sum(1 for info, _ in fences(md) if info == "mermaid") == 2
    rest = table_after(md, "3 more broken chains")
    assert [r[0] for r in rest[1:]] == ["3", "4", "5"]
    assert all(r[1] == "origin-rejected" and r[2] == "1" for r in rest[1:])


def test_render_format_defaults():
    from wscap.render.report import render_format

    doc = load("hostile")
    secret = doc["handshakes"][0]["request"]["target"].split("token=")[1].split("&")[0]
    for fmt in ("markdown", "html", "csv"):
        assert secret not in render_format(doc, fmt)
        assert secret in render_format(doc, fmt, redact=False)
    assert secret in render_format(doc, "har")
    assert secret not in render_format(doc, "har", redact=True)
    with pytest.raises(ValueError):
        render_format(doc, "yaml")


def test_broken_hops_show_frames_and_connection_facts():
    doc = load("healthy-2hop")
    ch = doc["chains"][0]
    ch["verdict"].update(cause="closed-after-upgrade", hop=1, broken=True)
    hs = doc["handshakes"][1]
    hs["tcp"]["end"] = {"kind": "rst", "by": "server", "frame": 19, "ts": hs["last_ts"]}
    hs["tcp"]["gaps"] = 2
    hs["parsers"]["h11"]["response"] = {"accepts": False, "error": "illegal header line"}
    md = report_markdown(doc)
    frames = [rows for title, rows in md_tables(md) if title.startswith("WebSocket frames")]
    assert len(frames) == 2
    assert frames[1][1:] == [[str(f["frame"]), "client \u2192 server" if f["dir"] == "client" else "server \u2192 client",
                              f"{f['opcode']} {f['opcode_name']}", "FIN", "yes" if f["masked"] else "no",
                              str(f["length"]), "", f["preview"]] for f in hs["frames"]]
    items = [t.content for t in MD.parse(md) if t.type == "inline"]
    assert "Connection ended: RST by server (frame 19, " + fmt_ts(hs["last_ts"]) + ")." in items
    assert "2 missing byte ranges in this connection (packets lost by the capture): parts of the heads may be missing." in items
    assert "h11 rejects the response head: illegal header line." in items
    assert "Connection still open when the capture ended." in items  # hop 0 has no end


def test_contents_links_point_at_the_chain_sections():
    doc = load("origin-rejected-2hop")
    doc["chains"] = [dict(doc["chains"][0], id=k) for k in (1, 2)]
    md = report_markdown(doc)
    links = [ch.attrs["href"] for t in MD.parse(md) for ch in (t.children or []) if ch.type == "link_open"]
    assert links == ["#chain-1-origin-rejected-at-hop-1", "#chain-2-origin-rejected-at-hop-1"]
    toks = MD.parse(md)
    headings = [toks[i + 1].content for i, t in enumerate(toks) if t.type == "heading_open"
                and toks[i + 1].content.startswith("Chain ")]
    assert headings == ["Chain 1: origin-rejected at hop 1", "Chain 2: origin-rejected at hop 1"]
    tree = _html_tree(report_html(doc))
    hrefs = tree.xpath("//a/@href")
    assert hrefs == ["#chain-1", "#chain-2"]
    for h in hrefs:
        assert tree.xpath(f"//*[@id='{h[1:]}']")


def test_tolerated_problems_get_their_own_section():
    """cause != ok but broken = false: detailed, marked with a warning, not counted as broken."""
    doc = load("healthy-2hop")
    doc["chains"][0]["verdict"].update(cause="malformed-response", hop=1, broken=False)
    md = report_markdown(doc)
    summary = dict((r[0], r[1]) for r in table_after(md, "Summary")[1:])
    assert summary["Chains"] == "1: 0 broken, 1 working with problems, 0 healthy"
    assert summary["Broken, by cause"] == "none"
    assert summary["Working with problems, by cause"] == "malformed-response: 1"
    toks = MD.parse(md)
    heads = [toks[i + 1].content for i, t in enumerate(toks) if t.type == "heading_open"]
    assert "Working, with problems" in heads
    assert "Chain 1: malformed-response at hop 1 (tolerated)" in heads
    mer = [c for info, c in fences(md) if info == "mermaid"][0]
    assert "Note over P1,P2: #9888; hop 1: malformed-response (tolerated)" in mer
    assert "No healthy chains." in md and "No broken chains." in md
