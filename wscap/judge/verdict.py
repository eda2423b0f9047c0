"""Verdict per chain: the first hop where the handshake stops being valid, and why.

Rules run in a fixed order, from the deepest leg (backend side) back towards
the client, because the root cause is usually where the request stopped: a
backend's 403 explains the client's 502, not the other way round. Each rule
cites frames and header values as evidence so the sentence can be checked in
Wireshark. The rules read typed legs (`Handshake`): anomaly codes and their
fields (`side`, `head`, `frame`), never an anomaly's message text; messages are
only quoted in the sentences.
"""
from __future__ import annotations

from typing import Sequence

from wscap.judge.advice import ADVICE
from wscap.judge.software import is_browser, software
from wscap.model.anomaly import Anomaly
from wscap.model.chain import Cause, Evidence, HeaderDiff, Proxies, Verdict
from wscap.model.handshake import Handshake, Outcome

__all__ = ["ADVICE", "decide", "software", "is_browser"]

Hops = Sequence[Handshake]
Rule = tuple[Cause, "int | None", str, "list[Evidence]"]
NS = 1_000_000_000
UPGRADED, NO_RESPONSE, RESET = Outcome.UPGRADED, Outcome.NO_RESPONSE, Outcome.RESET

BROKEN_FRAME_CODES = {"rsv1-without-extension": "extension-mismatch"}
# Grammar problems of a head. They are blamed on the side that sent the head: the anomaly's frame
# is the frame of the request head or of the response head (see _malformed).
MALFORMED_CODES = ("bare-lf", "body-on-101", "llhttp-rejects", "malformed-start-line", "head-incomplete",
                   "non-http-response", "obs-fold", "whitespace-before-colon",
                   "invalid-header-name", "malformed-header-line", "head-too-large")
# RFC 6455 §4.1 (client side, steps 2-4): a 101 without these makes the client fail the connection.
INVALID_101_CODES = ("response-upgrade-missing", "response-connection-missing", "accept-missing")
IDLE_TIMEOUTS = (30, 60, 75, 90, 100, 120, 300, 350, 600, 900, 3600)


# Anomalies about one head that say which head in their `head` field (the others carry its frame).
HEAD_NAMED = ("llhttp-rejects", "head-too-large", "head-incomplete")


def _ev(h: Handshake, frame: int | None, what: str) -> Evidence:
    return Evidence(h.id, h.source, frame, what)


def _end_frame(h: Handshake) -> int | None:
    return h.tcp.end.frame if h.tcp.end is not None else None


def _s(ns: int) -> float:
    """A duration for a sentence, in seconds."""
    return ns / NS


def decide(hops: Hops, diffs: Sequence[HeaderDiff], proxies: Proxies, timeout_s: float = 3.0) -> Verdict:
    cause, hop, summary, evidence = _decide(hops, diffs, proxies, timeout_s)
    benign = False
    broken = cause not in (Cause.OK, Cause.UNANSWERED_AT_CAPTURE_END)
    if cause is Cause.OK:
        notes = _tolerated_notes(hops)
        if notes:
            summary += " " + " ".join(notes)
    if cause is Cause.MALFORMED_RESPONSE and _worked_anyway(hops):
        # Malformed but tolerated: every leg upgraded and messages flowed both ways on the client leg.
        broken = False
        summary += " The client's parser tolerated it: messages flowed both ways."
    if cause is Cause.OK:
        benign_note = _teardown_note(hops)
        if benign_note:
            summary += " " + benign_note
            benign = True
    sw: list[str] = []
    ends = [software(h) for h in hops]       # read once per leg: the sentence below reads them again
    for i, names in enumerate(ends):
        for side, name in names.items():
            sw.append(f"hop {i} {side}: {name}")
    if broken and hop is not None:
        # The failing leg's two ends, plus the proxy's own upstream client (same process as the
        # failing leg's server): several of these failures are runtime bugs (oven-sh/bun#24127).
        at = [f"{name} ({side})" for side, name in ends[hop].items()]
        if hop + 1 < len(hops) and "client" in ends[hop + 1]:
            at.append(f"{ends[hop + 1]['client']} (the proxy's upstream client)")
        if at:
            summary += " Software on that leg: " + ", ".join(at) + "."
    return Verdict(cause, hop, summary, tuple(evidence), broken, benign, tuple(sw), ADVICE[cause.value])


