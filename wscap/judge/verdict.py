"""Verdict per chain: the first hop where the handshake stops being valid, and why.

Rules run in a fixed order, from the deepest leg (backend side) back towards
the client, because the root cause is usually where the request stopped: a
backend's 403 explains the client's 502, not the other way round. Each rule
cites frames and header values as evidence so the sentence can be checked in
Wireshark.
"""
from __future__ import annotations

# cause -> what to check next (README "Causes" table is generated from this)
ADVICE: dict[str, str] = {
    "ok": "Nothing to fix in the handshake.",
    "origin-rejected": "The backend refused the Origin it received. Add the client's origin to the backend's allow-list "
                       "(e.g. ALLOWED_ORIGINS), or remove a proxy hook that rewrites Origin (Vite `configure` + "
                       "`proxyReqWs`). `changeOrigin` rewrites Host only, never Origin.",
    "upgrade-header-stripped": "A proxy dropped `Upgrade`. nginx needs `proxy_http_version 1.1; proxy_set_header Upgrade "
                               "$http_upgrade;`; check Vite `configure` hooks that call removeHeader.",
    "connection-header-stripped": "A proxy dropped the `upgrade` token from `Connection`. nginx: `proxy_set_header "
                                  "Connection \"upgrade\";`; Varnish/other proxies: pipe Connection through.",
    "key-changed": "An intermediary regenerated Sec-WebSocket-Key without re-deriving Sec-WebSocket-Accept for the client.",
    "bad-accept": "Sec-WebSocket-Accept does not match the key: a buggy server or an intermediary that rewrote the key.",
    "invalid-101": "The client fails the connection (RFC 6455 §4.1; a browser fires error, then close 1006): the 101 "
                   "must carry `Upgrade: websocket`, `Connection: Upgrade` and a valid Sec-WebSocket-Accept. Fix "
                   "the server that produced it (the hop named), or the proxy hook that removed the header.",
    "malformed-request": "The client's request bytes break HTTP/1.1 grammar (obs-fold, bare LF, a header llhttp "
                         "rejects); the server refused or misread it. Fix the client, or the proxy that re-serialised "
                         "the request.",
    "client-http-after-101": "The client sent HTTP (another request) on the socket after the 101, where WebSocket "
                             "frames belong: a client or pooled HTTP agent reusing an upgraded socket. The server "
                             "reads it as a broken frame and fails the connection (close 1002).",
    "malformed-response": "The response bytes break HTTP/1.1 grammar; see which parser rejects them. Fix the server "
                          "(bare LF, Content-Length on 101, unterminated head) — Node/Bun clients reject what nginx may accept.",
    "upstream-refused": "The proxy's target refused the connection (RST to SYN): backend not listening on that port, or "
                        "`localhost` inside a container. Use the Compose service name and the container's port.",
    "upstream-unreachable": "The proxy's SYNs to the target were never answered: wrong address, firewall, or a "
                            "container on another network.",
    "no-upstream-connection": "The proxy received the upgrade but never connected upstream: no `ws: true` for that path, "
                              "name not resolvable, Vite in middleware mode, or the leg runs on loopback inside a "
                              "container (capture there: `wscap live --container NAME`).",
    "upstream-rejected": "The backend answered the upgrade with a non-101 status; see its response and headers.",
    "upstream-closed": "The backend closed or reset the connection without answering: crash, TLS expected, or a "
                       "protocol mismatch.",
    "proxy-rejected": "The proxy answered without going upstream: the path is not proxied (check `server.proxy` "
                      "keys and `rewrite`), or Vite's own host/origin check refused it (`server.allowedHosts`).",
    "proxy-dropped-upgrade": "The backend said 101 but the client got something else: a proxy runtime bug (Bun's "
                             "node:http client not surfacing 'upgrade', oven-sh/bun#24127) or an old http-proxy.",
    "proxy-dropped-response": "The backend's non-101 answer never reached the client (http-proxy listened only for "
                              "'upgrade'; node-http-proxy#624, http-proxy-3#26). Upgrade the proxy.",
    "frames-lost-at-proxy": "Frames that arrived with the upstream 101 never reached the client: the proxy lost the "
                            "'head' bytes when switching to piping.",
    "subprotocol-mismatch": "The chosen Sec-WebSocket-Protocol was not offered, or was not passed back to the client.",
    "extension-mismatch": "Extensions differ between what was negotiated and what frames use (RSV1 without "
                          "permessage-deflate): a proxy relayed the offer but not the answer, or vice versa.",
    "version-unsupported": "Sec-WebSocket-Version is not 13, or the server answered 426 with the versions it supports.",
    "timeout": "No answer within --timeout (the wait the capture observed is in the summary): the backend is slow "
               "or hung, or the proxy is waiting on it.",
    "unanswered-at-capture-end": "Not a failure seen: the capture ended before --timeout had passed since the "
                                 "request, with no answer yet. Capture longer (or lower --timeout) to judge it.",
    "closed-after-upgrade": "The WebSocket opened and was then closed abnormally; check the close code, which side "
                            "closed, and idle timeouts (nginx proxy_read_timeout 60 s, load balancers) — send pings.",
}

