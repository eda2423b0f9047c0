"""One capture's flows in two processes: each feeds every record, keeps half of the flows.

`analyze` of one large capture spends most of its time on the flows it follows (reassembly,
heads, frames, each handshake's document), and a flow never needs another flow's packets until
linking. So a forked child keeps the flows whose ports' sum is odd and this process the others
(`Pipeline.shard`; the compiled record loop asks the same question, `_fastpath.c` decide()).
Both read the whole file: every record still moves each clock and is counted by each decoder
(this process's counts are the document's), and DNS is read by both (this process's is kept).

What one process would decide from flows of both halves is logged instead (`ShardLog`) and
decided at the merge, in record order, exactly as `Pipeline` would have:
- handshake ids: in the order the requests were registered, across both halves;
- a bare connection attempt is kept only when its address received a request within the link
  window, counted from requests registered before it ended (`Pipeline._could_be_a_hop`).
Linking does not depend on the order in which connections ended (`Assembly._canonical_order`).
Bounds counted over all flows (--max-flows, --max-handshakes, the TLS listing) cannot be split
exactly: when a half comes near one, both stop and the capture is analysed in one process
(`Abandoned`), as when the child fails. scripts/golden (`-j 2` forces this on every capture) and
tests/test_shards.py hold the result to one process's, byte for byte.
"""
from __future__ import annotations

import heapq
import os
import pickle
import signal
import stat
import sys
import tempfile
import threading
from collections import deque
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from wscap.document.spool import Spool

if TYPE_CHECKING:
    from wscap.engine.core import Options, Pipeline

MIN_BYTES = 32 << 20        # smaller captures: a second reader costs more than it saves


class Abandoned(Exception):
    """A bound counted over both halves came near: one process must analyse the capture."""


class ShardLog:
    """What a half saw that the merge decides across halves, in record order."""

    END = 1 << 62               # the record number of events at the end of the capture (finish)
    MAX_ATTEMPTS = 16384        # bare attempts a half keeps for the merge to decide on

    def __init__(self) -> None:
        # (record, 0, source, server address, request time) for a registered request;
        # (record, 1, source, client address, first time) for a bare attempt, as it ended.
        self.events: list[tuple[int, int, int, bytes, int]] = []
        self.attempts = 0

    def request(self, no: int, source: int, server: bytes, ts: int, registered: int, limit: int) -> None:
        if registered >= limit:
            raise Abandoned("max_handshakes")
        self.events.append((no, 0, source, server, ts))

    def attempt(self, no: int, source: int, client: bytes, first_ts: int) -> None:
        self.attempts += 1
        if self.attempts > self.MAX_ATTEMPTS:
            raise Abandoned("bare attempts")        # a SYN flood: one process drops them as they end
        self.events.append((no, 1, source, client, first_ts))

    @staticmethod
    def admitting(tracked: int, max_flows: int) -> None:
        """Both halves under half the bound: one process would never have evicted."""
        if tracked >= max_flows // 2:
            raise Abandoned("max_flows")

    @staticmethod
    def listed_tls(hits: dict[str, int]) -> None:
        if hits.get("tls_listed"):
            raise Abandoned("tls_listed")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def wanted(paths: list[str], options: "Options") -> bool:
    """One regular, uncompressed capture file without TLS secrets; by default a large one on a
    machine with two usable CPUs (`-j 2`: any size; `-j 1`: never)."""
    asked = options.judge_processes
    if len(paths) != 1 or asked == 1 or options.keylog or not hasattr(os, "fork"):
        return False
    if threading.active_count() != 1:
        return False                # fork copies only this thread
    try:
        st = os.stat(paths[0])
        if not stat.S_ISREG(st.st_mode):
            return False            # a pipe cannot be read twice
        with open(paths[0], "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return False        # gzip would be inflated twice
    except OSError:
        return False
    from wscap.engine.decrypt import has_embedded_secrets
    if has_embedded_secrets(paths[0]):
        return False
    return asked == 2 or (st.st_size >= MIN_BYTES and usable_cpus() >= 2)


HalfFeeder = Callable[["Pipeline", str, Any, Callable[[], None] | None], dict]


def run(path: str, options: "Options", feed_file: HalfFeeder, progress: Any) -> "Pipeline | None":
    """Analyse `path` in two halves and merge them; None when one process must do it instead
    (a bound came near, or the child failed: said on stderr)."""
    from wscap.engine.core import Pipeline

    def half(shard: int, spool: Spool | None) -> tuple[Pipeline, dict]:
        pipe = Pipeline(replace(options, stream=False))
        pipe.shard, pipe.shard_log = shard, ShardLog()
        if spool is not None:
            pipe.spool = spool
        source = feed_file(pipe, path, progress if shard == 0 else None, child.poll if shard == 0 else None)
        pipe.finish()
        return pipe, source

    their_spool = Spool()
    out = tempfile.TemporaryFile()
    try:
        pid = os.fork()
    except OSError:
        out.close()
        their_spool.close()
        return None
    if pid == 0:                    # the child: never returns into the caller's code
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)     # the parent reads the same records and says what there is to say
            try:
                pipe, _source = half(1, their_spool)
                pickle.dump(_export(pipe), out, pickle.HIGHEST_PROTOCOL)
                out.flush()
                their_spool.flush()
                code = 0
            except Abandoned:
                code = _Child.ABANDONED
        finally:
            os._exit(code)          # no atexit handlers, no flush of the parent's buffers
    child = _Child(pid)
    try:
        try:
            pipe, source = half(0, None)
        except Abandoned:
            if child.status not in (None, 0, _Child.ABANDONED):
                child.failed()
            return None
        status = child.wait()
        if status != 0:
            if status != _Child.ABANDONED:
                child.failed()
            return None
        out.seek(0)
        try:
            part = pickle.load(out)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
            child.failed(f"left unreadable output ({e})")
            return None
        try:
            merge(pipe, part, their_spool)
        except Abandoned:
            return None
        pipe.sources = [source]
        their_spool = None          # type: ignore[assignment]   # the pipeline reads it now
        return pipe
    finally:
        child.close()
        out.close()
        if their_spool is not None:
            their_spool.close()


