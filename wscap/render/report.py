"""Incident report (``wscap report CAPTURE... -o report.md|.html``) and filters.

The report is built once as a list of blocks (headings, paragraphs, tables,
preformatted heads, ladder diagrams), then written as Markdown or as one
self-contained HTML file. Both writers escape every piece of text they are
given; the blocks themselves hold plain, unescaped strings. So the report's
content is decided in one place and the two formats cannot drift apart.

Contents: a summary (captures, time range, link types, endpoints, handshakes
and chains, broken ones counted by cause); for each broken chain its hop
ladder with the failing hop marked, the verdict and its evidence, the header
diff at the failing boundary, every hop's raw request/response head (escaped,
cut at ``max_head`` characters), a Wireshark filter per leg and what to check
next for its cause; then the healthy chains in one table.

The block model and its writers are in wscap.render.blocks, the advice table in
wscap.render.advice, the filters (``--only-broken/--chain/--host/--path``) in
wscap.render.query and ``analyze --format`` in wscap.render.formats; they are re-exported
here for the callers of this module.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from wscap.render import escape
from wscap.render import html as H
from wscap.render.advice import CAUSE_ADVICE, advice_for
from wscap.render.blocks import (Block, Bullets, Cell, Code, Diagram, Heading, Inline, Link, Para, Pre, Strong,
                                 Table, html_block, html_inline, md_block, md_inline, rich)
from wscap.document.spool import SpooledList
from wscap.render.formats import REDACT_BY_DEFAULT, render_format, write_format
from wscap.render.query import filter_document, is_broken_handshake
from wscap.render.markdown import (REDACTED_NOTE, TLS_HEADER, TLS_NOTE, capture_rows, filter_text, hops_path,
                                   md_table_lines, plural, tls_rows)
from wscap.render.mermaid import (chain_of, endpoint_label, fmt_ts, handshake_index, hop_status, linktype_name,
                                  wireshark_filter)

__all__ = ["filter_document", "render_format", "write_format", "iter_report_markdown", "iter_report_html", "REDACT_BY_DEFAULT", "report_markdown", "report_html", "write_report", "CAUSE_ADVICE",
           "advice_for", "is_broken_handshake", "DEFAULT_MAX_HEAD", "DEFAULT_MAX_CHAINS", "build_report"]

DEFAULT_MAX_HEAD = 4096   # characters of each raw head shown in a report
DEFAULT_MAX_CHAINS = 50   # broken chains detailed; the rest are listed in one table


def _head_text(head: dict[str, Any] | None, max_head: int) -> tuple[str, int]:
    raw = (head or {}).get("raw")
    if not isinstance(raw, str):
        return "", 0
    cut = max(0, len(raw) - max_head)
    return escape.raw_head_lines(raw[:max_head] if cut else raw), cut


def _leg(doc: dict[str, Any], addr: str) -> str:
    name = endpoint_label(doc, addr)[0]
    return f"{name} {addr}" if name else addr


def _source_name(doc: dict[str, Any], idx: Any) -> str:
    src = doc.get("source") or []
    if isinstance(idx, int) and 0 <= idx < len(src):
        return str(src[idx].get("path") or idx)
    return "" if idx is None else str(idx)


def _diff_rows(d: dict[str, Any]) -> tuple[list[list[Cell]], list[str]]:
    """Rows for one diff; expected case-only changes folded into one row."""
    order = {"breaking": 0, "suspicious": 1, "expected": 2}
    changes = sorted((c for c in d.get("changes") or [] if isinstance(c, dict)),
                     key=lambda c: order.get(str(c.get("class")), 3))
    rows: list[list[Cell]] = []
    classes: list[str] = []
    folded = [c for c in changes if c.get("kind") == "case-changed" and c.get("class") == "expected"]
    for c in changes:
        if c in folded:
            continue
        cls = str(c.get("class") or "")
        rows.append([str(c.get("kind") or ""), str(c.get("name") or ""),
                     "(absent)" if c.get("before") is None else str(c.get("before")),
                     "(absent)" if c.get("after") is None else str(c.get("after")),
                     Strong(cls, "bad") if cls == "breaking" else cls, str(c.get("why") or "")])
        classes.append(cls if cls in ("breaking", "suspicious") else "")
    if folded:
        rows.append(["case-changed", ", ".join(str(c.get("name")) for c in folded),
                     ", ".join(str(c.get("before")) for c in folded),
                     ", ".join(str(c.get("after")) for c in folded), "expected",
                     f"{plural(len(folded), 'header name')} changed case only: "
                     + str(folded[0].get("why") or "")])
        classes.append("")
    return rows, classes


PREVIEW_MAX = 120   # characters of a frame preview shown in a report


def _hop_facts(hs: dict[str, Any]) -> list[str]:
    """One-line facts about a leg that explain failures: how it ended, loss, parser verdicts."""
    facts: list[str] = []
    tcp = hs.get("tcp") or {}
    end = tcp.get("end")
    if isinstance(end, dict):
        facts.append(f"Connection ended: {str(end.get('kind') or '?').upper()} by {end.get('by') or '?'} "
                     f"(frame {end.get('frame')}, {fmt_ts(end.get('ts'))}).")
    elif hs.get("outcome") in ("upgraded", "no-response"):
        facts.append("Connection still open when the capture ended.")
    if isinstance(tcp.get("gaps"), int) and tcp["gaps"] > 0:
        facts.append(f"{plural(tcp['gaps'], 'missing byte range')} in this connection (packets lost "
                     f"by the capture): parts of the heads may be missing.")
    if isinstance(hs.get("waited"), (int, float)):
        facts.append(f"Waited {hs['waited']:.3f} s for a response that never came.")
    for pname, res in sorted((hs.get("parsers") or {}).items()):
        for side in ("request", "response"):
            r = (res or {}).get(side) if isinstance(res, dict) else None
            if isinstance(r, dict) and r.get("accepts") is False:
                facts.append(f"{pname} rejects the {side} head: {r.get('error') or 'no reason given'}.")
    return facts


def _frame_row(f: dict[str, Any]) -> list[Cell]:
    flags = ("FIN" if f.get("fin") else "no FIN") + "".join(
        f" {k.upper()}" for k in ("rsv1", "rsv2", "rsv3") if f.get(k))
    close = ""
    if f.get("close_code") is not None:
        close = f"{f.get('close_code')} {f.get('close_reason') or ''}".strip()
    preview = str(f.get("preview") or "")
    if len(preview) > PREVIEW_MAX:
        preview = preview[:PREVIEW_MAX] + "\u2026"
    return [Code(str(f.get("frame"))) if f.get("frame") is not None else "",
            "client \u2192 server" if f.get("dir") == "client" else "server \u2192 client",
            f"{f.get('opcode')} {f.get('opcode_name') or ''}".strip(), flags,
            "yes" if f.get("masked") else "no", str(f.get("length", "")), close, preview]


def _failing_boundary(chain: dict[str, Any]) -> int | None:
    v = chain.get("verdict") or {}
    hop = v.get("hop")
    if not isinstance(hop, int):
        return None
    return hop - 1 if hop >= 1 else 0


def _chain_title(ch: dict[str, Any]) -> str:
    v = ch.get("verdict") or {}
    fail = v.get("hop") if isinstance(v.get("hop"), int) else None
    return (f"Chain {ch.get('id')}: {v.get('cause') or 'broken'}" + (f" at hop {fail}" if fail is not None else "")
            + ("" if v.get("broken") else " (tolerated)"))


def _chain_blocks(doc: dict[str, Any], ch: dict[str, Any], max_head: int) -> list[Block]:
    by_id = handshake_index(doc)
    v = ch.get("verdict") or {}
    hops_ids = ch.get("hops") or []
    hops = [by_id.get(h) or {"id": h} for h in hops_ids]
    fail = v.get("hop") if isinstance(v.get("hop"), int) else None
    cause = str(v.get("cause") or "broken")
    title = _chain_title(ch)
    blocks: list[Block] = [Heading(3, [title], anchor=f"chain-{ch.get('id')}")]
    if v.get("broken"):
        blocks.append(Para([Strong("Verdict: ", "bad"), str(v.get("summary") or "")], cls="verdict"))
    else:
        blocks.append(Para([Strong("Verdict (not broken: the client tolerated it): "),
                            str(v.get("summary") or "")], cls="note"))
    blocks.append(Para([Strong("Path: "), hops_path(doc, ch)]))
    if v.get("software"):
        blocks.append(Para([Strong("Software seen: "), ", ".join(str(s) for s in v["software"])]))
    links = [f"{ln.get('from')}\u2192{ln.get('to')} by {ln.get('by')}"
             + (f" ({ln['delay'] * 1000:.1f} ms)" if isinstance(ln.get("delay"), (int, float)) else "")
             for ln in ch.get("links") or []]
    if links:
        blocks.append(Para([Strong("Hops linked: "), "; ".join(links)]))
    blocks.append(Heading(4, ["Hop ladder"]))
    blocks.append(Diagram(doc, ch))

    ev = [e for e in v.get("evidence") or [] if isinstance(e, dict)]
    if ev:
        blocks.append(Heading(4, ["Evidence"]))
        # The analyzer may name the handshake each piece of evidence is from.
        with_hop = any("hop_id" in e for e in ev)
        rows_ev: list[list[Cell]] = []
        for e in ev:
            row: list[Cell] = [Code(str(e.get("frame"))) if e.get("frame") is not None else ""]
            if with_hop:
                hid = e.get("hop_id")
                row.append(f"{hops_ids.index(hid)} (handshake {hid})" if hid in hops_ids else
                           ("" if hid is None else f"handshake {hid}"))
            rows_ev.append(row + [_source_name(doc, e.get("source")), str(e.get("what") or "")])
        blocks.append(Table(["Frame"] + (["Hop"] if with_hop else []) + ["Capture", "What"], rows_ev))

    b = _failing_boundary(ch)
    if b is not None and len(hops) > 1:
        proxy = hops[b].get("server") if b < len(hops) else None
        blocks.append(Heading(4, [f"Header diff at the failing boundary (hop {b} \u2192 hop {b + 1}, "
                                  f"proxy {_leg(doc, str(proxy or '?'))})"]))
        diffs = [d for d in ch.get("diffs") or [] if isinstance(d, dict) and d.get("boundary") == b]
        if not diffs:
            blocks.append(Para([f"No diff at this boundary: hop {b + 1} carried no request "
                                f"({hop_status(hops[b + 1]) if b + 1 < len(hops) else '?'})."]))
        for d in sorted(diffs, key=lambda d: 0 if d.get("direction") == "request" else 1):
            if d.get("direction") == "request":
                cap = (f"Request: as the proxy received it (hop {b}) \u2192 as it sent it upstream (hop {b + 1})")
                before, after = f"Before (hop {b})", f"After (hop {b + 1})"
            else:
                cap = (f"Response: as the upstream sent it (hop {b + 1}) \u2192 as the proxy returned it (hop {b})")
                before, after = f"Before (hop {b + 1})", f"After (hop {b})"
            sc = d.get("status_change")
            parts: list[Inline] = [Strong(cap)]
            if isinstance(sc, dict):
                parts += [" \u2014 status changed: ", Strong(f"{sc.get('before')} \u2192 {sc.get('after')}", "bad")]
            blocks.append(Para(parts))
            rows, classes = _diff_rows(d)
            if rows:
                blocks.append(Table(["Change", "Header", before, after, "Class", "Why"], rows, classes))
            else:
                blocks.append(Para(["No header changes."]))

    blocks.append(Heading(4, ["Hops"]))
    for i, hs in enumerate(hops):
        mark = ("" if i != fail else " \u2716 failing hop" if v.get("broken") else " \u26a0 problem hop")
        blocks.append(Heading(5, [f"Hop {i}: {_leg(doc, str(hs.get('client') or '?'))} \u2192 "
                                  f"{_leg(doc, str(hs.get('server') or '?'))} \u2014 "
                                  f"{hop_status(hs)} ({hs.get('outcome') or '?'}){mark}"]))
        flt = wireshark_filter(str(hs.get("client") or ""), str(hs.get("server") or ""))
        meta: list[Inline] = [f"Handshake {hs.get('id')}, capture {_source_name(doc, hs.get('source'))}, "
                              f"frames {hs.get('first_frame')}\u2013{hs.get('last_frame')}. Wireshark filter: "]
        meta.append(Code(flt) if flt else "(addresses unknown)")
        blocks.append(Para(meta))
        for side, label in (("request", "Request"), ("response", "Response")):
            head = hs.get(side)
            if not isinstance(head, dict):
                what = ("no request was sent" if side == "request"
                        else f"no response head ({hs.get('outcome') or 'unknown'})")
                blocks.append(Para([Strong(f"{label}: "), what]))
                continue
            text, cut = _head_text(head, max_head)
            caption: list[Inline] = [Strong(f"{label}"), f" (frame {head.get('frame')}, {fmt_ts(head.get('ts'))})"]
            if cut:
                caption.append(f" \u2014 cut at {max_head} characters, {cut} more not shown")
            blocks.append(Pre(caption, text))
        facts = _hop_facts(hs)
        if facts:
            blocks.append(Bullets([[f] for f in facts]))
        anomalies = [a for a in hs.get("anomalies") or [] if isinstance(a, dict)]
        if anomalies:
            blocks.append(Table(["Severity", "Anomaly", "Frame", "Message"],
                                [[str(a.get("severity") or ""), str(a.get("code") or ""),
                                  Code(str(a.get("frame"))) if a.get("frame") is not None else "",
                                  str(a.get("message") or "")] for a in anomalies]))
        frames = [f for f in hs.get("frames") or [] if isinstance(f, dict)]
        if frames:
            blocks.append(Para([Strong("WebSocket frames"), f" (first {len(frames)} seen after the 101):"]))
            blocks.append(Table(["Frame", "Direction", "Opcode", "FIN/RSV", "Masked", "Length", "Close",
                                 "Preview"], [_frame_row(f) for f in frames]))

    blocks.append(Heading(4, ["What to check next"]))
    items: list[list[Inline]] = [rich(a) for a in advice_for(cause)]
    if v.get("advice") and isinstance(v["advice"], str) and v["advice"] not in advice_for(cause):
        items.insert(0, [Strong("In short: "), *rich(v["advice"])])
    blocks.append(Bullets(items))
    return blocks


def build_report(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                 title: str = "WebSocket incident report",
                 max_chains: int = DEFAULT_MAX_CHAINS) -> list[Block]:
    """The report as blocks (plain text inside; writers escape)."""
    return [Table(b.header, list(b.rows), b.row_classes) if isinstance(b, Table) else b
            for b in iter_report_blocks(doc, max_head, title, max_chains)]


def iter_report_blocks(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                       title: str = "WebSocket incident report",
                       max_chains: int = DEFAULT_MAX_CHAINS) -> Iterator[Block]:
    """build_report one block at a time. With spooled chains and handshakes (SpooledList) the
    chains are sorted by position, read back when a block needs them, and the big tables'
    rows are generators: memory does not grow with the number of handshakes."""
    s = doc.get("summary") or {}
    all_chains = doc.get("chains") or []
    kinds = []                       # (position, kind) of every chain: broken, tolerated, healthy
    for k, c in enumerate(all_chains):
        if not isinstance(c, dict):
            continue
        v = c.get("verdict") or {}
        # Not broken but not clean: a problem the client tolerated (the analyzer
        # says so with a cause other than "ok" and broken=false).
        kinds.append((k, "broken" if v.get("broken") else
                      "tolerated" if (v.get("cause") or "ok") != "ok" else "healthy"))

    def pick(kind: str) -> Any:   # list or SpooledList of chain documents
        at = [k for k, w in kinds if w == kind]
        if isinstance(all_chains, SpooledList):
            return all_chains.subset(at)
        return [all_chains[k] for k in at]
    n_chains = len(kinds)
    broken, tolerated, healthy = pick("broken"), pick("tolerated"), pick("healthy")
    kinds.clear()                    # positions live on in the three subsets
    sources = doc.get("source") or []
    yield Heading(1, [title])
    yield (Para([f"Made by {doc.get('tool') or 'wscap'} from {plural(len(sources), 'capture')}: "
                        + ", ".join(str(x.get("path")) for x in sources) + "."]))
    if doc.get("filter"):
        yield (Para([Strong("Filtered: "), filter_text(doc["filter"])], cls="note"))
    if doc.get("redacted"):
        yield (Para([REDACTED_NOTE.replace("`", "")], cls="note"))

    # ---- summary
    yield (Heading(2, ["Summary"], anchor="summary"))
    firsts = [x.get("first_ts") for x in sources if isinstance(x.get("first_ts"), (int, float))]
    lasts = [x.get("last_ts") for x in sources if isinstance(x.get("last_ts"), (int, float))]
    span = ""
    if firsts and lasts:
        span = f"{fmt_ts(min(firsts))} \u2192 {fmt_ts(max(lasts))} ({max(lasts) - min(firsts):.3f} s)"
    lts = sorted({lt for x in sources for lt in x.get("linktypes") or [] if isinstance(lt, int)})
    ifaces = [str(i.get("name") if isinstance(i, dict) else i)
              for x in sources for i in x.get("interfaces") or []]
    def by_cause(cs: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for c in cs:
            k = str((c.get("verdict") or {}).get("cause") or "?")
            counts[k] = counts.get(k, 0) + 1
        return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))

    rows: list[list[Cell]] = [
        ["Captures", f"{len(sources)} ({sum(int(x.get('packets') or 0) for x in sources)} packets)"],
        ["Time range", span or "unknown"],
        ["Interfaces / link types", ", ".join(ifaces + [linktype_name(x) for x in lts]) or "unknown"],
        ["Endpoints", str(len(doc.get("endpoints") or []))],
        ["Handshakes", f"{s.get('handshakes', len(doc.get('handshakes') or []))} "
                       f"({s.get('websocket', 0)} WebSocket)"],
        ["Chains", f"{n_chains}: {len(broken)} broken, "
                   + (f"{len(tolerated)} working with problems, " if tolerated else "") + f"{len(healthy)} healthy"],
        ["Broken, by cause", by_cause(broken) or "none"],
    ]
    if tolerated:
        rows.append(["Working with problems, by cause", by_cause(tolerated)])
    bad_src = [x for x in sources if not x.get("complete", True) or x.get("errors")]
    if bad_src:
        rows.append(["Capture problems", "; ".join(str(e) for x in bad_src for e in x.get("errors") or [])
                     or "incomplete capture"])
    yield (Table(["Item", "Value"], rows))

    yield (Heading(3, ["Captures"]))
    yield (Table(["#", "File", "Format", "Packets", "Bytes", "First packet", "Last packet",
                         "Link types", "Complete", "Errors"], capture_rows(doc)))
    eps = [e for e in doc.get("endpoints") or [] if isinstance(e, dict)]
    if eps:
        yield (Heading(3, ["Endpoints"]))
        yield (Table(["IP", "Name", "Role", "Ports"],
                            [[str(e.get("ip") or ""), str(e.get("name") or ""), str(e.get("role") or ""),
                              ", ".join(str(p) for p in e.get("ports") or [])] for e in eps]))
    if broken:
        yield (Heading(3, ["Broken chains by cause"]))
        per: dict[str, list[str]] = {}
        for c in broken:
            per.setdefault(str((c.get("verdict") or {}).get("cause") or "?"), []).append(str(c.get("id")))
        yield (Table(["Cause", "Chains", "Chain ids"],
                            [[Strong(k, "bad"), str(len(v)), ", ".join(v)] for k, v in sorted(per.items())]))

    # ---- broken chains
    yield (Heading(2, ["Broken chains"], anchor="broken"))
    if not broken:
        yield (Para(["No broken chains."]))
    if len(broken[:max_chains]) + len(tolerated) > 1:
        # A contents list: one line per detailed chain, linking to its section.
        yield (Bullets([[Link(_chain_title(c), _chain_title(c), f"chain-{c.get('id')}"), " \u2014 ",
                                hops_path(doc, c)] for c in broken[:max_chains] + tolerated]))
    for c in broken[:max_chains]:
        yield from _chain_blocks(doc, c, max_head)
    if len(broken) > max_chains:
        # A report with thousands of ladders helps nobody (and GitHub stops
        # rendering diagrams): the rest get one line each.
        rest = broken[max_chains:]
        yield (Heading(3, [f"{len(rest)} more broken chains (not detailed; "
                                  f"use --chain ID for one)"]))
        yield (Table(["Chain", "Cause", "Failing hop", "Path (status per hop)", "Summary"],
                            ([str(c.get("id")), str((c.get("verdict") or {}).get("cause") or ""),
                              str((c.get("verdict") or {}).get("hop")), hops_path(doc, c),
                              str((c.get("verdict") or {}).get("summary") or "")] for c in rest)))

    # ---- chains that work, with a problem the client tolerated
    if tolerated:
        yield (Heading(2, ["Working, with problems"], anchor="tolerated"))
        yield (Para(["These chains upgraded and carried messages, but something on the way is wrong "
                            "and a stricter client may fail on it."]))
        for c in tolerated:
            yield from _chain_blocks(doc, c, max_head)

    # ---- healthy chains
    yield (Heading(2, ["Healthy chains"], anchor="healthy"))
    if healthy:
        by_id = handshake_index(doc)

        def healthy_rows() -> Iterator[list[Cell]]:
            for c in healthy:
                v = c.get("verdict") or {}
                ids = c.get("hops") or []
                first = by_id.get(ids[0]) or {} if ids else {}
                req = first.get("request") or {}
                resp = first.get("response") or {}
                yield [str(c.get("id")), hops_path(doc, c),
                       f"{req.get('method', '')} {req.get('target', '')}".strip(),
                       str(v.get("cause") or "ok") + (" (benign note)" if v.get("benign") else ""),
                       Code(str(resp.get("frame"))) if resp.get("frame") is not None else "",
                       fmt_ts(resp.get("ts") or first.get("first_ts")),
                       ", ".join(str(x) for x in v.get("software") or []),
                       str(v.get("summary") or "")]
        hrows = healthy_rows()
        yield (Table(["Chain", "Path (status per hop)", "Request", "Verdict", "101 frame",
                             "Upgraded at", "Software", "Summary"], hrows))
    else:
        yield (Para(["No healthy chains."]))

    # ---- handshakes outside chains
    in_chain = chain_of(doc)
    hss = doc.get("handshakes") or []
    if isinstance(hss, SpooledList):
        any_lone = any(k not in in_chain for k in hss.index_by("id"))
    else:
        any_lone = any(h.get("id") not in in_chain for h in hss)
    if any_lone:
        yield (Heading(2, ["Handshakes outside any chain"], anchor="lone"))
        classes: list[str] = []       # grows with the rows as they are made (see html.table_lines)

        def lone_rows() -> Iterator[list[Cell]]:
            for h in hss:
                if h.get("id") in in_chain:
                    continue
                req = h.get("request") or {}
                flt = wireshark_filter(str(h.get("client") or ""), str(h.get("server") or ""))
                classes.append("breaking" if is_broken_handshake(h) else "")
                yield [str(h.get("id")), _leg(doc, str(h.get("client") or "")),
                       _leg(doc, str(h.get("server") or "")),
                       f"{req.get('method', '')} {req.get('target', '')}".strip(),
                       hop_status(h), str(h.get("outcome") or ""), Code(flt) if flt else ""]
        yield (Table(["#", "Client", "Server", "Request", "Status", "Outcome", "Wireshark filter"],
                            lone_rows(), classes))

    # ---- TLS: what the capture could not show without a key log
    trows = tls_rows(doc)
    if trows:
        yield (Heading(2, ["TLS connections"], anchor="tls"))
        yield (Para([TLS_NOTE.replace("`", "")]))
        yield (Table(TLS_HEADER, trows))

    # ---- the advice reference for every cause in this report
    present = sorted({str((c.get("verdict") or {}).get("cause")) for c in broken + tolerated})
    if present:
        yield (Heading(2, ["What to check, by cause"], anchor="advice"))
        yield (Table(["Cause", "What to check next"],
                            [[Strong(cause), [p for k, a in enumerate(advice_for(cause))
                                              for p in ([" \u2022 "] if k else []) + rich(a)]]
                             for cause in present]))



# ---------------------------------------------------------------------------
# writers

def report_markdown(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                    title: str = "WebSocket incident report",
                    max_chains: int = DEFAULT_MAX_CHAINS) -> str:
    """The incident report as GitHub-flavoured Markdown (Mermaid ladders)."""
    return "".join(iter_report_markdown(doc, max_head, title, max_chains))


def iter_report_markdown(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                         title: str = "WebSocket incident report",
                         max_chains: int = DEFAULT_MAX_CHAINS) -> Iterator[str]:
    """report_markdown in pieces, written as they come (table rows made one at a time)."""
    for i, b in enumerate(iter_report_blocks(doc, max_head, title, max_chains)):
        if i:
            yield "\n\n"
        if isinstance(b, Table):
            for k, line in enumerate(md_table_lines(
                    [escape.md_cell(h) for h in b.header],
                    ([md_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c), cell=True)
                      for c in row] for row in b.rows))):
                yield line if not k else "\n" + line
        else:
            yield md_block(b)
    yield "\n"


def report_html(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                title: str = "WebSocket incident report",
                max_chains: int = DEFAULT_MAX_CHAINS) -> str:
    """The incident report as one self-contained HTML file (inline SVG ladders)."""
    return "".join(iter_report_html(doc, max_head, title, max_chains))


def iter_report_html(doc: dict[str, Any], max_head: int = DEFAULT_MAX_HEAD,
                     title: str = "WebSocket incident report",
                     max_chains: int = DEFAULT_MAX_CHAINS) -> Iterator[str]:
    """report_html in pieces, written as they come."""
    yield H.page_head(title)
    for i, b in enumerate(iter_report_blocks(doc, max_head, title, max_chains)):
        if i:
            yield "\n"
        if isinstance(b, Table):
            for k, line in enumerate(H.table_lines(
                    [escape.html(h) for h in b.header],
                    ([html_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c)) for c in row]
                     for row in b.rows), b.row_classes)):
                yield line if not k else "\n" + line
        else:
            yield html_block(b)
    yield "\n" + H.PAGE_TAIL


def write_report(doc: dict[str, Any], path: str, fmt: str | None = None,
                 max_head: int = DEFAULT_MAX_HEAD, max_chains: int = DEFAULT_MAX_CHAINS) -> str:
    """Write the report to ``path``; format from ``fmt`` or the suffix (.html/.htm, else Markdown).

    Returns the format written ("html" or "markdown"). Redaction is the
    caller's step, before this.
    """
    if fmt is None:
        fmt = "html" if os.path.splitext(path)[1].lower() in (".html", ".htm") else "markdown"
    pieces = (iter_report_html(doc, max_head, max_chains=max_chains) if fmt == "html"
              else iter_report_markdown(doc, max_head, max_chains=max_chains))
    from wscap.capture.outpath import open_output
    with open_output(path) as f:         # never through a symlink (see wscap.capture.outpath)
        for piece in pieces:
            f.write(piece)
    return fmt