def _decide(hops: Hops, diffs: Sequence[HeaderDiff], proxies: Proxies, timeout_s: float = 3.0) -> Rule:
    # 1. The deepest leg never carried a request: the proxy could not reach its target.
    if hops[-1].request is None:
        return _unreached(hops)
    # 2. Breaking request changes at a boundary explain what the next hop did.
    rule = _request_changes(hops, diffs)
    if rule is not None:
        return rule
    # 3. The deepest leg's own answer.
    rule = _deepest_answer(hops, proxies, timeout_s)
    if rule is not None:
        return rule
    # 4. Walk back towards the client: did each proxy relay what it got?
    for i in range(len(hops) - 2, -1, -1):
        rule = _relayed(hops, diffs, i)
        if rule is not None:
            return rule
    # 5. Frames after the upgrade: server frames originate at the backend end of the chain,
    #    client frames at the client end, so blame the origin-most leg that shows them.
    rule = _after_upgrade(hops)
    if rule is not None:
        return rule
    legs = " → ".join([str(hops[0].client)] + [str(h.server) for h in hops])
    return (Cause.OK, None, f"Upgraded on every hop ({legs}).",
            [_ev(h, h.response.frame if h.response else None, "101") for h in hops])


def _unreached(hops: Hops) -> Rule:
    n = len(hops)
    last = hops[-1]
    li = n - 1
    oc = last.outcome
    down = hops[-2] if n > 1 else last
    ev = [_ev(down, down.request.frame if down.request else None, f"upgrade request to {down.server}"),
          _ev(last, last.tcp.syn_frame, f"SYN {last.client} → {last.server}")]
    if oc is Outcome.REFUSED:
        ev.append(_ev(last, _end_frame(last), f"RST from {last.server}"))
        return (Cause.UPSTREAM_REFUSED, li, f"The proxy's connection to {last.server} was refused: SYN in frame "
                f"{last.tcp.syn_frame} answered by RST in frame {_end_frame(last)}.", ev)
    if oc is Outcome.UNANSWERED:
        return (Cause.UPSTREAM_UNREACHABLE, li, f"The proxy's SYN to {last.server} (frame {last.tcp.syn_frame}) "
                f"was never answered.", ev)
    return (Cause.UPSTREAM_CLOSED, li, f"The proxy connected to {last.server} but the connection "
            f"was {'reset' if oc is RESET else 'closed'} before any request was sent.", ev)


_PRIORITY = {"upgrade": 0, "connection": 1, ":request-line": 1, "origin": 2, "sec-websocket-key": 3}


def _request_changes(hops: Hops, diffs: Sequence[HeaderDiff]) -> Rule | None:
    for d in diffs:
        if d.direction != "request":
            continue
        # Upgrade lost explains Connection being rewritten (http-proxy forces 'close' then), not vice versa.
        # Only breaking changes are read: filtered before the (stable) sort, the same order.
        for c in sorted((c for c in d.changes if c.klass == "breaking"), key=lambda c: _PRIORITY.get(c.name, 9)):
            down, up = hops[d.from_hop], hops[d.to_hop]
            assert down.request is not None and up.request is not None     # a request diff has both
            name = c.name
            ev = [_ev(down, down.request.frame, f"{name}: {c.before}"), _ev(up, up.request.frame, f"{name}: {c.after}")]
            said = f" {up.server} answered {up.status}." if up.status else ""
            if name == "upgrade":
                return (Cause.UPGRADE_HEADER_STRIPPED, d.to_hop, f"The proxy at {up.client} sent the request "
                        f"upstream without 'Upgrade: websocket' (was {c.before!r}, now {c.after!r}, frame "
                        f"{up.request.frame}).{said}", ev)
            if name == "connection" or name == ":request-line":
                return (Cause.CONNECTION_HEADER_STRIPPED, d.to_hop, f"The proxy at {up.client} dropped the 'upgrade' "
                        f"token from Connection ({c.before!r} → {c.after!r}, frame {up.request.frame}).{said}", ev)
            if name == "origin" and up.outcome is not UPGRADED:
                return (Cause.ORIGIN_REJECTED, d.to_hop, f"The proxy rewrote Origin {c.before!r} → {c.after!r} "
                        f"(frame {up.request.frame}) and {up.server} answered "
                        f"{up.status or up.outcome.value} (frame {up.response.frame if up.response else None}).", ev)
            if name == "sec-websocket-key":
                if "bad-accept" in hops[0].codes() or up.outcome is not UPGRADED:
                    return (Cause.KEY_CHANGED, d.to_hop, f"The key changed between hops ({c.before!r} → "
                            f"{c.after!r}) and the client's Accept no longer matches its key.", ev)
            if name == "sec-websocket-version":
                return (Cause.VERSION_UNSUPPORTED, d.to_hop, f"Sec-WebSocket-Version changed between hops "
                        f"({c.before!r} → {c.after!r}).", ev)
    return None


