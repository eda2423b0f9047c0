"""Link handshakes that are legs of one client handshake across proxies.

A request received by endpoint P is linked to the request P sends upstream:
 1. by key — the upstream request carries the same Sec-WebSocket-Key (node
    http-proxy, nginx, Envoy and Traefik pass it through), leaves from P's
    address (the topology must be plausible: clients that merely share a key,
    like RFC 6455's sample key hard-coded in test clients, never merge), and
    starts shortly after;
 2. inferred — when a proxy regenerates the key: same source address, a related
    path, nearest in time, one-to-one;
 3. missing hop — P received an upgrade and, shortly after, a connection
    attempt from P never carried a request (refused, unanswered, closed).
Pure function of the document's handshake dicts, so `analyze`, `live` and tests
all link the same way. Many concurrent handshakes on one path are never
cross-linked: keys are unique per client handshake (RFC 6455 §4.1), and the
inferred matching is one-to-one in time order.
"""
from __future__ import annotations

import bisect

from wscap.judge.diff import diff_boundary
from wscap.flow.dns import explain
from wscap.judge.labels import label_verdict
from wscap.judge.verdict import decide

LINK_WINDOW_S = 10.0     # an upstream leg starts within this long after the downstream request
KEY_SCAN = 64            # legs examined per downstream request among those sharing its key and proxy


def _ip(ep: str) -> str:
    return ep.rpartition(":")[0].strip("[]")


def _key(h: dict) -> str | None:
    req = h.get("request")
    if not req:
        return None
    for n, v in req["headers"]:
        if n.lower() == "sec-websocket-key":
            return v.strip()
    return None


def _path(h: dict) -> str:
    return h["request"]["target"].split("?", 1)[0]


def _related(down: str, up: str) -> bool:
    """Could `up` be `down` after a proxy's path rewrite? (same path, or a shared last segment)"""
    if down == up:
        return True
    d = down.rstrip("/").rsplit("/", 1)[-1]
    u = up.rstrip("/").rsplit("/", 1)[-1]
    return bool(d) and d == u or up.endswith(down) or down.endswith(up)


