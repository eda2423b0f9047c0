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
Pure function of typed handshakes (`wscap.model.handshake.Handshake`), so `analyze`, `live` and tests
all link the same way. Many concurrent handshakes on one path are never
cross-linked: keys are unique per client handshake (RFC 6455 §4.1), and the
inferred matching is one-to-one in time order.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Sequence

from wscap.document.codec import s_to_ns
from wscap.judge.dns_evidence import explain
from wscap.judge.diff import diff_boundary
from wscap.judge.labels import label_verdict
from wscap.judge.verdict import decide
from wscap.model.chain import HeaderDiff, HopChain, Link, LinkBy, Proxies
from wscap.model.endpoint import ip_of
from wscap.model.handshake import Handshake, Outcome

LINK_WINDOW_S = 10.0     # an upstream leg starts within this long after the downstream request
KEY_SCAN = 64            # legs examined per downstream request among those sharing its key and proxy
MS = 1_000_000           # timestamps can tie or be 1 ms apart across captures of one exchange


def _related(down: str, up: str) -> bool:
    """Could `up` be `down` after a proxy's path rewrite? (same path, or a shared last segment)"""
    if down == up:
        return True
    d = down.rstrip("/").rsplit("/", 1)[-1]
    u = up.rstrip("/").rsplit("/", 1)[-1]
    return bool(d) and d == u or up.endswith(down) or down.endswith(up)


@dataclass(frozen=True, slots=True)
class Linked:
    """One chain as linking found it: its legs (indices into `handshakes + attempts`, client leg
    first) and how each leg after the first was linked, with its delay. Ids come later, once."""
    legs: tuple[int, ...]
    by: tuple[LinkBy, ...]
    delays_ns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Linkage:
    chains: tuple[Linked, ...]       # in (source, first frame) order of their client legs
    used: tuple[int, ...]            # indices of the attempts that became hops, in linking order
    proxies: Proxies


