"""HAR 1.2 export (``wscap analyze --format har``).

One entry per handshake that sent a request, so the captured upgrade can be
opened in browser devtools or any HAR viewer. The first WebSocket data
messages go in Chrome's ``_webSocketMessages`` form::

    {"type": "send" | "receive", "time": <epoch seconds>, "opcode": 1, "data": "..."}

"send" is client -> server *of that hop*. Only data frames (text, binary,
continuation) are listed, as Chrome does; ``data`` is the analyzer's preview,
which may be cut short. wscap-specific facts ride in ``_wscap`` fields
(custom fields start with ``_`` as the HAR spec allows).

Like JSON, HAR is a hand-off to tools: it carries full values unless the
caller redacts the document first.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any, Iterator
from urllib.parse import parse_qsl

from wscap.render.mermaid import chain_of, header, split_addr

__all__ = ["render_har", "render_har_json"]


def _iso(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        ts = 0.0
    try:
        d = _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        # A capture's timestamps are attacker-controlled; HAR needs a date, so clamp to the epoch.
        d = _dt.datetime.fromtimestamp(0, _dt.timezone.utc)
    return d.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _headers(head: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": str(p[0]), "value": str(p[1])} for p in head.get("headers") or []
            if isinstance(p, (list, tuple)) and len(p) == 2]


def _cookies(head: dict[str, Any], name: str) -> list[dict[str, str]]:
    out = []
    for p in head.get("headers") or []:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and str(p[0]).lower() == name):
            continue
        if name == "cookie":
            pairs = str(p[1]).split(";")
        else:  # set-cookie: the first pair is the cookie, the rest attributes
            pairs = str(p[1]).split(";")[:1]
        for pair in pairs:
            k, eq, v = pair.strip().partition("=")
            if k:
                out.append({"name": k, "value": v})
    return out


def _url(hs: dict[str, Any], req: dict[str, Any]) -> str:
    target = str(req.get("target") or "/")
    if target.startswith(("http://", "https://", "ws://", "wss://")):
        return target  # absolute-form (sent to a forward proxy)
    host = header(req, "host")
    if not host:
        ip, port = split_addr(str(hs.get("server") or ""))
        host = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    # What wscap sees is cleartext, so the scheme is ws:// (or http:// for
    # non-WebSocket upgrades).
    scheme = "ws" if hs.get("websocket") else "http"
    return f"{scheme}://{host}{target if target.startswith('/') else '/' + target}"


def _headers_size(head: dict[str, Any]) -> int:
    raw = head.get("raw")
    return len(raw.encode("latin-1", "replace")) if isinstance(raw, str) else -1


def _messages(hs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in hs.get("frames") or []:
        if f.get("opcode") not in (0, 1, 2):
            continue
        out.append({"type": "send" if f.get("dir") == "client" else "receive",
                    "time": float(f.get("ts") or 0.0), "opcode": int(f.get("opcode")),
                    "data": str(f.get("preview") or "")})
    return out


def _entry(doc: dict[str, Any], hs: dict[str, Any], where: Mapping[Any, Any]) -> dict[str, Any]:
    req = hs["request"]
    resp = hs.get("response") or {}
    rts = req.get("ts") if isinstance(req.get("ts"), (int, float)) else hs.get("first_ts")
    sts = resp.get("ts")
    wait = (sts - rts) * 1000 if isinstance(sts, (int, float)) and isinstance(rts, (int, float)) else None
    if wait is None and isinstance(hs.get("waited"), (int, float)):
        wait = hs["waited"] * 1000
    wait = max(0.0, round(wait, 3)) if wait is not None else 0.0
    target = str(req.get("target") or "")
    query = target.partition("?")[2].partition("#")[0]
    ch, hop = where.get(hs.get("id"), (None, None))
    sip, sport = split_addr(str(hs.get("server") or ""))
    entry: dict[str, Any] = {
        "startedDateTime": _iso(rts),
        "time": wait,
        "request": {
            "method": str(req.get("method") or "GET"),
            "url": _url(hs, req),
            "httpVersion": str(req.get("version") or "HTTP/1.1"),
            "cookies": _cookies(req, "cookie"),
            "headers": _headers(req),
            "queryString": [{"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)],
            "headersSize": _headers_size(req),
            "bodySize": 0,
        },
        "response": {
            "status": int(resp.get("status") or 0),
            "statusText": str(resp.get("reason") or ("" if resp else hs.get("outcome") or "")),
            "httpVersion": str(resp.get("version") or ""),
            "cookies": _cookies(resp, "set-cookie"),
            "headers": _headers(resp),
            "content": {"size": 0, "mimeType": header(resp, "content-type") or "x-unknown"},
            "redirectURL": header(resp, "location") or "",
            "headersSize": _headers_size(resp) if resp else -1,
            "bodySize": -1 if not resp else 0,
        },
        "cache": {},
        "timings": {"send": 0, "wait": wait, "receive": 0},
        "serverIPAddress": sip,
        "connection": str(sport) if sport is not None else "",
        "_resourceType": "websocket" if hs.get("websocket") else "other",
        "_webSocketMessages": _messages(hs),
        "_wscap": {"handshake": hs.get("id"), "chain": (ch or {}).get("id"), "hop": hop,
                   "client": hs.get("client"), "server": hs.get("server"),
                   "outcome": hs.get("outcome"), "request_frame": req.get("frame"),
                   "response_frame": resp.get("frame"),
                   "anomalies": [a.get("code") for a in hs.get("anomalies") or []]},
    }
    if ch:
        v = ch.get("verdict") or {}
        entry["comment"] = f"chain {ch.get('id')} hop {hop}: {v.get('cause') or 'ok'}"
    return entry


def render_har(doc: dict[str, Any]) -> dict[str, Any]:
    """The HAR 1.2 object (``{"log": {...}}``) for ``doc``."""
    where = chain_of(doc)
    entries = [_entry(doc, hs, where) for hs in doc.get("handshakes") or []
               if isinstance(hs, dict) and isinstance(hs.get("request"), dict)]
    tool = str(doc.get("tool") or "wscap")
    name, _, version = tool.partition(" ")
    return {"log": {
        "version": "1.2",
        "creator": {"name": name or "wscap", "version": version or "0"},
        "pages": [],
        "entries": entries,
        "comment": "WebSocket upgrade handshakes reconstructed from packets by wscap",
    }}


def render_har_json(doc: dict[str, Any]) -> str:
    """:func:`render_har` serialised (2-space indent, trailing newline)."""
    return "".join(iter_har_json(doc))


def iter_har_json(doc: dict[str, Any]) -> Iterator[str]:
    """render_har_json in pieces: the same text, each entry encoded on its own as it is made
    (json.dumps of the whole log held every entry, and its text, at once)."""
    where = chain_of(doc)
    empty = render_har({**doc, "handshakes": []})
    text = json.dumps(empty, indent=2, ensure_ascii=False) + "\n"
    mark = '"entries": []'
    head, _, tail = text.partition(mark)
    first = True
    for hs in doc.get("handshakes") or []:
        if not (isinstance(hs, dict) and isinstance(hs.get("request"), dict)):
            continue
        entry = json.dumps(_entry(doc, hs, where), indent=2, ensure_ascii=False)
        yield (head + '"entries": [\n' if first else ",\n") + "\n".join("      " + ln for ln in entry.split("\n"))
        first = False
    yield (head + mark if first else "\n    ]") + tail