def _unanswered(hops: Hops, proxies: Proxies, timeout_s: float) -> Rule:
    """The deepest leg carried a request and got no response head."""
    n = len(hops)
    last = hops[-1]
    li = n - 1
    req = last.request
    assert req is not None
    codes = last.codes()
    oc = last.outcome
    end = last.tcp.end
    if oc is NO_RESPONSE:
        waited = last.waited_ns
        ev = [_ev(last, req.frame, "request")]
        if waited is not None and waited < round(timeout_s * NS) and all(h.outcome is NO_RESPONSE for h in hops):
            # The capture stopped watching before a reply was due, and no leg has failed yet (a
            # proxy's 504 to the client would be a failure seen, whatever the deepest leg waited).
            return (Cause.UNANSWERED_AT_CAPTURE_END, li, f"{last.server} had not answered the upgrade request "
                    f"(frame {req.frame}) when the capture ended {_s(waited):g} s later, less "
                    f"than --timeout {timeout_s:g} s: unanswered when the capture ended, not a timeout.", ev)
        watched = f"the capture watched {_s(waited):g} s after it" if waited is not None else "no end observed"
        if n == 1 and proxies.dialled(last.server.ip):
            return (Cause.NO_UPSTREAM_CONNECTION, li, f"The proxy {last.server} neither answered the upgrade "
                    f"request (frame {req.frame}) nor connected upstream for it; {watched}. "
                    f"No proxy rule took {req.target!r} (or its rule lacks `ws: true`).", ev)
        return (Cause.TIMEOUT, li, f"{last.server} never answered the upgrade request (frame "
                f"{req.frame}); {watched} (≥ --timeout {timeout_s:g} s).", ev)
    by = end.by if end is not None else None
    ev = [_ev(last, req.frame, "request"), _ev(last, _end_frame(last), f"{end.kind if end else None} by {by}")]
    if "non-http-response" in codes:
        return (Cause.MALFORMED_RESPONSE, li, f"{last.server} answered with bytes that are not HTTP/1: "
                f"{codes['non-http-response'].message}.", ev)
    how = "reset" if oc is RESET else "closed"
    if end is not None and by == "client":
        gave = f" after {_s(end.ts_ns - req.ts_ns):.3g} s"
        if n == 1 and proxies.dialled(last.server.ip):
            return (Cause.NO_UPSTREAM_CONNECTION, li, f"The proxy {last.server} neither answered the upgrade "
                    f"request (frame {req.frame}) nor connected upstream for it; the client gave "
                    f"up{gave} ({how} in frame {end.frame}). No proxy rule took "
                    f"{req.target!r} (or its rule lacks `ws: true`).", ev)
        hint = ""
        if n == 1:
            hint = (f" No connection from {last.server.ip} upstream was seen either: if it is a proxy, no rule took "
                    f"{req.target!r} (see no-upstream-connection).")
        return (Cause.TIMEOUT, li, f"The client gave up{gave}: it {how} the connection in frame {end.frame} "
                f"without an answer from {last.server}.{hint}", ev)
    if n == 1 and (last.server.ip in proxies or by == "server"):
        return (Cause.NO_UPSTREAM_CONNECTION, li, f"{last.server} {how} the connection "
                f"(frame {_end_frame(last)}, by the {by}) without answering the upgrade, and no upstream "
                f"connection was seen.", ev)
    return (Cause.UPSTREAM_CLOSED, li, f"{last.server} {how} the connection "
            f"(frame {_end_frame(last)}) without answering.", ev)


