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
from typing import Callable

from wscap.model.raw import RawFrame
from wscap.wire import pcapbuild, pcapio
from wscap.wire.pcapbuild import DEFAULT_SNAPLEN, NRB_MAX_BLOCK, PCAP_MAGIC_US, pcapng_nrb  # noqa: F401 (re-exported)

FLUSH_BYTES = 256 * 1024


def format_for(path: str) -> str:
    """"pcapng" for *.pcapng / *.ntar / *.scap, else "pcap"."""
    low = path.lower()
    return "pcapng" if low.endswith((".pcapng", ".ntar", ".pcapng.tmp")) else "pcap"


# The records themselves come from wire/pcapio.py (the one codec); these wrappers fix the live
# capture's choices: microsecond timestamps in both formats, the default if_tsresol.
def pcap_header(linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    return pcapbuild.pcap_header(linktype, snaplen)


def pcap_record(f: RawFrame) -> bytes:
    sec, ns = divmod(f.ts_ns, 1_000_000_000)
    return pcapbuild.pcap_record(sec, ns // 1000, f.data, f.wirelen)


def pcapng_shb(app: str = "wscap live") -> bytes:
    return pcapbuild.pcapng_shb(app)


def pcapng_idb(linktype: int, snaplen: int, name: str | None) -> bytes:
    # No if_tsresol: the default (µs) is what every reader handles exactly, and live
    # frames carry µs timestamps anyway (see LiveLoop) so nothing is lost.
    return pcapbuild.pcapng_idb(linktype, snaplen, name)


def pcapng_epb(f: RawFrame, iface_id: int = 0) -> bytes:
    return pcapbuild.pcapng_epb(iface_id, f.ts_ns // 1000, f.data, f.wirelen)


class PcapWriter:
    """Writes RawFrames of one linktype to one file, or a ring of files.

    `ring_files` > 0 with `ring_size` bytes switches to ring mode: the files are
    `<stem>_00001<ext>`, `<stem>_00002<ext>`, ...; when one reaches ring_size a
    new one starts and only the newest `ring_files` are kept.
    """

    def __init__(self, path: str, linktype: int, snaplen: int = DEFAULT_SNAPLEN,
                 fmt: str | None = None, ring_files: int = 0, ring_size: int = 0,
                 iface_name: str | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
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
