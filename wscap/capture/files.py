"""Capture files -> RawFrame stream (pcap, pcapng, gzip), streamed in bounded memory.

This is the I/O edge: it opens the file (un-gzipping by magic), reads it in 1 MiB
chunks and feeds them to wire/pcapio.py's CaptureReader, the one pcap/pcapng codec
(also behind the live follower). Problems in the file (a record cut short, an
absurd length, a corrupt block, damaged gzip data) never raise: reading stops,
`ReadResult.errors` gets one line naming the file and frame, and every frame
before the problem has already been yielded.
"""
from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from wscap.model.raw import RawFrame
from wscap.wire.pcapio import (MAX_NAME_LEN, MAX_NAMES, MAX_RECORD, PCAP_MAGICS, PCAPNG_SHB,  # noqa: F401 (re-exported)
                               CaptureReader, RecordFilter)

CHUNK = 1 << 20
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

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
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
                stream: BinaryIO | None = None, record_filter: RecordFilter | None = None,
                gzip_records_per_kib: int | None = None, max_bytes: int | None = None) -> Iterator[RawFrame]:
    """Yield every frame of a pcap/pcapng file (or an already open stream, e.g. a pipe).

    A gzip input that gives more than `gzip_records_per_kib` records per KiB of compressed
    input (default: Limits().gzip_records_per_kib) stops being read once it has given
    GZIP_WORK_FLOOR records: one error line, `limits_hit["gzip_records"]`. Records that carry no
    bytes are counted (`empty_records`) and never yielded.

    `record_filter(linktype) -> want(buf, offset, caplen, frame_no, ts_ns) -> bool`, when
    given, lets the consumer account for a record straight from the read buffer; records
    it answers False for are counted but never turned into a RawFrame (the fast path).
    `max_bytes`: read no further (engine/shards.py: two processes read a file that may still grow
    to the same length).
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
    reader = CaptureReader(0, source, record_filter)
    reader.split_reads = True         # nothing reads its state between frames: chunks are not copied
    gz_raw = getattr(f, "raw", None)
    work = None
    if isinstance(gz_raw, _Gunzip):
        if gzip_records_per_kib is None:
            from wscap.model.limits import Limits
            gzip_records_per_kib = Limits().gzip_records_per_kib
        if gzip_records_per_kib:
            work = _GzipWork(gz_raw, gzip_records_per_kib, path, result)
    try:
        left = -1 if max_bytes is None else max_bytes

        def read() -> bytes:
            nonlocal left
            if left < 0:
                return f.read(CHUNK)
            data = f.read(min(CHUNK, left))
            left -= len(data)
            return data
        try:
            first = read()
        except (OSError, EOFError) as e:
            result.errors.append(f"{path}: cannot read: {e}")
            return
        try:
            # Chunked: one read per MiB, the records are cut out of the buffer by the reader.
            chunk = first
            while not reader.stopped:
                if not chunk:
                    reader.finish()
                    break
                yield from reader.feed_iter(chunk)
                if work is not None and work.over(reader.blocks, reader.packets):
                    break
                chunk = read()
        finally:
            _account(result, reader, path)
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


def _account(result: ReadResult, reader: CaptureReader, path: str) -> None:
    """What the reader learned, into the file's ReadResult (also when reading was interrupted)."""
    if reader.format != "unknown":
        result.format = reader.format
    for lt in reader.linktypes:
        if reader.format == "pcap" or lt not in result.linktypes:
            result.linktypes.append(lt)
    result.interfaces.extend(reader.interfaces)
    result.packets, result.bytes, result.empty_records = reader.packets, reader.nbytes, reader.empty
    result.errors.extend(f"{path}: {msg}" for msg in reader.errors)
    for ip, name in reader.names.items():
        if ip in result.names or len(result.names) < MAX_NAMES:
            result.names[ip] = name
        else:
            result.names_skipped += 1
    result.names_skipped += reader.names_skipped
    first, last = reader.first_ts, reader.last_ts
    if first is not None:
        result.first_ts_ns = first if result.first_ts_ns is None else min(first, result.first_ts_ns)
        result.last_ts_ns = last if result.last_ts_ns is None else max(last or 0, result.last_ts_ns)


def _no_frames(linktype: int) -> Callable[[bytes, int, int, int, int], bool]:
    return lambda buf, off, caplen, no, ts: False


def read_names(path: str) -> tuple[dict[str, str], int]:
    """Only the Name Resolution Blocks of a pcapng (for engines that read packets elsewhere):
    -> (names, records skipped). No frame is built (the record filter answers False); never raises."""
    try:
        f = open_capture(path)
    except OSError:
        return {}, 0
    reader = CaptureReader(0, 0, _no_frames)
    try:
        while not reader.stopped and reader.format != "pcap":
            chunk = f.read(CHUNK)
            if not chunk:
                break
            for _ in reader.feed_iter(chunk):
                pass                      # Simple Packet Blocks: built, dropped
    except (OSError, EOFError, zlib.error, struct.error, ValueError):
        pass
    finally:
        f.close()
    if reader.format != "pcapng":
        return {}, 0
    return reader.names, reader.names_skipped