def _deepest_answer(hops: Hops, proxies: Proxies, timeout_s: float) -> Rule | None:
    n = len(hops)
    last = hops[-1]
    li = n - 1
    req, resp = last.request, last.response
    assert req is not None
    if resp is None:
        return _unanswered(hops, proxies, timeout_s)
    codes = last.codes()
    if not resp.complete:
        inc = codes.get("head-incomplete")
        node = " Node's llhttp rejects it." if "llhttp-rejects" in codes else ""
        return (Cause.MALFORMED_RESPONSE, li, f"The response from {last.server} never completed: "
                f"{inc.message if inc else 'incomplete head'} (starts {resp.raw[:40]!r}).{node}",
                [_ev(last, req.frame, "request"), _ev(last, resp.frame, "partial head")])
    st = resp.status
    ev_resp = [_ev(last, req.frame, f"{req.method} {req.target}"),
               _ev(last, resp.frame, f"{resp.version} {st} {resp.reason}")]
    # "Upgraded" is a 101 on HTTP/1.1 and a 2xx to an extended CONNECT on HTTP/2 (RFC 8441).
    if last.outcome is not UPGRADED:
        if n > 1 and hops[-2].response is None:
            down = hops[-2]
            end_frame = _end_frame(down)
            return (Cause.PROXY_DROPPED_RESPONSE, n - 2, f"{last.server} answered {st} {resp.reason} (frame "
                    f"{resp.frame}) but the client never got it from the proxy {down.server} "
                    f"(client leg {down.outcome.value}" + (f", frame {end_frame}" if down.tcp.end else "") + ").",
                    ev_resp + [_ev(down, end_frame, f"client leg {down.outcome.value}")])
        return _rejected(hops, proxies, ev_resp)
    mal = _malformed(last, "response")
    if mal:
        node = " Node's llhttp rejects it." if any(a.code == "llhttp-rejects" for a in mal) \
            else " Node's llhttp accepts it."
        return (Cause.MALFORMED_RESPONSE, li,
                f"The 101 from {last.server} is malformed: " + "; ".join(a.message for a in mal[:3]) + "." + node,
                ev_resp)
    if "bad-accept" in codes:
        return (Cause.BAD_ACCEPT, li, codes["bad-accept"].message + f" (frame {resp.frame}).", ev_resp)
    bad = _invalid_101(hops)
    if bad is not None:
        return bad
    for code in ("subprotocol-not-offered", "subprotocol-not-echoed"):
        if code in codes:
            return (Cause.SUBPROTOCOL_MISMATCH, li, codes[code].message + f" (frame {resp.frame})."
                    + _fails(hops[0]), ev_resp)
    if "extension-not-offered" in codes:
        return (Cause.EXTENSION_MISMATCH, li, codes["extension-not-offered"].message + f" (frame {resp.frame})."
                + _fails(hops[0]), ev_resp)
    return None


def _rejected(hops: Hops, proxies: Proxies, ev_resp: list[Evidence]) -> Rule:
    """The deepest leg got a complete answer that is not an upgrade."""
    n = len(hops)
    last = hops[-1]
    li = n - 1
    req, resp = last.request, last.response
    assert req is not None and resp is not None
    codes = last.codes()
    st = resp.status
    req_mal = _malformed(last, "request")
    if req_mal and st is not None and 400 <= st < 500:      # st: None for a status line that does not parse
        return (Cause.MALFORMED_REQUEST, li, f"{last.server} answered {st} {resp.reason} (frame {resp.frame}) "
                f"to a request whose bytes break HTTP/1.1 grammar: "
                + "; ".join(a.message for a in req_mal[:3]) + f" (frame {req.frame}, sent by "
                f"{last.client}).", ev_resp)
    origin = req.header("origin")
    if "version-unsupported" in codes or st == 426:
        said = codes.get("version-rejected") or codes.get("version-unsupported")
        return (Cause.VERSION_UNSUPPORTED, li, f"{last.server} answered {st}: {said.message if said else ''}.",
                ev_resp)
    if st == 403 and origin:
        return (Cause.ORIGIN_REJECTED, li, f"{last.server} answered 403 to Origin {origin!r} (frame {resp.frame}).",
                ev_resp)
    bare = not resp.headers
    if n == 1 and (last.server.ip in proxies or bare):
        # A status line with no headers at all is how Vite's proxy middleware refuses an
        # upgrade on the raw socket; backends (ws, Bun, nginx) always send headers.
        why = " (a bare status line without headers, as Vite's proxy writes it)" if bare else ""
        return (Cause.PROXY_REJECTED, 0, f"The proxy {last.server} answered {st} {resp.reason} itself "
                f"(frame {resp.frame}){why} without going upstream.", ev_resp)
    if n == 1 and st in (502, 503, 504):
        return (Cause.NO_UPSTREAM_CONNECTION, 0, f"{last.server} answered {st} {resp.reason} (frame "
                f"{resp.frame}) and no upstream connection was seen.", ev_resp)
    return (Cause.UPSTREAM_REJECTED, li, f"{last.server} answered {st} {resp.reason} to the upgrade "
            f"(frame {resp.frame}).", ev_resp)