def link_chains(handshakes: Sequence[Handshake], attempts: Sequence[Handshake], timeout_s: float = 3.0
                ) -> Linkage:
    """Link legs into chains. Leg i is handshakes[i], leg len(handshakes) + j is attempts[j].

    Needs only the linking fields of each handshake (see `codec.decode_link_view`), so it can run
    over compact values while the full documents wait in the spool.
    """
    legs: list[Handshake] = list(handshakes) + list(attempts)
    first_attempt = len(handshakes)
    reqs = [i for i in range(first_attempt) if legs[i].request is not None]
    window = round(max(LINK_WINDOW_S, timeout_s) * 1e9)
    up_of: dict[int, int] = {}         # down leg -> upstream leg
    down_of: dict[int, int] = {}       # up leg -> downstream leg
    link_by: dict[int, LinkBy] = {}
    ts = [h.ts_ns for h in legs]

    def candidate(down: int, up: int) -> bool:
        if up == down or up in down_of:
            return False
        dt = ts[up] - ts[down]
        if legs[up].source == legs[down].source:
            # Causality: the proxy sends upstream only after it received the request, so within
            # one capture the upstream request comes in a later frame (timestamps can tie).
            return legs[up].order > legs[down].order and dt <= window
        return -MS <= dt <= window

    ordered = sorted(reqs, key=lambda i: ts[i])
    # Index the legs by the address they leave from, in time order, so each lookup is a
    # bisect over a window rather than a scan of the whole capture.
    by_client: dict[str, tuple[list[int], list[int]]] = {}
    for i in ordered:
        ts_list, idx = by_client.setdefault(legs[i].client.ip, ([], []))
        ts_list.append(ts[i])
        idx.append(i)

    def near(index: dict[str, tuple[list[int], list[int]]], ip: str, t: int) -> list[int]:
        entry = index.get(ip)
        if entry is None:
            return []
        ts_list, idx = entry
        return idx[bisect.bisect_left(ts_list, t - MS):bisect.bisect_right(ts_list, t + window)]

    # 1. same key, and a plausible topology: the upstream leg leaves from the address that
    #    received the request (the proxy), later in time. Unrelated clients sharing a key (RFC
    #    6455's sample key is hard-coded by many test clients) never merge. Indexed by
    #    (key, client address) in time order, so linking stays linear however many legs share a key.
    keys = [h.key for h in legs]
    by_key_client: dict[tuple[str, str], tuple[list[int], list[int], list[int]]] = {}
    for i in ordered:
        k = keys[i]
        if k:
            ts_list, idx, _first = by_key_client.setdefault((k, legs[i].client.ip), ([], [], [0]))
            ts_list.append(ts[i])
            idx.append(i)
    for down in ordered:
        k = keys[down]
        if not k:
            continue
        entry = by_key_client.get((k, legs[down].server.ip))
        if entry is None:
            continue
        ts_list, idx, first = entry
        while first[0] < len(idx) and idx[first[0]] in down_of:
            first[0] += 1          # legs already linked are never candidates again
        j = max(first[0], bisect.bisect_left(ts_list, ts[down] - MS))
        t_end = ts[down] + window
        for u in idx[j:j + KEY_SCAN]:
            if ts_list[j] > t_end:
                break
            j += 1
            if candidate(down, u):
                up_of[down], down_of[u], link_by[u] = u, down, LinkBy.KEY
                break
    # 2. inferred: a request leaving P with a related path, nearest in time, one-to-one.
    #    Legs whose key another leg shares belong to a key-linked chain and are not candidates.
    shared = {keys[i] for i in reqs if link_by.get(i) is LinkBy.KEY}
    for down in ordered:
        if down in up_of:
            continue
        path = legs[down].request.path  # type: ignore[union-attr]   # reqs all carry a request
        cands = [u for u in near(by_client, legs[down].server.ip, ts[down])
                 if candidate(down, u) and keys[u] not in shared
                 and _related(path, legs[u].request.path)]  # type: ignore[union-attr]
        if not cands:
            continue
        up = min(cands, key=lambda u: ts[u] - ts[down])
        up_of[down], down_of[up], link_by[up] = up, down, LinkBy.INFERRED
    # 3. missing hop: P received an upgrade, then a connection attempt from P carried no request
    by_attempt_client: dict[str, tuple[list[int], list[int]]] = {}
    for a in sorted(range(first_attempt, len(legs)), key=lambda i: ts[i]):
        ts_list, idx = by_attempt_client.setdefault(legs[a].client.ip, ([], []))
        ts_list.append(ts[a])
        idx.append(a)
    pairs: list[tuple[int, int, int, int]] = []
    for down in ordered:
        h = legs[down]
        if down in up_of or h.outcome is Outcome.UPGRADED:
            continue
        answered, answered_frame = _answer(h)
        for a in near(by_attempt_client, h.server.ip, ts[down]):
            if not candidate(down, a):
                continue
            at = legs[a]
            end = at.tcp.end
            if answered is not None:
                # The proxy's answer to the client (a 502, a close) is caused by the failed attempt:
                # it cannot come before the attempt started, nor before a refused attempt ended.
                # Within one capture, frame order decides (timestamps can tie); across captures, time.
                if at.source == h.source and answered_frame is not None:
                    start = at.tcp.syn_frame or at.first_frame
                    if start > answered_frame or (end is not None and end.frame is not None
                                                  and end.frame > answered_frame):
                        continue
                elif at.first_ts_ns > answered + MS or (end is not None and end.ts_ns > answered + MS):
                    continue
            # Closest cause first: an answer right after the attempt's end, else the nearest request.
            if answered is not None and end is not None:
                pairs.append((0, answered - end.ts_ns, down, a))
            else:
                pairs.append((1, ts[a] - ts[down], down, a))
    # Globally nearest first: a proxy dials upstream within milliseconds of the request it serves,
    # so among concurrent requests the closest one owns the attempt.
    pairs.sort()
    used: list[int] = []
    for _k, _dt, down, a in pairs:
        if down in up_of or a in down_of:
            continue
        used.append(a)
        up_of[down], down_of[a], link_by[a] = a, down, LinkBy.ATTEMPT
    proxies = Proxies(frozenset(legs[i].client.ip for i in reqs + used if i in down_of),
                      # Addresses that opened connections of their own (a request or a bare attempt): a
                      # leg that goes unanswered at such an address is a proxy that did not go upstream.
                      frozenset(legs[i].client.ip for i in reqs + list(range(first_attempt, len(legs)))))
    chains = []
    heads = [i for i in reqs if i not in down_of]
    for head in sorted(heads, key=lambda i: (legs[i].source, legs[i].first_frame)):
        hops = [head]
        while hops[-1] in up_of and len(hops) < 16:
            hops.append(up_of[hops[-1]])
        chains.append(Linked(tuple(hops), tuple(link_by[u] for u in hops[1:]),
                             tuple(ts[hops[k + 1]] - ts[hops[k]] for k in range(len(hops) - 1))))
    return Linkage(tuple(chains), tuple(used), proxies)


