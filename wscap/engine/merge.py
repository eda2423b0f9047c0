"""What other processes hand back, merged into this process's pipeline as if fed here.

Two kinds: a `-j N` worker's whole capture file (engine/analyze.py; its ids continue from the
previous files'), and the other half of one capture's flows (engine/shards.py; ids interleave in
the order of the requests, bare attempts are decided from both halves' logs).
"""
from __future__ import annotations

import heapq
import marshal
import pickle
from collections import deque
from typing import IO, TYPE_CHECKING, Iterator

from wscap.document.codec import handshake_from_values, handshake_values
from wscap.document.spool import Spool

if TYPE_CHECKING:
    from wscap.engine.core import Pipeline


class Abandoned(Exception):
    """A bound counted over both halves came near: one process must analyse the capture."""


# -- a -j worker's file ----------------------------------------------------------------------
def export_file(pipe: "Pipeline") -> dict:
    """What a worker process hands back after analysing one file (views, counts, its spool)."""
    path = pipe.spool.persist()
    return {"views": [(v, loc[1], loc[2]) for v, loc in zip(pipe.views, pipe.view_locs)],
            "attempts": [(v, loc[1], loc[2]) for v, loc in zip(pipe.attempt_views, pipe.attempt_locs)],
            "spool": path, "registered": pipe.registered, "sources": pipe.sources,
            "decoder": (pipe.decoder.stats.packets, pipe.decoder.stats.tcp, pipe.decoder.stats.truncated,
                        pipe.decoder.frags.dropped, pipe.decoder.stats.tunnelled,
                        dict(pipe.decoder.stats.unsupported), pipe.decoder.stats.too_deep),
            "flows": pipe.flows_seen, "evicted": pipe.evicted, "unlinked": pipe.unlinked_attempts,
            "limits_hit": pipe.limits_hit, "now": pipe.now_ns, "tls": pipe.tls_docs,
            "dns": pipe.dns.export(), "capture_names": pipe.capture_names}

def absorb_file(pipe: "Pipeline", part: dict) -> None:
    """Merge a worker's file into this pipeline exactly as if it had been fed here, in order:
    handshake ids continue from the previous files'."""
    spool = Spool.open(part["spool"])
    pipe._extra_spools.append(spool)
    offset = pipe.registered
    for v, loc, flags in part["views"]:
        pipe.views.append(v.with_id(v.id + offset))
        pipe.view_locs.append((spool, loc, flags))
    for v, loc, flags in part["attempts"]:
        pipe.attempt_views.append(v)
        pipe.attempt_locs.append((spool, loc, flags))
        pipe.attempt_live.append(None)
    for t in part["tls"]:
        t["handshakes"] = [i + offset for i in t["handshakes"]]
        pipe.tls_docs.append(t)
    pipe.registered += part["registered"]
    pipe.next_id = pipe.registered + 1
    pipe.sources += part["sources"]
    st = pipe.decoder.stats
    packets, tcp, truncated, frags, tunnelled, unsupported, too_deep = part["decoder"]
    st.packets += packets
    st.tcp += tcp
    st.truncated += truncated
    st.tunnelled += tunnelled
    st.too_deep += too_deep
    for k, n in unsupported.items():
        st.unsupported[k] = st.unsupported.get(k, 0) + n
    pipe.decoder.frags.dropped += frags
    pipe.flows_seen += part["flows"]
    pipe.evicted += part["evicted"]
    pipe.unlinked_attempts += part["unlinked"]
    for k, n in part["limits_hit"].items():
        pipe.limits_hit[k] = pipe.limits_hit.get(k, 0) + n
    pipe.now_ns = max(pipe.now_ns, part["now"])
    pipe.dns.absorb(part["dns"])
    for ip, name in part["capture_names"].items():
        pipe.capture_names.setdefault(ip, name)


# -- the other half of one capture's flows --------------------------------------------------
def export_half(pipe: "Pipeline") -> dict:
    """What the child hands back: its legs (link views as plain values, documents in its spool),
    its log, its counts (all of it what `marshal` can write, unless a document value is odd)."""
    assert pipe.shard_log is not None
    return {"views": [(handshake_values(v), loc[1:]) for v, loc in zip(pipe.views, pipe.view_locs)],
            "attempts": [(handshake_values(v), loc[1:]) for v, loc in zip(pipe.attempt_views, pipe.attempt_locs)],
            "events": pipe.shard_log.events, "registered": pipe.registered, "tls": pipe.tls_docs,
            "flows": pipe.flows_seen, "limits_hit": pipe.limits_hit}


