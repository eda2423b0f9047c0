"""The analysis side of live capture: read the capture file(s) behind the C writer.

A C capturer (our `wscap-capture`, or tcpdump as the fallback) writes every
packet the kernel hands over to the `--write` file, or to a bounded spool, at
its own pace. This module follows those files as they grow and turns them back
into `RawFrame`s for the pipeline, so the file a user keeps never depends on
how fast Python analyses it: when the analysis falls behind, it reads later
(and, past `shed_after_s`, reads less), but the file is already complete.

Time: the writer reports "everything handed over before wall-clock T is in the
file before byte B" (`flush` events). Once the follower has read past B, T
minus the kernel's block-retire slack is a safe *capture-time watermark*: no
packet older than it can still arrive. The live loop decides answer timeouts
with that watermark, never with the wall clock, so a lagging analysis cannot
call `no-response` a handshake whose 101 is already in the file.
"""
from __future__ import annotations

import errno
import os
from collections import deque
from dataclasses import dataclass

from typing import Iterator

from wscap.model.raw import RawFrame
from wscap.wire.linklayer import ETH_IP4, ETH_IP6, RAW_IP, locate
from wscap.wire.pcapio import CaptureReader, RecordFilter

READ_CHUNK = 1 << 20


class PcapngStreamReader(CaptureReader):
    """The incremental reader the follower uses (wire/pcapio.py; pcap or pcapng, told by the first
    bytes): feed() bytes as they arrive, get numbered RawFrames; while `shedding`, records that
    `worth_at` rejects are skipped (counted in `.shed`)."""

    def __init__(self, no: int = 0, record_filter: RecordFilter | None = None) -> None:
        super().__init__(no, 0, record_filter, worth_at)


def stream_reader(first: bytes, no: int = 0, record_filter: RecordFilter | None = None) -> CaptureReader:
    """The incremental reader for a file starting with `first`; its frames are numbered from
    `no` + 1; `record_filter` is the pipeline's fast path."""
    return PcapngStreamReader(no, record_filter)


class FileFollower:
    """Reads a sequence of capture files (one, or a ring) as a writer appends to them.

    `add(seq, path)` announces each file in writing order; a file is left for the
    next one only when the next one has been announced (the writer closes a file
    before opening its successor) and this one is read to its end. A file that is
    gone before it was opened (ring or spool overwritten while the analysis lagged)
    is skipped and counted.
    """

    def __init__(self, delete_after_read: bool = False, record_filter: RecordFilter | None = None) -> None:
        self.record_filter = record_filter
        self._queue: deque[tuple[int, str]] = deque()
        self.delete_after_read = delete_after_read
        self.fd: int | None = None
        self.seq = -1
        self.path: str | None = None
        self.offset = 0                   # bytes of the current file consumed (parsed or buffered)
        self.reader: CaptureReader | None = None
        self.skipped_files: list[str] = []
        self.truncated: list[str] = []    # files that ended inside a record
        self.errors: list[str] = []
        self.linktype: int | None = None
        self.frames = 0                   # frames read so far, over every file: the next is frames + 1
        self.shedding = False             # see ShedState; applied by the readers, record by record
        self.shed = 0                     # records the readers skipped while shedding

    def add(self, seq: int, path: str) -> None:
        self._queue.append((seq, path))

    @property
    def has_next(self) -> bool:
        return bool(self._queue)

    def _open_next(self) -> bool:
        while self._queue:
            seq, path = self._queue.popleft()
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    self.skipped_files.append(path)
                    continue
                self.errors.append(f"{path}: {e.strerror}")
                continue
            self.fd, self.seq, self.path, self.offset, self.reader = fd, seq, path, 0, None
            return True
        return False

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            if self.reader is not None and self.reader.pending:
                self.truncated.append(self.path or "?")
            if self.delete_after_read and self.path:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        self.fd, self.reader = None, None

    def read(self, max_bytes: int = 4 * READ_CHUNK) -> list[RawFrame]:
        """Frames from whatever has been written since the last call (may be empty)."""
        return list(self.read_iter(max_bytes))

    def read_iter(self, max_bytes: int = 4 * READ_CHUNK) -> Iterator[RawFrame]:
        """The same, one frame at a time (consume it fully: the reader trims as it goes)."""
        got = 0
        while got < max_bytes:
            if self.fd is None and not self._open_next():
                break
            fd = self.fd
            assert fd is not None
            try:
                data = os.read(fd, min(READ_CHUNK, max_bytes - got))
            except OSError as e:
                self.errors.append(f"{self.path}: {e.strerror}")
                data = b""
            if not data:
                if self._queue:           # complete: its successor exists
                    self._close()
                    continue
                break
            got += len(data)
            self.offset += len(data)
            if self.reader is None:
                if len(data) < 4:
                    # Too early to tell the format: give the bytes back for the next call.
                    os.lseek(fd, -len(data), os.SEEK_CUR)
                    self.offset -= len(data)
                    break
                self.reader = stream_reader(data, self.frames, self.record_filter)
            reader = self.reader
            reader.shedding = self.shedding
            shed0, nerr = reader.shed, len(reader.errors)
            try:
                for f in reader.feed_iter(data):
                    self.frames = reader.no
                    yield f
                self.frames = reader.no
            finally:
                self.shed += reader.shed - shed0
            self.errors += [f"{self.path}: {m}" for m in reader.errors[nerr:]]
            if reader.stopped:
                if reader.format == "unknown":
                    # Not a capture at all: the writer is not what we think; follow nothing more.
                    self._queue.clear()
                    self._close()
                    break
                self._close()             # damaged: what came before it has been read
                continue
            if self.linktype is None and reader.linktype is not None:
                self.linktype = reader.linktype

    @property
    def at_end(self) -> bool:
        """Everything announced so far has been read (the writer may still append)."""
        return not self._queue and (self.fd is None or os.fstat(self.fd).st_size <= self.offset)

    def position(self) -> tuple[int, int]:
        """(file seq, bytes fully parsed in it): what the analysis has really seen."""
        pending = self.reader.pending if self.reader is not None else 0
        return self.seq, self.offset - pending

    def count_unread(self) -> int:
        """Records left in the files past the read position (for the loss count at the end).
        Counted with a copy of the reader that has no record filter: the pipeline is not asked."""
        todo: list[tuple[str, int, CaptureReader | None]] = []
        if self.fd is not None and self.path:
            todo.append((self.path, self.offset, self.reader.clone() if self.reader is not None else None))
        todo += [(p, 0, None) for _, p in self._queue]
        n = 0
        for path, off, reader in todo:
            try:
                f = open(path, "rb")
            except OSError:
                continue
            with f:
                f.seek(off)
                while True:
                    chunk = f.read(READ_CHUNK * 4)
                    if not chunk:
                        break
                    if reader is None:
                        reader = stream_reader(chunk)
                    n += len(reader.feed(chunk))
                    if reader.stopped:
                        break
        return n

    def close(self) -> None:
        self._close()
        while self._queue and self.delete_after_read:
            _, p = self._queue.popleft()
            try:
                os.unlink(p)
            except OSError:
                pass