BROKEN_FRAME_CODES = {"rsv1-without-extension": "extension-mismatch"}
# Grammar problems of a head. They are blamed on the side that sent the head: the anomaly's frame
# is the frame of the request head or of the response head (see _malformed).
MALFORMED_CODES = ("bare-lf", "body-on-101", "llhttp-rejects", "malformed-start-line", "head-incomplete",
                   "non-http-response", "obs-fold", "whitespace-before-colon",
                   "invalid-header-name", "malformed-header-line", "head-too-large")
# RFC 6455 §4.1 (client side, steps 2-4): a 101 without these makes the client fail the connection.
INVALID_101_CODES = ("response-upgrade-missing", "response-connection-missing", "accept-missing")
IDLE_TIMEOUTS = (30, 60, 75, 90, 100, 120, 300, 350, 600, 900, 3600)


def _codes(h: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for a in h.get("anomalies", []):
        out.setdefault(a["code"], a)
    return out


def _hdr(h: dict, part: str, name: str) -> str | None:
    msg = h.get(part)
    if not msg:
        return None
    for n, v in msg["headers"]:
        if n.lower() == name:
            return v
    return None


def _ev(h: dict, frame: int | None, what: str) -> dict:
    return {"hop_id": h.get("id"), "source": h.get("source"), "frame": frame, "what": what}


def _leg(h: dict) -> str:
    return f"{h['client']} → {h['server']}"


def software(h: dict) -> dict[str, str]:
    """Name the software on each end of a leg from its bytes: {"client": ..., "server": ...}.

    Server: its Server header, or the 101 as a library writes it (reason phrase, header casing
    and order). Client: a non-browser User-Agent, or the request as a proxy's HTTP client
    re-serialised it (Bun's fetch-based node:http sorts lower-cased names and adds Accept).
    """
    out: dict[str, str] = {}
    resp = h.get("response")
    req = h.get("request")
    if resp:
        server = _hdr(h, "response", "server")
        raw = resp.get("raw", "")
        names = [n for n, _ in resp["headers"]]
        if server:
            out["server"] = server.split(" ")[0].lower()
        elif resp["status"] == 101 and resp["reason"] == "Switching protocols":
            out["server"] = "bun"
        elif resp["status"] == 101 and raw.startswith("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                                      "Connection: Upgrade\r\nSec-WebSocket-Accept:"):
            out["server"] = "ws (node)"
        elif resp["status"] == 101 and names and all(n == n.lower() for n in names):
            out["server"] = "node http-proxy (re-serialised 101)"
    if req:
        ua = _hdr(h, "request", "user-agent") or ""
        names = [n for n, _ in req["headers"]]
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


def decide(hops: list[dict], diffs: list[dict], links: list[dict], proxies: set[str],
           timeout_s: float = 3.0) -> dict:
    cause, hop, summary, evidence = _decide(hops, diffs, proxies, timeout_s)
    benign = False
    broken = cause not in ("ok", "unanswered-at-capture-end")
    if cause == "ok":
        notes = _tolerated_notes(hops)
        if notes:
            summary += " " + " ".join(notes)
    if cause == "malformed-response" and _worked_anyway(hops):
        # Malformed but tolerated: every leg upgraded and messages flowed both ways on the client leg.
        broken = False
        summary += " The client's parser tolerated it: messages flowed both ways."
    if cause == "ok":
        benign_note = _teardown_note(hops)
        if benign_note:
            summary += " " + benign_note
            benign = True
    sw: list[str] = []
    for i, h in enumerate(hops):
        for side, name in software(h).items():
            sw.append(f"hop {i} {side}: {name}")
    if broken and hop is not None:
        # The failing leg's two ends, plus the proxy's own upstream client (same process as the
        # failing leg's server): several of these failures are runtime bugs (oven-sh/bun#24127).
        legs = software(hops[hop])
        at = [f"{name} ({side})" for side, name in legs.items()]
        if hop + 1 < len(hops) and "client" in software(hops[hop + 1]):
            at.append(f"{software(hops[hop + 1])['client']} (the proxy's upstream client)")
        if at:
            summary += " Software on that leg: " + ", ".join(at) + "."
    return {"cause": cause, "hop": hop, "summary": summary, "evidence": evidence,
            "broken": broken, "benign": benign, "software": sw, "advice": ADVICE[cause]}


def _decide(hops: list[dict], diffs: list[dict], proxies: set[str],
            timeout_s: float = 3.0) -> tuple[str, int | None, str, list[dict]]:
    n = len(hops)
    last = hops[-1]
    li = n - 1
    # 1. The deepest leg never carried a request: the proxy could not reach its target.
    if last.get("request") is None:
        oc = last["outcome"]
        down = hops[-2] if n > 1 else last
        ev = [_ev(down, down["request"]["frame"] if down.get("request") else None, f"upgrade request to {down['server']}"),
              _ev(last, last["tcp"]["syn_frame"], f"SYN {last['client']} → {last['server']}")]
        if oc == "refused":
            end = last["tcp"]["end"] or {}
            ev.append(_ev(last, end.get("frame"), "RST from " + last["server"]))
            return ("upstream-refused", li, f"The proxy's connection to {last['server']} was refused: SYN in frame "
                    f"{last['tcp']['syn_frame']} answered by RST in frame {end.get('frame')}.", ev)
        if oc == "unanswered":
            return ("upstream-unreachable", li, f"The proxy's SYN to {last['server']} (frame {last['tcp']['syn_frame']}) "
                    f"was never answered.", ev)
        return ("upstream-closed", li, f"The proxy connected to {last['server']} but the connection "
                f"was {'reset' if oc == 'reset' else 'closed'} before any request was sent.", ev)
    # 2. Breaking request changes at a boundary explain what the next hop did.
    priority = {"upgrade": 0, "connection": 1, ":request-line": 1, "origin": 2, "sec-websocket-key": 3}
    for d in diffs:
        if d["direction"] != "request":
            continue
        # Upgrade lost explains Connection being rewritten (http-proxy forces 'close' then), not vice versa.
        for c in sorted(d["changes"], key=lambda c: priority.get(c["name"], 9)):
            if c["class"] != "breaking":
                continue
            up = hops[d["to_hop"]]
            name = c["name"]
            ev = [_ev(hops[d["from_hop"]], hops[d["from_hop"]]["request"]["frame"], f"{name}: {c['before']}"),
                  _ev(up, up["request"]["frame"], f"{name}: {c['after']}")]
            said = f" {up['server']} answered {up['status']}." if up.get("status") else ""
            if name == "upgrade":
                return ("upgrade-header-stripped", d["to_hop"], f"The proxy at {up['client']} sent the request upstream "
                        f"without 'Upgrade: websocket' (was {c['before']!r}, now {c['after']!r}, frame "
                        f"{up['request']['frame']}).{said}", ev)
            if name == "connection" or name == ":request-line":
                return ("connection-header-stripped", d["to_hop"], f"The proxy at {up['client']} dropped the 'upgrade' "
                        f"token from Connection ({c['before']!r} → {c['after']!r}, frame {up['request']['frame']}).{said}", ev)
            if name == "origin" and up.get("outcome") != "upgraded":
                return ("origin-rejected", d["to_hop"], f"The proxy rewrote Origin {c['before']!r} → {c['after']!r} "
                        f"(frame {up['request']['frame']}) and {up['server']} answered "
                        f"{up.get('status') or up['outcome']} (frame {(up.get('response') or {}).get('frame')}).", ev)
            if name == "sec-websocket-key":
                client_codes = _codes(hops[0])
                if "bad-accept" in client_codes or up.get("outcome") != "upgraded":
                    return ("key-changed", d["to_hop"], f"The key changed between hops ({c['before']!r} → "
                            f"{c['after']!r}) and the client's Accept no longer matches its key.", ev)
            if name == "sec-websocket-version":
                return ("version-unsupported", d["to_hop"], f"Sec-WebSocket-Version changed between hops "
                        f"({c['before']!r} → {c['after']!r}).", ev)
    # 3. The deepest leg's own answer.
    codes = _codes(last)
    resp = last.get("response")
    if resp is None:
        oc = last["outcome"]
        end = last["tcp"]["end"] or {}
        if oc == "no-response":
            waited = last.get("waited")
            ev = [_ev(last, last["request"]["frame"], "request")]
            if waited is not None and waited < timeout_s and all(h["outcome"] == "no-response" for h in hops):
                # The capture stopped watching before a reply was due, and no leg has failed yet (a
                # proxy's 504 to the client would be a failure seen, whatever the deepest leg waited).
                return ("unanswered-at-capture-end", li, f"{last['server']} had not answered the upgrade request "
                        f"(frame {last['request']['frame']}) when the capture ended {waited:g} s later, less "
                        f"than --timeout {timeout_s:g} s: unanswered when the capture ended, not a timeout.", ev)
            watched = f"the capture watched {waited:g} s after it" if waited is not None else "no end observed"
            server_ip = _ip(last["server"])
            if n == 1 and (server_ip in proxies or server_ip in getattr(proxies, "dialers", ())):
                return ("no-upstream-connection", li, f"The proxy {last['server']} neither answered the upgrade "
                        f"request (frame {last['request']['frame']}) nor connected upstream for it; {watched}. "
                        f"No proxy rule took {last['request']['target']!r} (or its rule lacks `ws: true`).", ev)
            return ("timeout", li, f"{last['server']} never answered the upgrade request (frame "
                    f"{last['request']['frame']}); {watched} (≥ --timeout {timeout_s:g} s).", ev)
        by = end.get("by")
        ev = [_ev(last, last["request"]["frame"], "request"), _ev(last, end.get("frame"), f"{end.get('kind')} by {by}")]
        if "non-http-response" in codes:
            return ("malformed-response", li, f"{last['server']} answered with bytes that are not HTTP/1: "
                    f"{codes['non-http-response']['message']}.", ev)
        if by == "client":
            gave = f" after {end['ts'] - last['request']['ts']:.3g} s" if end.get("ts") is not None else ""
            how = "reset" if oc == "reset" else "closed"
            server_ip = _ip(last["server"])
            if n == 1 and (server_ip in proxies or server_ip in getattr(proxies, "dialers", ())):
                return ("no-upstream-connection", li, f"The proxy {last['server']} neither answered the upgrade "
                        f"request (frame {last['request']['frame']}) nor connected upstream for it; the client gave "
                        f"up{gave} ({how} in frame {end.get('frame')}). No proxy rule took "
                        f"{last['request']['target']!r} (or its rule lacks `ws: true`).", ev)
            hint = ""
            if n == 1:
                hint = (f" No connection from {server_ip} upstream was seen either: if it is a proxy, no rule took "
                        f"{last['request']['target']!r} (see no-upstream-connection).")
            return ("timeout", li, f"The client gave up{gave}: it {how} the connection in frame {end.get('frame')} "
                    f"without an answer from {last['server']}.{hint}", ev)
        if n == 1 and _ip(last["server"]) in proxies or n == 1 and by == "server":
            cause = "no-upstream-connection" if n == 1 else "upstream-closed"
            return (cause, li, f"{last['server']} {'reset' if oc == 'reset' else 'closed'} the connection "
                    f"(frame {end.get('frame')}, by the {by}) without answering the upgrade, and no upstream "
                    f"connection was seen.", ev)
        return ("upstream-closed", li, f"{last['server']} {'reset' if oc == 'reset' else 'closed'} the connection "
                f"(frame {end.get('frame')}) without answering.", ev)
    if not resp.get("complete", True):
        inc = codes.get("head-incomplete", {})
        node = " Node's llhttp rejects it." if "llhttp-rejects" in codes else ""
        return ("malformed-response", li, f"The response from {last['server']} never completed: "
                f"{inc.get('message', 'incomplete head')} (starts {resp['raw'][:40]!r}).{node}",
                [_ev(last, last["request"]["frame"], "request"), _ev(last, resp["frame"], "partial head")])
    st = resp["status"]
    ev_resp = [_ev(last, last["request"]["frame"], f"{last['request']['method']} {last['request']['target']}"),
               _ev(last, resp["frame"], f"{resp['version']} {st} {resp['reason']}")]
    # "Upgraded" is a 101 on HTTP/1.1 and a 2xx to an extended CONNECT on HTTP/2 (RFC 8441).
    accepted = last["outcome"] == "upgraded"
    if not accepted and n > 1 and hops[-2].get("response") is None:
        down = hops[-2]
        end = down["tcp"]["end"] or {}
        return ("proxy-dropped-response", n - 2, f"{last['server']} answered {st} {resp['reason']} (frame "
                f"{resp['frame']}) but the client never got it from the proxy {down['server']} "
                f"(client leg {down['outcome']}" + (f", frame {end.get('frame')}" if end else "") + ").",
                ev_resp + [_ev(down, end.get("frame"), f"client leg {down['outcome']}")])
    if not accepted:
        req_mal = _malformed(last, "request")
        if req_mal and st is not None and 400 <= st < 500:      # st: None for a status line that does not parse
            return ("malformed-request", li, f"{last['server']} answered {st} {resp['reason']} (frame {resp['frame']}) "
                    f"to a request whose bytes break HTTP/1.1 grammar: "
                    + "; ".join(a["message"] for a in req_mal[:3]) + f" (frame {last['request']['frame']}, sent by "
                    f"{last['client']}).", ev_resp)
        origin = _hdr(last, "request", "origin")
        if "version-unsupported" in codes or st == 426:
            return ("version-unsupported", li, f"{last['server']} answered {st}: "
                    f"{(codes.get('version-rejected') or codes.get('version-unsupported') or {}).get('message', '')}.", ev_resp)
        if st == 403 and origin:
            return ("origin-rejected", li, f"{last['server']} answered 403 to Origin {origin!r} (frame {resp['frame']}).",
                    ev_resp)
        bare = not resp["headers"]
        if n == 1 and (_ip(last["server"]) in proxies or bare):
            # A status line with no headers at all is how Vite's proxy middleware refuses an
            # upgrade on the raw socket; backends (ws, Bun, nginx) always send headers.
            why = " (a bare status line without headers, as Vite's proxy writes it)" if bare else ""
            return ("proxy-rejected", 0, f"The proxy {last['server']} answered {st} {resp['reason']} itself "
                    f"(frame {resp['frame']}){why} without going upstream.", ev_resp)
        if n == 1 and st in (502, 503, 504):
            return ("no-upstream-connection", 0, f"{last['server']} answered {st} {resp['reason']} (frame "
                    f"{resp['frame']}) and no upstream connection was seen.", ev_resp)
        return ("upstream-rejected", li, f"{last['server']} answered {st} {resp['reason']} to the upgrade "
                f"(frame {resp['frame']}).", ev_resp)
    mal = _malformed(last, "response")
    if mal:
        node = " Node's llhttp rejects it." if any(a["code"] == "llhttp-rejects" for a in mal) \
            else " Node's llhttp accepts it."
        return ("malformed-response", li,
                f"The 101 from {last['server']} is malformed: " + "; ".join(a["message"] for a in mal[:3]) + "." + node,
                ev_resp)
    if "bad-accept" in codes:
        return ("bad-accept", li, codes["bad-accept"]["message"] + f" (frame {resp['frame']}).", ev_resp)
    bad = _invalid_101(hops)
    if bad is not None:
        return bad
    for code in ("subprotocol-not-offered", "subprotocol-not-echoed"):
        if code in codes:
            return ("subprotocol-mismatch", li, codes[code]["message"] + f" (frame {resp['frame']})."
                    + _fails(hops[0]), ev_resp)
    if "extension-not-offered" in codes:
        return ("extension-mismatch", li, codes["extension-not-offered"]["message"] + f" (frame {resp['frame']})."
                + _fails(hops[0]), ev_resp)
    # 4. Walk back towards the client: did each proxy relay what it got?
    for i in range(n - 2, -1, -1):
        down, up = hops[i], hops[i + 1]
        dres = down.get("response")
        dcodes = _codes(down)
        if dres is None or down["outcome"] != "upgraded":
            got = f"{dres['status']} {dres['reason']}" if dres else down["outcome"]
            ev = [_ev(up, up["response"]["frame"] if up.get("response") else None, f"upstream {up['status']}"),
                  _ev(down, dres["frame"] if dres else (down["tcp"]["end"] or {}).get("frame"), f"client got {got}")]
            bad = [a for a in up.get("anomalies", []) if a["code"] in INVALID_101_CODES]
            if bad and up.get("outcome") == "upgraded":
                # The upstream 101 was itself invalid (Node's client does not take a 101 without
                # Upgrade as an upgrade): that 101 is the cause, the proxy's answer its consequence.
                return ("invalid-101", i + 1, f"The 101 from {up['server']} (frame {up['response']['frame']}) "
                        + "; ".join(a["message"].removeprefix("101 ") for a in bad) + ": RFC 6455 §4.1 says the "
                        f"client must fail the WebSocket connection; the proxy {down['server']} did not relay it "
                        f"as an upgrade (the client got {got}).", ev)
            return ("proxy-dropped-upgrade", i, f"{up['server']} answered 101 (frame {up['response']['frame']}) but "
                    f"the client got {got} from the proxy {down['server']}.", ev)
        if "bad-accept" in dcodes:
            cause = "key-changed" if _key_of(down) != _key_of(up) else "bad-accept"
            return (cause, i, dcodes["bad-accept"]["message"] + f" (frame {dres['frame']}).",
                    [_ev(down, dres["frame"], "Sec-WebSocket-Accept")])
        mal = _malformed(down, "response")
        if mal:
            return ("malformed-response", i, f"The 101 relayed by {down['server']} is malformed: "
                    + "; ".join(a["message"] for a in mal[:3]) + ".", [_ev(down, dres["frame"], "101")])
        for d in diffs:
            if d["direction"] == "response" and d["boundary"] == i:
                for c in d["changes"]:
                    if c["class"] == "breaking" and c["name"] == "sec-websocket-protocol":
                        return ("subprotocol-mismatch", i, f"The backend chose subprotocol {c['before']!r} but the "
                                f"client got {c['after']!r}.", [_ev(down, dres["frame"], "Sec-WebSocket-Protocol")])
                    if c["class"] == "breaking" and c["name"] == "sec-websocket-extensions":
                        return ("extension-mismatch", i, f"The backend negotiated extensions {c['before']!r} but "
                                f"the client got {c['after']!r}.", [_ev(down, dres["frame"], "Sec-WebSocket-Extensions")])
        if up.get("frames") is not None and "data-with-101" in _codes(up):
            up_server = [f for f in up["frames"] if f["dir"] == "server"]
            down_server = [f for f in down["frames"] if f["dir"] == "server"]
            if up_server and len(down_server) < min(len(up_server), 1 + 0):
                return ("frames-lost-at-proxy", i, f"{len(up_server)} frame(s) came with the upstream 101 (frame "
                        f"{up['response']['frame']}) but none reached the client.",
                        [_ev(up, up["response"]["frame"], "101 + frames"), _ev(down, dres["frame"], "101 without frames")])
    # 5. Frames after the upgrade: server frames originate at the backend end of the chain,
    #    client frames at the client end, so blame the origin-most leg that shows them.
    after = [(i, a) for i, h in enumerate(hops) for a in h.get("anomalies", []) if a["code"] == "http-after-101"]
    client_after = [(i, a) for i, a in after if a["message"].startswith("client")]
    server_after = [(i, a) for i, a in after if not a["message"].startswith("client")]
    if server_after:
        i, a = server_after[-1]
        return ("malformed-response", i, f"{hops[i]['server']} sent HTTP after its 101 where WebSocket frames "
                f"belong: {a['message']} (frame {a['frame']}).", [_ev(hops[i], a["frame"], "http-after-101")])
    if client_after:
        i, a = client_after[0]
        what = a["message"].removeprefix("client sent HTTP after 101: ").removesuffix(" where frames should be")
        return ("client-http-after-101", i, f"The client {hops[i]['client']} sent HTTP after the 101 where "
                f"WebSocket frames belong: {what} (frame {a['frame']}); the server reads it as a broken "
                f"frame.", [_ev(hops[i], a["frame"], "http-after-101")])
    for code, cause in BROKEN_FRAME_CODES.items():
        legs = [(i, h, _codes(h)[code]) for i, h in enumerate(hops) if code in _codes(h)]
        if legs:
            server_side = _codes(legs[0][1])[code]["message"].startswith("server")
            i, h, a = legs[-1] if server_side else legs[0]
            return (cause, i, a["message"] + f" (frame {a['frame']}).", [_ev(h, a["frame"], code)])
    closes = [(i, _abnormal_close(h)) for i, h in enumerate(hops)]
    closes = [(i, c) for i, c in closes if c]
    if closes:
        # The close originates at the backend end for server closes, the client end for client
        # closes; a TCP-level end (idle timeout, reset) at the leg where it happened first.
        by_server = [x for x in closes if x[1][2] == "server-close"]
        by_client = [x for x in closes if x[1][2] == "client-close"]
        if by_server:
            i, c = by_server[-1]
        elif by_client:
            i, c = by_client[0]
        else:
            i, c = min(closes, key=lambda x: x[1][3])
        return ("closed-after-upgrade", i, c[0], c[1])
    legs = " → ".join([hops[0]["client"]] + [h["server"] for h in hops])
    return ("ok", None, f"Upgraded on every hop ({legs}).", [_ev(h, h["response"]["frame"], "101") for h in hops])


def _worked_anyway(hops: list[dict]) -> bool:
    if any(h.get("outcome") != "upgraded" for h in hops):
        return False
    dirs = {f["dir"] for f in hops[0].get("frames", []) if f["opcode"] in (0, 1, 2)}
    return dirs == {"client", "server"}


def _key_of(h: dict) -> str | None:
    return _hdr(h, "request", "sec-websocket-key")


def _ip(ep: str) -> str:
    return ep.rpartition(":")[0].strip("[]")


def _abnormal_close(h: dict) -> tuple[str, list[dict], str, float] | None:
    """A close that is a failure: an error close code, an idle timeout, or a drop right after the 101."""
    if not h.get("websocket", True):
        return None          # another protocol after the 101 (Upgrade: tcp): its teardown is its own
    closes = [f for f in h.get("frames", []) if f["opcode"] == 8]
    data_frames = [f for f in h.get("frames", []) if f["opcode"] in (0, 1, 2)]
    end = h["tcp"].get("end")
    for c in closes:
        code = c.get("close_code")
        if code is not None and code not in (1000, 1001):
            return (f"The {c['dir']} closed the WebSocket with code {code}"
                    + (f" ({c['close_reason']!r})" if c.get("close_reason") else "") + f" in frame {c['frame']}.",
                    [_ev(h, c["frame"], f"close {code}")], f"{c['dir']}-close", c["ts"])
    if end and not closes:
        last_ts = max([f["ts"] for f in h.get("frames", [])] or [h["response"]["ts"]])
        idle = end["ts"] - last_ts
        for t in IDLE_TIMEOUTS:
            if abs(idle - t) < 0.5:
                return (f"The {end['by']} ended the connection with {end['kind'].upper()} (frame {end['frame']}) "
                        f"{idle:.1f} s after the last frame: an idle-timeout pattern ({t} s).",
                        [_ev(h, end["frame"], f"{end['kind']} by {end['by']}")], "tcp", end["ts"])
        if not data_frames and end["ts"] - h["response"]["ts"] < 1.0 and end["kind"] == "rst":
            return (f"The {end['by']} reset the connection (frame {end['frame']}) right after the 101, before any "
                    f"message.", [_ev(h, end["frame"], f"rst by {end['by']}")], "tcp", end["ts"])
        if end["by"] == "server":
            # The server side dropped the socket without a close handshake (a crash, a restart):
            # the browser reports 1006. A client-side drop (tab reload) is benign teardown instead.
            return (f"The server {h['server']} ended the connection with {end['kind'].upper()} (frame "
                    f"{end['frame']}) without a WebSocket close frame; the client sees close code 1006.",
                    [_ev(h, end["frame"], f"{end['kind']} by server")], "tcp", end["ts"])
    return None


def _teardown_note(hops: list[dict]) -> str:
    notes = []
    for h in hops:
        end = h["tcp"].get("end")
        if end and end["kind"] == "rst":
            notes.append(f"{h['client']} → {h['server']} ended with RST by the {end['by']}")
    if notes:
        return "Benign teardown after a healthy exchange: " + "; ".join(notes) + "."
    return ""


def _malformed(h: dict, part: str) -> list[dict]:
    """Head-grammar anomalies of one head of a leg ("request" or "response"): the side that sent
    the bytes is the side to blame. Lexical anomalies carry the frame of the head they were found
    in (a request and its response never share a frame); the others name the head they concern."""
    msg = h.get(part)
    if not msg:
        return []
    named = {"llhttp-rejects": f"Node's llhttp rejects the {part}", "head-too-large": f"{part} head",
             "head-incomplete": f"the {part} head"}
    out: dict[str, dict] = {}
    for a in h.get("anomalies", []):
        c = a["code"]
        if c not in MALFORMED_CODES or c in out:
            continue
        if c in ("non-http-response", "body-on-101"):
            hit = part == "response"
        elif c in named:
            hit = a["message"].startswith(named[c])
        else:
            hit = a["frame"] is not None and a["frame"] == msg.get("frame")
        if hit:
            out[c] = a
    return [out[c] for c in MALFORMED_CODES if c in out]


def _invalid_101(hops: list[dict]) -> tuple[str, int, str, list[dict]] | None:
    """The client-facing 101 breaks RFC 6455 §4.1: name the hop that produced it.

    A proxy that relays a backend's defective 101 passes the defect on; the copies downstream are
    consequences. Walk from the client leg towards the backend while the next leg's 101 has the same
    defect: the deepest such leg produced it.
    """
    first = hops[0]
    if first.get("outcome") != "upgraded":
        return None
    codes = _codes(first)
    defects = [c for c in INVALID_101_CODES if c in codes]
    if not defects:
        return None
    j = 0
    while j + 1 < len(hops) and hops[j + 1].get("outcome") == "upgraded" and \
            any(c in _codes(hops[j + 1]) for c in defects):
        j += 1
    h = hops[j]
    hc = _codes(h)
    found = [hc[c] for c in INVALID_101_CODES if c in hc] or [codes[c] for c in defects]
    fr = h["response"]["frame"]
    who = "backend" if j == len(hops) - 1 and len(hops) > 1 else "server" if len(hops) == 1 else "proxy"
    relayed = ""
    if j > 0:
        relayed = (f" The proxy relayed it to the client without the header (frame {first['response']['frame']}); "
                   f"that copy is a consequence.")
    elif len(hops) > 1:
        relayed = (f" The upstream 101 from {hops[1]['server']} (frame {hops[1]['response']['frame']}) was valid: "
                   f"the proxy {first['server']} removed it.")
    summary = (f"The 101 from the {who} {h['server']} (frame {fr}) " + "; ".join(a["message"].removeprefix("101 ")
               for a in found) + ": RFC 6455 §4.1 says the client must fail the WebSocket connection "
               f"(a browser fires error, then close 1006).{relayed}")
    ev = [_ev(h, fr, f"{h['response']['version']} {h['response']['status']} {h['response']['reason']}")]
    if j > 0:
        ev.append(_ev(first, first["response"]["frame"], "relayed 101"))
    return ("invalid-101", j, summary, ev)


def is_browser(h: dict) -> bool:
    """A browser's request: its User-Agent says Mozilla/ (every browser engine's does)."""
    return (_hdr(h, "request", "user-agent") or "").startswith("Mozilla/")


def _fails(client_leg: dict) -> str:
    who = "The browser" if is_browser(client_leg) else "The client"
    return f" {who} fails the connection (RFC 6455 §4.1)."


def _tolerated_notes(hops: list[dict]) -> list[str]:
    """What an `ok` chain carries anyway: a request the server accepted despite its grammar, a
    subprotocol offer a non-browser client lets go unanswered (RFC 6455 allows it)."""
    notes = []
    for i, h in enumerate(hops):
        mal = _malformed(h, "request")
        if mal:
            notes.append(f"Hop {i}: the request from {h['client']} breaks HTTP/1.1 grammar ("
                         + "; ".join(a["message"] for a in mal[:2]) + f", frame {h['request']['frame']}); "
                         f"{h['server']} accepted it anyway (a warning).")
    declined = [a for a in hops[0].get("anomalies", []) if a["code"] == "subprotocol-declined"]
    if declined:
        notes.append(f"{declined[0]['message']}: RFC 6455 §4.1 lets a non-browser client go on (a browser would "
                     f"fail the connection, WHATWG).")
    return notes