def _answer(h: Handshake) -> tuple[int | None, int | None]:
    """When (ns) and in which frame the client leg got its answer: the response head, else the
    end of its connection."""
    if h.response is not None:
        return h.response.ts_ns, h.response.frame
    end = h.tcp.end
    return (end.ts_ns, end.frame) if end is not None else (None, None)


def hop_chain(chain_id: int, linked: Linked, ids: Sequence[int]) -> HopChain:
    """The chain with its final ids: `ids[k]` is the id of its k-th leg."""
    return HopChain(chain_id, tuple(ids), tuple(Link(ids[k], ids[k + 1], linked.by[k], linked.delays_ns[k])
                                                for k in range(len(linked.by))))


def judge_chain(chain: HopChain, hops: Sequence[Handshake], proxies: Proxies,
                names: dict[str, str] | None = None, dns: Any = None, timeout_s: float = 3.0,
                encrypted_before: Any = None) -> HopChain:
    """Diffs at every boundary and the verdict, from the legs' full handshakes; with a DNS
    tracker, the proxy's lookups as evidence; with names, endpoints labelled in the sentences."""
    diffs: list[HeaderDiff] = []
    for i in range(len(hops) - 1):
        diffs += diff_boundary(i, hops[i], hops[i + 1])
    verdict = decide(hops, diffs, proxies, timeout_s)
    if dns is not None and hops:
        verdict = explain(dns, verdict, hops[-1], len(hops), timeout_s, names)
    if names:
        verdict = label_verdict(verdict, hops, names)
    return HopChain(chain.id, chain.hops, chain.links, tuple(diffs), verdict,
                    encrypted_before, chain.has_encrypted_before)


class EncryptedLegs:
    """Undecrypted TLS connections *into* a chain's first client: a leg the capture cannot show.

    When the browser talks TLS to the proxy and no key log opened it, the chain starts at the
    proxy. If that proxy's address received a TLS connection shortly before its upstream request,
    the chain says so (the browser leg is there, just encrypted) instead of passing it in silence.
    """

    def __init__(self, tls_docs: list[dict[str, Any]]) -> None:
        self.by_server: dict[tuple[int, str], list[tuple[int, dict[str, Any]]]] = {}
        for t in tls_docs:
            if not t.get("decrypted"):
                self.by_server.setdefault((t["source"], ip_of(t["server"])), []).append((s_to_ns(t["first_ts"]), t))
        for v in self.by_server.values():
            v.sort(key=lambda x: x[0])

    def before(self, first_hop: Handshake) -> dict[str, Any] | None:
        req = first_hop.request
        if req is None or not self.by_server:
            return None
        cands = self.by_server.get((first_hop.source, first_hop.client.ip))
        if not cands:
            return None
        t_req = req.ts_ns
        i = bisect.bisect_right([c[0] for c in cands], t_req)
        if i == 0 or t_req - cands[i - 1][0] > round(LINK_WINDOW_S * 1e9):
            return None
        t = cands[i - 1][1]
        return {"source": t["source"], "client": t["client"], "server": t["server"], "sni": t["sni"],
                "hello_frame": t["hello_frame"]}

