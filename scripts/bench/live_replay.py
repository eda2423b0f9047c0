#!/usr/bin/env python3
"""Where wire -> line latency goes, without the load generators (issue #13).

Replays a classic pcap (e.g. the light burst's capture: `scripts/bench/live --scenarios light
--subjects default --keep`) through the real live path, `LiveLoop` + `FollowBackend`, in real
time: a writer thread stands in for wscap-capture, appending the records to a file at their
original pace in 10 ms batches (the capturer's block-retire timeout) and reporting a `flush`
watermark on a pipe after each batch. Timestamps are shifted to now, so a handshake line's
latency is the moment it is emitted minus its response's timestamp, split into:

* wire -> file: the response's timestamp to the batch holding it being written;
* file -> line: that write to the line (follower read, feed, ticks, garbage collection, and
  whatever else the analysis was busy with).

It also reports the pipeline's tick durations and garbage-collection pauses (CPU time of the
thread), and with --profile FILE a cProfile of the loop. No root, no namespaces; it measures the
analysis on whatever CPU this machine leaves it, so compare runs made side by side.

    PYTHONPATH=. python3 scripts/bench/live_replay.py /tmp/light-burst.pcap
"""
from __future__ import annotations

import argparse
import bisect
import collections
import gc
import json
import math
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from wscap.cli import live as live_cli  # noqa: E402
from wscap.capture.evidence import FollowBackend  # noqa: E402
from wscap.capture.live import LiveLoop  # noqa: E402


class ReplayWriter:
    """The writer side of FollowBackend's protocol (files, flush, poll, fileno, stop, wait)."""

    poll_interval = 0.1
    linktypes = [1]

    def __init__(self, src: str, out: str, block_ms: float = 10.0) -> None:
        with open(src, "rb") as f:
            data = f.read()
        if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            raise SystemExit(f"{src}: only little-endian classic pcap (µs or ns) is replayed")
        mul = 1 if data[:4] == b"\x4d\x3c\xb2\xa1" else 1000
        self.hdr = b"\xd4\xc3\xb2\xa1" + data[4:24]            # written back with µs timestamps
        ts, self.data, self.orig = [], [], []
        pos = 24
        while pos + 16 <= len(data):
            sec, frac, incl, orig = struct.unpack_from("<IIII", data, pos)
            ts.append((sec * 1_000_000_000 + frac * mul) // 1000)
            self.data.append(data[pos + 16:pos + 16 + incl])
            self.orig.append(orig)
            pos += 16 + incl
        start_us = time.time_ns() // 1000 + 300_000
        self.ts = [start_us + t - ts[0] for t in ts]           # plain lists: nothing for the GC to walk
        self.block_s = block_ms / 1000
        self.files = [(0, out)]
        self.flush: dict | None = None
        self.errors: list = []
        self.packets = 0
        self.ended = False
        self.end_reason: str | None = None
        self.stats: dict = {}
        self.batches: list[tuple[int, float]] = []             # (records written so far, wall time)
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._q: collections.deque = collections.deque()
        self._stop = False
        self._f = open(out, "wb")
        self._f.write(self.hdr)
        self._f.flush()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        i, n = 0, len(self.ts)
        while i < n and not self._stop:
            time.sleep(self.block_s)
            now_us = time.time_ns() // 1000
            buf = bytearray()
            while i < n and self.ts[i] <= now_us:
                t, d = self.ts[i], self.data[i]
                buf += struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(d), self.orig[i]) + d
                i += 1
            if buf:
                self._f.write(buf)
                self._f.flush()
                self.packets = i
                self.batches.append((i, time.time()))
            self._q.append({"ts": now_us * 1000, "file": 0, "offset": self._f.tell(), "packets": i})
            os.write(self._w, b"f")
        self._f.close()
        self.ended = True
        self.end_reason = "stopped"
        os.write(self._w, b"e")

    def fileno(self) -> int:
        return self._r

    def poll(self) -> list:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        events = []
        while self._q:
            self.flush = self._q.popleft()
            events.append(self.flush)
        return events

    def stop(self) -> None:
        self._stop = True

    def wait(self, timeout: float):
        self._t.join(timeout)
        return None if self._t.is_alive() else 0

    def kill(self) -> None:
        pass