def _relayed(hops: Hops, diffs: Sequence[HeaderDiff], i: int) -> Rule | None:
    """Boundary i: did the proxy between leg i and leg i+1 relay the upstream answer as it was?"""
    down, up = hops[i], hops[i + 1]
    dres, ures = down.response, up.response
    up_frame = ures.frame if ures is not None else None
    if dres is None or down.outcome is not UPGRADED:
        got = f"{dres.status} {dres.reason}" if dres else down.outcome.value
        ev = [_ev(up, up_frame, f"upstream {up.status}"),
              _ev(down, dres.frame if dres else _end_frame(down), f"client got {got}")]
        bad = [a for a in up.anomalies if a.code in INVALID_101_CODES]
        if bad and up.outcome is UPGRADED:
            # The upstream 101 was itself invalid (Node's client does not take a 101 without
            # Upgrade as an upgrade): that 101 is the cause, the proxy's answer its consequence.
            return (Cause.INVALID_101, i + 1, f"The 101 from {up.server} (frame {up_frame}) "
                    + "; ".join(a.message.removeprefix("101 ") for a in bad) + ": RFC 6455 §4.1 says the "
                    f"client must fail the WebSocket connection; the proxy {down.server} did not relay it "
                    f"as an upgrade (the client got {got}).", ev)
        return (Cause.PROXY_DROPPED_UPGRADE, i, f"{up.server} answered 101 (frame {up_frame}) but "
                f"the client got {got} from the proxy {down.server}.", ev)
    dcodes = down.codes()
    if "bad-accept" in dcodes:
        cause = Cause.KEY_CHANGED if down.key != up.key else Cause.BAD_ACCEPT
        return (cause, i, dcodes["bad-accept"].message + f" (frame {dres.frame}).",
                [_ev(down, dres.frame, "Sec-WebSocket-Accept")])
    mal = _malformed(down, "response")
    if mal:
        return (Cause.MALFORMED_RESPONSE, i, f"The 101 relayed by {down.server} is malformed: "
                + "; ".join(a.message for a in mal[:3]) + ".", [_ev(down, dres.frame, "101")])
    for d in diffs:
        if d.direction == "response" and d.boundary == i:
            for c in d.changes:
                if c.klass == "breaking" and c.name == "sec-websocket-protocol":
                    return (Cause.SUBPROTOCOL_MISMATCH, i, f"The backend chose subprotocol {c.before!r} but the "
                            f"client got {c.after!r}.", [_ev(down, dres.frame, "Sec-WebSocket-Protocol")])
                if c.klass == "breaking" and c.name == "sec-websocket-extensions":
                    return (Cause.EXTENSION_MISMATCH, i, f"The backend negotiated extensions {c.before!r} but "
                            f"the client got {c.after!r}.", [_ev(down, dres.frame, "Sec-WebSocket-Extensions")])
    if "data-with-101" in up.codes():
        up_server = [f for f in up.frames if f.dir == "server"]
        if up_server and not any(f.dir == "server" for f in down.frames):
            return (Cause.FRAMES_LOST_AT_PROXY, i, f"{len(up_server)} frame(s) came with the upstream 101 (frame "
                    f"{up_frame}) but none reached the client.",
                    [_ev(up, up_frame, "101 + frames"), _ev(down, dres.frame, "101 without frames")])
    return None


