"""Header diff at a hop boundary, compared the way proxies actually relay.

Real proxies re-serialise what they relay (node http-proxy lower-cases names,
merges duplicates, rebuilds the 101 status line), so values are compared
semantically — names case-insensitively, token lists as sets, the reason phrase
ignored — while every raw difference is still listed. Each change is classified
by a rule table: `expected`, `suspicious` or `breaking`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from wscap.model.chain import Change, HeaderDiff, StatusChange
from wscap.model.handshake import Handshake, Outcome

Headers = Sequence[Sequence[str]]    # (name, value) pairs as the head carried them

# Compared as sets of comma-separated tokens (case-insensitive where the RFC says so).
TOKEN_LISTS = {"connection", "upgrade", "sec-websocket-protocol", "sec-websocket-extensions", "via"}
# RFC 9110 §7.6.1: hop-by-hop; a proxy must not forward them as they are.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
              "upgrade", "proxy-authenticate", "proxy-authorization"}
ADDED_BY_PROXIES = {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-forwarded-host",
                    "x-forwarded-server", "x-real-ip", "forwarded", "via", "x-request-id"}


_CASE_WHY = "proxies re-serialise headers (node http-proxy lower-cases names)"


def _group(headers: Headers) -> tuple[dict[str, list[str]], dict[str, str]]:
    """-> (lower-cased name -> its values in order, lower-cased name -> the name as first written);
    names in first-seen order."""
    values: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        got = values.get(key)
        if got is None:
            values[key] = [value]
            first[key] = name
        else:
            got.append(value)
    return values, first


def _norm(name: str, values: list[str]) -> object:
    joined = ", ".join(values)
    if name in TOKEN_LISTS:
        toks = {t.strip() for t in joined.split(",") if t.strip()}
        if name in ("connection", "upgrade"):
            toks = {t.lower() for t in toks}
        return frozenset(toks)
    return joined.strip()


def _tokens(values: list[str] | None) -> set[str]:
    if not values:
        return set()
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def classify(direction: str, kind: str, name: str, before: list[str] | None, after: list[str] | None) -> tuple[str, str]:
    """(class, why) for one change; the rule table of what proxies may and may not do."""
    if kind in ("case-changed", "reordered"):
        return "expected", _CASE_WHY
    if kind == "duplicated":
        return "expected", "repeated header lines merged or split; same values"
    if direction == "request":
        if name == "upgrade" and "websocket" not in _tokens(after):
            return "breaking", "Upgrade no longer asks for websocket: the next hop sees a plain GET"
        if name == "connection":
            if "upgrade" in _tokens(before) and "upgrade" not in _tokens(after):
                return "breaking", "Connection lost the 'upgrade' token"
            return "expected", "Connection is hop-by-hop (RFC 9110 §7.6.1)"
        if name == "sec-websocket-key":
            return "breaking", "the key changed: the Accept the client checks must still match its own key"
        if name == "sec-websocket-version":
            return "breaking", "Sec-WebSocket-Version changed or vanished"
        if name == "origin":
            return "breaking", "Origin rewritten or removed: backends check it (RFC 6455 §10.2)"
        if name in ("sec-websocket-protocol", "sec-websocket-extensions"):
            return "breaking", f"{name} offer changed between hops"
        if name == "host" and kind == "changed":
            return "expected", "Host rewritten to the target (changeOrigin / proxy_set_header Host)"
        if name in ADDED_BY_PROXIES and kind in ("added", "changed"):
            return "expected", "proxy identification added (X-Forwarded-*/Forwarded/Via)"
        if name in HOP_BY_HOP:
            return "expected", "hop-by-hop header handled by the proxy (RFC 9110 §7.6.1)"
        if name == ":target":
            return "suspicious", "the request target changed (a path rewrite?)"
        return "suspicious", "end-to-end header changed by a proxy"
    # response direction: as the backend sent it -> as the proxy returned it
    if name == ":status":
        return "breaking", "the client did not get the status the backend sent"
    if name == "upgrade" and "websocket" not in _tokens(after):
        return "breaking", "the 101 relayed to the client lost 'Upgrade: websocket'"
    if name == "connection" and "upgrade" not in _tokens(after):
        return "breaking", "the 101 relayed to the client lost 'Connection: upgrade'"
    if name == "sec-websocket-accept":
        return "breaking", "Sec-WebSocket-Accept changed between hops"
    if name == "sec-websocket-protocol":
        return "breaking", "the backend's chosen subprotocol was not passed back unchanged"
    if name == "sec-websocket-extensions":
        return "breaking", "the negotiated extensions differ between hops"
    if name in HOP_BY_HOP:
        return "expected", "hop-by-hop header handled by the proxy (RFC 9110 §7.6.1)"
    if name in ADDED_BY_PROXIES or name in ("date", "server", "x-powered-by"):
        return "expected", "header a proxy commonly adds or replaces"
    return "suspicious", "end-to-end header changed by a proxy"


def diff_headers(direction: str, before: Headers, after: Headers) -> list[Change]:
    """Every difference between two header lists, in the order of `before`'s names, then the names
    only `after` has, then a reordering of the names both have."""
    gb, first_b = _group(before)
    ga, first_a = _group(after)
    changes: list[Change] = []

    def add(kind: str, name: str, b: list[str] | None, a: list[str] | None, raw_b: str | None = None,
            raw_a: str | None = None) -> None:
        cls, why = classify(direction, kind, name, b, a)
        changes.append(Change(kind, name, raw_b if raw_b is not None else (", ".join(b) if b is not None else None),
                              raw_a if raw_a is not None else (", ".join(a) if a is not None else None), cls, why))

    for name, b in gb.items():
        a = ga.get(name)
        if a is None:
            add("removed", name, b, None)
            continue
        # Equal value lists normalise equally; most headers a proxy relays are unchanged.
        if a != b and _norm(name, b) != _norm(name, a):
            add("changed", name, b, a)
            continue
        if len(b) != len(a):
            add("duplicated", name, b, a, f"{len(b)} line(s)", f"{len(a)} line(s)")
        if first_b[name] != first_a[name]:
            changes.append(Change("case-changed", name, first_b[name], first_a[name], "expected", _CASE_WHY))
    for name, a in ga.items():
        if name not in gb:
            add("added", name, None, a)
    # The names both lists carry, each in its first position (the groups keep first-seen order).
    common_b = [n for n in gb if n in ga]
    common_a = [n for n in ga if n in gb]
    if common_b != common_a:
        add("reordered", "*", None, None, ", ".join(common_b[:8]), ", ".join(common_a[:8]))
    return changes


# What an HTTP/2 <-> HTTP/1.1 proxy must change: pseudo-headers for start lines, and the Upgrade,
# Connection, Key and Accept headers that RFC 8441 §5 replaces by :protocol and :status 200.
H2_TRANSLATED = {":method", ":protocol", ":scheme", ":path", ":authority", ":status", ":request-line", ":version",
                 ":target", "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-accept", "*"}


def _translation(out: list[HeaderDiff], down: Handshake, up: Handshake) -> list[HeaderDiff]:
    """Across an HTTP/2 <-> HTTP/1.1 boundary, the translation itself is expected, not a fault."""
    versions = (down.http_version, up.http_version)
    if versions[0] == versions[1]:
        return out
    both_upgraded = down.outcome is up.outcome is Outcome.UPGRADED
    why = f"HTTP/{versions[0]} ↔ HTTP/{versions[1]} translation (RFC 8441 §5, RFC 9113 §8.3)"
    res = []
    for d in out:
        changes = tuple(replace(ch, klass="expected", why=why)
                        if ch.name in H2_TRANSLATED and (ch.name != ":status" or both_upgraded) else ch
                        for ch in d.changes)
        sc = None if d.direction == "response" and both_upgraded else d.status_change
        res.append(replace(d, changes=changes, status_change=sc))
    return res


def _path(target: str) -> str:
    return target.split("?", 1)[0]


def diff_boundary(i: int, down: Handshake, up: Handshake) -> list[HeaderDiff]:
    """Diffs at the boundary between leg i (`down`, client side) and leg i+1 (`up`)."""
    out: list[HeaderDiff] = []
    rq_d, rq_u = down.request, up.request
    if rq_d and rq_u:
        changes = diff_headers("request", rq_d.headers, rq_u.headers)
        td, tu = rq_d.target or "", rq_u.target or ""
        if td != tu:
            cls = "expected" if _path(tu).endswith(_path(td).rstrip("/").rsplit("/", 1)[-1]) else "suspicious"
            changes.insert(0, Change("changed", ":target", td, tu, cls, "request target rewritten by the proxy"))
        if rq_d.method != rq_u.method or rq_d.version != rq_u.version:
            changes.insert(0, Change("changed", ":request-line", f"{rq_d.method} {rq_d.version}",
                                     f"{rq_u.method} {rq_u.version}",
                                     "breaking" if rq_u.version == "HTTP/1.0" or rq_u.method != "GET" else "suspicious",
                                     "method or HTTP version changed (HTTP/1.0 cannot upgrade)"))
        out.append(HeaderDiff(i, "request", i, i + 1, None, tuple(changes)))
    rs_u, rs_d = up.response, down.response
    st_u, st_d = up.status, down.status
    if rs_u or rs_d:
        changes = diff_headers("response", rs_u.headers, rs_d.headers) if rs_u and rs_d else []
        status_change = None
        if st_u != st_d:
            status_change = StatusChange(str(st_u) if st_u is not None else up.outcome.value,
                                         str(st_d) if st_d is not None else down.outcome.value)
            changes.insert(0, Change("changed", ":status", status_change.before, status_change.after, "breaking",
                                     "the client did not get the status the backend sent"))
        elif rs_u and rs_d and rs_u.version != rs_d.version:
            changes.insert(0, Change("changed", ":version", rs_u.version, rs_d.version, "suspicious",
                                     "response HTTP version changed"))
        out.append(HeaderDiff(i, "response", i + 1, i, status_change, tuple(changes)))
    return _translation(out, down, up)