def pct(vals: list[float], p: float) -> float:
    vals = sorted(vals)
    return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))] if vals else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap")
    ap.add_argument("--out", default=None, help="the followed file (default: a temporary file, removed)")
    ap.add_argument("--profile", help="write a cProfile of the loop here")
    ap.add_argument("--keep-seen", action="store_true",
                    help="keep the printed handshakes as `live --format text` does (10,000 documents)")
    opts = ap.parse_args()
    import tempfile
    tmp = None
    if opts.out is None:
        fd, tmp = tempfile.mkstemp(prefix="wscap-replay-", suffix=".pcap")
        os.close(fd)
    w = ReplayWriter(opts.pcap, opts.out or tmp)
    be = FollowBackend(w, "replay", 2 * 10 * 1_000_000 + 20_000_000)
    pipe = live_cli._make_pipeline(3.0, {})
    lat: list[tuple[int, float, float]] = []
    kinds: collections.Counter = collections.Counter()
    seen: dict = {}
    sink = open(os.devnull, "w")

    def on_event(ev) -> None:
        doc = ev.json
        sink.write(json.dumps({"type": ev.kind, ev.kind: doc}, separators=(",", ":")) + "\n")
        sink.flush()
        kinds[ev.kind] += 1
        if ev.kind == "handshake":
            if opts.keep_seen:
                seen[doc["id"]] = doc
                if len(seen) > 10000:
                    seen.pop(next(iter(seen)))
            if doc.get("response"):
                lat.append((doc["response"]["frame"], doc["response"]["ts"], time.time()))

    pauses: list[tuple[int, float]] = []
    started: dict = {}

    def on_gc(phase, info) -> None:
        if phase == "start":
            started["t"] = time.thread_time()
        else:
            pauses.append((info["generation"], (time.thread_time() - started["t"]) * 1000))

    ticks: list[float] = []
    tick = pipe.tick

    def timed_tick(ts):
        t = time.thread_time()
        out = tick(ts)
        ticks.append((time.thread_time() - t) * 1000)
        return out

    pipe.tick = timed_tick
    loop = LiveLoop(be, pipeline=pipe, on_event=on_event, duration=(w.ts[-1] - w.ts[0]) / 1e6 + 1.0,
                    shed_after_s=2.0)
    gc.freeze()                       # as live_cli does before its loop
    gc.callbacks.append(on_gc)
    c0 = time.process_time()
    try:
        if opts.profile:
            import cProfile
            cProfile.runctx("loop.run()", globals(), {"loop": loop}, opts.profile)
        else:
            loop.run()
    finally:
        gc.callbacks.remove(on_gc)
        if tmp:
            os.unlink(tmp)
    cpu = time.process_time() - c0
    written = [b[0] for b in w.batches]
    w2f, f2l, total = [], [], []
    for frame, ts, t_line in lat:
        t_file = w.batches[min(len(w.batches) - 1, bisect.bisect_left(written, frame))][1]
        w2f.append((t_file - ts) * 1000)
        f2l.append((t_line - t_file) * 1000)
        total.append((t_line - ts) * 1000)
    r = loop.result
    print(f"{opts.pcap}: {r.packets} frames, events {dict(kinds)}, process CPU {cpu:.2f} s (the writer thread "
          f"included), worst lag {r.lag_max_s:.3f} s, shed {r.shed}, load average {os.getloadavg()[0]:.1f}")
    for name, v in (("wire -> line", total), ("wire -> file", w2f), ("file -> line", f2l)):
        print(f"  {name}: p50 {pct(v, 50):.1f}  p90 {pct(v, 90):.1f}  p99 {pct(v, 99):.1f}  max {max(v or [0]):.1f} ms")
    print(f"  ticks: {len(ticks)}, {sum(ticks):.0f} ms CPU in all, longest {max(ticks or [0]):.1f} ms")
    for g in (0, 1, 2):
        d = [x for gg, x in pauses if gg == g]
        if d:
            print(f"  gc generation {g}: {len(d)} collections, {sum(d):.0f} ms CPU in all, longest {max(d):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
