"""CSV output (``wscap analyze --format csv``): one row per handshake.

Every string cell goes through :func:`wscap.render.escape.csv_cell`, which
defuses spreadsheet formulas (``=HYPERLINK(...)`` in a header would otherwise
be a live link in Excel/LibreOffice) and makes control characters visible.
Numbers are written as numbers. Quoting is the ``csv`` module's job.
"""
from __future__ import annotations

import csv as _csv
import io
from typing import Any

from wscap.render import escape
from wscap.render.mermaid import chain_of, endpoint_label, header, wireshark_filter

__all__ = ["render_csv", "COLUMNS"]

COLUMNS = [
    "handshake", "chain", "hop", "source", "client", "client_name", "server", "server_name",
    "method", "target", "host", "origin", "subprotocols", "status", "reason", "outcome",
    "websocket", "verdict", "broken", "failing_hop", "anomalies", "first_frame", "last_frame",
    "request_frame", "response_frame", "first_ts", "request_ts", "response_ts", "latency_ms",
    "wireshark_filter",
]


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return v
    return escape.csv_cell(v)


def render_csv(doc: dict[str, Any]) -> str:
    """CSV text (header row first, CRLF line ends as RFC 4180 says)."""
    buf = io.StringIO()
    write_csv(doc, buf)
    return buf.getvalue()


def write_csv(doc: dict[str, Any], fp: Any) -> None:
    """render_csv written to `fp` row by row (memory does not grow with the handshakes)."""
    w = _csv.writer(fp)
    w.writerow(COLUMNS)
    where = chain_of(doc)
    sources = doc.get("source") or []
    for hs in doc.get("handshakes") or []:
        req = hs.get("request") or {}
        resp = hs.get("response") or {}
        ch, hop = where.get(hs.get("id"), (None, None))
        v = (ch or {}).get("verdict") or {}
        src_i = hs.get("source")
        src = sources[src_i].get("path") if isinstance(src_i, int) and 0 <= src_i < len(sources) else src_i
        rts, sts = req.get("ts"), resp.get("ts")
        latency = (round((sts - rts) * 1000, 3) if isinstance(rts, (int, float)) and isinstance(sts, (int, float))
                   else None)
        client, server = str(hs.get("client", "")), str(hs.get("server", ""))
        row = {
            "handshake": hs.get("id"), "chain": (ch or {}).get("id"), "hop": hop, "source": src,
            "client": client, "client_name": endpoint_label(doc, client)[0],
            "server": server, "server_name": endpoint_label(doc, server)[0],
            "method": req.get("method"), "target": req.get("target"),
            "host": header(req, "host"), "origin": header(req, "origin"),
            "subprotocols": header(req, "sec-websocket-protocol"),
            "status": hs.get("status"), "reason": resp.get("reason"), "outcome": hs.get("outcome"),
            "websocket": hs.get("websocket"),
            "verdict": v.get("cause") if ch else None,
            "broken": v.get("broken") if ch else None,
            "failing_hop": v.get("hop") if ch else None,
            "anomalies": " ".join(str(a.get("code")) for a in hs.get("anomalies") or []),
            "first_frame": hs.get("first_frame"), "last_frame": hs.get("last_frame"),
            "request_frame": req.get("frame"), "response_frame": resp.get("frame"),
            "first_ts": hs.get("first_ts"), "request_ts": rts, "response_ts": sts,
            "latency_ms": latency, "wireshark_filter": wireshark_filter(client, server),
        }
        w.writerow([_cell(row[c]) for c in COLUMNS])
