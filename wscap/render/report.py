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

:func:`filter_document` implements ``--only-broken/--chain/--host/--path``
for every output format.
"""
from __future__ import annotations

import copy
import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence, Union

from wscap.render import escape
from wscap.render import html as H
from wscap.render.markdown import (REDACTED_NOTE, TLS_HEADER, TLS_NOTE, capture_rows, filter_text, hops_path, md_table,
                                   md_table_lines,
                                   plural, tls_rows)
from wscap.spool import SpooledList
from wscap.render.mermaid import (chain_of, endpoint_label, fmt_ts, handshake_index, header, hop_status,
                                  ladder, linktype_name, sequence_diagram, split_addr, wireshark_filter)

__all__ = ["filter_document", "render_format", "REDACT_BY_DEFAULT", "report_markdown", "report_html", "write_report", "CAUSE_ADVICE",
           "advice_for", "is_broken_handshake", "DEFAULT_MAX_HEAD", "DEFAULT_MAX_CHAINS", "build_report"]

DEFAULT_MAX_HEAD = 4096   # characters of each raw head shown in a report
DEFAULT_MAX_CHAINS = 50   # broken chains detailed; the rest are listed in one table

# ---------------------------------------------------------------------------
# what to check next, per verdict cause (the causes wscap.verdict produces)

CAUSE_ADVICE: dict[str, list[str]] = {
    "origin-rejected": [
        "Compare the Origin the backend received (diff table above) with the backend's allow-list: "
        "ALLOWED_ORIGINS / CORS_ORIGINS / Socket.IO `cors.origin` / Django `CSRF_TRUSTED_ORIGINS` / "
        "Spring `setAllowedOrigins`.",
        "Vite `server.proxy`: `changeOrigin: true` rewrites Host only, never Origin. To rewrite Origin "
        "use `rewriteWsOrigin: true` (Vite 6+), or a `configure: (proxy) => proxy.on('proxyReqWs', "
        "(req) => req.setHeader('origin', target))` hook.",
        "If a proxy hook already rewrites Origin, check the value it writes (scheme, host and port must "
        "all match the allow-list entry).",
        "Behind nginx: Origin passes through unchanged unless `proxy_set_header Origin ...` is set.",
    ],
    "upgrade-header-stripped": [
        "nginx: `proxy_http_version 1.1;` and `proxy_set_header Upgrade $http_upgrade;` in the location.",
        "Vite: look for `configure` hooks that call `removeHeader`/`setHeader` on `proxyReqWs`.",
        "Load balancers/CDNs: WebSocket support must be enabled for the route.",
    ],
    "connection-header-stripped": [
        "nginx: `proxy_set_header Connection \"upgrade\";` (or a `map $http_upgrade $connection_upgrade`).",
        "HTTP/1.0 proxies drop hop-by-hop headers: make the proxy speak HTTP/1.1 upstream.",
    ],
    "key-changed": [
        "An intermediary regenerated Sec-WebSocket-Key; it must also recompute Sec-WebSocket-Accept "
        "for the client, or pass the key through unchanged.",
    ],
    "bad-accept": [
        "Recompute Accept = base64(SHA-1(key + 258EAFA5-E914-47DA-95CA-C5AB0DC85B11)) and compare with "
        "the response head below; a mismatch means the server or an intermediary rewrote the key.",
    ],
    "malformed-response": [
        "Read the raw response head below for bare LF line endings, a body or Content-Length on the "
        "101, or a head that never ends; see which parser rejects it in the JSON `parsers` field.",
        "Node/Bun clients are strict (llhttp); nginx may accept what they reject.",
    ],
    "upstream-refused": [
        "Nothing listens on the proxy's target address/port: check the backend is up and bound to "
        "0.0.0.0 (not 127.0.0.1) inside its container.",
        "`localhost` inside a container is the container itself: use the Compose service name "
        "(e.g. `http://backend:5000`) as the proxy target.",
        "Vite HMR: the HMR socket port must be reachable; set `server.hmr.clientPort` (and "
        "`server.hmr.port`) when the dev server runs behind a proxy or in a container.",
    ],
    "upstream-unreachable": [
        "The proxy's SYNs went unanswered: wrong address, firewall, or the backend container is on "
        "another Docker network (`docker network inspect`).",
    ],
    "no-upstream-connection": [
        "The proxy never connected upstream: make sure the path is proxied with `ws: true` "
        "(Vite `server.proxy['/ws'] = {target, ws: true}`).",
        "The upstream name may not resolve inside the proxy's container: use the Compose service name.",
        "If the upstream leg runs on loopback inside a container, capture there "
        "(`wscap live --container NAME`).",
    ],
    "upstream-rejected": [
        "The backend answered the upgrade with a non-101 status: read its response head below "
        "(auth, path, Host allow-lists such as Django `ALLOWED_HOSTS`).",
        "A 404 usually means a path mismatch: check the proxy's `rewrite` and the backend's route.",
    ],
    "upstream-closed": [
        "The backend closed/reset without answering: check its logs for a crash, a TLS listener "
        "receiving plaintext, or a protocol mismatch (HTTP/2-only server).",
    ],
    "proxy-rejected": [
        "The proxy answered itself without going upstream: is the path in `server.proxy` (key and "
        "`rewrite`)? Vite's host check: `server.allowedHosts`.",
        "nginx: check the `location` that matched and any `allow/deny` or auth directives.",
    ],
    "proxy-dropped-upgrade": [
        "The backend said 101 but the client got something else: upgrade the proxy runtime "
        "(Bun node:http 'upgrade' bug oven-sh/bun#24127, old http-proxy versions).",
    ],
    "proxy-dropped-response": [
        "The backend's non-101 answer never reached the client: old http-proxy listened only for "
        "'upgrade' (node-http-proxy#624). Upgrade the proxy; the backend's own answer is below.",
    ],
    "frames-lost-at-proxy": [
        "Frames sent together with the upstream 101 never reached the client: the proxy dropped the "
        "'head' bytes when it switched to piping. Upgrade the proxy.",
    ],
    "subprotocol-mismatch": [
        "The server must choose one of the offered Sec-WebSocket-Protocol values and the proxy must "
        "pass it back; browsers fail the connection otherwise.",
        "If a token travels in Sec-WebSocket-Protocol, the server must echo only the protocol name.",
    ],
    "extension-mismatch": [
        "Negotiated extensions and the frames disagree (RSV1 without permessage-deflate): a proxy "
        "relayed the offer but not the answer, or vice versa. Disable compression on one side to confirm.",
    ],
    "version-unsupported": [
        "Sec-WebSocket-Version must be 13; a 426 lists what the server supports.",
    ],
    "timeout": [
        "No answer before the capture (or `--timeout`) ended: check whether the backend is hung or the "
        "proxy is waiting on a slow upstream; capture longer to be sure.",
    ],
    "closed-after-upgrade": [
        "The WebSocket opened and was closed abnormally: check the close code and which side closed.",
        "Idle timeouts close quiet sockets (nginx `proxy_read_timeout` 60 s, load balancers): send pings.",
    ],
}

_ADVICE_KEYWORDS = (
    ("origin", "origin-rejected"), ("refused", "upstream-refused"), ("unreachable", "upstream-unreachable"),
    ("upgrade", "upgrade-header-stripped"), ("connection", "connection-header-stripped"),
    ("accept", "bad-accept"), ("key", "key-changed"), ("malformed", "malformed-response"),
    ("subprotocol", "subprotocol-mismatch"), ("extension", "extension-mismatch"),
    ("timeout", "timeout"), ("closed", "upstream-closed"), ("reject", "upstream-rejected"),
)


def advice_for(cause: str | None) -> list[str]:
    """Checklist for ``cause`` (exact name first, then by keyword, then generic)."""
    if not cause or cause == "ok":
        return []
    if cause in CAUSE_ADVICE:
        return CAUSE_ADVICE[cause]
    low = cause.lower()
    for kw, known in _ADVICE_KEYWORDS:
        if kw in low:
            return CAUSE_ADVICE[known]
    return ["Read the failing hop's request and response heads below and compare them with the hop before it."]


# ---------------------------------------------------------------------------
# filtering

def is_broken_handshake(hs: dict[str, Any]) -> bool:
    """Broken, for a handshake outside any chain (the CLI's exit-code rule).

    A WebSocket upgrade that did not upgrade, or any error-severity anomaly
    other than 'not-websocket-upgrade' (plain HTTP is not a failure).
    """
    if any(a.get("severity") == "error" and a.get("code") != "not-websocket-upgrade"
           for a in hs.get("anomalies") or []):
        return True
    return bool(hs.get("websocket")) and hs.get("outcome") != "upgraded"


def _host_matches(doc: dict[str, Any], hs: dict[str, Any], pattern: str) -> bool:
    pat = pattern.lower()
    cands: list[str] = []
    for head in (hs.get("request"),):
        h = header(head, "host")
        if h:
            cands += [h, split_addr(h)[0] if ":" in h else h]
    for addr in (hs.get("client"), hs.get("server")):
        if addr:
            ip = split_addr(str(addr))[0]
            cands.append(ip)
            name = endpoint_label(doc, str(addr))[0]
            if name:
                cands.append(name)
    return any(fnmatch.fnmatchcase(c.lower(), pat) for c in cands)


def _path_matches(hs: dict[str, Any], pattern: str) -> bool:
    target = str((hs.get("request") or {}).get("target") or "")
    if not target:
        return False
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(target, pattern)


def _summary(doc: dict[str, Any], hss: list[dict[str, Any]], chains: list[dict[str, Any]]) -> dict[str, Any]:
    by_cause: dict[str, int] = {}
    for c in chains:
        cause = (c.get("verdict") or {}).get("cause") or "ok"
        by_cause[cause] = by_cause.get(cause, 0) + 1
    out = dict(doc.get("summary") or {})
    out.update({
        # as the analyzer counts them: connections that carried a request
        "handshakes": sum(1 for h in hss if h.get("request") is not None),
        "websocket": sum(1 for h in hss if h.get("websocket")),
        "chains": len(chains),
        "broken": sum(1 for c in chains if (c.get("verdict") or {}).get("broken")),
        "by_cause": dict(sorted(by_cause.items())),
    })
    if "upgraded" in out:
        out["upgraded"] = sum(1 for h in hss if h.get("outcome") == "upgraded")
    return out


def filter_document(doc: dict[str, Any], only_broken: bool = False, chain: Any = None,
                    host: str | None = None, path: str | None = None) -> dict[str, Any]:
    """A copy of ``doc`` keeping only the chains (and their handshakes) that match.

    - ``only_broken``: chains whose verdict is broken; handshakes outside any
      chain that did not upgrade cleanly (:func:`is_broken_handshake`).
    - ``chain``: that chain id only (int or numeric str); lone handshakes are dropped.
    - ``host``: glob, case-insensitive, on the request's Host header (with or
      without port), or either endpoint's IP or name; a chain matches when
      any hop does.
    - ``path``: glob on the request target's path (query ignored; the full
      target is tried too); any hop.

    ``summary`` is recomputed for what is kept, ``endpoints`` trimmed to the
    kept handshakes; ``source`` and ``stats`` describe the captures and stay.
    The applied filters are recorded under ``"filter"``. With no filter the
    document is returned as a copy, unchanged.
    """
    spooled = isinstance(doc.get("handshakes"), SpooledList) or isinstance(doc.get("chains"), SpooledList)
    if not only_broken and chain is None and host is None and path is None:
        if spooled:                  # items are read fresh from the spool: nothing to copy
            return {k: v if isinstance(v, SpooledList) else copy.deepcopy(v) for k, v in doc.items()}
        return copy.deepcopy(doc)
    by_id = handshake_index(doc)
    want_chain = None
    if chain is not None:
        want_chain = int(chain) if isinstance(chain, str) and chain.strip().lstrip("-").isdigit() else chain

    def hs_ok(hs: dict[str, Any]) -> tuple[bool, bool]:
        return (host is None or _host_matches(doc, hs, host),
                path is None or _path_matches(hs, path))

    kept_chains = []
    kept_at: list[int] = []
    keep_ids: set = set()
    for k, ch in enumerate(doc.get("chains") or []):
        if want_chain is not None and ch.get("id") != want_chain:
            continue
        if only_broken and not (ch.get("verdict") or {}).get("broken"):
            continue
        if host is not None or path is not None:
            hops = [by_id.get(h) or {} for h in ch.get("hops") or []]
            marks = [hs_ok(h) for h in hops]
            if not (any(m[0] for m in marks) and any(m[1] for m in marks)):
                continue
        elif not ch.get("hops"):
            continue
        kept_at.append(k)
        keep_ids.update(ch.get("hops") or [])
        if not spooled:
            kept_chains.append(ch)
    if spooled:
        kept_chains = doc["chains"].subset(kept_at)
    in_chain = set(chain_of(doc))
    if want_chain is None:
        for hs in doc.get("handshakes") or []:
            if hs.get("id") in in_chain:
                continue
            if only_broken and not is_broken_handshake(hs):
                continue
            if all(hs_ok(hs)):
                keep_ids.add(hs.get("id"))
    if spooled:
        hss = doc["handshakes"].select(lambda h: h.get("id") in keep_ids)
    else:
        hss = [h for h in doc.get("handshakes") or [] if h.get("id") in keep_ids]
    ips = {split_addr(str(h.get(k) or ""))[0] for h in hss for k in ("client", "server")}
    out = copy.deepcopy({k: v for k, v in doc.items() if k not in ("handshakes", "chains", "endpoints")})
    out["handshakes"] = hss if spooled else copy.deepcopy(hss)
    out["chains"] = kept_chains if spooled else copy.deepcopy(kept_chains)
    out["endpoints"] = copy.deepcopy([e for e in doc.get("endpoints") or [] if e.get("ip") in ips])
    out["summary"] = _summary(doc, hss, kept_chains)
    out["filter"] = {"only_broken": bool(only_broken), "chain": want_chain, "host": host, "path": path}
    # Keep the document's key order (version, tool, source, handshakes, ...).
    return {k: out[k] for k in list(doc.keys()) + [k for k in out if k not in doc] if k in out}


# ---------------------------------------------------------------------------
# the block model

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
    rows: Sequence[Sequence[Cell]]
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


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


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
            cap: list[Inline] = [Strong(f"{label}"), f" (frame {head.get('frame')}, {fmt_ts(head.get('ts'))})"]
            if cut:
                cap.append(f" \u2014 cut at {max_head} characters, {cut} more not shown")
            blocks.append(Pre(cap, text))
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

    def pick(kind: str):
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

def _md_inline(parts: Iterable[Inline] | Inline, cell: bool) -> str:
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


def _md_block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + _md_inline(b.parts, cell=True)
    if isinstance(b, Para):
        return _md_inline(b.parts, cell=False)
    if isinstance(b, Bullets):
        return "\n".join("- " + _md_inline(item, cell=True) for item in b.items)
    if isinstance(b, Table):
        return md_table([escape.md_cell(h) for h in b.header],
                        [[_md_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c), cell=True)
                          for c in row] for row in b.rows])
    if isinstance(b, Pre):
        return _md_inline(b.caption, cell=False) + ":\n\n" + escape.md_fence(b.text, "http")
    if isinstance(b, Diagram):
        return escape.md_fence(sequence_diagram(b.doc, b.chain).rstrip("\n"), "mermaid")
    raise TypeError(b)


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
                    ([_md_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c), cell=True)
                      for c in row] for row in b.rows))):
                yield line if not k else "\n" + line
        else:
            yield _md_block(b)
    yield "\n"


def _html_inline(parts: Iterable[Inline] | Inline) -> str:
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


def _html_block(b: Block) -> str:
    if isinstance(b, Heading):
        anchor = f' id="{escape.html(b.anchor)}"' if b.anchor else ""
        return f"<h{b.level}{anchor}>{_html_inline(b.parts)}</h{b.level}>"
    if isinstance(b, Para):
        cls = f' class="{escape.html(b.cls)}"' if b.cls else ""
        return f"<p{cls}>{_html_inline(b.parts)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return H.table([escape.html(h) for h in b.header],
                       [[_html_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c)) for c in row]
                        for row in b.rows], list(b.row_classes))
    if isinstance(b, Pre):
        return f"<p>{_html_inline(b.caption)}:</p>\n<pre>{escape.html_pre(b.text)}</pre>"
    if isinstance(b, Diagram):
        return f'<div class="diagram">{H.ladder_svg(ladder(b.doc, b.chain))}</div>'
    raise TypeError(b)


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
                    ([_html_inline(c if isinstance(c, (str, Code, Strong, Link)) else list(c)) for c in row]
                     for row in b.rows), b.row_classes)):
                yield line if not k else "\n" + line
        else:
            yield _html_block(b)
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
    from wscap.outpath import open_output
    with open_output(path) as f:         # never through a symlink (see wscap.outpath)
        for piece in pieces:
            f.write(piece)
    return fmt


# Which formats redact unless told otherwise: the ones people read and paste.
# JSON and HAR are hand-offs to tools and keep full values unless --redact.
REDACT_BY_DEFAULT = {"markdown": True, "html": True, "csv": True, "report": True, "har": False, "json": False}


def render_format(doc: dict[str, Any], fmt: str, redact: bool | None = None) -> str:
    """``analyze --format markdown|html|csv|har`` output for ``doc`` (already filtered).

    ``redact=None`` applies the format's default (:data:`REDACT_BY_DEFAULT`);
    True/False come from ``--redact``/``--no-redact``.
    """
    from wscap.render.csv import render_csv
    from wscap.render.har import render_har_json
    from wscap.render.html import render_html
    from wscap.render.markdown import render_markdown
    from wscap.render.redact import redact_document

    renderers = {"markdown": render_markdown, "html": render_html, "csv": render_csv, "har": render_har_json}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(renderers)})")
    if redact is None:
        redact = REDACT_BY_DEFAULT[fmt]
    return renderers[fmt](redact_document(doc) if redact else doc)


def write_format(doc: dict[str, Any], fmt: str, fp: Any, redact: bool | None = None) -> None:
    """render_format written to the text stream `fp` piece by piece, as it is made: with a
    spooled document (Pipeline.lazy_document) memory does not grow with the handshakes."""
    from wscap.render.csv import write_csv
    from wscap.render.har import iter_har_json
    from wscap.render.html import iter_html
    from wscap.render.markdown import iter_markdown
    from wscap.render.redact import redact_document
    if fmt not in ("markdown", "html", "csv", "har"):
        raise ValueError(f"unknown format {fmt!r} (expected one of markdown, html, csv, har)")
    if redact is None:
        redact = REDACT_BY_DEFAULT[fmt]
    doc = redact_document(doc) if redact else doc
    if fmt == "csv":
        write_csv(doc, fp)
        return
    for piece in {"markdown": iter_markdown, "html": iter_html, "har": iter_har_json}[fmt](doc):
        fp.write(piece)
