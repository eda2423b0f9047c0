"""pcap / pcapng reading: an incremental reader (bytes in, RawFrames out); the record
builders every writer uses are wire/pcapbuild.py's.

One reader for `analyze` (capture/files.py), the live follower (capture/follow.py,
capture/live.py) and slice. It is sans-IO: callers read files, pipes or growing capture files and `feed()` the
bytes; the reader keeps the unfinished tail, so any chunking — a 1 MiB read, a
pipe's few bytes, one byte at a time — yields the same frames.

Reading is a tight loop over the buffer, not dpkt's readers: dpkt's pcap reader
costs ~5 s per million packets here, its pcapng reader takes the link type and
timestamp resolution from the first interface only, and both give float
timestamps. The pipeline's fast path (`record_filter(linktype) -> want(buf,
offset, caplen, frame_no, ts_ns)`) is asked about each record while it is still
in the buffer; records it answers False for are counted and never copied.

Damage never raises: reading stops, `errors` gets one line (without the file
name; the caller prefixes it) naming the frame, and every frame before the
damage has been yielded. `finish()` at the end of the input reports a record cut
short. Every size read from the file is bounded (MAX_RECORD, MAX_NAMES).
"""
from __future__ import annotations

import ipaddress
import os
import struct
from types import ModuleType
from typing import Callable, Iterator

from wscap.model.raw import RawFrame


FASTPATH_API = 9             # the calls below; _fastpath.c's API constant must match


def _load_fastpath() -> ModuleType | None:
    """The compiled record loop (wscap/wire/_fastpath.c), unless WSCAP_PURE is set (to anything but
    "" or "0") or it was not built (no compiler at install time): then the loops below run in Python,
    with the same results."""
    if os.environ.get("WSCAP_PURE", "") not in ("", "0"):
        return None
    try:
        from wscap.wire import _fastpath
    except ImportError:
        return None
    return _fastpath if getattr(_fastpath, "API", None) == FASTPATH_API else None   # a stale build: ignored


_fastpath = _load_fastpath()

MAX_RECORD = 1 << 18          # 256 KiB: larger records are corruption, not packets
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),        # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),           # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
BOM_LE, BOM_BE = b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"
MAX_NAMES = 10_000            # names read from Name Resolution Blocks, per file
MAX_NAME_LEN = 255            # bytes of one name (a DNS name is at most 253)

# want(buf, offset of the record's data, caplen, frame number, ts_ns) -> build a frame?
Want = Callable[[bytes, int, int, int, int], bool]
RecordFilter = Callable[[int], "Want | None"]
# worth(buf, start, end, linktype): may a record be analysed while shedding? (capture/follow.py)
Worth = Callable[[bytes, int, int, int], bool]


class Iface:
    """A pcapng interface: link type and timestamp units (ns = raw * mul // div + offset_ns)."""

    __slots__ = ("linktype", "snaplen", "mul", "div", "offset_ns", "name", "want")

    def __init__(self, linktype: int, snaplen: int, mul: int, div: int, offset_ns: int, name: str,
                 want: Want | None) -> None:
        self.linktype, self.snaplen, self.mul, self.div = linktype, snaplen, mul, div
        self.offset_ns, self.name, self.want = offset_ns, name, want


