"""Writes the hand-built JSON documents in tests/fixtures/docs/.

They follow docs/json-contract.md field by field, so the renderers can be
tested before real captures exist. Run from the repo root:

    python scripts/render_check/make_fixtures.py

Each head's ``raw`` is built from its header list, so raw and parsed views
agree the way the analyzer's would. The files are committed; this script is
only how they were made (and how to remake them after a contract change).
"""
from __future__ import annotations

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "docs"

T0 = 1700000000.0
PARSERS_OK = {
    "llhttp": {"request": {"accepts": True, "error": None}, "response": {"accepts": True, "error": None}},
    "h11": {"request": {"accepts": True, "error": None}, "response": {"accepts": True, "error": None}},
}
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def req(method, target, headers, frame, ts, version="HTTP/1.1"):
    raw = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return {"method": method, "target": target, "version": version,
            "headers": [list(h) for h in headers], "frame": frame, "ts": ts, "raw": raw}


def resp(status, reason, headers, frame, ts, version="HTTP/1.1"):
    raw = f"{version} {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return {"version": version, "status": status, "reason": reason,
            "headers": [list(h) for h in headers], "frame": frame, "ts": ts, "raw": raw}


def hs(id, client, server, request, response, outcome, first_frame, last_frame,
       first_ts, last_ts, frames=(), anomalies=(), end=None, source=0, websocket=True,
       syn=None, waited=None):
    return {
        "id": id, "source": source, "client": client, "server": server,
        "first_frame": first_frame, "last_frame": last_frame,
        "first_ts": first_ts, "last_ts": last_ts, "websocket": websocket,
        "request": request, "response": response, "outcome": outcome,
        "status": response["status"] if response else None,
        "anomalies": list(anomalies), "parsers": PARSERS_OK, "frames": list(frames),
        "tcp": {"syn_frame": syn if syn is not None else first_frame,
                "synack_frame": (syn if syn is not None else first_frame) + 1,
                "end": end, "gaps": 0},
        "waited": waited,
    }


def frame(dir, no, ts, opcode, preview, masked=None):
    names = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
    return {"dir": dir, "frame": no, "ts": ts, "fin": True, "rsv1": False, "rsv2": False,
            "rsv3": False, "opcode": opcode, "opcode_name": names[opcode],
            "masked": (dir == "client") if masked is None else masked,
            "length": len(preview), "close_code": None, "close_reason": None, "preview": preview}


def browser_headers(host, origin, extra=()):
    return [("Host", host), ("Connection", "Upgrade"), ("Pragma", "no-cache"),
            ("Upgrade", "websocket"), ("Origin", origin), ("Sec-WebSocket-Version", "13"),
            ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"),
            ("Sec-WebSocket-Key", KEY), *extra,
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]


def proxied_headers(host, origin, extra=()):
    # node-http-proxy forwards Node's lower-cased header names.
    return [("host", host), ("connection", "Upgrade"), ("pragma", "no-cache"),
            ("upgrade", "websocket"), ("origin", origin), ("sec-websocket-version", "13"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"),
            ("sec-websocket-key", KEY), *extra,
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
            ("x-forwarded-for", "172.18.0.1"), ("x-forwarded-port", "5173"),
            ("x-forwarded-proto", "ws")]


UPGRADED_HDRS = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]
PROXIED_101 = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", ACCEPT)]

ENDPOINTS = [
    {"ip": "172.18.0.1", "name": None, "role": "client", "ports": [51234]},
    {"ip": "172.18.0.2", "name": "meetsonar-frontend", "role": "proxy", "ports": [5173]},
    {"ip": "172.18.0.3", "name": "meetsonar-backend", "role": "backend", "ports": [5000]},
]

