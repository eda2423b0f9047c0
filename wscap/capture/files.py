"""Capture files -> RawFrame stream (pcap, pcapng, gzip), streamed in bounded memory.

Both formats are read with a tight record loop over 1 MiB chunks instead of
dpkt's readers: dpkt's pcap reader costs ~5 s per million packets here and its
pcapng reader takes the link type and timestamp resolution from the first
interface only. Problems in the file (a record cut short, an absurd length, a
corrupt block) never raise: reading stops, `ReadResult.errors` gets one line
naming the file and frame, and every frame before the problem has already been
yielded.
"""
from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from ..model import RawFrame

CHUNK = 1 << 20
MAX_RECORD = 1 << 18          # 256 KiB: larger records are corruption, not packets
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),        # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),           # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
MAX_NAMES = 10_000            # names read from Name Resolution Blocks, per file
MAX_NAME_LEN = 255            # bytes of one name (a DNS name is at most 253)
# Work per gzip input. Records, not bytes, are what cost time (each one is a turn of the record
# loop and usually a decode), and deflate cannot make a record smaller than a fraction of a byte
# unless records repeat exactly, timestamps included - which real captures never do. A ratio of
# decompressed to compressed *bytes* would refuse real captures of zero-filled payloads; records
# per compressed byte does not. Checked only once an input has given this many records:
GZIP_WORK_FLOOR = 1_000_000
GZIP_NOTICE_BYTES = 1 << 30   # one notice line once a gzip input has inflated this much...
GZIP_NOTICE_RATIO = 64        # ... at least this many times its compressed size