def _after_upgrade(hops: Hops) -> Rule | None:
    after = [(i, a) for i, h in enumerate(hops) for a in h.anomalies if a.code == "http-after-101"]
    server_after = [(i, a) for i, a in after if a.side != "client"]
    client_after = [(i, a) for i, a in after if a.side == "client"]
    if server_after:
        i, a = server_after[-1]
        return (Cause.MALFORMED_RESPONSE, i, f"{hops[i].server} sent HTTP after its 101 where WebSocket frames "
                f"belong: {a.message} (frame {a.frame}).", [_ev(hops[i], a.frame, "http-after-101")])
    if client_after:
        i, a = client_after[0]
        # Quoted in the sentence: the request line the client sent, without the message's frame words.
        what = a.message.removeprefix("client sent HTTP after 101: ").removesuffix(" where frames should be")
        return (Cause.CLIENT_HTTP_AFTER_101, i, f"The client {hops[i].client} sent HTTP after the 101 where "
                f"WebSocket frames belong: {what} (frame {a.frame}); the server reads it as a broken "
                f"frame.", [_ev(hops[i], a.frame, "http-after-101")])
    for code, cause in BROKEN_FRAME_CODES.items():
        legs = [(i, h, h.codes()[code]) for i, h in enumerate(hops) if code in h.codes()]
        if legs:
            # Frames the server sent originate at the backend end: blame the deepest leg showing them.
            i, h, a = legs[-1] if legs[0][2].side == "server" else legs[0]
            return (Cause(cause), i, a.message + f" (frame {a.frame}).", [_ev(h, a.frame, code)])
    closes = [(i, c) for i, c in ((i, _abnormal_close(h)) for i, h in enumerate(hops)) if c is not None]
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
        return (Cause.CLOSED_AFTER_UPGRADE, i, c[0], c[1])
    return None


def _worked_anyway(hops: Hops) -> bool:
    if any(h.outcome is not UPGRADED for h in hops):
        return False
    dirs = {f.dir for f in hops[0].frames if f.opcode in (0, 1, 2)}
    return dirs == {"client", "server"}


def _abnormal_close(h: Handshake) -> tuple[str, list[Evidence], str, int] | None:
    """A close that is a failure: an error close code, an idle timeout, or a drop right after the 101."""
    if not h.websocket:
        return None          # another protocol after the 101 (Upgrade: tcp): its teardown is its own
    closes = [f for f in h.frames if f.opcode == 8]
    data_frames = [f for f in h.frames if f.opcode in (0, 1, 2)]
    end = h.tcp.end
    for c in closes:
        code = c.close_code
        if code is not None and code not in (1000, 1001):
            return (f"The {c.dir} closed the WebSocket with code {code}"
                    + (f" ({c.close_reason!r})" if c.close_reason else "") + f" in frame {c.frame}.",
                    [_ev(h, c.frame, f"close {code}")], f"{c.dir}-close", c.ts_ns)
    if end is not None and not closes and h.response is not None:
        idle = end.ts_ns - max([f.ts_ns for f in h.frames] or [h.response.ts_ns])
        for t in IDLE_TIMEOUTS:
            if abs(idle - t * NS) < NS // 2:
                return (f"The {end.by} ended the connection with {end.kind.upper()} (frame {end.frame}) "
                        f"{_s(idle):.1f} s after the last frame: an idle-timeout pattern ({t} s).",
                        [_ev(h, end.frame, f"{end.kind} by {end.by}")], "tcp", end.ts_ns)
        if not data_frames and end.ts_ns - h.response.ts_ns < NS and end.kind == "rst":
            return (f"The {end.by} reset the connection (frame {end.frame}) right after the 101, before any "
                    f"message.", [_ev(h, end.frame, f"rst by {end.by}")], "tcp", end.ts_ns)
        if end.by == "server":
            # The server side dropped the socket without a close handshake (a crash, a restart):
            # the browser reports 1006. A client-side drop (tab reload) is benign teardown instead.
            return (f"The server {h.server} ended the connection with {end.kind.upper()} (frame "
                    f"{end.frame}) without a WebSocket close frame; the client sees close code 1006.",
                    [_ev(h, end.frame, f"{end.kind} by server")], "tcp", end.ts_ns)
    return None


