"""Which software sits on each end of a leg, read from its bytes (for the verdict's sentence)."""
from __future__ import annotations

from wscap.model.handshake import Handshake


def software(h: Handshake) -> dict[str, str]:
    """Name the software on each end of a leg from its bytes: {"client": ..., "server": ...}.

    Server: its Server header, or the 101 as a library writes it (reason phrase, header casing
    and order). Client: a non-browser User-Agent, or the request as a proxy's HTTP client
    re-serialised it (Bun's fetch-based node:http sorts lower-cased names and adds Accept).
    """
    out: dict[str, str] = {}
    resp = h.response
    req = h.request
    if resp:
        server = resp.header("server")
        raw = resp.raw
        names = [n for n, _ in resp.headers]
        if server:
            out["server"] = server.split(" ")[0].lower()
        elif resp.status == 101 and resp.reason == "Switching protocols":
            out["server"] = "bun"
        elif resp.status == 101 and raw.startswith("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                                   "Connection: Upgrade\r\nSec-WebSocket-Accept:"):
            out["server"] = "ws (node)"
        elif resp.status == 101 and names and all(n == n.lower() for n in names):
            out["server"] = "node http-proxy (re-serialised 101)"
    if req:
        ua = req.header("user-agent") or ""
        names = [n for n, _ in req.headers]
        lower = [n.lower() for n in names]
        body = lower[:-1] if lower and lower[-1] == "accept" else lower
        if len(names) >= 4 and lower[-1:] == ["accept"] and body == sorted(body) and names != lower:
            # Bun's fetch-based node:http client: Title-Case names in alphabetical order, Accept appended.
            out["client"] = "bun (fetch-based node:http client)"
        elif len(names) >= 4 and names == lower:
            # node http-proxy copies Node's parsed req.headers: lower-cased, in arrival order.
            out["client"] = "node http-proxy"
        elif ua and not ua.startswith("Mozilla/"):
            out["client"] = ua.split(" ")[0].lower()
    return out


def is_browser(h: Handshake) -> bool:
    """A browser's request: its User-Agent says Mozilla/ (every browser engine's does)."""
    ua = h.request.header("user-agent") if h.request is not None else None
    return (ua or "").startswith("Mozilla/")