def link_chains(handshakes: list[dict], attempts: list[dict], timeout_s: float = 3.0
                ) -> tuple[list[dict], list[dict], set[str]]:
    """-> (chains with hops and links, attempts that became hops, proxy addresses).

    Needs only the linking fields of each handshake (see `link_view`), so it can run over
    compact records; chain hops hold those dicts until ids are final.
    """
    reqs = [h for h in handshakes if h.get("request")]
    window = max(LINK_WINDOW_S, timeout_s)
    up_of: dict[int, dict] = {}        # id(down) -> upstream leg
    down_of: dict[int, dict] = {}      # id(up) -> downstream leg
    link_by: dict[int, str] = {}

    def req_ts(h: dict) -> float:
        return h["request"]["ts"] if h.get("request") else h["first_ts"]

    def order(h: dict) -> int:
        return h["request"]["frame"] if h.get("request") else (h["tcp"]["syn_frame"] or h["first_frame"])

    def candidate(down: dict, up: dict) -> bool:
        if up is down or id(up) in down_of:
            return False
        dt = req_ts(up) - req_ts(down)
        if up["source"] == down["source"]:
            # Causality: the proxy sends upstream only after it received the request, so within
            # one capture the upstream request comes in a later frame (timestamps can tie).
            return order(up) > order(down) and dt <= window
        return -0.001 <= dt <= window

    ordered = sorted(reqs, key=req_ts)
    # Index the legs by the address they leave from, in time order, so each lookup is a
    # bisect over a window rather than a scan of the whole capture.
    by_client: dict[str, tuple[list[float], list[dict]]] = {}
    for h in ordered:
        ts_list, legs = by_client.setdefault(_ip(h["client"]), ([], []))
        ts_list.append(req_ts(h))
        legs.append(h)

    def near(index: dict, ip: str, t: float) -> list[dict]:
        ts_list, legs = index.get(ip, ((), ()))
        lo = bisect.bisect_left(ts_list, t - 0.001)
        hi = bisect.bisect_right(ts_list, t + window)
        return legs[lo:hi]  # type: ignore[index]

    # 1. same key, and a plausible topology: the upstream leg leaves from the address that
    #    received the request (the proxy), later in time. Unrelated clients sharing a key (RFC
    #    6455's sample key is hard-coded by many test clients) never merge. Indexed by
    #    (key, client address) in time order, so linking stays linear however many legs share a key.
    by_key_client: dict[tuple[str, str], tuple[list[float], list[dict], list[int]]] = {}
    for h in ordered:
        k = _key(h)
        if k:
            ts_list, legs, first = by_key_client.setdefault((k, _ip(h["client"])), ([], [], [0]))
            ts_list.append(req_ts(h))
            legs.append(h)
    for down in ordered:
        k = _key(down)
        if not k:
            continue
        entry = by_key_client.get((k, _ip(down["server"])))
        if entry is None:
            continue
        ts_list, legs, first = entry
        while first[0] < len(legs) and id(legs[first[0]]) in down_of:
            first[0] += 1          # legs already linked are never candidates again
        i = max(first[0], bisect.bisect_left(ts_list, req_ts(down) - 0.001))
        t_end = req_ts(down) + window
        for u in legs[i:i + KEY_SCAN]:
            if ts_list[i] > t_end:
                break
            i += 1
            if candidate(down, u):
                up_of[id(down)], down_of[id(u)], link_by[id(u)] = u, down, "key"
                break
    # 2. inferred: a request leaving P with a related path, nearest in time, one-to-one.
    #    Legs whose key another leg shares belong to a key-linked chain and are not candidates.
    shared = {_key(h) for h in reqs if link_by.get(id(h)) == "key"}
    for down in ordered:
        if id(down) in up_of:
            continue
        cands = [u for u in near(by_client, _ip(down["server"]), req_ts(down))
                 if candidate(down, u) and _key(u) not in shared and _related(_path(down), _path(u))]
        if not cands:
            continue
        up = min(cands, key=lambda u: req_ts(u) - req_ts(down))
        up_of[id(down)], down_of[id(up)], link_by[id(up)] = up, down, "inferred"
    # 3. missing hop: P received an upgrade, then a connection attempt from P carried no request
    by_attempt_client: dict[str, tuple[list[float], list[dict]]] = {}
    for a in sorted(attempts, key=req_ts):
        ts_list, legs = by_attempt_client.setdefault(_ip(a["client"]), ([], []))
        ts_list.append(req_ts(a))
        legs.append(a)
    used_attempts: list[dict] = []
    taken: set[int] = set()
    pairs: list[tuple] = []
    for down in ordered:
        if id(down) in up_of or down.get("outcome") == "upgraded":
            continue
        answered = _answer_ts(down)
        answered_frame = _answer_frame(down)
        for a in near(by_attempt_client, _ip(down["server"]), req_ts(down)):
            if not candidate(down, a):
                continue
            end = a["tcp"].get("end") or {}
            a_end = end.get("ts")
            if answered is not None:
                # The proxy's answer to the client (a 502, a close) is caused by the failed attempt:
                # it cannot come before the attempt started, nor before a refused attempt ended.
                # Within one capture, frame order decides (timestamps can tie); across captures, time.
                if a["source"] == down["source"] and answered_frame is not None:
                    start = a["tcp"]["syn_frame"] or a["first_frame"]
                    if start > answered_frame or (end.get("frame") is not None and end["frame"] > answered_frame):
                        continue
                elif a["first_ts"] > answered + 0.001 or (a_end is not None and a_end > answered + 0.001):
                    continue
            # Closest cause first: an answer right after the attempt's end, else the nearest request.
            follows = answered is not None and a_end is not None
            pairs.append((0 if follows else 1, (answered - a_end) if follows else req_ts(a) - req_ts(down),
                          id(down), id(a), down, a))
    # Globally nearest first: a proxy dials upstream within milliseconds of the request it serves,
    # so among concurrent requests the closest one owns the attempt.
    pairs.sort(key=lambda x: (x[0], x[1], x[2], x[3]))
    for _k, _dt, _d, _a, down, a in pairs:
        if id(down) in up_of or id(a) in taken:
            continue
        taken.add(id(a))
        used_attempts.append(a)
        up_of[id(down)], down_of[id(a)], link_by[id(a)] = a, down, "attempt"
    proxies = Proxies(_ip(h["client"]) for h in reqs + used_attempts if id(h) in down_of)
    # Addresses that opened connections of their own (a request or a bare attempt): a leg that
    # goes unanswered at such an address is a proxy that did not go upstream for it.
    proxies.dialers = frozenset(_ip(h["client"]) for h in reqs + list(attempts))
    chains = []
    heads = [h for h in reqs if id(h) not in down_of]
    for n, head in enumerate(sorted(heads, key=lambda h: (h["source"], h["first_frame"])), start=1):
        hops = [head]
        while id(hops[-1]) in up_of and len(hops) < 16:
            hops.append(up_of[id(hops[-1])])
        links = [{"from": hops[i], "to": hops[i + 1], "by": link_by[id(hops[i + 1])],
                  "delay": round(req_ts(hops[i + 1]) - req_ts(hops[i]), 6)} for i in range(len(hops) - 1)]
        chains.append({"id": n, "hops": hops, "links": links})
    return chains, used_attempts, proxies


class Proxies(set):
    """Proxy addresses (set of IP strings), plus `dialers`: every address seen opening a connection."""
    dialers: frozenset = frozenset()


def judge_chain(chain: dict, hops: list[dict], proxies: set[str], names: dict[str, str] | None = None,
                dns=None, timeout_s: float = 3.0) -> dict:
    """Diffs at every boundary and the verdict, from the legs' full handshake documents; with a
    DNS tracker, the proxy's lookups as evidence; with names, endpoints labelled in the sentences."""
    diffs = []
    for i in range(len(hops) - 1):
        diffs += diff_boundary(i, hops[i], hops[i + 1])
    chain["diffs"] = diffs
    chain["verdict"] = decide(hops, diffs, chain["links"], proxies, timeout_s)
    if dns is not None:
        explain(dns, chain, hops, timeout_s, names)
    if names:
        label_verdict(chain["verdict"], hops, names)
    return chain