def _teardown_note(hops: Hops) -> str:
    notes = [f"{h.client} → {h.server} ended with RST by the {h.tcp.end.by}"
             for h in hops if h.tcp.end is not None and h.tcp.end.kind == "rst"]
    if notes:
        return "Benign teardown after a healthy exchange: " + "; ".join(notes) + "."
    return ""


def _malformed(h: Handshake, part: str) -> list[Anomaly]:
    """Head-grammar anomalies of one head of a leg ("request" or "response"): the side that sent
    the bytes is the side to blame. Lexical anomalies carry the frame of the head they were found
    in (a request and its response never share a frame); the others name their head (`head`)."""
    msg = h.request if part == "request" else h.response
    if msg is None:
        return []
    out: dict[str, Anomaly] = {}
    for a in h.anomalies:
        c = a.code
        if c not in MALFORMED_CODES or c in out:
            continue
        if c in ("non-http-response", "body-on-101"):
            hit = part == "response"
        elif c in HEAD_NAMED:
            hit = a.head == part
        else:
            hit = a.frame is not None and a.frame == msg.frame
        if hit:
            out[c] = a
    return [out[c] for c in MALFORMED_CODES if c in out]


def _invalid_101(hops: Hops) -> Rule | None:
    """The client-facing 101 breaks RFC 6455 §4.1: name the hop that produced it.

    A proxy that relays a backend's defective 101 passes the defect on; the copies downstream are
    consequences. Walk from the client leg towards the backend while the next leg's 101 has the same
    defect: the deepest such leg produced it.
    """
    first = hops[0]
    if first.outcome is not UPGRADED or first.response is None:
        return None
    codes = first.codes()
    defects = [c for c in INVALID_101_CODES if c in codes]
    if not defects:
        return None
    j = 0
    while j + 1 < len(hops) and hops[j + 1].outcome is UPGRADED and \
            any(c in hops[j + 1].codes() for c in defects):
        j += 1
    h = hops[j]
    resp = h.response
    assert resp is not None                   # an upgraded leg has its 101
    hc = h.codes()
    found = [hc[c] for c in INVALID_101_CODES if c in hc] or [codes[c] for c in defects]
    who = "backend" if j == len(hops) - 1 and len(hops) > 1 else "server" if len(hops) == 1 else "proxy"
    relayed = ""
    if j > 0:
        relayed = (f" The proxy relayed it to the client without the header (frame {first.response.frame}); "
                   f"that copy is a consequence.")
    elif len(hops) > 1:
        up = hops[1].response
        relayed = (f" The upstream 101 from {hops[1].server} (frame {up.frame if up else None}) was valid: "
                   f"the proxy {first.server} removed it.")
    summary = (f"The 101 from the {who} {h.server} (frame {resp.frame}) " + "; ".join(a.message.removeprefix("101 ")
               for a in found) + ": RFC 6455 §4.1 says the client must fail the WebSocket connection "
               f"(a browser fires error, then close 1006).{relayed}")
    ev = [_ev(h, resp.frame, f"{resp.version} {resp.status} {resp.reason}")]
    if j > 0:
        ev.append(_ev(first, first.response.frame, "relayed 101"))
    return (Cause.INVALID_101, j, summary, ev)


def _fails(client_leg: Handshake) -> str:
    who = "The browser" if is_browser(client_leg) else "The client"
    return f" {who} fails the connection (RFC 6455 §4.1)."


def _tolerated_notes(hops: Hops) -> list[str]:
    """What an `ok` chain carries anyway: a request the server accepted despite its grammar, a
    subprotocol offer a non-browser client lets go unanswered (RFC 6455 allows it)."""
    notes = []
    for i, h in enumerate(hops):
        mal = _malformed(h, "request")
        if mal and h.request is not None:
            notes.append(f"Hop {i}: the request from {h.client} breaks HTTP/1.1 grammar ("
                         + "; ".join(a.message for a in mal[:2]) + f", frame {h.request.frame}); "
                         f"{h.server} accepted it anyway (a warning).")
    declined = [a for a in hops[0].anomalies if a.code == "subprotocol-declined"]
    if declined:
        notes.append(f"{declined[0].message}: RFC 6455 §4.1 lets a non-browser client go on (a browser would "
                     f"fail the connection, WHATWG).")
    return notes