CASE_CHANGES = [
    {"kind": "case-changed", "name": n.lower(), "before": n, "after": n.lower(),
     "class": "expected", "why": "Node lower-cases header names"}
    for n in ("Connection", "Pragma", "Upgrade", "Origin", "Sec-WebSocket-Version",
              "User-Agent", "Sec-WebSocket-Key", "Sec-WebSocket-Extensions")
]
XFWD = [
    {"kind": "added", "name": n, "before": None, "after": v, "class": "expected",
     "why": "proxy added forwarding header (xfwd)"}
    for n, v in (("x-forwarded-for", "172.18.0.1"), ("x-forwarded-port", "5173"),
                 ("x-forwarded-proto", "ws"))
]


def doc(sources, handshakes, chains, endpoints, packets):
    broken = sum(1 for c in chains if c["verdict"]["broken"])
    by_cause: dict[str, int] = {}
    for c in chains:
        by_cause[c["verdict"]["cause"]] = by_cause.get(c["verdict"]["cause"], 0) + 1
    return {
        "version": 1, "tool": "wscap 0.1.0", "source": sources,
        "handshakes": handshakes, "chains": chains, "endpoints": endpoints,
        "stats": {"packets": packets, "tcp_packets": packets, "flows": len(handshakes),
                  "limits_hit": {"head-too-large": 0}},
        "summary": {"handshakes": sum(1 for h in handshakes if h["request"] is not None),
                    "websocket": sum(1 for h in handshakes if h["websocket"]),
                    "chains": len(chains), "broken": broken, "by_cause": by_cause},
    }


def healthy():
    h1 = hs(1, "172.18.0.1:51234", "172.18.0.2:5173",
            req("GET", "/ws", browser_headers("localhost:5173", "http://localhost:5173"), 4, T0 + 0.100000),
            resp(101, "Switching Protocols", UPGRADED_HDRS, 10, T0 + 0.104500),
            "upgraded", 1, 20, T0 + 0.099000, T0 + 2.0,
            frames=[frame("client", 12, T0 + 0.2, 1, '{"type":"join","room":"standup"}'),
                    frame("server", 14, T0 + 0.21, 1, '{"type":"joined","peers":2}')])
    h2 = hs(2, "172.18.0.2:40112", "172.18.0.3:5000",
            req("GET", "/ws", proxied_headers("meetsonar-backend:5000", "http://localhost:5173"), 7, T0 + 0.102100),
            resp(101, "Switching Protocols", UPGRADED_HDRS, 9, T0 + 0.104000),
            "upgraded", 5, 19, T0 + 0.101000, T0 + 1.99,
            frames=[frame("client", 13, T0 + 0.201, 1, '{"type":"join","room":"standup"}'),
                    frame("server", 13 + 1, T0 + 0.209, 1, '{"type":"joined","peers":2}')])
    # frame numbers must be unique per capture: fix h2's server frame
    h2["frames"][1]["frame"] = 15
    h2["last_frame"] = 19
    chain = {
        "id": 1, "hops": [1, 2],
        "links": [{"from": 1, "to": 2, "by": "key", "delay": 0.0021}],
        "diffs": [
            {"boundary": 0, "direction": "request", "from_hop": 0, "to_hop": 1, "status_change": None,
             "changes": [{"kind": "changed", "name": "host", "before": "localhost:5173",
                          "after": "meetsonar-backend:5000", "class": "expected",
                          "why": "changeOrigin rewrote Host to the target"}] + CASE_CHANGES + XFWD},
            {"boundary": 0, "direction": "response", "from_hop": 0, "to_hop": 1, "status_change": None,
             "changes": []},
        ],
        "verdict": {"cause": "ok", "hop": None,
                    "summary": "WebSocket upgraded through 1 proxy: 101 at frame 9 (backend) and frame 10 (client).",
                    "evidence": [{"frame": 9, "source": 0, "what": "HTTP/1.1 101 Switching Protocols"},
                                 {"frame": 10, "source": 0, "what": "HTTP/1.1 101 Switching Protocols"}],
                    "broken": False, "benign": False, "software": ["node-http-proxy"]},
    }
    src = [{"path": "pcaps/healthy.pcap", "format": "pcap", "packets": 24, "bytes": 4321,
            "first_ts": T0 + 0.099, "last_ts": T0 + 2.0, "linktypes": [1], "complete": True, "errors": []}]
    return doc(src, [h1, h2], [chain], ENDPOINTS, 24)