def build_chains(handshakes: list[dict], attempts: list[dict], timeout_s: float = 3.0,
                 names: dict[str, str] | None = None, dns=None) -> tuple[list[dict], list[dict]]:
    """Link and judge in one go (the documents in hand are complete): -> (chains, used attempts)."""
    chains, used, proxies = link_chains(handshakes, attempts, timeout_s)
    for c in chains:
        judge_chain(c, c["hops"], proxies, names, dns, timeout_s)
    return chains, used



def _answer_ts(h: dict) -> float | None:
    """When the client leg got its answer: the response head, else the end of its connection."""
    if h.get("response"):
        return h["response"]["ts"]
    end = (h.get("tcp") or {}).get("end")
    return end["ts"] if end else None


def _answer_frame(h: dict) -> int | None:
    if h.get("response"):
        return h["response"].get("frame")
    end = (h.get("tcp") or {}).get("end")
    return end.get("frame") if end else None


class _Rec:
    """A compact stand-in for a small dict (the keys are its slots): link views stay in memory
    for every handshake of a capture, and dicts cost about three times as much."""
    __slots__ = ()

    def __getitem__(self, k: str):
        try:
            return getattr(self, k)
        except AttributeError:
            raise KeyError(k) from None

    def get(self, k: str, default=None):
        return getattr(self, k, default)

    def __setitem__(self, k: str, v) -> None:
        setattr(self, k, v)

    def __contains__(self, k: str) -> bool:
        return hasattr(self, k)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and all(self.get(k) == other.get(k) for k in self.__slots__)

    __hash__ = object.__hash__       # identity (id(view) keys the spool locations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={self.get(k)!r}' for k in self.__slots__)})"


def _rec(cls, **kw):
    r = cls()
    for k, v in kw.items():
        setattr(r, k, v)
    return r


class _End(_Rec):
    __slots__ = ("ts", "frame")


class _Tcp(_Rec):
    __slots__ = ("syn_frame", "end")


class _Req(_Rec):
    __slots__ = ("ts", "frame", "target", "headers")


class _Resp(_Rec):
    __slots__ = ("ts", "frame")


class LinkView(_Rec):
    __slots__ = ("id", "source", "client", "server", "first_frame", "first_ts", "outcome", "tcp", "request",
                 "response", "_attempt")


def link_view(h: dict) -> LinkView:
    """The fields linking reads, nothing else: kept in memory for every handshake while the full
    documents wait on disk (see pipeline's spool). Read like the document's dicts."""
    req = h.get("request")
    resp = h.get("response")
    key = _key(h)
    end = h["tcp"].get("end")
    return _rec(
        LinkView, id=h["id"], source=h["source"], client=h["client"], server=h["server"],
        first_frame=h["first_frame"], first_ts=h["first_ts"], outcome=h["outcome"],
        tcp=_rec(_Tcp, syn_frame=h["tcp"]["syn_frame"],
                 end=_rec(_End, ts=end["ts"], frame=end["frame"]) if end else None),
        request=None if req is None else _rec(
            _Req, ts=req["ts"], frame=req["frame"], target=req["target"],
            headers=(("Sec-WebSocket-Key", key),) if key else ()),
        response=None if resp is None else _rec(_Resp, ts=resp["ts"], frame=resp["frame"]))


class EncryptedLegs:
    """Undecrypted TLS connections *into* a chain's first client: a leg the capture cannot show.

    When the browser talks TLS to the proxy and no key log opened it, the chain starts at the
    proxy. If that proxy's address received a TLS connection shortly before its upstream request,
    the chain says so (the browser leg is there, just encrypted) instead of passing it in silence.
    """

    def __init__(self, tls_docs: list[dict]) -> None:
        self.by_server: dict[tuple[int, str], list[tuple[float, dict]]] = {}
        for t in tls_docs:
            if not t.get("decrypted"):
                self.by_server.setdefault((t["source"], _ip(t["server"])), []).append((t["first_ts"], t))
        for v in self.by_server.values():
            v.sort(key=lambda x: x[0])

    def before(self, first_hop: dict) -> dict | None:
        req = first_hop.get("request")
        if not req or not self.by_server:
            return None
        cands = self.by_server.get((first_hop["source"], _ip(first_hop["client"])))
        if not cands:
            return None
        t_req = req["ts"]
        i = bisect.bisect_right([c[0] for c in cands], t_req)
        if i == 0 or t_req - cands[i - 1][0] > LINK_WINDOW_S:
            return None
        t = cands[i - 1][1]
        return {"source": t["source"], "client": t["client"], "server": t["server"], "sni": t["sni"],
                "hello_frame": t["hello_frame"]}