class _Child:
    ABANDONED = 3           # its exit status when a bound came near

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None        # its exit status once reaped; -signal if killed

    def poll(self) -> None:
        """Between records: stop early if the child has already given up (or died)."""
        if self.status is not None:
            return
        pid, st = os.waitpid(self.pid, os.WNOHANG)
        if pid == self.pid and self._set(st) != 0:
            raise Abandoned("the other half stopped")

    def _set(self, st: int) -> int:
        self.status = os.waitstatus_to_exitcode(st)
        return self.status

    def wait(self) -> int:
        if self.status is None:
            while True:
                try:
                    return self._set(os.waitpid(self.pid, 0)[1])
                except InterruptedError:
                    continue
        return self.status

    def failed(self, how: str | None = None) -> None:
        st = self.status or 0
        how = how or (f"was killed by signal {-st}" if st < 0 else f"exited with status {st}")
        sys.stderr.write(f"wscap: the process analysing half of the flows {how}; the capture was analysed "
                         f"again in one process (same result)\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.pid and self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()


# -- the merge -----------------------------------------------------------------------------------
def _export(pipe: "Pipeline") -> dict:
    """What the child hands back: its legs (documents in its spool), its log, its counts."""
    assert pipe.shard_log is not None
    return {"views": list(zip(pipe.views, [loc[1:] for loc in pipe.view_locs])),
            "attempts": list(zip(pipe.attempt_views, [loc[1:] for loc in pipe.attempt_locs])),
            "events": pipe.shard_log.events, "registered": pipe.registered, "tls": pipe.tls_docs,
            "flows": pipe.flows_seen, "limits_hit": pipe.limits_hit}


def _ordered(events: list[list[tuple]]) -> Iterator[tuple[int, tuple]]:
    """Both halves' events in record order: (half, event). A record belongs to one half, so only
    the end of the capture has events of both, and there only attempts, which change nothing."""
    def keyed(h: int) -> Iterator[tuple[int, int, int, tuple]]:
        return ((e[0], h, k, e) for k, e in enumerate(events[h]))
    for _no, h, _k, e in heapq.merge(keyed(0), keyed(1)):
        yield h, e


def merge(pipe: "Pipeline", part: dict, spool: Spool) -> None:
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
    views = [replace(v, id=ids[0][v.id]) for v in pipe.views]                 # type: ignore[index]
    views += [replace(v, id=ids[1][v.id]) for v, _loc in part["views"]]      # (requests: ids > 0)
    locs = pipe.view_locs + [(spool, *loc) for _v, loc in part["views"]]
    theirs = part["attempts"]
    pipe.attempt_views = [pipe.attempt_views[k] if h == 0 else theirs[k][0] for h, k in attempts]
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
