"""Crash-tolerant pcap/pcapng writer for live capture (`--write`, ring buffers).

Design goals, from issue #4/#8: nothing captured is lost, and whatever ends the
capture (Ctrl-C, SIGTERM, --duration, the interface vanishing, a full disk)
the file is readable up to its last complete record.

* Records are buffered in memory and written with os.write() on flush(); the
  live loop flushes on every tick (~200 ms) and on exit, so a SIGKILL loses at
  most one tick.
* The offset after the last completely written record is tracked; when a write
  fails (ENOSPC, EDQUOT, EFBIG, EIO) the file is truncated back to it (which
  needs no space), writing stops, `error` says why, and capture/analysis carry
  on without the file.
* Format follows the extension: .pcapng/.ntar → pcapng, else classic pcap;
  both with microsecond timestamps (the most widely readable).
"""
from __future__ import annotations

import errno
import os
import struct
from typing import Callable

from wscap.model import RawFrame

PCAP_MAGIC_US = 0xA1B2C3D4
DEFAULT_SNAPLEN = 262144
FLUSH_BYTES = 256 * 1024


def format_for(path: str) -> str:
    """"pcapng" for *.pcapng / *.ntar / *.scap, else "pcap"."""
    low = path.lower()
    return "pcapng" if low.endswith((".pcapng", ".ntar", ".pcapng.tmp")) else "pcap"


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def pcap_header(linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(f: RawFrame) -> bytes:
    sec, ns = divmod(f.ts_ns, 1_000_000_000)
    return struct.pack("<IIII", sec, ns // 1000, len(f.data), f.wirelen) + f.data


def pcapng_shb(app: str = "wscap live") -> bytes:
    opts = _opt(4, app.encode()) + _opt(0, b"")
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opts
    ln = 12 + len(body)
    return struct.pack("<II", 0x0A0D0D0A, ln) + body + struct.pack("<I", ln)


def pcapng_idb(linktype: int, snaplen: int, name: str | None) -> bytes:
    opts = b""
    if name:
        opts += _opt(2, name.encode())
    # No if_tsresol: the default (µs) is what every reader handles exactly, and live
    # frames carry µs timestamps anyway (see LiveLoop) so nothing is lost.
    opts += _opt(0, b"")
    body = struct.pack("<HHI", linktype, 0, snaplen) + opts
    ln = 12 + len(body)
    return struct.pack("<II", 1, ln) + body + struct.pack("<I", ln)


NRB_MAX_BLOCK = 64 * 1024    # bytes per Name Resolution Block (readers bound block sizes)


def pcapng_nrb(names: dict[str, str]) -> bytes:
    """Name Resolution Block(s) for `names` (ip -> name; a value may hold several names separated
    by whitespace or be a list), to write right after the IDBs: the names then travel with the
    capture (Wireshark shows them with `-N n`, `wscap analyze` labels endpoints with them); with
    several names for one address, both show the last one, so put the preferred label last.
    IPv4 records are type 1, IPv6 type 2; each name is UTF-8, NUL-terminated, record padded to 4
    bytes, then an end record. Large tables are split over several blocks. b"" when empty."""
    import ipaddress
    records: list[bytes] = []
    for ip, value in names.items():
        try:
            addr = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            continue
        items = value if isinstance(value, (list, tuple)) else str(value).split()
        parts = [n.encode("utf-8")[:255] for n in items if n]
        parts = [p for p in parts if b"\0" not in p]
        if not parts:
            continue
        val = addr.packed + b"".join(p + b"\0" for p in parts)
        if len(val) > 0xFFFF:
            continue
        records.append(struct.pack("<HH", 1 if addr.version == 4 else 2, len(val)) + _pad4(val))
    out = []
    block: list[bytes] = []
    size = 0

    def close() -> None:
        body = b"".join(block) + struct.pack("<HH", 0, 0)
        ln = 12 + len(body)
        out.append(struct.pack("<II", 4, ln) + body + struct.pack("<I", ln))

    for r in records:
        if block and size + len(r) > NRB_MAX_BLOCK:
            close()
            block, size = [], 0
        block.append(r)
        size += len(r)
    if block:
        close()
    return b"".join(out)


def pcapng_epb(f: RawFrame, iface_id: int = 0) -> bytes:
    ts = f.ts_ns // 1000
    data = _pad4(f.data)
    ln = 32 + len(data)
    return (struct.pack("<IIIIIII", 6, ln, iface_id, ts >> 32, ts & 0xFFFFFFFF, len(f.data), f.wirelen)
            + data + struct.pack("<I", ln))


class PcapWriter:
    """Writes RawFrames of one linktype to one file, or a ring of files.

    `ring_files` > 0 with `ring_size` bytes switches to ring mode: the files are
    `<stem>_00001<ext>`, `<stem>_00002<ext>`, ...; when one reaches ring_size a
    new one starts and only the newest `ring_files` are kept.
    """

    def __init__(self, path: str, linktype: int, snaplen: int = DEFAULT_SNAPLEN,
                 fmt: str | None = None, ring_files: int = 0, ring_size: int = 0,
                 iface_name: str | None = None,
                 on_error: Callable[[str], None] | None = None):
        self.path = path
        self.linktype = linktype
        self.snaplen = snaplen
        self.fmt = fmt or format_for(path)
        self.ring_files = ring_files
        self.ring_size = ring_size
        self.iface_name = iface_name
        self.on_error = on_error
        self.packets = 0            # records durably handed to the kernel
        self.bytes = 0
        self.skipped = 0            # records not written because writing stopped
        self.error: str | None = None
        self.files: list[str] = []  # files written, oldest first (ring: the kept ones)
        self._fd = -1
        self._buf: list[tuple[bytes, bool]] = []  # (bytes, is a packet record)
        self._buflen = 0
        self._offset = 0            # bytes of the current file already written
        self._seq = 0
        self._open_next()

    # -- files ------------------------------------------------------------------------------
    def _ring_name(self, seq: int) -> str:
        stem, ext = os.path.splitext(self.path)
        return f"{stem}_{seq:05d}{ext}"

    def _open_next(self) -> None:
        self._seq += 1
        name = self._ring_name(self._seq) if self.ring_files else self.path
        # O_NOFOLLOW (every ring file, not only the first, may have been planted as a symlink)
        # and O_CLOEXEC; 0o644 like tcpdump. Opened by the caller's (already dropped) identity,
        # so permissions are the invoking user's.
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if self._fd < 0:
                raise                    # the first file: the caller says why, before capturing
            why = "is a symbolic link; refusing to follow it" if e.errno == errno.ELOOP else e.strerror
            self.error = (f"--write {name}: {why}; stopped writing after {self.packets} packets "
                          f"(the earlier files are whole); capture and analysis go on")
            if self.on_error:
                self.on_error(self.error)
            return
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._offset = 0
        self.files.append(name)
        if self.ring_files:
            while len(self.files) > self.ring_files:
                old = self.files.pop(0)
                try:
                    os.unlink(old)
                except OSError:
                    pass
        if self.fmt == "pcapng":
            head = pcapng_shb() + pcapng_idb(self.linktype, self.snaplen, self.iface_name)
        else:
            head = pcap_header(self.linktype, self.snaplen)
        self._buf = [(head, False)]
        self._buflen = len(head)
        self.flush()

    # -- records ----------------------------------------------------------------------------
    def write(self, f: RawFrame) -> None:
        if self.error is not None:
            self.skipped += 1
            return
        rec = pcapng_epb(f) if self.fmt == "pcapng" else pcap_record(f)
        if (self.ring_files and self._offset + self._buflen + len(rec) > self.ring_size
                and self._offset + self._buflen > 64):
            self.flush()
            if self.error is not None:
                self.skipped += 1
                return
            self._open_next()
            if self.error is not None:
                self.skipped += 1
                return
        self._buf.append((rec, True))
        self._buflen += len(rec)
        if self._buflen >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write buffered records; on failure keep the file whole up to the last record."""
        if not self._buf or self._fd < 0:
            return
        recs, self._buf, self._buflen = self._buf, [], 0
        data = b"".join(r for r, _ in recs)
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, memoryview(data)[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as e:
            # Cut back to the end of the last record written in full.
            good = 0
            cut = False
            for r, is_rec in recs:
                if cut or good + len(r) > done:
                    cut = True
                    self.skipped += is_rec
                    continue
                good += len(r)
                self.packets += is_rec
            if good < done or done < len(data):
                try:
                    os.ftruncate(self._fd, self._offset + good)
                except OSError:
                    pass
            self._offset += good
            self.bytes += good
            self._fail(e)
            return
        self._offset += done
        self.bytes += done
        self.packets += sum(is_rec for _, is_rec in recs)

    def _fail(self, e: OSError) -> None:
        why = {errno.ENOSPC: "disk full", errno.EDQUOT: "quota exceeded",
               errno.EFBIG: "file too large"}.get(e.errno or 0, e.strerror or str(e))
        cur = self.files[-1] if self.files else self.path
        self.error = (f"--write {cur}: {why}; stopped writing after {self.packets} packets "
                      f"({self._offset} bytes, readable up to the last complete record); "
                      "capture and analysis go on")
        if self.on_error:
            self.on_error(self.error)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = -1
