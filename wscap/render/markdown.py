"""Markdown output of an analysis (``wscap analyze --format markdown``).

A pure function of the JSON document: summary line, chains, handshakes,
anomalies and captures as GFM tables. Every wire value is escaped with
:func:`wscap.render.escape.md_cell`; the only Markdown syntax in the output is
what this module writes itself. Redaction is the caller's step
(:func:`wscap.render.redact.redact_document`) so this stays pure.

Also holds the small Markdown builders the incident report reuses.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Sequence

from wscap.render import escape
from wscap.render.mermaid import (chain_of, endpoint_label, fmt_ts, handshake_index, header,
                                  hop_status, linktype_name)

__all__ = ["render_markdown", "LiveMarkdown", "filter_text", "md_table", "code_span", "hops_path", "chain_rows",
           "handshake_rows", "REDACTED_NOTE"]

REDACTED_NOTE = ("Secrets are redacted: each is shown as `[redacted sha256:xxxxxxxx]` "
                 "(the same value gives the same hash on every hop). Use `--no-redact` to show them.")


def md_table(header_cells: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GFM table from cells that are *already* Markdown-escaped."""
    return "\n".join(md_table_lines(header_cells, rows))


def md_table_lines(header_cells: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """md_table, line by line (rows may be a generator: nothing is held)."""
    yield "| " + " | ".join(header_cells) + " |"
    yield "|" + "|".join("---" for _ in header_cells) + "|"
    for row in rows:
        yield "| " + " | ".join(c if c != "" else " " for c in row) + " |"


def code_span(s: str) -> str:
    """An inline code span for text *we* generate (filters, ids): no pipes expected.

    Wire values never go in code spans: a backslash before a ``|`` inside a
    code span in a table is read differently by GitHub and markdown-it.
    """
    t = escape.visible(s).replace("|", "\\|")
    longest = max((len(r) for r in re.findall(r"`+", t)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if t.startswith("`") or t.endswith("`") else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def _c(s: Any) -> str:
    return escape.md_cell("" if s is None else s)


def _who(doc: dict[str, Any], addr: str) -> str:
    name, _ = endpoint_label(doc, addr)
    return f"{name} {addr}" if name else str(addr)


def hops_path(doc: dict[str, Any], chain: dict[str, Any]) -> str:
    """``client → proxy (403) → backend (403)`` as plain (unescaped) text."""
    by_id = handshake_index(doc)
    hops = [by_id.get(h) or {} for h in chain.get("hops") or []]
    if not hops:
        return ""
    parts = [_who(doc, str(hops[0].get("client") or "?"))]
    for hs in hops:
        parts.append(f"{_who(doc, str(hs.get('server') or '?'))} ({hop_status(hs)})")
    return " \u2192 ".join(parts)


def _verdict_label(v: dict[str, Any]) -> str:
    cause = v.get("cause") or "ok"
    if v.get("broken"):
        return f"\u2716 {cause}" + (" (benign)" if v.get("benign") else "")
    if cause != "ok":
        return f"\u26a0 {cause} (tolerated)"
    return f"\u2714 {cause}"


def chain_rows(doc: dict[str, Any], chains: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Plain (unescaped) rows: chain, verdict, failing hop, request, path, summary, advice (what to
    check next; empty for a healthy chain)."""
    return list(iter_chain_rows(doc, chains))


def iter_chain_rows(doc: dict[str, Any], chains: Iterable[dict[str, Any]]) -> Iterator[list[str]]:
    by_id = handshake_index(doc)
    for ch in chains:
        if not isinstance(ch, dict):
            continue
        v = ch.get("verdict") or {}
        hops = ch.get("hops") or []
        first = by_id.get(hops[0]) if hops else None
        req = (first or {}).get("request") or {}
        fail = v.get("hop")
        fail_txt = ""
        if v.get("broken") and isinstance(fail, int) and 0 <= fail < len(hops):
            fh = by_id.get(hops[fail]) or {}
            fail_txt = f"{fail}: {fh.get('client', '?')} \u2192 {_who(doc, str(fh.get('server', '?')))}"
        yield [str(ch.get("id")), _verdict_label(v), fail_txt,
               f"{req.get('method', '')} {req.get('target', '')}".strip(),
               hops_path(doc, ch), str(v.get("summary") or ""),
               str(v.get("advice") or "") if v.get("cause") not in (None, "ok") else ""]


def handshake_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Plain rows: id, chain/hop, client, server, request, host, origin, status, outcome, anomalies, frames, time."""
    return list(iter_handshake_rows(doc))


def iter_handshake_rows(doc: dict[str, Any], seen_anomalies: list | None = None) -> Iterator[list[str]]:
    """handshake_rows one at a time; `seen_anomalies` gets True appended once a handshake with an
    anomaly went by (so a writer knows whether an anomaly table follows, without a pass)."""
    where = chain_of(doc)
    for hs in doc.get("handshakes") or []:
        req = hs.get("request") or {}
        ch = where.get(hs.get("id"))
        anomalies = ", ".join(f"{a.get('severity', '?')}:{a.get('code', '?')}" for a in hs.get("anomalies") or [])
        if anomalies and seen_anomalies is not None and not seen_anomalies:
            seen_anomalies.append(True)
        yield [
            str(hs.get("id")),
            f"{ch[0].get('id')}/{ch[1]}" if ch else "",
            _who(doc, str(hs.get("client", ""))),
            _who(doc, str(hs.get("server", ""))),
            f"{req.get('method', '')} {req.get('target', '')}".strip(),
            header(req, "host") or "",
            header(req, "origin") or "",
            str(hs.get("status")) if hs.get("status") is not None else "",
            str(hs.get("outcome") or ""),
            anomalies,
            f"{hs.get('first_frame')}\u2013{hs.get('last_frame')}",
            fmt_ts(hs.get("first_ts")),
        ]


def has_chains(chains: Any) -> bool:
    """Any chain at all (a list may hold junk from the Python API; a spool holds chains)."""
    if isinstance(chains, list):
        return any(isinstance(c, dict) for c in chains)
    return bool(chains)


def filter_text(f: dict[str, Any]) -> str:
    """``only broken, chain=3, host=api*`` for the filters recorded by filter_document."""
    parts = ["only broken"] if f.get("only_broken") else []
    parts += [f"{k}={f[k]}" for k in ("chain", "host", "path") if f.get(k) is not None]
    return ", ".join(parts) or "none"


def plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _summary_line(doc: dict[str, Any]) -> str:
    s = doc.get("summary") or {}
    causes = ", ".join(f"{k}: {v}" for k, v in sorted((s.get("by_cause") or {}).items()) if k != "ok")
    text = (f"{plural(s.get('handshakes', 0), 'handshake')} ({s.get('websocket', 0)} WebSocket), "
            f"{plural(s.get('chains', 0), 'chain')}, {s.get('broken', 0)} broken")
    return text + (f" ({causes})." if causes else ".")


def capture_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for i, src in enumerate(doc.get("source") or []):
        rows.append([str(i), str(src.get("path", "")), str(src.get("format", "")),
                     str(src.get("packets", "")), str(src.get("bytes", "")),
                     fmt_ts(src.get("first_ts")), fmt_ts(src.get("last_ts")),
                     ", ".join(linktype_name(x) for x in src.get("linktypes") or []),
                     "yes" if src.get("complete", True) else "NO",
                     "; ".join(str(e) for e in src.get("errors") or [])])
    return rows


CAPTURE_HEADER = ["#", "File", "Format", "Packets", "Bytes", "First packet", "Last packet",
                  "Link types", "Complete", "Errors"]
CHAIN_HEADER = ["Chain", "Verdict", "Failing hop", "Request", "Path (status per hop)", "Summary", "What to check next"]
HANDSHAKE_HEADER = ["#", "Chain/hop", "Client", "Server", "Request", "Host", "Origin", "Status",
                    "Outcome", "Anomalies", "Frames", "First seen"]


TLS_HEADER = ["Client", "Server", "SNI", "ALPN", "ClientHello frame", "Decrypted", "Handshakes"]
TLS_NOTE = ("Connections that carried TLS where HTTP was expected. An undecrypted one may hide an upgrade: "
            "analyse again with `--keylog FILE` (SSLKEYLOGFILE).")


def tls_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The document's TLS connections as plain-text cells (each writer escapes)."""
    return [[str(t.get("client") or ""), str(t.get("server") or ""), str(t.get("sni") or "—"),
             ", ".join(str(a) for a in t.get("alpn") or []) or "—",
             str(t.get("hello_frame") or t.get("first_frame") or ""), "yes" if t.get("decrypted") else "no",
             ", ".join(str(i) for i in t.get("handshakes") or []) or "—"]
            for t in doc.get("tls") or [] if isinstance(t, dict)]


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole analysis as GitHub-flavoured Markdown."""
    return "".join(iter_markdown(doc))


def iter_markdown(doc: dict[str, Any]) -> Iterator[str]:
    """render_markdown in pieces, each a line with its newline: written as they come, so memory
    does not grow with the number of handshakes (their rows are made one at a time)."""
    for line in _markdown_lines(doc):
        yield line + "\n"


def _markdown_lines(doc: dict[str, Any]) -> Iterator[str]:
    yield from ["# wscap: WebSocket handshakes", "", _c(_summary_line(doc))]
    if doc.get("filter"):
        yield from ["", _c("Filtered: " + filter_text(doc["filter"]))]
    if doc.get("redacted"):
        yield from ["", "_" + REDACTED_NOTE.replace("_", "\\_") + "_"]
    chains = doc.get("chains") or []
    if has_chains(chains):
        yield from ["", "## Chains", ""]
        yield from md_table_lines(CHAIN_HEADER, ([_c(x) for x in r] for r in iter_chain_rows(doc, chains)))
    yield from ["", "## Handshakes", ""]
    if doc.get("handshakes"):
        seen: list = []
        yield from md_table_lines(HANDSHAKE_HEADER, ([_c(x) for x in r] for r in iter_handshake_rows(doc, seen)))
    else:
        seen = []
        yield "No handshakes found."
    if seen:
        yield from ["", "## Anomalies", ""]
        yield from md_table_lines(["Handshake", "Severity", "Code", "Frame", "Message"],
                                  ([_c(hs.get("id")), _c(a.get("severity")), _c(a.get("code")),
                                    _c(a.get("frame")), _c(a.get("message"))]
                                   for hs in doc.get("handshakes") or [] for a in hs.get("anomalies") or []))
    trows = tls_rows(doc)
    if trows:
        yield from ["", "## TLS connections", "", TLS_NOTE, ""]
        yield from md_table_lines(TLS_HEADER, [[_c(x) for x in r] for r in trows])
    yield from ["", "## Captures", ""]
    yield from md_table_lines(CAPTURE_HEADER, [[_c(x) for x in r] for r in capture_rows(doc)])


LIVE_HEADER = ["Time", "Event", "#", "Where", "Request", "Result", "Detail"]


class LiveMarkdown:
    """``wscap live --format markdown``: one Markdown table row per event, as it comes.

    Feed it the same objects ``live --format json`` prints, one at a time;
    each call returns the text to print (possibly several lines, ending in a
    newline). The first event prints the table header; the summary event
    closes the table and prints the totals. Redaction (on by default) keeps
    the unredacted handshakes it has seen so a chain's verdict is redacted
    with its hops' secrets.
    """

    def __init__(self, redact: bool = True) -> None:
        self.redact = redact
        self.seen: dict[Any, dict[str, Any]] = {}
        self.started = False

    def _head(self) -> str:
        if self.started:
            return ""
        self.started = True
        return md_table([_c(h) for h in LIVE_HEADER], []) + "\n"

    def event(self, obj: dict[str, Any]) -> str:
        from wscap.render.redact import redact_live_event

        kind = obj.get("type")
        if kind == "handshake" and isinstance(obj.get("handshake"), dict):
            self.seen[obj["handshake"].get("id")] = obj["handshake"]
            if len(self.seen) > 10000:   # bounded, as in live_cli: old handshakes are long decided
                self.seen.pop(next(iter(self.seen)))
        shown = redact_live_event(obj, self.seen) if self.redact else obj
        if kind == "handshake" and isinstance(shown.get("handshake"), dict):
            hs = shown["handshake"]
            req = hs.get("request") or {}
            anomalies = ", ".join(str(a.get("code")) for a in hs.get("anomalies") or [])
            row = [fmt_ts(hs.get("first_ts")), "handshake", str(hs.get("id")),
                   f"{hs.get('client', '?')} \u2192 {hs.get('server', '?')}",
                   f"{req.get('method', '')} {req.get('target', '')}".strip(),
                   f"{hop_status(hs)} {hs.get('outcome') or ''}".strip(), anomalies]
            return self._head() + "| " + " | ".join(_c(x) or " " for x in row) + " |\n"
        if kind == "chain" and isinstance(shown.get("chain"), dict):
            ch = shown["chain"]
            v = ch.get("verdict") or {}
            hops = ch.get("hops") or []
            first = self.seen.get(hops[0]) if hops else None
            req = (first or {}).get("request") or {}
            if self.redact and first is not None:
                from wscap.render.redact import redact_target
                target = redact_target(str(req.get("target") or ""))
            else:
                target = str(req.get("target") or "")
            fail = v.get("hop")
            result = _verdict_label(v) + (f" at hop {fail}" if v.get("broken") and fail is not None else "")
            row = [fmt_ts((first or {}).get("first_ts")), "chain", str(ch.get("id")),
                   " \u2192 ".join(f"#{h}" for h in hops),
                   f"{req.get('method', '')} {target}".strip(), result, str(v.get("summary") or "")]
            return self._head() + "| " + " | ".join(_c(x) or " " for x in row) + " |\n"
        if kind == "tls" and isinstance(obj.get("tls"), dict):
            t = obj["tls"]
            row = [fmt_ts(t.get("first_ts")), "tls", " ", f"{t.get('client', '?')} \u2192 {t.get('server', '?')}",
                   f"SNI {t.get('sni') or '(none)'}, ALPN {', '.join(t.get('alpn') or []) or 'none'}",
                   "encrypted", "an upgrade inside is invisible without --keylog"]
            return self._head() + "| " + " | ".join(_c(x) or " " for x in row) + " |\n"
        if kind == "summary":
            return self._head() + "\n" + _c(_summary_line(obj)) + "\n"
        return ""
