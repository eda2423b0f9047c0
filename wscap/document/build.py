"""The one document assembly: ids, linking and judging, the -j merge (endpoints and summary: summary.py).

Both engines end here. The core `Pipeline` inherits `Assembly` (its handshake documents wait in
the spool; only their link views stay in memory); the tshark engine, which builds handshake
documents some other way, calls `document()`. Either way: ids in order of the requests, bare
attempts kept only when they could be a chain's missing hop, linking over typed link views,
ids of used attempts handed out once, then each chain judged from its legs' full handshakes and
encoded by the codec.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any

from wscap import __version__
from wscap.document.codec import SCHEMA_VERSION, Doc, decode_handshake, decode_link_view, encode_chain
from wscap.document.spool import Spool, SpooledList
from wscap.document.summary import Addresses, count_flags, counts_of, endpoints, handshake_counts, summary
from wscap.judge.chains import LINK_WINDOW_S, EncryptedLegs, Linkage, hop_chain, judge_chain, link_chains
from wscap.model.chain import HopChain, Proxies
from wscap.model.handshake import Handshake

if TYPE_CHECKING:
    from wscap.engine.core import Options

MS = 1_000_000


# -- linking with ids -------------------------------------------------------------------------
def link(views: Sequence[Handshake], attempts: Sequence[Handshake], timeout_s: float,
         attempt_id: Callable[[int], int]) -> tuple[Linkage, list[HopChain], list[int | None]]:
    """Link, then give each used attempt its id (`attempt_id(j)` for attempts[j]), then make the
    chains with their final ids. -> (linkage, chains without verdicts, id of every leg)."""
    linkage = link_chains(views, attempts, timeout_s)
    ids: list[int | None] = [v.id for v in views] + [None] * len(attempts)
    for a in linkage.used:
        ids[a] = attempt_id(a - len(views))
    chains = [hop_chain(n, linked, [ids[i] for i in linked.legs])  # type: ignore[misc]
              for n, linked in enumerate(linkage.chains, start=1)]
    return linkage, chains, ids


def judge(chain: HopChain, hops: Sequence[Handshake], proxies: Proxies, names: dict[str, str], dns: Any,
          timeout_s: float, encrypted: EncryptedLegs | None) -> HopChain:
    return judge_chain(chain, hops, proxies, names, dns, timeout_s,
                       encrypted.before(hops[0]) if encrypted is not None else None)


# -- the tshark engine's documents --------------------------------------------------------------
def could_be_a_hop(attempt: Handshake, requests_to: dict[tuple[int, str], list[int]], window_ns: int) -> bool:
    """As Pipeline._could_be_a_hop: did the attempt's client address receive an upgrade request
    within the link window before it dialled out (or up to 1 ms after)?"""
    seen = requests_to.get((attempt.source, attempt.client.ip))
    if not seen:
        return False
    t = attempt.first_ts_ns
    return any(t - window_ns <= s <= t + MS for s in seen)


def document(handshakes: list[Doc], attempts: list[Doc], sources: list[Doc], stats: Doc,
             options: "Options | None" = None, tls: list[Doc] | None = None, dns: Any = None,
             capture_names: dict[str, str] | None = None) -> Doc:
    """`handshakes`: Handshake dicts with a request, in request order (ids are assigned here, from 1,
    in that order); `attempts`: Handshake dicts of bare connection attempts (request null);
    `tls`: connections that carried TLS, their "handshakes" holding Handshake dicts (-> ids)."""
    if options is None:
        from wscap.engine.core import Options
        options = Options()
    window_ns = round(max(LINK_WINDOW_S, options.timeout_s) * 1e9)
    limit = options.limits.max_handshakes
    shown: list[Doc] = []
    dropped = 0
    for h in handshakes:
        if len(shown) >= limit:
            dropped += 1
            continue
        h["id"] = len(shown) + 1
        shown.append(h)
    views = [decode_handshake(h) for h in shown]
    requests_to: dict[tuple[int, str], list[int]] = {}
    for v in views:
        requests_to.setdefault((v.source, v.server.ip), []).append(v.ts_ns)
    kept: list[Doc] = []
    kept_views: list[Handshake] = []
    for a in attempts:
        av = decode_handshake(a)
        if could_be_a_hop(av, requests_to, window_ns):
            a["id"] = None
            kept.append(a)
            kept_views.append(av)
    unlinked = len(attempts) - len(kept)
    next_id = [len(shown) + 1]

    def attempt_id(j: int) -> int:
        kept[j]["id"] = next_id[0]
        next_id[0] += 1
        return kept[j]["id"]

    linkage, chains, ids = link(views, kept_views, options.timeout_s, attempt_id)
    legs = [v.with_id(ids[i]) for i, v in enumerate(views + kept_views)]
    encrypted = EncryptedLegs(tls or [])
    # As Pipeline.names(): --names > the captures' Name Resolution Blocks > the Docker API.
    names = {**dict(options.names_fallback), **(capture_names or {}), **dict(options.names)}
    chains = [judge(c, [legs[i] for i in linked.legs], linkage.proxies, names, dns, options.timeout_s, encrypted)
              for c, linked in zip(chains, linkage.chains)]
    used = [kept[a - len(views)] for a in linkage.used]
    all_hs = sorted(shown + used, key=lambda h: (h["source"], h["first_frame"]))
    stats = dict(stats)
    stats["unlinked_attempts"] = unlinked
    if dropped:
        stats.setdefault("limits_hit", {})["max_handshakes"] = dropped
    if "limits_hit" in stats:
        stats["limits_hit"] = dict(sorted(stats["limits_hit"].items()))    # as Assembly.stats: by name
    tls_list = []
    for t in sorted(tls or [], key=lambda t: (t["source"], t["first_frame"])):
        tls_list.append({**t, "handshakes": [h["id"] for h in t["handshakes"] if h.get("id") is not None]})
    summ = summary(handshake_counts(all_hs), chains)
    summ["tls"] = {"connections": len(tls_list), "decrypted": sum(1 for t in tls_list if t["decrypted"])}
    shown_legs = [(ids[i], legs[i]) for i in list(range(len(views))) + list(linkage.used)]
    return {
        "version": SCHEMA_VERSION,
        "tool": f"wscap {__version__}",
        "source": sources,
        "handshakes": all_hs,
        "chains": [encode_chain(c) for c in chains],
        "tls": tls_list,
        **({"dns": dns.to_json()} if dns is not None else {}),
        "endpoints": endpoints(shown_legs, ((c.hops, _cause(c)) for c in chains), names),
        "stats": stats,
        "summary": summ,
    }


def _cause(c: HopChain) -> str:
    assert c.verdict is not None
    return c.verdict.cause.value


# -- the core pipeline's documents ---------------------------------------------------------------
class Assembly:
    """The document side of `wscap.engine.core.Pipeline` (a base class, so that the pipeline's
    feed/tick code and this part stay in their own modules): live chain events, the final
    document (in memory or streamed), and the -j merge of worker results.

    Handshake documents wait in a spool; `views` (requests) and `attempt_views` (bare connection
    attempts) are their typed link views, index-aligned with `view_locs`/`attempt_locs`."""

    # State the pipeline sets up in its __init__ (declared here for the type checker).
    options: "Options"
    timeout_ns: int
    link_window_ns: int
    stream: bool
    spool: Spool
    views: list[Handshake]
    view_locs: list[tuple[Spool, tuple[int, int], int]]     # (spool, location, count_flags)
    attempt_views: list[Handshake]
    attempt_locs: list[tuple[Spool, tuple[int, int], int]]
    attempt_live: list[Any]                    # live: the attempt's Exchange (its id, once shown)
    _extra_spools: list[Spool]
    registered: int
    next_id: int
    now_ns: int
    sources: list[Doc]
    tls_docs: list[Doc]
    _tls_events: list[Any]
    _undecided: list[Any]
    _open: list[Any]
    _views: dict[int, tuple[tuple, Handshake]]   # live: id(open leg) -> (what its view read, the view)
    _syn_only: list[Any]
    _chain_seq: int
    capture_names: dict[str, str]
    limits_hit: dict[str, int]
    flows_seen: int
    evicted: int
    unlinked_attempts: int
    conns: dict[Any, Any]
    decoder: Any
    dns: Any

    def _maybe_attempt(self, conn: Any) -> None:   # the pipeline's own (flow part)
        raise NotImplementedError

    def _put(self, doc: Doc, attempt: Any = None) -> None:
        """Spool a finished handshake document and keep its link view (attempt: a bare attempt,
        with its Exchange when streaming)."""
        view = decode_link_view(doc)
        loc = (self.spool, self.spool.put(doc), count_flags(doc))
        if doc["request"] is None:
            self.attempt_views.append(view)
            self.attempt_locs.append(loc)
            self.attempt_live.append(attempt)
        else:
            self.views.append(view)
            self.view_locs.append(loc)

    # -- live events ---------------------------------------------------------------------------
    def _collect(self, now_ns: int | None, chains: bool = False) -> list[Any]:
        """Emit handshakes that became decided by the clock (timeout), and settled chains."""
        from wscap.engine.core import Decided
        if not self.stream:
            return []
        if self._tls_events:
            early, self._tls_events = self._tls_events, []
            return early + self._collect(now_ns, chains)
        if not self._undecided:
            return self._chains(now_ns) if chains else []
        out: list[Any] = []
        keep = []
        for conn, ex in self._undecided:
            if ex.request is None:
                continue       # bare connection attempts are only reported inside chains
            if ex.emitted:
                continue
            if conn.decided(ex, now_ns, self.timeout_ns) or now_ns is None:
                ex.emitted = True
                out.append(Decided("handshake", conn.document(ex, self.now_ns)))
            else:
                keep.append((conn, ex))
        self._undecided = keep
        if chains:
            out += self._chains(now_ns)
        return out

    def _chains(self, now_ns: int | None) -> list[Any]:
        """Chains whose every leg has its answer or has waited the timeout (all of them at finish).

        Same linking as the final document; legs are removed from the open set once their chain
        is emitted, so each chain is printed exactly once. Bare attempts get their ids when their
        chain is emitted, before it is judged (as in the final document).
        """
        from wscap.engine.core import Decided
        for conn in self._syn_only:
            if not conn.saw_payload and (conn.end is not None or now_ns is None
                                         or now_ns - conn.first_ts >= self.timeout_ns):
                self._maybe_attempt(conn)
        self._syn_only = [c for c in self._syn_only if c.attempt is None and not c.saw_payload]
        if not self._open:
            return []
        # Link on light views, rebuilt only when a leg changed; render and judge only the legs of
        # chains that are ready. Rendering every open leg on every tick (200 ms) made one tick
        # cost more than the burst it followed, and every line waits behind the tick.
        views = [self._link_view(conn, ex) for conn, ex in self._open]
        order = [k for k, (_c, ex) in enumerate(self._open) if ex.request is not None]
        order += [k for k, (_c, ex) in enumerate(self._open) if ex.request is None]
        n_req = sum(1 for _c, ex in self._open if ex.request is not None)
        linkage = link_chains([views[k] for k in order[:n_req]], [views[k] for k in order[n_req:]],
                              self.options.timeout_s)
        out: list[Any] = []
        done: set[int] = set()
        names: dict[str, str] | None = None
        for linked in linkage.chains:
            pairs = [self._open[order[i]] for i in linked.legs]
            legs = [ex for _c, ex in pairs]
            if now_ns is not None and not all(c.decided(ex, now_ns, self.timeout_ns) for c, ex in pairs):
                continue
            if now_ns is not None and now_ns - legs[0].ts_ns < min(self.timeout_ns, 1_000_000_000) \
                    and legs[-1].request is not None and legs[-1].response is None:
                continue
            docs = [conn.document(ex, self.now_ns) for conn, ex in pairs]
            for doc, i in zip(docs, linked.legs):
                ex = self._open[order[i]][1]
                if ex.id is None:            # a bare attempt becomes visible as this chain's hop
                    ex.id = self.next_id
                    self.next_id += 1
                    doc["id"] = ex.id
                    out.append(Decided("handshake", doc))
                done.add(order[i])
            ids = [ex.id for ex in legs]
            self._chain_seq += 1
            chain = replace(hop_chain(self._chain_seq, linked, ids), has_encrypted_before=False)
            hops = [decode_handshake(doc) for doc in docs]
            if names is None:
                names = self.names()
            judged = judge_chain(chain, hops, linkage.proxies, names, self.dns, self.options.timeout_s)
            out.append(Decided("chain", encode_chain(judged)))
        if now_ns is not None:
            done |= self._stale_attempts(now_ns)
        if done:
            for k in done:
                self._views.pop(id(self._open[k][1]), None)
            self._open = [ex for k, ex in enumerate(self._open) if k not in done]
        return out

    def _link_view(self, conn: Any, ex: Any) -> Handshake:
        """`ex`'s link view, as `decode_link_view` of its document reads it; rendered again only
        when something the view reads changed (its id, its heads, its connection's SYN/SYN-ACK/end,
        an HTTP/2 stream's reset)."""
        tcp = conn.tcp
        req, resp = ex.request, ex.response
        state = (ex.id, req, None if req is None else req.complete, resp,
                 None if resp is None else (resp.status, resp.complete),
                 tcp.end, tcp.syn_frame, tcp.synack_frame, getattr(ex, "reset", None))
        memo = self._views.get(id(ex))
        if memo is not None and len(memo[0]) == len(state) \
                and all(a is b or a == b for a, b in zip(memo[0], state)):
            return memo[1]
        view = decode_link_view(conn.link_document(ex))
        self._views[id(ex)] = (state, view)
        return view

    def _stale_attempts(self, now_ns: int) -> set[int]:
        """Open bare attempts (positions in `_open`) that no tick can link any more: left in the
        open set, every tick re-linked them all (a port scan or health checks made each tick
        slower than the last).

        An attempt is only ever the upstream hop of a request in an earlier frame of the same
        capture (judge.chains: the downstream leg comes first), and every such request was
        registered before the attempt existed; once none of them is open, it cannot link. Kept
        anyway for the link window (reordered heads), and while other captures have open requests.
        The attempt is still in the final document, from the spool."""
        first: dict[int, int] = {}
        for conn, ex in self._open:
            req = ex.request
            if req is not None:
                src = conn.source
                f = req.frame if req.frame is not None else -1
                if f < first.get(src, f + 1):
                    first[src] = f
        out: set[int] = set()
        for k, (c, ex) in enumerate(self._open):
            if ex.request is not None or now_ns - ex.ts_ns <= self.link_window_ns:
                continue
            lo = first.get(c.source)
            if (lo is None or lo > (c.syn_frame or c.first_frame)) and all(s == c.source for s in first):
                out.add(k)
        return out

    # -- output --------------------------------------------------------------------------------
    def names(self) -> dict[str, str]:
        """Endpoint labels, by precedence: explicit (--names) > the captures' NRBs > the Docker API."""
        return {**dict(self.options.names_fallback), **self.capture_names, **dict(self.options.names)}

    @property
    def stats(self) -> Doc:
        if self.dns.dropped:
            self.limits_hit["max_dns"] = self.dns.dropped
        d = self.decoder.stats
        return {"packets": d.packets, "tcp_packets": d.tcp, "truncated_packets": d.truncated,
                "flows": self.flows_seen, "flows_tracked": sum(1 for c in self.conns.values() if c is not None),
                "evicted_flows": self.evicted, "ip_fragments_dropped": self.decoder.frags.dropped,
                "unlinked_attempts": self.unlinked_attempts,
                "tunnelled_packets": d.tunnelled,
                "unsupported_encapsulation": dict(sorted(d.unsupported.items())),
                # sorted: which limit was met first is no part of the contract (nor known to two processes)
                "limits_hit": dict(sorted({**self.limits_hit, **({"tunnel_depth": d.too_deep} if d.too_deep else {})
                                           }.items()))}

    # -- the final document ---------------------------------------------------------------------
    def _linked(self) -> tuple[Linkage, list[HopChain], list[int | None]]:
        """Link every finished handshake (from the in-memory views); give used attempts their ids."""
        self._canonical_order()
        def attempt_id(j: int) -> int:
            ex = self.attempt_live[j]
            if ex is not None and ex.id is not None:
                return int(ex.id)                # already shown in a live chain line
            self.next_id += 1
            return self.next_id - 1
        return link(self.views, self.attempt_views, self.options.timeout_s, attempt_id)

    def _canonical_order(self) -> None:
        """Legs in an order that does not depend on when their connections ended (linking breaks
        timestamp ties by position): requests by id, attempts by their first frame. Processes that
        each saw part of the flows (engine/shards.py) then link exactly as one process."""
        p = sorted(range(len(self.views)), key=lambda i: self.views[i].id)      # type: ignore[arg-type,return-value]
        self.views, self.view_locs = [self.views[i] for i in p], [self.view_locs[i] for i in p]
        a = self.attempt_views
        p = sorted(range(len(a)), key=lambda i: (a[i].source, a[i].first_frame))
        self.attempt_views = [a[i] for i in p]
        self.attempt_locs = [self.attempt_locs[i] for i in p]
        self.attempt_live = [self.attempt_live[i] for i in p]

    def _shown(self, linkage: Linkage, ids: list[int | None]) -> list[int]:
        """The legs the document lists (requests and used attempts), in document order."""
        legs = list(range(len(self.views))) + list(linkage.used)
        return sorted(legs, key=lambda i: (self._leg(i).source, self._leg(i).first_frame))

    def _leg(self, i: int) -> Handshake:
        n = len(self.views)
        return self.views[i] if i < n else self.attempt_views[i - n]

    def _full_doc(self, i: int, ids: list[int | None]) -> Doc:
        """Leg i's full document back from the spool, with its final id."""
        n = len(self.views)
        spool, loc, _flags = self.view_locs[i] if i < n else self.attempt_locs[i - n]
        doc = spool.get(loc)
        doc["id"] = ids[i]
        return doc

    def _judged(self, linkage: Linkage, chains: list[HopChain], ids: list[int | None],
                names: dict[str, str], keep: Callable[[int, Doc], object] | None = None,
                lo: int = 0, hi: int | None = None) -> Iterable[HopChain]:
        """Each chain (of chains[lo:hi]) judged from its legs' full handshakes, one chain's legs in
        memory at a time; `keep(i, doc)` sees leg i's document (with its final id) as it is read."""
        encrypted = EncryptedLegs(self.tls_list())      # by first frame: not by when each ended
        for c, linked in zip(chains[lo:hi], linkage.chains[lo:hi]):
            hops = []
            for i in linked.legs:
                doc = self._full_doc(i, ids)
                if keep is not None:
                    keep(i, doc)
                hops.append(decode_handshake(doc))
            yield judge(c, hops, linkage.proxies, names, self.dns, self.options.timeout_s, encrypted)

    def _legs_with_ids(self, shown: list[int], ids: list[int | None]) -> list[tuple[int | None, Handshake]]:
        return [(ids[i], self._leg(i)) for i in shown]

    def _head(self) -> Doc:
        return {"version": SCHEMA_VERSION, "tool": f"wscap {__version__}", "source": self.sources}

    def _judge_range(self, linkage: Linkage, chains: list[HopChain], ids: list[int | None], lo: int, hi: int,
                     chain_spool: Spool, encode: Callable[[HopChain], str] | None = None,
                     keep: Callable[[int, Doc], object] | None = None,
                     after: Callable[[], object] | None = None) -> tuple[list[Any], list[HopChain]]:
        """Judge chains[lo:hi] into `chain_spool` (as `encode` writes each, else its document; `keep`
        sees each leg read, `after()` runs after each chain) -> (their locations, their light forms:
        only the verdict stays in memory)."""
        locs, light = [], []
        for c in self._judged(linkage, chains, ids, self.names(), keep, lo, hi):
            light.append(HopChain(c.id, c.hops, (), None, c.verdict))
            locs.append(chain_spool.put(encode_chain(c)) if encode is None else chain_spool.put_text(encode(c)))
            if after is not None:
                after()
        return locs, light

    def _tail_legs(self, ids: list[int | None], shown: list[int]) -> tuple[dict[str, int], Addresses]:
        """What the tail reads of the legs alone: their summary counts and addresses."""
        n = len(self.views)
        counts = counts_of((self.view_locs[i] if i < n else self.attempt_locs[i - n])[2] for i in shown)
        return counts, Addresses(self._legs_with_ids(shown, ids))

    def _tail(self, light: list[HopChain], ids: list[int | None], shown: list[int],
              legs: tuple[dict[str, int], Addresses] | None = None) -> Doc:
        """The fields after the chains: TLS, DNS, endpoints, stats and summary (counted from the
        legs' flags and the chains' verdicts); `legs`: what `_tail_legs` gave, if taken already."""
        counts, addresses = legs if legs is not None else self._tail_legs(ids, shown)
        names = self.names()
        eps = endpoints(addresses, ((c.hops, _cause(c)) for c in light), names)
        summ = summary(counts, light, self.tls_docs)
        return {"tls": self.tls_list(), "dns": self.dns.to_json(), "endpoints": eps, "stats": self.stats,
                "summary": summ}

    def write_json(self, fp: IO[str]) -> Doc:
        """Stream the document to `fp` with memory bounded by one chain's legs; -> its summary.

        Each handshake is read from the spool once, to judge its chain, and written as soon as
        every handshake before it in document order has been (see InOrder). With a second CPU,
        a forked process judges the later chains meanwhile (document/split.py); the bytes are
        the same either way."""
        from wscap.document.split import SplitJudging
        from wscap.render.json import ChainEncoder, StreamedDocument, encode_item
        linkage, chains, ids = self._linked()
        shown = self._shown(linkage, ids)
        out = StreamedDocument(fp, self._head())
        order = InOrder(shown, encode_item, out.item)
        chain_spool = Spool()
        helper = SplitJudging.start(self, linkage, chains, ids)
        try:
            mine = len(chains) if helper is None else helper.first
            locs, light = self._judge_range(linkage, chains, ids, 0, mine, chain_spool, ChainEncoder(),
                                            order.offer, order.flush)
            legs_part = self._tail_legs(ids, shown)     # (while the helper may still be judging)
            theirs = helper.result() if helper is not None else None
            if theirs is None:          # no helper, or it failed: the rest judged here
                more, light_more = self._judge_range(linkage, chains, ids, mine, len(chains), chain_spool,
                                                     ChainEncoder(), order.offer, order.flush)
                locs, light = locs + more, light + light_more
            out.to_bytes()              # the rest is mostly text already encoded: written as it is
            order.finish(lambda i: (theirs and theirs.handshake(i)) or encode_item(self._full_doc(i, ids)))
            out.chains()
            for loc in locs:
                out.item(chain_spool.read(loc))
            if theirs is not None:
                for text in theirs.chains():
                    out.item(text)
                light += theirs.light
        finally:
            if helper is not None:
                helper.close()
            chain_spool.close()
        tail = self._tail(light, ids, shown, legs_part)
        out.finish(tail)
        return dict(tail["summary"])

    def lazy_document(self) -> Doc:
        """The document with "handshakes" and "chains" as SpooledLists: read back from disk as a
        renderer walks them, so memory does not grow with the number of handshakes. The same
        content as `document()` (which the Python API keeps: plain lists)."""
        linkage, chains, ids = self._linked()
        shown = self._shown(linkage, ids)
        chain_spool = Spool()
        chain_locs, light = self._judge_range(linkage, chains, ids, 0, len(chains), chain_spool)
        tail = self._tail(light, ids, shown)
        n = len(self.views)
        handles = [(*(self.view_locs[i] if i < n else self.attempt_locs[i - n])[:2], ids[i]) for i in shown]

        def load(h: tuple[Spool, Any, int | None]) -> Doc:
            doc = h[0].get(h[1])
            doc["id"] = h[2]
            return doc
        return {**self._head(), "handshakes": SpooledList(handles, load),
                "chains": SpooledList(chain_locs, chain_spool.get), **tail}

    def document(self) -> Doc:
        """The whole document in memory (renderers, the Python API); `write_json` streams it."""
        linkage, chains, ids = self._linked()
        names = self.names()
        read: dict[int, Doc] = {}             # the legs as read for judging: all kept here anyway
        judged = list(self._judged(linkage, chains, ids, names, read.setdefault))
        shown = self._shown(linkage, ids)
        all_hs = [read.pop(i) if i in read else self._full_doc(i, ids) for i in shown]
        return {
            "version": SCHEMA_VERSION,
            "tool": f"wscap {__version__}",
            "source": self.sources,
            "handshakes": all_hs,
            "chains": [encode_chain(c) for c in judged],
            "tls": self.tls_list(),
            "dns": self.dns.to_json(),
            "endpoints": endpoints(self._legs_with_ids(shown, ids), ((c.hops, _cause(c)) for c in judged), names),
            "stats": self.stats,
            "summary": summary(handshake_counts(all_hs), judged, self.tls_docs),
        }

    def tls_list(self) -> list[Doc]:
        return sorted(self.tls_docs, key=lambda t: (t["source"], t["first_frame"]))


class InOrder:
    """Handshakes written in document order while chains are judged in theirs.

    Chains come in the order of their first requests and a chain's upstream legs follow its
    client leg closely in the capture, so a handshake read for judging is usually next or nearly
    next in document order: it waits here, encoded, until it is (the bench capture: at most 3
    wait). At most LIMIT wait besides the next one; one that finds no room is read again at its
    turn (`finish`), as is one in no chain."""

    LIMIT = 256

    def __init__(self, shown: list[int], encode: Callable[[Doc], str], write: Callable[[str | bytes], object]) -> None:
        self._shown = shown
        self._pos = {leg: k for k, leg in enumerate(shown)}
        self._encode = encode
        self._write = write
        self._ready: dict[int, str] = {}
        self.next = 0                  # position of the next handshake to write
        self.late = 0                  # handshakes read at their turn (no room earlier, or in no chain)

    def offer(self, leg: int, doc: Doc) -> None:
        """`doc` (leg `leg`'s document) was read: keep it encoded if it is next or there is room."""
        k = self._pos.get(leg)
        if k is None or k < self.next or k in self._ready:
            return
        if k == self.next or len(self._ready) < self.LIMIT:
            self._ready[k] = self._encode(doc)

    def flush(self) -> None:
        ready = self._ready
        while self.next in ready:
            self._write(ready.pop(self.next))
            self.next += 1

    def finish(self, read: Callable[[int], str | bytes]) -> None:
        """Write the rest: waiting ones from here, the others as `read(leg)` gives them."""
        for k in range(self.next, len(self._shown)):
            text: str | bytes | None = self._ready.pop(k, None)
            if text is None:
                self.late += 1
                text = read(self._shown[k])
            self._write(text)
        self.next = len(self._shown)