def write_half(part: dict, out: IO[bytes]) -> None:
    """The child's part to `out`: by `marshal` (its values are plain), else by pickle (a document
    value marshal cannot write, such as a str subclass); the first byte says which."""
    try:
        data = b"M" + marshal.dumps(part)
    except ValueError:
        data = b"P" + pickle.dumps(part, pickle.HIGHEST_PROTOCOL)
    out.write(data)


def read_half(data: bytes) -> dict:
    """What `write_half` wrote (ValueError, EOFError, TypeError or pickle's errors when it is not)."""
    kind, body = data[:1], memoryview(data)[1:]
    part = marshal.loads(body) if kind == b"M" else pickle.loads(body) if kind == b"P" else None
    if not isinstance(part, dict):
        raise ValueError("not a half's output")
    return part


def _ordered(events: list[list[tuple]]) -> Iterator[tuple[int, tuple]]:
    """Both halves' events in record order: (half, event). A record belongs to one half, so only
    the end of the capture has events of both, and there only attempts, which change nothing."""
    def keyed(h: int) -> Iterator[tuple[int, int, int, tuple]]:
        return ((e[0], h, k, e) for k, e in enumerate(events[h]))
    for _no, h, _k, e in heapq.merge(keyed(0), keyed(1)):
        yield h, e


def merge_half(pipe: "Pipeline", part: dict, spool: Spool) -> None:
    """Make `pipe` (half 0, finished) what one process would have after `finish()`."""
    assert pipe.shard_log is not None
    mine = pipe.shard_log.events
    if pipe.registered + part["registered"] > pipe.limits.max_handshakes:
        raise Abandoned("max_handshakes")
    if len(pipe.tls_docs) + len(part["tls"]) > _max_tls():
        raise Abandoned("tls_listed")
    ids: list[dict[int, int]] = [{}, {}]           # per half: its id -> the id one process gives
    local = [0, 0]
    attempts: list[tuple[int, int]] = []           # (half, its attempt index) of those kept
    seen_at = [0, 0]
    requests_to: dict[tuple, deque] = {}
    window = pipe.link_window_ns
    unlinked = 0
    for h, (_no, kind, source, addr, t) in _ordered([mine, part["events"]]):
        if kind == 0:               # Pipeline._register
            local[h] += 1
            ids[h][local[h]] = len(ids[0]) + len(ids[1]) + 1
            seen = requests_to.setdefault((source, addr), deque())
            seen.append(t)
            while seen and seen[0] < t - 2 * window:
                seen.popleft()
            if len(seen) > 4096:
                seen.popleft()
        else:                       # Pipeline._could_be_a_hop, when the attempt ended
            got = requests_to.get((source, addr))
            if got and any(t - window <= s <= t + 1_000_000 for s in got):
                attempts.append((h, seen_at[h]))
            else:
                unlinked += 1
            seen_at[h] += 1
    views = [v.with_id(ids[0][v.id]) for v in pipe.views]                 # type: ignore[index]
    views += [handshake_from_values(v, ids[1][v[0]]) for v, _loc in part["views"]]   # (requests: ids > 0)
    locs = pipe.view_locs + [(spool, *loc) for _v, loc in part["views"]]
    theirs = part["attempts"]
    pipe.attempt_views = [pipe.attempt_views[k] if h == 0 else handshake_from_values(theirs[k][0]) for h, k in attempts]
    pipe.attempt_locs = [pipe.attempt_locs[k] if h == 0 else (spool, *theirs[k][1]) for h, k in attempts]
    pipe.attempt_live = [None] * len(attempts)
    pipe.views, pipe.view_locs = views, locs
    for h, docs in ((0, pipe.tls_docs), (1, part["tls"])):
        for t in docs:
            t["handshakes"] = [ids[h][i] for i in t["handshakes"]]
    pipe.tls_docs += part["tls"]
    pipe.registered += part["registered"]
    pipe.next_id = pipe.registered + 1
    pipe.unlinked_attempts = unlinked
    pipe.flows_seen += part["flows"]
    for k, n in part["limits_hit"].items():
        pipe.limits_hit[k] = pipe.limits_hit.get(k, 0) + n
    pipe._extra_spools.append(spool)
    pipe.shard, pipe.shard_log = None, None


def _max_tls() -> int:
    from wscap.flow.connection import MAX_TLS_LISTED
    return MAX_TLS_LISTED