# ---- shedding -------------------------------------------------------------------------------------

_HEAD_STARTS = (b"GET ", b"HTTP/", b"PRI ", b"CONNECT ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ",
                b"DELETE ", b"PATCH ")


def worth_analysing(f: RawFrame) -> bool:
    """Cheap test of whether a frame can matter to handshake analysis when it must be shed.

    Kept: anything that is not plain TCP (DNS, tunnels, fragments: rare and cheap),
    TCP SYN/FIN/RST (connection lifecycle: refusals, resets, closes), and TCP
    payloads that start like an HTTP head, a TLS handshake record or the HTTP/2
    preface. Dropped: everything else (bulk data, ACKs, WebSocket message
    traffic) — which is what a dev stack's load is made of.
    """
    return worth_at(f.data, 0, len(f.data), f.linktype)


def worth_at(d: bytes | bytearray, base: int, end: int, linktype: int) -> bool:
    """`worth_analysing` on a record still in the reader's buffer (d[base:end]): no copy."""
    loc = locate(linktype, d, base, end)
    if loc is None or loc[0] not in (RAW_IP, ETH_IP4, ETH_IP6):
        return True                         # unknown link, cut header, or not IP: cheap and rare
    off = loc[1]
    if end < off + 20:
        return True
    v = d[off] >> 4
    if v == 4:
        if d[off + 9] != 6 or d[off + 6] & 0x3F or d[off + 7]:
            return True                     # not TCP, or a fragment
        tcp = off + (d[off] & 0x0F) * 4
    elif v == 6:
        if d[off + 6] != 6:
            return True
        tcp = off + 40
    else:
        return True
    if end < tcp + 14:
        return True
    if d[tcp + 13] & 0x07:                  # FIN, SYN, RST
        return True
    pay = tcp + (d[tcp + 12] >> 4) * 4
    if pay >= end:
        return False                        # a bare ACK
    start = bytes(d[pay:min(pay + 8, end)])
    return start[:1] == b"\x16" or start.startswith(_HEAD_STARTS)


@dataclass
class ShedState:
    """Analysis shedding with hysteresis: on past `after_s` of lag, off below a quarter of it."""
    after_s: float
    active: bool = False
    shed: int = 0                   # frames not analysed because of shedding
    episodes: int = 0
    first_ts_ns: int | None = None  # capture-time span of what was shed
    last_ts_ns: int | None = None

    def update(self, lag_s: float) -> None:
        if self.after_s <= 0:
            return
        if not self.active and lag_s > self.after_s:
            self.active = True
            self.episodes += 1
        elif self.active and lag_s < self.after_s / 4:
            self.active = False

    def note(self, f: RawFrame) -> None:
        """One frame was shed."""
        self.shed += 1
        if self.first_ts_ns is None:
            self.first_ts_ns = f.ts_ns
        self.last_ts_ns = f.ts_ns