@dataclass(slots=True)
class ReadResult:
    """What the reader learned about the file, filled in while frames stream out."""

    path: str
    format: str = "unknown"
    packets: int = 0
    bytes: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    linktypes: list[int] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)   # ip -> name, from pcapng Name Resolution Blocks
    names_skipped: int = 0    # NRB records not used: malformed, too long, not UTF-8, or over MAX_NAMES
    empty_records: int = 0    # records that carry no bytes: counted (in `packets` too), never decoded
    limits_hit: dict[str, int] = field(default_factory=dict)   # bounds the reader hit (the pipeline adds them up)
    notices: list[str] = field(default_factory=list)   # lines for stderr that are not problems (a slow input)
    notify: object = None     # callable(str): say a notice at once, while the input is still being read

    @property
    def complete(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        return {
            "path": self.path, "format": self.format, "packets": self.packets,
            "bytes": self.bytes,
            "first_ts": _sec(self.first_ts_ns), "last_ts": _sec(self.last_ts_ns),
            "linktypes": self.linktypes, "interfaces": self.interfaces,
            "complete": self.complete, "errors": self.errors,
            "names": self.names, "names_skipped": self.names_skipped,
            # Added in 1.x, present only when there were some (older documents stay byte-identical).
            **({"empty_records": self.empty_records} if self.empty_records else {}),
        }


def _sec(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e9, 6)


class _Gunzip(io.RawIOBase):
    """Incremental gzip reader that keeps what it decompressed before damage.

    `gzip.GzipFile.read(n)` raises at a cut or corrupt stream and drops the
    bytes it had already decompressed for that call, so a capture cut inside
    its gzip stream would lose up to a whole chunk of good frames. This reader
    returns every byte it could decompress, then reports end of file and keeps
    the problem in `error`. Output is produced in bounded steps (no
    decompression bomb), and concatenated gzip members are followed.
    """

    STEP = 1 << 16          # decompressed bytes per step
    IN_STEP = 1 << 13       # compressed bytes per step

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self.f = f
        self.d = zlib.decompressobj(31)
        self.carry = b""                 # compressed bytes not yet given to the decompressor
        self.out = bytearray()
        self.in_member = False
        self.done = False
        self.error: str | None = None
        self.in_bytes = 0                # compressed bytes read from the file
        self.out_bytes = 0               # bytes decompressed

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self.f.close()
        finally:
            super().close()

    def _fill(self, want: int) -> None:
        while len(self.out) < want and not self.done:
            data = self.d.unconsumed_tail or self.carry
            self.carry = b""
            if not data:
                # Small input steps: a corrupt stream loses at most this much before the damage.
                data = self.f.read(self.IN_STEP)
                self.in_bytes += len(data)
            if not data:
                self.done = True
                if self.in_member:
                    self.error = "gzip stream cut short"
                return
            if not self.in_member and not data.lstrip(b"\0"):
                continue                 # zero padding after the last member
            self.in_member = True
            try:
                got = self.d.decompress(data, self.STEP)
                self.out += got
                self.out_bytes += len(got)
            except zlib.error as e:
                self.done = True
                self.error = f"corrupt gzip data ({e})"
                return
            if self.d.eof:                # member complete (CRC and length checked by zlib)
                self.carry = self.d.unused_data
                self.d = zlib.decompressobj(31)
                self.in_member = False

    def readinto(self, b) -> int:  # type: ignore[override]
        n = len(b)
        self._fill(n)
        k = min(n, len(self.out))
        b[:k] = self.out[:k]
        del self.out[:k]
        return k


class _GzipWork:
    """The work bound of one gzip input (see GZIP_WORK_FLOOR), checked once per read chunk."""

    def __init__(self, gz: _Gunzip, per_kib: int, path: str, result: ReadResult) -> None:
        self.gz, self.per_kib, self.path, self.result = gz, per_kib, path, result
        self.noticed = False

    def over(self, records: int, frames: int | None = None) -> bool:
        """`records`: records (pcapng: blocks) read so far; `frames`: frames among them."""
        gz, res = self.gz, self.result
        frames = records if frames is None else frames
        if records >= GZIP_WORK_FLOOR and records * 1024 > self.per_kib * max(gz.in_bytes, 1):
            res.limits_hit["gzip_records"] = res.limits_hit.get("gzip_records", 0) + 1
            res.errors.append(
                f"{self.path}: frame {frames + 1}: {records:,} records from {_size(gz.in_bytes)} of gzip "
                f"(more than {self.per_kib:,} per compressed KiB, --max-gzip-records-per-kib): built to "
                f"multiply work, not a capture; stopped reading, {frames} frames analysed")
            return True
        if not self.noticed and gz.out_bytes >= GZIP_NOTICE_BYTES \
                and gz.out_bytes >= GZIP_NOTICE_RATIO * max(gz.in_bytes, 1):
            self.noticed = True
            line = (f"{self.path}: {_size(gz.out_bytes)} decompressed from {_size(gz.in_bytes)} of gzip so far "
                    f"({records:,} records); still reading")
            res.notices.append(line)
            if callable(res.notify):
                res.notify(line)
        return False


def _size(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


def open_capture(path: str) -> BinaryIO:
    """Open a capture, transparently un-gzipping `.gz` (detected by magic, not name)."""
    # peek, not seek: a FIFO or /dev/stdin cannot seek (the CLI spools those; a caller may not).
    f = open(path, "rb")
    magic = f.peek(2)[:2]
    if magic == b"\x1f\x8b":
        return io.BufferedReader(_Gunzip(f), CHUNK)  # type: ignore[return-value]
    return f


def read_frames(path: str, result: ReadResult, source: int = 0,
                stream: BinaryIO | None = None, record_filter=None,
                gzip_records_per_kib: int | None = None) -> Iterator[RawFrame]:
    """Yield every frame of a pcap/pcapng file (or an already open stream, e.g. a pipe).

    A gzip input that gives more than `gzip_records_per_kib` records per KiB of compressed
    input (default: Limits().gzip_records_per_kib) stops being read once it has given
    GZIP_WORK_FLOOR records: one error line, `limits_hit["gzip_records"]`. Records that carry no
    bytes are counted (`empty_records`) and never yielded.

    `record_filter(linktype) -> want(buf, offset, caplen, frame_no, ts_ns) -> bool`, when
    given, lets the consumer account for a pcap record straight from the read buffer; records
    it answers False for are counted but never turned into a RawFrame (the fast path).
    """
    own = stream is None
    if stream is None:
        try:
            f = open_capture(path)
        except FileNotFoundError:
            result.errors.append(f"{path}: no such file")
            return
        except OSError as e:
            result.errors.append(f"{path}: cannot open: {e.strerror or e}")
            return
    else:
        f = stream
    n_errors = len(result.errors)
    gz_raw = getattr(f, "raw", None)
    work = None
    if isinstance(gz_raw, _Gunzip):
        if gzip_records_per_kib is None:
            from ..limits import Limits
            gzip_records_per_kib = Limits().gzip_records_per_kib
        if gzip_records_per_kib:
            work = _GzipWork(gz_raw, gzip_records_per_kib, path, result)
    try:
        try:
            head = _read_exact(f, 4)
        except (OSError, EOFError) as e:
            result.errors.append(f"{path}: cannot read: {e}")
            return
        if head in PCAP_MAGICS:
            result.format = "pcap"
            yield from _read_pcap(f, head, path, result, source, record_filter, work)
        elif head == PCAPNG_SHB:
            result.format = "pcapng"
            yield from _read_pcapng(f, head, path, result, source, work)
        elif not head:
            result.errors.append(f"{path}: empty file")
        else:
            result.errors.append(f"{path}: not a pcap or pcapng capture (starts with {head.hex()})")
    except (gzip.BadGzipFile, zlib.error) as e:
        result.errors.append(f"{path}: frame {result.packets + 1}: corrupt gzip data ({e}); "
                             f"stopped reading, {result.packets} frames analysed")
    except EOFError as e:
        result.errors.append(f"{path}: frame {result.packets + 1}: gzip stream cut short ({e}); "
                             f"analysed the {result.packets} complete frames before it")
    except (OSError, struct.error, ValueError) as e:
        result.errors.append(f"{path}: frame {result.packets + 1}: read error: {e}")
    finally:
        gz = getattr(f, "raw", None)
        if isinstance(gz, _Gunzip) and gz.error:
            # The damaged gzip stream is the one problem; a record cut by it is a consequence.
            del result.errors[n_errors:]
            result.errors.append(f"{path}: frame {result.packets + 1}: {gz.error}; "
                                 f"analysed the {result.packets} complete frames before it")
        if own:
            f.close()


def _read_exact(f: BinaryIO, n: int) -> bytes:
    out = f.read(n)
    while len(out) < n:
        more = f.read(n - len(out))
        if not more:
            break
        out += more
    return out


def _read_pcap(f: BinaryIO, magic: bytes, path: str, result: ReadResult,
               source: int, record_filter=None, work: _GzipWork | None = None) -> Iterator[RawFrame]:
    endian, ts_mult = PCAP_MAGICS[magic]
    rest = _read_exact(f, 20)
    if len(rest) < 20:
        result.errors.append(f"{path}: pcap global header truncated")
        return
    _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
    linktype &= 0x0FFFFFFF  # upper bits carry FCS info on some writers
    result.linktypes.append(linktype)
    want = record_filter(linktype) if record_filter is not None else None
    rec = struct.Struct(endian + "IIII")
    unpack_from = rec.unpack_from
    buf = b""
    pos = 0
    no = 0
    nbytes = 0
    empty = 0
    first = last = None
    stream_read = f.read
    # Chunked loop: two f.read() calls per record cost more than the parsing itself.
    try:
        while True:
            if work is not None and work.over(no):
                result.packets, result.bytes, result.empty_records = no, nbytes, empty
                _finish(result, first, last)
                return
            chunk = stream_read(CHUNK)
            if not chunk:
                break
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            pos = 0
            blen = len(buf)
            while blen - pos >= 16:
                sec, frac, caplen, wirelen = unpack_from(buf, pos)
                if caplen > MAX_RECORD:
                    result.packets, result.bytes = no, nbytes
                    result.errors.append(
                        f"{path}: frame {no + 1}: corrupt record header (captured length {caplen}); "
                        f"stopped reading, {no} frames analysed")
                    _finish(result, first, last)
                    return
                end = pos + 16 + caplen
                if end > blen:
                    break
                no += 1
                ts = sec * 1_000_000_000 + frac * ts_mult
                if first is None:
                    first = ts
                last = ts
                nbytes += caplen
                if not caplen:
                    empty += 1                # carries nothing: counted, never decoded
                elif want is None or want(buf, pos + 16, caplen, no, ts):
                    yield RawFrame(no, ts, linktype, buf[pos + 16:end], wirelen, 0, source)
                pos = end
    except BaseException:
        # Interrupted (damaged gzip data, a read error): count what was yielded before re-raising.
        result.packets, result.bytes, result.empty_records = no, nbytes, empty
        _finish(result, first, last)
        raise
    result.packets, result.bytes, result.empty_records = no, nbytes, empty
    if len(buf) - pos > 0:
        result.errors.append(
            f"{path}: frame {no + 1}: record truncated ({len(buf) - pos} bytes left at the end "
            f"of the file); analysed the {no} complete frames before it")
    _finish(result, first, last)


def _finish(result: ReadResult, first: int | None, last: int | None) -> None:
    if first is not None:
        result.first_ts_ns = first if result.first_ts_ns is None else min(first, result.first_ts_ns)
        result.last_ts_ns = last if result.last_ts_ns is None else max(last or 0, result.last_ts_ns)


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    ts_mul: int                # ns = raw * ts_mul // ts_div, in integers: floats drift by
    ts_div: int                # hundreds of ns at today's epoch values
    tsoffset_ns: int
    name: str


def _idb_options(body: bytes, endian: str) -> tuple[int, int, int, str]:
    """if_tsresol (code 9), if_tsoffset (14), if_name (2) from an IDB's options."""
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


def _read_pcapng(f: BinaryIO, first4: bytes, path: str, result: ReadResult,
                 source: int, work: _GzipWork | None = None) -> Iterator[RawFrame]:
    reader = io.BufferedReader(f, CHUNK) if not isinstance(f, io.BufferedReader) else f  # type: ignore[arg-type]
    pending = first4
    endian = "<"
    ifaces: list[_Iface] = []
    no = 0
    nbytes = 0
    empty = 0
    blocks = 0
    first = last = None
    try:
        while True:
            blocks += 1
            if work is not None and not blocks & 0xFFFF and work.over(blocks, no):
                break
            hdr = pending + _read_exact(reader, 8 - len(pending))
            pending = b""
            if not hdr:
                break
            if len(hdr) < 8:
                result.errors.append(f"{path}: frame {no + 1}: block header truncated at the end of the file")
                break
            btype_raw = hdr[:4]
            if btype_raw == PCAPNG_SHB:
                bom = _read_exact(reader, 4)
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    result.errors.append(f"{path}: frame {no + 1}: corrupt section header (byte-order magic {bom.hex()})")
                    break
                blen = struct.unpack(endian + "I", hdr[4:8])[0]
                if blen < 28 or blen > MAX_RECORD or blen % 4:
                    result.errors.append(f"{path}: frame {no + 1}: corrupt section header length {blen}")
                    break
                rest = _read_exact(reader, blen - 12)
                if len(rest) < blen - 12:
                    result.errors.append(f"{path}: section header truncated")
                    break
                ifaces = []   # a new section resets the interface list
                continue
            btype, blen = struct.unpack(endian + "II", hdr)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                result.errors.append(
                    f"{path}: frame {no + 1}: corrupt block (type {btype:#x}, length {blen}); "
                    f"stopped reading, {no} frames analysed")
                break
            body = _read_exact(reader, blen - 8)
            if len(body) < blen - 8:
                result.errors.append(
                    f"{path}: frame {no + 1}: block truncated ({len(body) + 8} of {blen} bytes at the end "
                    f"of the file); analysed the {no} complete frames before it")
                break
            body = body[:-4]  # trailing block length
            if btype == 1:    # Interface Description Block
                if len(body) < 8:
                    result.errors.append(f"{path}: interface block too short")
                    break
                linktype, _res, snaplen = struct.unpack_from(endian + "HHI", body, 0)
                mul, div, offset, name = _idb_options(body[8:], endian)
                ifaces.append(_Iface(linktype, snaplen, mul, div, offset, name))
                if linktype not in result.linktypes:
                    result.linktypes.append(linktype)
                result.interfaces.append(name or f"if{len(ifaces) - 1}")
                continue
            if btype in (6, 2):   # Enhanced Packet Block / obsolete Packet Block
                if btype == 6:
                    if len(body) < 20:
                        result.errors.append(f"{path}: frame {no + 1}: packet block too short")
                        break
                    ifid, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", body, 0)
                else:
                    if len(body) < 20:
                        result.errors.append(f"{path}: frame {no + 1}: packet block too short")
                        break
                    ifid, _drops, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(endian + "HHIIII", body, 0)
                if ifid >= len(ifaces):
                    result.errors.append(f"{path}: frame {no + 1}: packet names interface {ifid}, which was never described")
                    no += 1
                    continue
                if caplen > len(body) - 20:
                    result.errors.append(f"{path}: frame {no + 1}: packet length {caplen} exceeds its block")
                    break
                iface = ifaces[ifid]
                raw_ts = (ts_hi << 32) | ts_lo
                ts = raw_ts * iface.ts_mul // iface.ts_div + iface.tsoffset_ns
                no += 1
                nbytes += caplen
                first = ts if first is None else first
                last = ts
                if not caplen:
                    empty += 1                # carries nothing: counted, never decoded
                    continue
                yield RawFrame(no, ts, iface.linktype, body[20:20 + caplen], wirelen, ifid, source)
                continue
            if btype == 3:        # Simple Packet Block: interface 0, no timestamp
                if not ifaces or len(body) < 4:
                    no += 1
                    continue
                wirelen = struct.unpack_from(endian + "I", body, 0)[0]
                iface = ifaces[0]
                caplen = min(wirelen, iface.snaplen or wirelen, len(body) - 4)
                no += 1
                nbytes += caplen
                yield RawFrame(no, last or 0, iface.linktype, body[4:4 + caplen], wirelen, 0, source)
                continue
            if btype == 4:        # Name Resolution Block: names that travel with the capture
                _read_nrb(body, endian, result)
                continue
            # Statistics, custom blocks...: not packets, not counted.
    except BaseException:
        # Interrupted (damaged gzip data, a read error): count what was yielded before re-raising.
        result.packets, result.bytes, result.empty_records = no, nbytes, empty
        _finish(result, first, last)
        raise
    result.packets, result.bytes, result.empty_records = no, nbytes, empty
    _finish(result, first, last)


def _read_nrb(body: bytes, endian: str, result: ReadResult) -> None:
    """ipv4/ipv6 records of a Name Resolution Block into `result.names`. As in Wireshark, the last
    name of a record is the address's name and a later record overrides an earlier one. The block is whoever wrote the file's word: bounded (MAX_NAMES,
    MAX_NAME_LEN), and a malformed record ends the block's reading, counted, never raised."""
    import ipaddress
    i = 0
    while i + 4 <= len(body):
        rtype, rlen = struct.unpack_from(endian + "HH", body, i)
        if rtype == 0:
            return                        # nrb_record_end (options follow: not needed)
        val = body[i + 4:i + 4 + rlen]
        if len(val) < rlen:
            result.names_skipped += 1     # a record longer than its block
            return
        i += 4 + ((rlen + 3) & ~3)
        size = 4 if rtype == 1 else 16 if rtype == 2 else 0
        if not size:
            continue                      # a record type this reader does not know: skip it
        if rlen < size + 2 or val[-1] != 0:
            result.names_skipped += 1
            continue
        ip = str(ipaddress.ip_address(val[:size]))
        first = [n for n in val[size:-1].split(b"\0") if n][-1:] or [b""]
        first = first[0]
        try:
            name = first.decode("utf-8")
        except UnicodeDecodeError:
            result.names_skipped += 1
            continue
        if not name or len(first) > MAX_NAME_LEN or not name.isprintable():
            result.names_skipped += 1
            continue
        if ip not in result.names and len(result.names) >= MAX_NAMES:
            result.names_skipped += 1
            continue
        result.names[ip] = name


def read_names(path: str) -> tuple[dict[str, str], int]:
    """Only the Name Resolution Blocks of a pcapng (for engines that read packets elsewhere):
    -> (names, records skipped). Walks block headers and skips packet bodies; never raises."""
    res = ReadResult(path=path)
    try:
        f = open_capture(path)
    except OSError:
        return {}, 0
    try:
        if _read_exact(f, 4) != PCAPNG_SHB:
            return {}, 0
        hdr = PCAPNG_SHB + _read_exact(f, 8)
        endian = "<" if hdr[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        while len(hdr) >= 8:
            btype, blen = struct.unpack(endian + "II", hdr[:8])
            if btype == 0x0A0D0D0A:
                bom = hdr[8:12] if len(hdr) >= 12 else _read_exact(f, 4)
                endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                blen = struct.unpack(endian + "I", hdr[4:8])[0]
                done = 12 if len(hdr) >= 12 else 12
            else:
                done = len(hdr)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                break
            if btype == 4:
                body = _read_exact(f, blen - done)
                if len(body) < blen - done:
                    break
                _read_nrb(body[:-4], endian, res)
            else:
                skip = blen - done
                if len(_read_exact(f, skip)) < skip:
                    break
            hdr = _read_exact(f, 8)
    except (OSError, EOFError, zlib.error, struct.error, ValueError):
        pass
    finally:
        f.close()
    return res.names, res.names_skipped