def idb_options(body: bytes, endian: str) -> tuple[int, int, int, str]:
    """if_tsresol (code 9), if_tsoffset (14), if_name (2) from an IDB's options ->
    (mul, div, offset_ns, name). Integers throughout: floats drift by hundreds of ns today."""
    mul, div = 1000, 1        # default: microseconds
    offset = 0
    name = ""
    i = 0
    while i + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, i)
        val = body[i + 4:i + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = val[0]
            if v & 0x80:
                mul, div = 1_000_000_000, 2 ** (v & 0x7F)
            elif v <= 9:
                mul, div = 10 ** (9 - v), 1
            else:
                mul, div = 1, 10 ** (v - 9)
        elif code == 14 and length == 8:
            offset = struct.unpack(endian + "q", val)[0] * 1_000_000_000
        elif code == 2:
            name = val.decode("utf-8", "replace")
        i += 4 + ((length + 3) & ~3)
    return mul, div, offset, name


class CaptureReader:
    """Incremental pcap/pcapng reader. `feed_iter(bytes)` yields RawFrames numbered from `no` + 1.

    The format is told by the first four bytes. pcap: µs or ns, either byte order. pcapng: any
    number of sections (either byte order), interfaces with their own link type, if_tsresol and
    if_tsoffset (RawFrame.iface is the interface id), Enhanced, Simple and obsolete Packet
    Blocks, Name Resolution Blocks (into `names`, bounded); other blocks are skipped.
    """

    def __init__(self, no: int = 0, source: int = 0, record_filter: RecordFilter | None = None,
                 worth: Worth | None = None) -> None:
        self.no = no                      # frames counted so far (records, kept or not)
        self.source = source
        self.record_filter = record_filter
        self.worth = worth                # used while `shedding`; records it rejects are counted in `shed`
        self.shedding = False
        self.shed = 0
        self.empty = 0                    # records that carry no bytes: counted, never built
        self.blocks = 0                   # records of any kind read (a work bound counts these)
        self.format = "unknown"           # pcap | pcapng once the first bytes are in
        self.bytes = 0                    # bytes fed
        self.nbytes = 0                   # captured bytes of the frames counted
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.linktype: int | None = None  # the first link type (pcap: the only one)
        self.linktypes: list[int] = []
        self.interfaces: list[str] = []
        self.names: dict[str, str] = {}   # ip -> name, from pcapng Name Resolution Blocks
        self.names_skipped = 0
        self.errors: list[str] = []
        self.stopped = False              # damage: nothing more is read
        self._buf = b""
        # pcap: a new chunk that completes the buffered record is not copied onto it. The record is
        # completed alone (`_buf`) and the chunk is read in place from `_rest` = (chunk, offset);
        # the logical buffer is `_buf + chunk[offset:]` (_whole() makes it one bytes again).
        # Only for a reader whose state nobody reads while its frames are being taken (read_frames
        # sets it; the live follower, which asks `pending` between feeds, does not).
        self.split_reads = False
        self._rest: tuple[bytes, int] | None = None
        self._pos0 = 0                    # where the next pcap loop starts in `_buf`
        self._count0 = no
        # pcap
        self._rec: struct.Struct | None = None
        self._ts_mult = 1000
        self._big = False
        self._want: Want | None = None
        # pcapng
        self._e = "<"
        self.ifaces: list[Iface] = []

    def set_record_filter(self, record_filter: RecordFilter | None) -> None:
        """Change the fast path's question mid-capture (live turns it on, and off at the drain):
        the link types already known are asked again."""
        self.record_filter = record_filter
        if self._rec is not None and self.linktype is not None:
            self._want = record_filter(self.linktype) if record_filter is not None else None
        for i in self.ifaces:
            i.want = record_filter(i.linktype) if record_filter is not None else None

    # -- state ---------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.linktype is not None

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record (or header) still buffered."""
        self._whole()
        return len(self._buf)

    def drop_pending(self) -> None:
        """Forget the unfinished record (its file was cut back to the last whole record)."""
        self._buf = b""
        self._rest = None

    def _whole(self) -> None:
        """One buffer again (a split chunk whose reading was not finished)."""
        if self._rest is not None:
            data, off = self._rest
            self._rest = None
            self._buf = self._buf + data[off:]

    @property
    def error(self) -> str | None:
        """The damage that stopped reading (None while reading goes on)."""
        return self.errors[-1] if self.stopped and self.errors else None

    @property
    def packets(self) -> int:
        return self.no - self._count0

    def _stop(self, msg: str) -> None:
        self.errors.append(msg)
        self.stopped = True

    def clone(self) -> CaptureReader:
        """A copy in the same state (format, interfaces, pending bytes) that only counts: no record
        filter, no shedding. To read ahead (how many records are left) without asking anyone."""
        self._whole()
        c = CaptureReader(self.no, self.source)
        for k, v in vars(self).items():
            setattr(c, k, list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
        c.record_filter = c._want = c.worth = None
        c.shedding = False
        c.ifaces = [Iface(i.linktype, i.snaplen, i.mul, i.div, i.offset_ns, i.name, None) for i in self.ifaces]
        return c

    # -- reading -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[RawFrame]:
        return list(self.feed_iter(data))

    def feed_iter(self, data: bytes) -> Iterator[RawFrame]:
        """Frames one at a time, so the fast path (record_filter) judges each record with the state
        every earlier frame has produced. Stop consuming at any point: the rest stays buffered.
        (Not a generator itself: the record loop is the only generator frame per record.)"""
        self.bytes += len(data)
        if self.stopped:
            return iter(())
        self._whole()
        if self.split_reads and self._buf and self.format == "pcap" and self._rec is not None and len(data) > 4096:
            need = self._completes(data)
            if need:
                # Complete the buffered record from the chunk's head; read the rest in place.
                self._buf = self._buf + data[:need]
                self._rest = (data if isinstance(data, bytes) else bytes(data), need)
                return self._pcap_split()
        buf = self._buf + data if self._buf else bytes(data)
        self._buf = buf
        if self.format == "unknown":
            if len(buf) < 4:
                return iter(())
            head = buf[:4]
            if head in PCAP_MAGICS:
                self.format = "pcap"
            elif head == PCAPNG_SHB:
                self.format = "pcapng"
            else:
                self._stop(f"not a pcap or pcapng capture (starts with {head.hex()})")
                return iter(())
        if self.format == "pcap":
            if self._rec is None and not self._pcap_header():
                return iter(())
            return self._pcap()
        return self._pcapng()

    def _completes(self, data: bytes) -> int:
        """Bytes of `data` that finish the one unfinished pcap record buffered; 0 when that is not
        the case (more than one record buffered, a corrupt length, or the record needs more)."""
        buf = self._buf
        head = buf[:16] if len(buf) >= 16 else buf + data[:16 - len(buf)]
        if len(head) < 16:
            return 0
        caplen = self._rec.unpack_from(head)[2]  # type: ignore[union-attr]
        need = 16 + caplen - len(buf)
        return need if caplen <= MAX_RECORD and 0 < need <= len(data) else 0

    def _pcap_split(self) -> Iterator[RawFrame]:
        yield from self._pcap()                  # the completed record, alone
        if self._rest is None or self.stopped:   # (read further by someone else / damage)
            return
        if self._buf:                            # not consumed: should not happen; keep it exact
            self._whole()
            yield from self._pcap()
            return
        self._buf, self._pos0 = self._rest
        self._rest = None
        yield from self._pcap()

    def finish(self) -> None:
        """The input ended: say what was left unfinished (a record cut short, an empty input)."""
        self._whole()
        if self.stopped:
            return
        buf = self._buf
        if self.format == "unknown":
            self._stop(f"not a pcap or pcapng capture (starts with {buf.hex()})" if buf else "empty file")
        elif self.format == "pcap":
            if self._rec is None:
                self._stop("pcap global header truncated")
            elif buf:
                n = self.packets
                self._stop(f"frame {n + 1}: record truncated ({len(buf)} bytes left at the end of the file); "
                           f"analysed the {n} complete frames before it")
        elif buf:
            self._pcapng_tail(buf)

    def _pcap_header(self) -> bool:
        buf = self._buf
        if len(buf) < 24:
            return False
        endian, self._ts_mult = PCAP_MAGICS[buf[:4]]
        _vmaj, _vmin, _zone, _sig, _snaplen, linktype = struct.unpack_from(endian + "HHiIII", buf, 4)
        linktype &= 0x0FFFFFFF  # upper bits carry FCS info on some writers
        self.linktype = linktype
        self.linktypes.append(linktype)
        self._want = self.record_filter(linktype) if self.record_filter is not None else None
        self._rec = struct.Struct(endian + "IIII")
        self._big = endian == ">"
        self._buf = buf[24:]
        return True

    def _pcap(self) -> Iterator[RawFrame]:
        want = self._want
        fast = getattr(want, "fast", None)
        if _fastpath is not None and (want is None or fast is not None) and not (self.shedding and self.worth):
            return self._pcap_c(fast)
        return self._pcap_py()

    def _corrupt_pcap_record(self, no: int, caplen: int) -> None:
        n = no - self._count0
        self._stop(f"frame {n + 1}: corrupt record header (captured length {caplen}); "
                   f"stopped reading, {n} frames analysed")

    def _pcap_c(self, fast: tuple | None) -> Iterator[RawFrame]:
        """_pcap_py's loop in C: it returns at each record that becomes a frame."""
        buf = self._buf
        scan = _fastpath.pcap_scan  # type: ignore[union-attr]
        big, ts_mult, lt, source = self._big, self._ts_mult, self.linktype or 0, self.source
        no, nbytes, first, last = self.no, self.nbytes, self.first_ts, self.last_ts
        no0, empty, pos = no, 0, self._pos0
        self._pos0 = 0
        try:
            while True:
                st, pos, no, nbytes, first, last, e, frame = scan(
                    buf, pos, big, ts_mult, fast, no, nbytes, first, last, lt, source)
                empty += e
                if st == 1:
                    yield frame             # RawFrame(no, ts, lt, the record's bytes, wirelen, 0, source)
                elif st == 0:
                    break
                else:
                    self._corrupt_pcap_record(no, self._rec.unpack_from(buf, pos)[2])  # type: ignore[union-attr]
                    break
        finally:
            self._pcap_done(buf, pos, no - no0, empty, no, nbytes, first, last)

    def _pcap_done(self, buf: bytes, pos: int, records: int, empty: int, no: int, nbytes: int,
                   first: int | None, last: int | None) -> None:
        """Where either pcap loop stopped (finished, damaged, or its consumer stopped iterating):
        its counters back on the reader, the unread tail kept."""
        self.blocks += records
        self.empty += empty
        self.no, self.nbytes, self.first_ts, self.last_ts = no, nbytes, first, last
        if pos:
            self._buf = buf[pos:]

    def _pcap_py(self) -> Iterator[RawFrame]:
        # The per-record hot loop of `analyze`: locals only, one unpack per record.
        buf = self._buf
        unpack_from = self._rec.unpack_from  # type: ignore[union-attr]
        ts_mult = self._ts_mult
        lt = self.linktype or 0
        want = self._want
        worth = self.worth if self.shedding else None     # set between feeds, never during one
        source = self.source
        no, nbytes, first, last = self.no, self.nbytes, self.first_ts, self.last_ts
        no0, empty = no, 0
        blen = len(buf)
        pos = self._pos0
        self._pos0 = 0
        try:
            while blen - pos >= 16:
                sec, frac, caplen, wirelen = unpack_from(buf, pos)
                if caplen > MAX_RECORD:
                    self._corrupt_pcap_record(no, caplen)
                    break
                start = pos + 16
                end = start + caplen
                if end > blen:
                    break
                pos = end
                no += 1
                ts = sec * 1_000_000_000 + frac * ts_mult
                if first is None:
                    first = ts
                last = ts
                nbytes += caplen
                if not caplen:
                    empty += 1                # carries nothing: counted, never decoded
                elif want is None or want(buf, start, caplen, no, ts):
                    if worth is not None and not worth(buf, start, end, lt):
                        self.shed += 1
                        continue
                    yield RawFrame(no, ts, lt, buf[start:end], wirelen, 0, source)
        finally:
            self._pcap_done(buf, pos, no - no0, empty, no, nbytes, first, last)

    # -- pcapng --------------------------------------------------------------------------------
    def _iface_specs(self) -> tuple | None:
        """The interfaces as _fastpath.pcapng_scan reads them: (linktype, mul, div, offset_ns, spec),
        spec = the pipeline's fast spec, None (no filter) or False (a Python filter: its packets stay
        here). None when no interface can be read in C."""
        out = []
        for i in self.ifaces:
            fast = getattr(i.want, "fast", None)
            out.append((i.linktype, i.mul, i.div, i.offset_ns, None if i.want is None else fast or False))
        return tuple(out) if any(o[4] is not False for o in out) else None

    def _pcapng(self) -> Iterator[RawFrame]:
        buf = self._buf
        n = len(buf)
        pos = 0
        scan = _fastpath.pcapng_scan if _fastpath is not None else None
        seen: tuple | None = None     # (interface list, its length, filter) the specs were made from
        specs = None
        try:
            while not self.stopped and n - pos >= 8:
                if scan is not None and not (self.shedding and self.worth):
                    # Enhanced Packet Blocks in C, up to the next frame or a block for the code below.
                    if seen is None or seen[0] is not self.ifaces or seen[1] != len(self.ifaces) \
                            or seen[2] is not self.record_filter:
                        seen = (self.ifaces, len(self.ifaces), self.record_filter)
                        specs = self._iface_specs()
                    if specs is not None:
                        st, pos, self.no, self.nbytes, self.first_ts, self.last_ts, e, b, start, caplen, wirelen, ts, \
                            ifid = scan(buf, pos, self._e == ">", specs, self.no, self.nbytes, self.first_ts,
                                        self.last_ts)
                        self.empty += e
                        self.blocks += b
                        if st == 1:
                            yield RawFrame(self.no, ts, self.ifaces[ifid].linktype, buf[start:start + caplen],
                                           wirelen, ifid, self.source)
                            continue
                        if st == 0 or n - pos < 8:
                            break
                frame = self.packets + 1
                if buf[pos:pos + 4] == PCAPNG_SHB:
                    if n - pos < 12:
                        break
                    bom = buf[pos + 8:pos + 12]
                    if bom not in (BOM_LE, BOM_BE):
                        self._stop(f"frame {frame}: corrupt section header (byte-order magic {bom.hex()})")
                        break
                    self._e = "<" if bom == BOM_LE else ">"
                    blen = struct.unpack_from(self._e + "I", buf, pos + 4)[0]
                    if blen < 28 or blen > MAX_RECORD or blen % 4:
                        self._stop(f"frame {frame}: corrupt section header length {blen}")
                        break
                    if n - pos < blen:
                        break
                    pos += blen
                    self.ifaces = []   # a new section resets the interface list
                    continue
                btype, blen = struct.unpack_from(self._e + "II", buf, pos)
                if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                    self._stop(f"frame {frame}: corrupt block (type {btype:#x}, length {blen}); "
                               f"stopped reading, {frame - 1} frames analysed")
                    break
                if n - pos < blen:
                    break
                start = pos
                pos += blen
                self.blocks += 1
                if btype in (6, 2, 3):
                    f = self._packet(btype, buf, start, blen)
                    if f is not None:
                        yield f
                elif btype == 1:
                    self._idb(buf, start, blen)
                elif btype == 4:
                    self._nrb(buf[start + 8:start + blen - 4])
                # Statistics, custom blocks...: not packets, not counted.
        finally:
            if pos:
                self._buf = buf[pos:]

    def _pcapng_tail(self, buf: bytes) -> None:
        """What the input's end cut in a pcapng (messages name the frame that was lost)."""
        frame = self.packets + 1
        if len(buf) < 8:
            self._stop(f"frame {frame}: block header truncated at the end of the file")
        elif buf[:4] == PCAPNG_SHB:
            if len(buf) < 12:
                self._stop(f"frame {frame}: corrupt section header (byte-order magic {buf[8:12].hex()})")
            else:
                self._stop("section header truncated")
        else:
            blen = struct.unpack_from(self._e + "I", buf, 4)[0]
            self._stop(f"frame {frame}: block truncated ({len(buf)} of {blen} bytes at the end of the file); "
                       f"analysed the {frame - 1} complete frames before it")

    def _idb(self, buf: bytes, start: int, blen: int) -> None:
        e = self._e
        if blen - 12 < 8:
            self._stop("interface block too short")
            return
        linktype, _res, snaplen = struct.unpack_from(e + "HHI", buf, start + 8)
        mul, div, offset, name = idb_options(buf[start + 16:start + blen - 4], e)
        want = self.record_filter(linktype) if self.record_filter is not None else None
        self.ifaces.append(Iface(linktype, snaplen, mul, div, offset, name, want))
        if self.linktype is None:
            self.linktype = linktype
        if linktype not in self.linktypes:
            self.linktypes.append(linktype)
        self.interfaces.append(name or f"if{len(self.ifaces) - 1}")

    def _packet(self, btype: int, buf: bytes, start: int, blen: int) -> RawFrame | None:
        e = self._e
        body = start + 8
        size = blen - 12                          # the block's body (without the trailing length)
        frame = self.packets + 1
        if btype == 3:                            # Simple Packet Block: interface 0, no timestamp
            if not self.ifaces or size < 4:
                self.no += 1
                return None
            wirelen = struct.unpack_from(e + "I", buf, body)[0]
            iface = self.ifaces[0]
            caplen = min(wirelen, iface.snaplen or wirelen, size - 4)
            self.no += 1
            self.nbytes += caplen
            return RawFrame(self.no, self.last_ts or 0, iface.linktype, buf[body + 4:body + 4 + caplen],
                            wirelen, 0, self.source)
        if size < 20:
            self._stop(f"frame {frame}: packet block too short")
            return None
        if btype == 6:                            # Enhanced Packet Block
            ifid, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(e + "IIIII", buf, body)
        else:                                     # obsolete Packet Block
            ifid, _drops, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(e + "HHIIII", buf, body)
        if ifid >= len(self.ifaces):
            self.errors.append(f"frame {frame}: packet names interface {ifid}, which was never described")
            self.no += 1
            return None
        if caplen > size - 20:
            self._stop(f"frame {frame}: packet length {caplen} exceeds its block")
            return None
        iface = self.ifaces[ifid]
        ts = ((ts_hi << 32) | ts_lo) * iface.mul // iface.div + iface.offset_ns
        self.no += 1
        self.nbytes += caplen
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        data = body + 20
        if not caplen:
            self.empty += 1                   # carries nothing: counted, never decoded
            return None
        want = iface.want
        if want is not None and not want(buf, data, caplen, self.no, ts):
            return None
        lt = iface.linktype
        if self.shedding and self.worth is not None and not self.worth(buf, data, data + caplen, lt):
            self.shed += 1
            return None
        return RawFrame(self.no, ts, lt, buf[data:data + caplen], wirelen, ifid, self.source)

    def _nrb(self, body: bytes) -> None:
        """ipv4/ipv6 records of a Name Resolution Block into `names`. As in Wireshark, the last name of
        a record is the address's name and a later record overrides an earlier one. The block is
        whoever wrote the file's word: bounded (MAX_NAMES, MAX_NAME_LEN), and a malformed record
        ends the block's reading, counted, never raised."""
        e = self._e
        i = 0
        while i + 4 <= len(body):
            rtype, rlen = struct.unpack_from(e + "HH", body, i)
            if rtype == 0:
                return                        # nrb_record_end (options follow: not needed)
            val = body[i + 4:i + 4 + rlen]
            if len(val) < rlen:
                self.names_skipped += 1       # a record longer than its block
                return
            i += 4 + ((rlen + 3) & ~3)
            size = 4 if rtype == 1 else 16 if rtype == 2 else 0
            if not size:
                continue                      # a record type this reader does not know: skip it
            if rlen < size + 2 or val[-1] != 0:
                self.names_skipped += 1
                continue
            ip = str(ipaddress.ip_address(val[:size]))
            last = [n for n in val[size:-1].split(b"\0") if n][-1:] or [b""]
            raw = last[0]
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.names_skipped += 1
                continue
            if not name or len(raw) > MAX_NAME_LEN or not name.isprintable():
                self.names_skipped += 1
                continue
            if ip not in self.names and len(self.names) >= MAX_NAMES:
                self.names_skipped += 1
                continue
            self.names[ip] = name
