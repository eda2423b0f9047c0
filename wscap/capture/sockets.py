"""`--backend scapy`: an AF_PACKET socket in this process, with the BPF program compiled by
scapy's libpcap binding, a large receive buffer, nanosecond kernel timestamps, SLL2 headers for
`any`, PACKET_STATISTICS for drops. Capture, --write and analysis share one Python loop: not
lossless under load, kept for machines without a compiler or tcpdump (the default backends are
the C evidence writers of wscap.capture.evidence)."""
from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Iterable

from wscap.capture.live import (
    Backend, BackendMissing, CaptureConfig, CaptureError, _filter_error, _iface_error, _perm_error,
    scapy_filter_detail,
)
from wscap.model.raw import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, RawFrame

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35          # == SCM_TIMESTAMPNS on Linux (not exported by the socket module)
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return -1


def _arphrd(iface: str) -> int:
    """ARPHRD_* type of `iface` via SIOCGIFHWADDR (works in any netns, unlike sysfs)."""
    import fcntl as _f
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = _f.ioctl(s.fileno(), 0x8927, struct.pack("16s16x", iface.encode()[:15]))
        except OSError:
            return ARPHRD_ETHER
    return struct.unpack_from("H", res, 16)[0]


class SocketBackend:
    """AF_PACKET socket in-process, BPF compiled with scapy's libpcap binding."""

    name = "scapy"

    def __init__(self, cfg: CaptureConfig):
        self.cfg = cfg
        self.ended = False
        self.end_reason: str | None = None
        self.notices: list[str] = []
        self._received = 0
        self._dropped = 0
        self._stopping = False
        try:
            from scapy.arch.common import compile_filter  # noqa: F401
        except ImportError as e:
            raise BackendMissing(f"the scapy backend needs scapy: `pip install scapy` ({e}); "
                                 "or use `--backend tcpdump` (apt-get install tcpdump)") from e
        any_if = cfg.iface == "any"
        if any_if:
            self.ifindex = 0
            arphrd = ARPHRD_ETHER
        else:
            try:
                self.ifindex = socket.if_nametoindex(cfg.iface)
            except OSError:
                raise _iface_error(cfg.iface) from None
            arphrd = _arphrd(cfg.iface)
        # `any` and non-Ethernet links: cooked (SOCK_DGRAM) frames start at the network
        # header; we prepend SLL2 (any) or hand them on as RAW.
        self._cooked = any_if or arphrd not in (ARPHRD_ETHER, ARPHRD_LOOPBACK)
        self.linktype = (LINKTYPE_LINUX_SLL2 if any_if
                         else LINKTYPE_RAW if self._cooked else LINKTYPE_ETHERNET)
        try:
            # Protocol 0 receives nothing until bind(): the filter is in place before the
            # first packet, so no unfiltered packet sneaks in. `any` cannot be bound
            # (Python names interfaces, ifindex 0 has no name), so it listens from the
            # start and drops what queued up before the filter was attached.
            s = socket.socket(socket.AF_PACKET,
                              socket.SOCK_DGRAM if self._cooked else socket.SOCK_RAW,
                              socket.htons(ETH_P_ALL) if any_if else 0)
        except PermissionError as e:
            raise _perm_error(f"opening a packet socket: {e.strerror}") from None
        self.sock = s
        try:
            if cfg.bpf:
                self._attach_filter(cfg.bpf)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, cfg.buffer_mb << 20)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.buffer_mb << 20)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if any_if:
                s.setblocking(False)
                try:
                    while True:
                        s.recv(65536)
                except BlockingIOError:
                    pass
            else:
                if cfg.promisc:
                    mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                s.bind((cfg.iface, ETH_P_ALL))
        except PermissionError as e:
            s.close()
            raise _perm_error(str(e)) from None
        except OSError as e:
            s.close()
            if e.errno in (errno.ENODEV, errno.ENXIO):
                raise _iface_error(cfg.iface) from None
            raise CaptureError(f"cannot open capture on {cfg.iface}: {e}") from None
        except BaseException:
            s.close()
            raise
        s.setblocking(False)
        self._lo = _ifindex("lo") if any_if else -1
        self._idx: dict[str, int] = {}
        self._buf = bytearray(cfg.snaplen)
        self._view = memoryview(self._buf)
        self.stats()  # reset the kernel counters (they count from socket creation)
        self._received = 0
        self._dropped = 0

    def _attach_filter(self, expr: str) -> None:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
        lt = LINKTYPE_RAW if self._cooked else LINKTYPE_ETHERNET
        try:
            bp = compile_filter(expr, linktype=lt)
        except Scapy_Exception as e:
            raise _filter_error(expr, scapy_filter_detail(expr, str(e))) from None
        except ImportError as e:
            raise BackendMissing(f"the scapy backend compiles filters with libpcap: "
                                 f"`apt-get install libpcap0.8` ({e})") from None
        import ctypes
        from scapy.arch.common import free_filter
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;}; the kernel
        # copies the program, so libpcap's copy is freed right after.
        fprog = struct.pack("HL", bp.bf_len, ctypes.addressof(bp.bf_insns.contents))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        finally:
            try:
                free_filter(bp)
            except Exception:  # noqa: BLE001 - freeing is best effort
                pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, max_frames: int = 4096) -> list[RawFrame]:
        out: list[RawFrame] = []
        sock, view, snap = self.sock, self._view, self.cfg.snaplen
        lo = self._lo
        any_if = self.linktype == LINKTYPE_LINUX_SLL2
        lt = self.linktype
        for _ in range(max_frames):
            try:
                n, anc, _flags, addr = sock.recvmsg_into([view], 64, socket.MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    if self._iface_deleted():
                        self.ended = True
                        self.end_reason = f"interface {self.cfg.iface} went away (removed)"
                    else:
                        # Down, not gone: the kernel re-attaches the socket when it comes
                        # back up (as libpcap >= 1.10 does for tcpdump), so keep going.
                        self.notices.append(f"interface {self.cfg.iface} went down; "
                                            "capturing again when it comes back up")
                    break
                raise
            ts = 0
            for lvl, typ, data in anc:
                if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("qq", data)
                    ts = sec * 1_000_000_000 + nsec
            if not ts:
                ts = time.time_ns()
            caplen = min(n, snap)
            if any_if:
                # addr = (ifname, proto, pkttype, hatype, hwaddr[, ifindex? no])
                _ifn, proto, pkttype, hatype, hw = addr[:5]
                if pkttype == socket.PACKET_OUTGOING and lo >= 0 and _ifn == "lo":
                    continue  # libpcap drops the outgoing copy of loopback packets too
                ifidx = self._idx.get(_ifn)
                if ifidx is None:
                    ifidx = self._idx[_ifn] = max(_ifindex(_ifn), 0)
                hdr = struct.pack(">HHIHBB8s", proto, 0, ifidx, hatype, pkttype, len(hw), hw)
                out.append(RawFrame(0, ts, lt, hdr + bytes(view[:caplen]), n + 20))
            else:
                out.append(RawFrame(0, ts, lt, bytes(view[:caplen]), n))
        return out

    def _iface_deleted(self) -> bool:
        # A packet socket whose interface was unregistered no longer names one.
        if not self.ifindex:
            return False
        try:
            return not self.sock.getsockname()[0]
        except OSError:
            return True

    def stats(self) -> dict[str, int]:
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            pk, dr = struct.unpack("II", raw)
            # tp_packets includes drops; the kernel resets both on read.
            self._received += pk
            self._dropped += dr
        except OSError:
            pass
        return {"received": self._received, "dropped": self._dropped}

    def stop(self) -> None:
        self._stopping = True

    def drain(self, timeout_s: float = 10.0) -> Iterable[RawFrame]:
        # Whatever sits in the socket buffer was captured: hand it over, bounded so a
        # flood cannot keep us here forever.
        deadline = time.monotonic() + min(timeout_s, 2.0)
        while time.monotonic() < deadline and not self.ended:
            frames = self.read(8192)
            if not frames:
                break
            yield from frames

    def close(self) -> None:
        try:
            self.stats()
        finally:
            self.sock.close()


# ---- backend choice --------------------------------------------------------------------------

BACKENDS = ("scapy",)   # in-process backends; the C evidence writers are in wscap.capture.evidence


def backend_available(name: str) -> bool:
    if name == "scapy":
        try:
            import scapy.arch.common  # noqa: F401
            return True
        except ImportError:
            return False
    return False


def open_backend(name: str, cfg: CaptureConfig) -> Backend:
    """The in-process scapy backend (`--backend scapy`): the packet socket is read, written
    to --write and analysed by this process, so under load the file loses what the analysis
    loses. The default is a C writer (wscap.capture.evidence)."""
    if name == "scapy":
        return SocketBackend(cfg)
    raise CaptureError(f"unknown in-process backend {name!r} (choose from {', '.join(BACKENDS)})")
