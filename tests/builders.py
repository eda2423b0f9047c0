"""Build captures in memory with scapy, from a spec; the spec is the ground truth.

Tests describe what happened on the wire (who connected, which bytes went
where, how they were segmented, lost or reordered) and assert wscap's output
against that description — never against wscap's own earlier output.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from scapy.all import IP, TCP, Ether, IPv6, Raw, wrpcap  # type: ignore[attr-defined]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key(seed: int) -> str:
    return base64.b64encode(hashlib.md5(str(seed).encode()).digest()).decode()


def ws_request(path: str = "/ws", host: str = "localhost:5173", key: str = "dGhlIHNhbXBsZSBub25jZQ==",
               origin: str | None = "http://localhost:5173", extra: list[tuple[str, str]] | None = None,
               lower: bool = False, protocol: str | None = None, eol: bytes = b"\r\n",
               upgrade: str | None = "websocket", connection: str | None = "Upgrade") -> bytes:
    hs = [("Host", host)]
    if connection is not None:
        hs.append(("Connection", connection))
    if upgrade is not None:
        hs.append(("Upgrade", upgrade))
    hs += [("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if origin:
        hs.append(("Origin", origin))
    if protocol:
        hs.append(("Sec-WebSocket-Protocol", protocol))
    hs += extra or []
    if lower:
        hs = [(n.lower(), v) for n, v in hs]
    lines = [f"GET {path} HTTP/1.1".encode()] + [f"{n}: {v}".encode() for n, v in hs]
    return eol.join(lines) + eol + eol


def ws_response(key: str = "dGhlIHNhbXBsZSBub25jZQ==", status: int = 101, reason: str = "Switching Protocols",
                extra: list[tuple[str, str]] | None = None, accept: str | None = None, lower: bool = False,
                eol: bytes = b"\r\n", body: bytes = b"") -> bytes:
    if status == 101:
        hs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", accept if accept is not None else accept_for(key))]
    else:
        hs = [("Content-Length", str(len(body))), ("Connection", "close")]
    hs += extra or []
    if lower:
        hs = [(n.lower(), v) for n, v in hs]
    lines = [f"HTTP/1.1 {status} {reason}".rstrip(" ").encode() if reason else f"HTTP/1.1 {status}".encode()]
    lines += [f"{n}: {v}".encode() for n, v in hs]
    return eol.join(lines) + eol + eol + body


def ws_frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = False, rsv1: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if mask:
        m = b"\x11\x22\x33\x44"
        return hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))
    return hdr + payload


@dataclass
class Conn:
    cap: "Capture"
    client: tuple[str, int]
    server: tuple[str, int]
    cseq: int = 1000
    sseq: int = 5000
    pkts: list = field(default_factory=list)

    def _pkt(self, from_client: bool, flags: str, payload: bytes = b"", seq: int | None = None):
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        s = seq if seq is not None else (self.cseq if from_client else self.sseq)
        a = self.sseq if from_client else self.cseq
        ipl = IPv6(src=src[0], dst=dst[0]) if ":" in src[0] else IP(src=src[0], dst=dst[0])
        p = ipl / TCP(sport=src[1], dport=dst[1], flags=flags, seq=s & 0xFFFFFFFF, ack=a & 0xFFFFFFFF)
        if payload:
            p = p / Raw(payload)
        return self.cap.add(p)

    def open(self) -> "Conn":
        self._pkt(True, "S")
        self.cseq += 1
        self._pkt(False, "SA")
        self.sseq += 1
        self._pkt(True, "A")
        return self

    def send(self, from_client: bool, data: bytes, split: int | list[int] | None = None) -> list:
        """Send data, optionally split into segments of `split` bytes (or at the given offsets)."""
        if isinstance(split, int):
            cuts = list(range(split, len(data), split))
        else:
            cuts = list(split or [])
        bounds = [0] + cuts + [len(data)]
        out = []
        for a, b in zip(bounds, bounds[1:]):
            if a == b:
                continue
            out.append(self._pkt(from_client, "PA", data[a:b]))
            if from_client:
                self.cseq += b - a
            else:
                self.sseq += b - a
        return out

    def fin(self, from_client: bool):
        p = self._pkt(from_client, "FA")
        if from_client:
            self.cseq += 1
        else:
            self.sseq += 1
        return p

    def rst(self, from_client: bool):
        return self._pkt(from_client, "R")


class Capture:
    """Packets with explicit timestamps; `write()` produces a pcap via scapy."""

    def __init__(self, t0: float = 1_700_000_000.0, step: float = 0.001, ether: bool = True) -> None:
        self.t = t0
        self.step = step
        self.ether = ether
        self.packets: list = []

    def add(self, p):
        if self.ether:
            p = Ether(src="02:42:ac:12:00:01", dst="02:42:ac:12:00:02") / p
        self.t += self.step
        p.time = self.t
        self.packets.append(p)
        return p

    def wait(self, seconds: float) -> None:
        self.t += seconds

    def conn(self, client: tuple[str, int], server: tuple[str, int], cseq: int = 1000, sseq: int = 5000) -> Conn:
        return Conn(self, client, server, cseq, sseq)

    def upgrade(self, client: tuple[str, int], server: tuple[str, int], seed: int, path: str = "/ws",
                sent: bool = True, **request: object) -> tuple[Conn, str, bytes]:
        """A connection opened (SYN, SYN-ACK, ACK) with an upgrade request, its key `new_key(seed)`
        (`request`: ws_request's other arguments), sent in one segment unless `sent=False` (the
        test segments it) -> (conn, key, request bytes)."""
        key = new_key(seed)
        c = self.conn(client, server).open()
        req = ws_request(path, key=key, **request)  # type: ignore[arg-type]
        if sent:
            c.send(True, req)
        return c, key, req

    def write(self, path: str | os.PathLike, packets: list | None = None, **kw) -> str:
        wrpcap(str(path), packets if packets is not None else self.packets, **kw)
        return str(path)


def proxied_chain(cap: Capture, n: int = 0, backend_status: int = 101, origin_rewrite: bool = False,
                  client=("172.18.0.1", 50000), proxy=("172.18.0.2", 5173), backend=("172.18.0.3", 5000),
                  proxy_port: int = 40000, key: str | None = None, strip: str | None = None) -> dict:
    """Browser -> Vite (node http-proxy) -> backend, as http-proxy re-serialises it. Returns the truth."""
    key = key or new_key(n)
    down = cap.conn((client[0], client[1] + n), proxy).open()
    down.send(True, ws_request("/ws", key=key))
    up = cap.conn((proxy[0], proxy_port + n), backend).open()
    origin = "http://meetsonar-backend:5000" if origin_rewrite else "http://localhost:5173"
    up_req = ws_request("/ws", host="meetsonar-backend:5000", key=key, origin=origin, lower=True,
                        upgrade=None if strip == "upgrade" else "websocket",
                        connection="close" if strip == "connection" else "Upgrade",
                        extra=[("x-forwarded-for", client[0]), ("x-forwarded-port", "5173"),
                               ("x-forwarded-proto", "ws")])
    up.send(True, up_req)
    if backend_status == 101 and strip is None:
        up.send(False, ws_response(key))
        down.send(False, ws_response(key, lower=True))
        down.send(True, ws_frame(b"hello", mask=True))
        up.send(True, ws_frame(b"hello", mask=True))
        up.send(False, ws_frame(b"hello"))
        down.send(False, ws_frame(b"hello"))
    else:
        status = backend_status if strip is None else 400
        reason = {403: "Forbidden", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        up.send(False, ws_response(key, status=status, reason=reason))
        up.fin(False)
        down.send(False, ws_response(key, status=status, reason=reason))
        down.fin(False)
    return {"down": down, "up": up, "key": key}


# -- raw capture writers (byte orders, ns timestamps, pcapng) -------------------------------------
import struct as _struct  # noqa: E402


def pcap_bytes(frames: list[tuple[float, bytes]], linktype: int = 1, big_endian: bool = False,
               nanos: bool = False, snaplen: int = 65535, wirelens: list[int] | None = None) -> bytes:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [_struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, (ts, data) in enumerate(frames):
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nanos else 1e6))
        wl = wirelens[i] if wirelens else len(data)
        out.append(_struct.pack(e + "IIII", sec, frac, len(data), wl) + data)
    return b"".join(out)


def pcapng_bytes(ifaces: list[int], packets: list[tuple[int, float, bytes]], tsresol: int | None = None) -> bytes:
    """pcapng with one IDB per link type in `ifaces`; packets are (iface, ts, data)."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return _struct.pack("<II", btype, n) + body + _struct.pack("<I", n)
    out = [block(0x0A0D0D0A, _struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for lt in ifaces:
        opts = b""
        if tsresol is not None:
            opts = _struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + _struct.pack("<HH", 0, 0)
        out.append(block(1, _struct.pack("<HHI", lt, 0, 65535) + opts))
    div = 10 ** (tsresol if tsresol is not None else 6)
    for ifid, ts, data in packets:
        t = round(ts * div)
        out.append(block(6, _struct.pack("<IIIII", ifid, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data))
    return b"".join(out)


def frames_of(cap: Capture) -> list[tuple[float, bytes]]:
    return [(float(p.time), bytes(p)) for p in cap.packets]


# -- the bench generator's captures ---------------------------------------------------------------
def bench_capture(out_dir: str, preset: str = "tiny", seed: int = 7) -> str:
    """A capture from scripts/bench/gen.py (bulk, HTTP and proxied chains with a truth file) -> its path."""
    import importlib.util
    import sys
    name = "wscap_bench_gen"
    gen = sys.modules.get(name)
    if gen is None:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bench", "gen.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        gen = importlib.util.module_from_spec(spec)
        sys.modules[name] = gen           # the generator's dataclasses look their module up
        spec.loader.exec_module(gen)
    return gen.generate(preset, out_dir, seed=seed)["pcap_path"]