def origin_rejected():
    body_hdrs = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "9"),
                 ("Connection", "close")]
    h1 = hs(1, "172.18.0.1:51234", "172.18.0.2:5173",
            req("GET", "/ws?room=standup", browser_headers("localhost:5173", "http://localhost:5173"), 4, T0 + 0.100000),
            resp(403, "Forbidden", [(n.lower(), v) for n, v in body_hdrs], 14, T0 + 0.105),
            "rejected", 1, 18, T0 + 0.099, T0 + 0.2,
            end={"kind": "fin", "by": "server", "frame": 16, "ts": T0 + 0.106})
    h2 = hs(2, "172.18.0.2:40112", "172.18.0.3:5000",
            req("GET", "/ws?room=standup", proxied_headers("meetsonar-backend:5000", "http://localhost:5173"), 9, T0 + 0.102),
            resp(403, "Forbidden", body_hdrs, 12, T0 + 0.1045),
            "rejected", 6, 17, T0 + 0.101, T0 + 0.19,
            end={"kind": "fin", "by": "server", "frame": 13, "ts": T0 + 0.1046})
    chain = {
        "id": 1, "hops": [1, 2],
        "links": [{"from": 1, "to": 2, "by": "key", "delay": 0.002}],
        "diffs": [
            {"boundary": 0, "direction": "request", "from_hop": 0, "to_hop": 1, "status_change": None,
             "changes": [{"kind": "changed", "name": "host", "before": "localhost:5173",
                          "after": "meetsonar-backend:5000", "class": "expected",
                          "why": "changeOrigin rewrote Host, but Origin was forwarded unchanged"}] + XFWD},
            {"boundary": 0, "direction": "response", "from_hop": 0, "to_hop": 1, "status_change": None,
             "changes": [{"kind": "case-changed", "name": "content-type", "before": "Content-Type",
                          "after": "content-type", "class": "expected", "why": "Node lower-cases header names"}]},
        ],
        "verdict": {"cause": "origin-rejected", "hop": 1,
                    "summary": ("meetsonar-backend (172.18.0.3:5000) answered 403 Forbidden at frame 12 to an upgrade "
                                "whose Origin was http://localhost:5173 (frame 9); the proxy rewrote Host to "
                                "meetsonar-backend:5000 but not Origin, and relayed the 403 to the browser at frame 14."),
                    "evidence": [{"frame": 9, "source": 0, "what": "origin: http://localhost:5173"},
                                 {"frame": 12, "source": 0, "what": "HTTP/1.1 403 Forbidden"},
                                 {"frame": 14, "source": 0, "what": "HTTP/1.1 403 Forbidden (relayed by proxy)"}],
                    "broken": True, "benign": False, "software": ["node-http-proxy", "flask-sock"]},
    }
    src = [{"path": "pcaps/origin-rejected.pcapng", "format": "pcapng", "packets": 18, "bytes": 2900,
            "first_ts": T0 + 0.099, "last_ts": T0 + 0.2, "linktypes": [276], "complete": True, "errors": []}]
    return doc(src, [h1, h2], [chain], ENDPOINTS, 18)


