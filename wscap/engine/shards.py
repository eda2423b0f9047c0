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
(`Abandoned`), as when the child fails (document/forking.py: start, wait, kill, its one line).
scripts/golden (`-j 2` forces this on every capture) and tests/test_shards.py hold the result to
one process's, byte for byte.
"""
from __future__ import annotations

import os
import pickle
import stat
import tempfile
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from wscap.document.spool import Spool
from wscap.document.forking import Child, may_fork, usable_cpus
from wscap.engine.merge import Abandoned, export_half, merge_half, read_half, write_half

if TYPE_CHECKING:
    from wscap.engine.core import Options, Pipeline

MIN_BYTES = 8 << 20         # smaller: no gain (bench small preset, 15 MB: 0.30 -> 0.27 s; 4 MB: 0.23 -> 0.22 s)


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


def wanted(paths: list[str], options: "Options") -> bool:
    """One regular, uncompressed capture file without TLS secrets; by default a large one on a
    machine with two usable CPUs (`-j 2`: any size; `-j 1`: never)."""
    asked = options.judge_processes
    if len(paths) != 1 or asked == 1 or options.keylog or not hasattr(os, "fork"):
        return False
    if not may_fork():
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


HalfFeeder = Callable[["Pipeline", str, int, Any, Callable[[], None] | None], dict]


ABANDONED = 3               # the child's exit status when a bound came near
OUT_OF_MEMORY = 4           # ... when its half did not fit (one process then tries, and says so if it fails)
INSTEAD = "the capture was analysed again in one process (same result)"


def run(path: str, options: "Options", feed_file: HalfFeeder, progress: Any) -> "Pipeline | None":
    """Analyse `path` in two halves and merge them; None when one process must do it instead
    (a bound came near, or the child failed: said on stderr)."""
    from wscap.engine.core import Pipeline

    def half(shard: int, spool: Spool | None, poll: Callable[[], None] | None) -> tuple[Pipeline, dict]:
        pipe = Pipeline(replace(options, stream=False))
        pipe.shard, pipe.shard_log = shard, ShardLog()
        if spool is not None:
            pipe.spool = spool
        source = feed_file(pipe, path, size, progress if shard == 0 else None, poll)
        pipe.finish()
        return pipe, source

    def other_half() -> int:
        """In the child: half 1, its legs and log written to `out`, its documents in `their_spool`."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)         # the parent reads the same records and says what there is to say
        try:
            pipe, _source = half(1, their_spool, None)
            write_half(export_half(pipe), out)
            out.flush()
            their_spool.flush()
            return 0
        except Abandoned:
            return ABANDONED
        except MemoryError:         # a resource bound too: not a failure to report (see OUT_OF_MEMORY)
            return OUT_OF_MEMORY
        except Exception as e:      # its one line, for the parent's message (stderr goes nowhere)
            out.seek(0)
            out.truncate()
            out.write(f"{type(e).__name__}: {e}".encode("utf-8", "replace")[:400])
            out.flush()
            return 1

    def poll() -> None:
        """Between records: stop early if the child has already given up (or died)."""
        if child is not None and child.poll() not in (None, 0):
            raise Abandoned("the other half stopped")

    try:
        size = os.stat(path).st_size       # both read this much, should the file still be growing
    except OSError:
        return None
    their_spool = Spool()
    out = tempfile.TemporaryFile()
    child = Child.start("the process analysing half of the flows", other_half)
    if child is None:
        out.close()
        their_spool.close()
        return None
    try:
        try:
            pipe, source = half(0, None, poll)
        except Abandoned:
            if child.status not in (None, 0, ABANDONED, OUT_OF_MEMORY):
                child.failed(INSTEAD)
            return None
        status = child.wait()
        if status != 0:
            if status not in (ABANDONED, OUT_OF_MEMORY):
                out.seek(0)
                said = out.read(400).decode("utf-8", "replace") if status == 1 else ""
                child.failed(INSTEAD, f"failed ({said})" if said else None)
            return None
        out.seek(0)
        try:
            part = read_half(out.read())
        except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
            child.failed(INSTEAD, f"left unreadable output ({e})")
            return None
        try:
            merge_half(pipe, part, their_spool)
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