def refused_v6():
    """IPv6 client -> proxy; proxy -> backend refused; plus an unchained no-response handshake."""
    h1 = hs(1, "[::1]:50000", "[::1]:5173",
            req("GET", "/@vite/hmr", [("Host", "[::1]:5173"), ("Upgrade", "websocket"),
                                      ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
                                      ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "vite-hmr")],
                4, T0 + 1.0),
            None, "closed", 1, 9, T0 + 0.999, T0 + 1.01,
            end={"kind": "fin", "by": "server", "frame": 8, "ts": T0 + 1.01})
    h2 = hs(2, "127.0.0.1:41000", "127.0.0.1:24678", None, None, "refused", 5, 6, T0 + 1.002, T0 + 1.0021,
            end={"kind": "rst", "by": "server", "frame": 6, "ts": T0 + 1.0021}, websocket=False)
    h3 = hs(3, "[2001:db8::10]:43000", "[2001:db8::20]:8080",
            req("GET", "/live", [("Host", "api.internal:8080"), ("Upgrade", "websocket"),
                                 ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
                                 ("Sec-WebSocket-Version", "13")], 12, T0 + 2.0),
            None, "no-response", 10, 14, T0 + 1.999, T0 + 7.0, waited=5.0)
    chain = {
        "id": 1, "hops": [1, 2],
        "links": [{"from": 1, "to": 2, "by": "inferred", "delay": 0.002}],
        "diffs": [],
        "verdict": {"cause": "upstream-refused", "hop": 1,
                    "summary": ("The proxy's connection to 127.0.0.1:24678 was refused (RST at frame 6); "
                                "the proxy then closed the browser's connection without a response (FIN at frame 8)."),
                    # hop_id: an extra field the analyzer adds to evidence
                    "evidence": [{"hop_id": 2, "frame": 6, "source": 0, "what": "RST from 127.0.0.1:24678"},
                                 {"hop_id": 1, "frame": 8, "source": 0,
                                  "what": "FIN from [::1]:5173 before any response"}],
                    "broken": True, "benign": False, "software": []},
    }
    src = [{"path": "pcaps/lo-refused.pcap", "format": "pcap", "packets": 14, "bytes": 1800,
            "first_ts": T0 + 0.999, "last_ts": T0 + 7.0, "linktypes": [0], "complete": False,
            "errors": ["pcaps/lo-refused.pcap: frame 15: record truncated (header says 1514 bytes, 80 left)"]}]
    endpoints = [
        {"ip": "::1", "name": "localhost", "role": "proxy", "ports": [5173]},
        {"ip": "127.0.0.1", "name": "localhost", "role": "backend", "ports": [24678]},
        {"ip": "2001:db8::10", "name": None, "role": "client", "ports": [43000]},
        {"ip": "2001:db8::20", "name": "api.internal", "role": "unknown", "ports": [8080]},
    ]
    d = doc(src, [h1, h2, h3], [chain], endpoints, 14)
    d["summary"]["websocket"] = 2
    return d


# ---- the hostile document -------------------------------------------------
# Every value below is attacker-controlled on the wire. Tests derive their
# expectations from these constants, not from renderer output.
HOSTILE = {
    "ansi": "\x1b[31mRED\x1b[0m\x9b2J",
    "script": "<script>alert(1)</script>",
    "formula": '=HYPERLINK("http://evil.example/","click")',
    "pipe": "a|b`c`d",
    "newline": "line1\nline2\rX",
    "cookie_secret": "SESSION_SECRET_abc123",
    "cookie": "session=SESSION_SECRET_abc123; theme=dark",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlX3NlY3JldA",
    "bearer": "opaque_BEARER_SECRET_987654",
    "query_secret": "tokSECRETquery42",
    "host": "evil.example|x",
    "name": "evil<b>name|\x1b[1m",
    "reason": "Forbidden \x1b[2J<script>x</script>",
}


def hostile():
    H = HOSTILE
    target = f"/ws?token={H['query_secret']}&room=a|b<i>"
    headers = [("Host", H["host"]), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("User-Agent", H["ansi"]), ("X-Note", H["script"]), ("X-Formula", H["formula"]),
               ("X-Pipe", H["pipe"]), ("X-Newline", H["newline"]), ("Cookie", H["cookie"]),
               ("Authorization", "Bearer " + H["bearer"]),
               ("Sec-WebSocket-Protocol", "chat, authorization.bearer." + H["jwt"]),
               ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
               ("Origin", H["formula"])]
    up_headers = [(n.lower(), v) for n, v in headers if n != "Cookie"] + [("cookie", "session=" + H["cookie_secret"])]
    resp_hdrs = [("Content-Type", "text/html"), ("X-Evil", H["formula"]), ("Set-Cookie", "session=" + H["cookie_secret"] + "; Path=/; HttpOnly")]
    h1 = hs(1, "10.0.0.1:50001", "10.0.0.2:8080", req("GET", target, headers, 4, T0 + 3.0),
            resp(403, H["reason"], [(n.lower(), v) for n, v in resp_hdrs], 12, T0 + 3.01),
            "rejected", 1, 14, T0 + 2.999, T0 + 3.02,
            anomalies=[{"code": "ctl-in-header", "severity": "warn",
                        "message": "User-Agent contains control bytes: " + H["ansi"], "frame": 4}])
    h2 = hs(2, "10.0.0.2:40000", "10.0.0.3:9000", req("GET", target, up_headers, 7, T0 + 3.002),
            resp(403, H["reason"], resp_hdrs, 10, T0 + 3.008), "rejected", 5, 13, T0 + 3.001, T0 + 3.015)
    chain = {
        "id": 1, "hops": [1, 2],
        "links": [{"from": 1, "to": 2, "by": "key", "delay": 0.002}],
        "diffs": [
            {"boundary": 0, "direction": "request", "from_hop": 0, "to_hop": 1, "status_change": None,
             "changes": [
                 {"kind": "changed", "name": "cookie", "before": H["cookie"], "after": "session=" + H["cookie_secret"],
                  "class": "suspicious", "why": "proxy dropped a cookie " + H["script"]},
                 {"kind": "case-changed", "name": "x-formula", "before": "X-Formula", "after": "x-formula",
                  "class": "expected", "why": H["formula"]},
                 {"kind": "changed", "name": "x-pipe", "before": H["pipe"], "after": H["pipe"] + "|",
                  "class": "breaking", "why": H["ansi"]},
             ]},
            {"boundary": 0, "direction": "response", "from_hop": 0, "to_hop": 1,
             "status_change": None, "changes": []},
        ],
        "verdict": {"cause": "origin-rejected", "hop": 1,
                    "summary": ("Backend " + H["name"] + " rejected Origin " + H["script"] + " with cookie session="
                                + H["cookie_secret"] + " | frame 10 " + H["ansi"]),
                    "evidence": [{"frame": 10, "source": 0, "what": "HTTP/1.1 403 " + H["reason"]},
                                 {"frame": 7, "source": 0, "what": "Authorization: Bearer " + H["bearer"]}],
                    "broken": True, "benign": False, "software": [H["script"]]},
    }
    src = [{"path": "pcaps/hostile|<x>.pcap", "format": "pcap", "packets": 14, "bytes": 3000,
            "first_ts": T0 + 2.999, "last_ts": T0 + 3.02, "linktypes": [1], "complete": True, "errors": []}]
    endpoints = [
        {"ip": "10.0.0.1", "name": None, "role": "client", "ports": [50001]},
        {"ip": "10.0.0.2", "name": "proxy", "role": "proxy", "ports": [8080]},
        {"ip": "10.0.0.3", "name": H["name"], "role": "backend", "ports": [9000]},
    ]
    return doc(src, [h1, h2], [chain], endpoints, 14)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in (("healthy-2hop", healthy), ("origin-rejected-2hop", origin_rejected),
                     ("refused-v6", refused_v6), ("hostile", hostile)):
        (OUT / f"{name}.json").write_text(json.dumps(fn(), indent=2) + "\n")
        print("wrote", OUT / f"{name}.json")


if __name__ == "__main__":
    main()
