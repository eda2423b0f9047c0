#!/usr/bin/env python3
"""Deterministic generator of large Docker-bridge-like captures (issue #7).

Writes a classic pcap (LINKTYPE_ETHERNET, microsecond timestamps) straight
with `struct`, streaming to disk, plus a ground-truth JSON file describing
every WebSocket chain in it.  Same preset + seed -> byte-identical files.

    python3 scripts/bench/gen.py --preset small --seed 1 --out /tmp/wsbench

Traffic model (all on one Docker bridge 172.18.0.0/16, MACs 02:42:ac:12:xx:xx):

* filler: bulk TCP (postgres/redis/minio/TLS-to-outside, random payloads) and
  ordinary keep-alive HTTP (vite assets, API calls proxied vite -> backend,
  a port-80 proxy), with delayed ACKs, retransmissions and reordering;
* WebSocket chains through a proxy, both legs:
    browser 172.18.0.1:eph -> vite 172.18.0.2:5173 (Host: localhost:5173)
    vite 172.18.0.2:eph -> backend 172.18.0.3:5000 (host: meetsonar-backend:5000,
      lower-case header names as node http-proxy writes them, same
      sec-websocket-key, x-forwarded-for/port/proto appended)
  plus a port-80 proxy (172.18.0.5:80), backends on odd ports (8765, 9001,
  31337) and direct single-leg connections to odd-port servers;
* chains broken in known ways: origin-rejected, upstream-refused,
  proxy-rejected, bad-accept, upgrade-header-stripped, timeout;
* heads split across segments, out-of-order segments, duplicate and
  overlapping retransmissions.

Ground truth (``<name>.truth.json``): for each chain, its legs
``[{"client": "ip:port", "server": "ip:port"}, ...]`` client side first, the
path, the expected cause code and the failing hop (0-based index into the
legs from the client; null for ok), plus the variant of the breakage.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import heapq
import json
import os
import random
import struct
import sys
import time

GENERATOR_VERSION = 2

PRESETS = {
    # packets: target record count (the real count lands within a few % of it)
    # chains: WebSocket chains; duration: capture length in seconds
    "tiny": {"packets": 3_000, "chains": 40, "duration": 30},
    "small": {"packets": 20_000, "chains": 150, "duration": 60},
    "medium": {"packets": 1_000_000, "chains": 3_000, "duration": 600},
    "large": {"packets": 5_000_000, "chains": 12_000, "duration": 1_800},
}

# Traffic mixes: where a filler connection's first draw lands -> bulk transfer, keep-alive HTTP,
# API call through the proxy. "default" is the generator's original mix (~7% of packets on WebSocket
# chains); "bulk" is a Docker bridge that mostly moves data (database, object store, outside TLS):
# ~85% bulk filler, and the same WebSocket chains as a few % of the packets.
MIXES = {"default": (0.50, 0.88), "bulk": (0.85, 0.96)}

CAUSES = ("ok", "origin-rejected", "upstream-refused", "proxy-rejected",
          "bad-accept", "upgrade-header-stripped", "timeout")
CAUSE_WEIGHTS = (0.55, 0.08, 0.07, 0.07, 0.07, 0.07, 0.09)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
START_US = 1_763_884_800_000_000  # 2025-11-23 08:00:00 UTC, fixed (never the clock)

# hosts on the bridge
GW = "172.18.0.1"        # the docker host: browser, curl
VITE = "172.18.0.2"      # vite dev server, proxies /ws and /api (node http-proxy)
BACKEND = "172.18.0.3"   # meetsonar-backend (python websockets / flask)
EDGE = "172.18.0.5"      # a second node proxy on port 80
RELAY = "172.18.0.6"     # odd-port WebSocket backends behind vite
WSDIRECT = "172.18.0.7"  # odd-port WebSocket servers reached directly
DB = "172.18.0.8"        # postgres
REDIS = "172.18.0.9"
MINIO = "172.18.0.10"
OUTSIDE = ("151.101.2.132", "104.16.24.34", "140.82.121.4")  # via the gateway MAC

NAMES = {VITE: "vite", BACKEND: "meetsonar-backend", EDGE: "edge-proxy",
         RELAY: "ws-relay", WSDIRECT: "ws-direct", DB: "postgres",
         REDIS: "redis", MINIO: "minio", GW: "host"}

# topologies of WebSocket chains
TOPOLOGIES = {
    # name: (weight, legs[(client ip, server ip, server port, host header)], origin)
    "vite": (0.60, [(GW, VITE, 5173, "localhost:5173"),
                    (VITE, BACKEND, 5000, "meetsonar-backend:5000")],
             "http://localhost:5173"),
    "edge80": (0.10, [(GW, EDGE, 80, "localhost"),
                      (EDGE, BACKEND, 5000, "meetsonar-backend:5000")],
               "http://localhost"),
    "vite-odd": (0.15, [(GW, VITE, 5173, "localhost:5173"),
                        (VITE, RELAY, None, "ws-relay:{port}")],
                 "http://localhost:5173"),
    "direct-odd": (0.15, [(GW, WSDIRECT, None, "localhost:{port}")],
                   "http://localhost:{port}"),
}
ODD_PORTS = (8765, 9001, 31337)
DIRECT_CAUSES = ("ok", "origin-rejected", "bad-accept", "timeout")

_IPH = struct.Struct("!BBHHHBBH4s4s")
_TCPH = struct.Struct("!HHIIHHHH")
_REC = struct.Struct("<IIII")
_TSOPT = struct.Struct("!II")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0.0.0 Safari/537.36")
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def ip_bytes(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def mac_of(ip: str) -> bytes:
    """Docker's MAC scheme: 02:42 + the IPv4 address; outside hosts -> the gateway."""
    if not ip.startswith("172.18."):
        ip = GW
    return b"\x02\x42" + ip_bytes(ip)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def http_date(us: int) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(us // 1_000_000))


def ws_frame(opcode: int, payload: bytes, mask: bytes | None = None, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if mask:
        masked = bytes(c ^ mask[i & 3] for i, c in enumerate(payload))
        return head + mask + masked
    return head + payload


class Conn:
    """One TCP connection: builds Ethernet/IPv4/TCP frames with real checksums."""

    __slots__ = ("g", "cport", "sport", "csrc", "sdst", "eth_cs", "eth_sc", "ipbase",
                 "psbase", "cnxt", "snxt", "cipid", "sipid", "cts", "sts", "cwin", "swin",
                 "client", "server")

    def __init__(self, g: "Gen", cip: str, cport: int, sip: str, sport: int):
        self.g = g
        rng = g.rng
        self.cport, self.sport = cport, sport
        self.csrc, self.sdst = ip_bytes(cip), ip_bytes(sip)
        self.eth_cs = mac_of(sip) + mac_of(cip) + b"\x08\x00"
        self.eth_sc = mac_of(cip) + mac_of(sip) + b"\x08\x00"
        words = (int.from_bytes(self.csrc[:2], "big") + int.from_bytes(self.csrc[2:], "big")
                 + int.from_bytes(self.sdst[:2], "big") + int.from_bytes(self.sdst[2:], "big"))
        self.ipbase = 0x4500 + 0x4000 + 0x4006 + words
        self.psbase = words + 6
        self.cnxt = rng.getrandbits(32)
        self.snxt = rng.getrandbits(32)
        self.cipid = rng.getrandbits(16)
        self.sipid = rng.getrandbits(16)
        self.cts = rng.getrandbits(31)
        self.sts = rng.getrandbits(31)
        self.cwin = rng.choice((502, 501, 64240 >> 7, 1024))
        self.swin = rng.choice((509, 502, 1024, 8192 >> 7))
        self.client = f"{cip}:{cport}"
        self.server = f"{sip}:{sport}"

    # -- frame building ---------------------------------------------------
    def frame(self, fc: bool, flags: int, seq: int, ack: int, payload: bytes = b"",
              opts: bytes | None = None) -> bytes:
        now_ms = self.g.now // 1000
        if fc:
            eth, src, dst, sp, dp, win = self.eth_cs, self.csrc, self.sdst, self.cport, self.sport, self.cwin
            self.cipid = ipid = (self.cipid + 1) & 0xFFFF
            tsval, tsecr = (now_ms + self.cts) & 0xFFFFFFFF, (now_ms + self.sts - 1) & 0xFFFFFFFF
        else:
            eth, src, dst, sp, dp, win = self.eth_sc, self.sdst, self.csrc, self.sport, self.cport, self.swin
            self.sipid = ipid = (self.sipid + 1) & 0xFFFF
            tsval, tsecr = (now_ms + self.sts) & 0xFFFFFFFF, (now_ms + self.cts - 1) & 0xFFFFFFFF
        if opts is None:
            opts = b"\x01\x01\x08\x0a" + _TSOPT.pack(tsval, tsecr)
        elif opts == b"SYN":
            if flags & ACK:
                tsecr = (now_ms + (self.cts if not fc else self.sts)) & 0xFFFFFFFF
            else:
                tsecr = 0
            win = 64240 if fc else 65160
            opts = (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + _TSOPT.pack(tsval, tsecr)
                    + b"\x01\x03\x03\x07")
        body = opts + payload if opts else payload
        thl = 20 + len(opts)
        tcplen = thl + len(payload)
        total = 20 + tcplen
        s = self.ipbase + total + ipid
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        iph = _IPH.pack(0x45, 0, total, ipid, 0x4000, 64, 6, (~s) & 0xFFFF, src, dst)
        offflags = (thl << 10) | flags
        cs = (self.psbase + tcplen + sp + dp + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
              + (ack & 0xFFFF) + offflags + win)
        if len(body) & 1:
            cs += int.from_bytes(body + b"\0", "big")
        elif body:
            cs += int.from_bytes(body, "big")
        tcph = _TCPH.pack(sp, dp, seq, ack, offflags, win, 0xFFFF - cs % 0xFFFF, 0)
        return eth + iph + tcph + body

    # -- helpers (generators of frames) ------------------------------------
    def ack(self, fc: bool) -> bytes:
        if fc:
            return self.frame(True, ACK, self.cnxt, self.snxt)
        return self.frame(False, ACK, self.snxt, self.cnxt)

    def open(self):
        """Three-way handshake (occasionally with a retransmitted SYN)."""
        yield self.frame(True, SYN, self.cnxt, 0, opts=b"SYN")
        if self.g.rng.random() < 0.02:
            yield 1_000_000
            yield self.frame(True, SYN, self.cnxt, 0, opts=b"SYN")
        self.cnxt = (self.cnxt + 1) & 0xFFFFFFFF
        yield self.frame(False, SYN | ACK, self.snxt, self.cnxt, opts=b"SYN")
        self.snxt = (self.snxt + 1) & 0xFFFFFFFF
        yield self.ack(True)

    def refuse(self):
        """SYN answered by RST (ECONNREFUSED)."""
        yield self.frame(True, SYN, self.cnxt, 0, opts=b"SYN")
        self.cnxt = (self.cnxt + 1) & 0xFFFFFFFF
        yield self.frame(False, RST | ACK, 0, self.cnxt, opts=b"")

    def unanswered(self, tries: int = 3):
        """SYN never answered: retransmitted with exponential backoff."""
        delay = 1_000_000
        for _ in range(tries):
            yield self.frame(True, SYN, self.cnxt, 0, opts=b"SYN")
            yield delay
            delay *= 2

    def send_head(self, fc: bool, data: bytes, mangle: bool = True):
        """Send a small message (an HTTP head, a few WS frames): maybe split
        across segments, reordered, duplicated, or retransmitted overlapping."""
        rng = self.g.rng
        base = self.cnxt if fc else self.snxt
        n = len(data)
        cuts = []
        r = rng.random() if mangle else 1.0
        if n > 1448:
            cuts = list(range(1448, n, 1448))
        elif n > 8 and r < 0.25:
            k = 1 if rng.random() < 0.7 else 2
            cuts = sorted(set(rng.randrange(1, n) for _ in range(k)))
            # sometimes split right inside the blank line
            if rng.random() < 0.3 and data.endswith(b"\r\n\r\n"):
                cuts = sorted(set(cuts + [n - 2]))
        bounds = [0] + cuts + [n]
        segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        order = list(range(len(segs)))
        extra = None
        if len(segs) > 1 and mangle and rng.random() < 0.35:
            i = rng.randrange(len(segs) - 1)
            order[i], order[i + 1] = order[i + 1], order[i]          # out of order
        if mangle and rng.random() < 0.08:
            extra = "dup" if rng.random() < 0.5 or n > 1448 else "overlap"
        if fc:
            oseq, oack = self.snxt, self.cnxt
        else:
            oseq, oack = self.cnxt, self.snxt
        nxt = 0    # index of the first segment the receiver still misses
        recv = [False] * len(segs)
        for idx in order:
            a, b = segs[idx]
            flags = ACK | PSH if b == n else ACK
            yield self.frame(fc, flags, (base + a) & 0xFFFFFFFF, oseq, data[a:b])
            recv[idx] = True
            if idx > nxt:   # a hole: the receiver sends a duplicate ACK
                yield self.frame(not fc, ACK, oseq, (oack + segs[nxt][0]) & 0xFFFFFFFF)
            while nxt < len(segs) and recv[nxt]:
                nxt += 1
        if extra == "dup":
            a, b = segs[-1]
            yield self.frame(fc, ACK | PSH, (base + a) & 0xFFFFFFFF, oseq, data[a:b])
        elif extra == "overlap":
            yield self.frame(fc, ACK | PSH, base, oseq, data)
        if fc:
            self.cnxt = (self.cnxt + n) & 0xFFFFFFFF
        else:
            self.snxt = (self.snxt + n) & 0xFFFFFFFF
        yield self.ack(not fc)

    def send_bulk(self, fc: bool, n: int, source: "Payload", mss: int = 1448, off: int | None = None):
        """Stream n bytes of `source` in MSS segments with delayed ACKs,
        occasional retransmissions and reordering.  Stops if the capture ends."""
        g = self.g
        rng = g.rng
        rnd = rng.random
        if off is None:
            off = rng.randrange(source.size)
        sent = 0
        unacked = 0
        held = None
        frame = self.frame
        while sent < n:
            if g.stopping:
                return
            ln = mss if n - sent > mss else n - sent
            payload = source.get(off + sent, ln)
            if fc:
                seq, ack = self.cnxt, self.snxt
                self.cnxt = (seq + ln) & 0xFFFFFFFF
            else:
                seq, ack = self.snxt, self.cnxt
                self.snxt = (seq + ln) & 0xFFFFFFFF
            sent += ln
            flags = ACK | PSH if sent == n or rnd() < 0.1 else ACK
            r = rnd()
            if r < 0.002 and held is None and sent < n:
                held = frame(fc, flags, seq, ack, payload)   # goes out after the next one
                continue
            yield frame(fc, flags, seq, ack, payload)
            if held is not None:
                yield held
                held = None
            elif r > 0.998:
                yield frame(fc, flags, seq, ack, payload)    # spurious retransmission
            unacked += 1
            if unacked >= 2 or rnd() < 0.15:
                unacked = 0
                yield self.ack(not fc)
        if held is not None:
            yield held
        if unacked:
            yield self.ack(not fc)

    def close(self, fc_first: bool = True):
        """Orderly FIN/ACK close started by one side."""
        first = fc_first
        if first:
            yield self.frame(True, FIN | ACK, self.cnxt, self.snxt)
            self.cnxt = (self.cnxt + 1) & 0xFFFFFFFF
            yield self.frame(False, FIN | ACK, self.snxt, self.cnxt)
            self.snxt = (self.snxt + 1) & 0xFFFFFFFF
            yield self.ack(True)
        else:
            yield self.frame(False, FIN | ACK, self.snxt, self.cnxt)
            self.snxt = (self.snxt + 1) & 0xFFFFFFFF
            yield self.frame(True, FIN | ACK, self.cnxt, self.snxt)
            self.cnxt = (self.cnxt + 1) & 0xFFFFFFFF
            yield self.ack(False)

    def half_close(self, fc: bool):
        if fc:
            yield self.frame(True, FIN | ACK, self.cnxt, self.snxt)
            self.cnxt = (self.cnxt + 1) & 0xFFFFFFFF
            yield self.ack(False)
        else:
            yield self.frame(False, FIN | ACK, self.snxt, self.cnxt)
            self.snxt = (self.snxt + 1) & 0xFFFFFFFF
            yield self.ack(True)


class Payload:
    """A fixed block of bytes that bulk segments are sliced from."""

    def __init__(self, data: bytes):
        self.data = data + data[:65536]
        self.size = len(data)

    def get(self, off: int, ln: int) -> bytes:
        off %= self.size
        return self.data[off:off + ln]


class Gen:
    def __init__(self, preset: str, seed: int, packets: int | None = None,
                 chains: int | None = None, duration: float | None = None, mix: str = "default"):
        p = dict(PRESETS[preset])
        self.mix = mix
        self.mix_cut = MIXES[mix]
        if packets:
            p["packets"] = packets
        if chains is not None:
            p["chains"] = chains
        if duration:
            p["duration"] = duration
        self.preset = preset
        self.params = p
        self.seed = seed
        self.rng = random.Random(f"wscap-bench/{GENERATOR_VERSION}/{seed}")
        self.now = START_US
        self.mean_dt = max(1, int(p["duration"] * 1_000_000 / p["packets"]))
        self.end_us = START_US + int(p["duration"] * 1_000_000)
        self.stopping = False
        self.truth: list[dict] = []
        self.ports: dict[str, set[int]] = {}
        self.used_ws: set[tuple[str, int]] = set()
        r = self.rng
        self.binary = Payload(r.randbytes(1 << 20))
        words = [b"const", b"import", b"from", b"export", b"function", b"return", b"=>",
                 b"useState", b"React", b"props", b"{", b"}", b"(", b")", b";", b"\n",
                 b"await", b"fetch", b"'./api'", b"meet", b"room", b"sonar", b"let", b"if"]
        text = b" ".join([words[i % len(words)] for i in r.randbytes(100_000)])
        self.text = Payload(text)
        self.json_rooms = b'{"rooms":[' + b",".join(
            b'{"id":"r%d","name":"room %d","members":%d}' % (i, i, r.randrange(20))
            for i in range(40)) + b"]}"

    # -- ports -------------------------------------------------------------
    def eph(self, ip: str, ws: bool = False) -> int:
        """A random ephemeral port of `ip`, never reused while the range lasts;
        WebSocket legs' ports are never reused at all."""
        used = self.ports.setdefault(ip, set())
        if len(used) > 25_000:
            used.clear()
            used.update(p for (i, p) in self.used_ws if i == ip)
        rr = self.rng.randrange
        while True:
            p = 32768 + rr(28232)
            if p not in used:
                used.add(p)
                if ws:
                    self.used_ws.add((ip, p))
                return p

    # -- writing -------------------------------------------------------------
    def run(self, pcap_path: str) -> dict:
        p = self.params
        rng = self.rng
        target = p["packets"]
        plan = self.plan_chains(target, p["chains"])
        plan += self.plan_arp(target)
        plan.sort(key=lambda x: x[0])
        plan_i = 0
        # discrete-event scheduler: a heap of (time, n, generator, is_filler).  A
        # generator yields a frame (sent at its time; its next one comes one gap
        # later) or an int (sleep that many µs).  Filler packets are spaced so the
        # capture's aggregate rate matches the preset; packets of one chain follow
        # each other at bridge RTT / proxy-processing distances (30-600 µs).
        heap: list = []
        push, pop = heapq.heappush, heapq.heappop
        seq = 0
        filler_n = 0
        filler_target = 6
        fgap2 = self.mean_dt * filler_target * 2
        emitted = 0
        nbytes = 24
        buf: list[bytes] = []
        rec = _REC.pack
        rnd = rng.random
        with open(pcap_path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
            while True:
                while plan_i < len(plan) and plan[plan_i][0] <= emitted:
                    seq += 1
                    push(heap, (self.now + 1, seq, plan[plan_i][1], False))
                    plan_i += 1
                if not self.stopping:
                    if emitted >= target:
                        self.stopping = True
                    while filler_n < filler_target and not self.stopping:
                        seq += 1
                        push(heap, (self.now + int(rnd() * fgap2) + 1, seq, self.filler(filler_n), True))
                        filler_n += 1
                if not heap:
                    if plan_i < len(plan):
                        emitted = max(emitted, plan[plan_i][0])
                        continue
                    break
                t, _, gen, is_filler = pop(heap)
                if t > self.now:
                    self.now = t
                try:
                    item = next(gen)
                except StopIteration:
                    if is_filler:
                        filler_n -= 1
                    continue
                seq += 1
                if type(item) is int:
                    push(heap, (self.now + item, seq, gen, is_filler))
                    continue
                push(heap, (self.now + (int(rnd() * fgap2) + 1 if is_filler else 30 + int(rnd() * 570)),
                            seq, gen, is_filler))
                ln = len(item)
                buf.append(rec(self.now // 1_000_000, self.now % 1_000_000, ln, ln))
                buf.append(item)
                nbytes += 16 + ln
                emitted += 1
                if len(buf) >= 8192:
                    f.write(b"".join(buf))
                    buf.clear()
            f.write(b"".join(buf))
        self.packets = emitted
        self.nbytes = nbytes
        return self.summary(pcap_path)

    def summary(self, pcap_path: str) -> dict:
        by_cause: dict[str, int] = {c: 0 for c in CAUSES}
        upg = 0
        upg_resp = 0
        for c in self.truth:
            by_cause[c["cause"]] += 1
            upg += c["upgrade_requests"]
            upg_resp += c["responses_101"]
        return {
            "generator": f"wscap-bench gen {GENERATOR_VERSION}",
            "preset": self.preset,
            **({"mix": self.mix} if self.mix != "default" else {}),
            "seed": self.seed,
            "params": self.params,
            "pcap": os.path.basename(pcap_path),
            "packets": self.packets,
            "bytes": self.nbytes,
            "first_ts": START_US / 1e6,
            "summary": {"chains": len(self.truth), "by_cause": by_cause,
                        "upgrade_requests": upg, "responses_101": upg_resp},
            "chains": self.truth,
        }

    # -- planning --------------------------------------------------------------
    def plan_arp(self, target: int):
        rng = self.rng
        out = []
        for k in range(max(2, target // 20_000)):
            out.append((rng.randrange(target), self.arp()))
        return out

    def arp(self):
        rng = self.rng
        a, b = rng.sample([GW, VITE, BACKEND, EDGE, RELAY, WSDIRECT, DB, REDIS], 2)
        req = (b"\xff" * 6 + mac_of(a) + b"\x08\x06"
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac_of(a) + ip_bytes(a)
               + b"\x00" * 6 + ip_bytes(b))
        yield req
        yield (mac_of(a) + mac_of(b) + b"\x08\x06"
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac_of(b) + ip_bytes(b)
               + mac_of(a) + ip_bytes(a))

    def plan_chains(self, target: int, n: int):
        rng = self.rng
        combos = []
        for topo in TOPOLOGIES:
            for cause in CAUSES:
                if self.compatible(topo, cause):
                    combos.append((topo, cause))
        specs = []
        topo_names = list(TOPOLOGIES)
        topo_w = [TOPOLOGIES[t][0] for t in topo_names]
        for k in range(n):
            if k < len(combos):
                topo, cause = combos[k]
            else:
                cause = rng.choices(CAUSES, CAUSE_WEIGHTS)[0]
                topo = rng.choices(topo_names, topo_w)[0]
                if not self.compatible(topo, cause):
                    topo = "vite"
            hi = 0.5 if cause == "timeout" else 0.9
            specs.append((int(rng.uniform(0.01, hi) * target), topo, cause))
        specs.sort(key=lambda s: s[0])
        return [(at, self.chain(topo, cause)) for at, topo, cause in specs]

    @staticmethod
    def compatible(topo: str, cause: str) -> bool:
        if len(TOPOLOGIES[topo][1]) == 1:
            return cause in DIRECT_CAUSES
        return True

    # -- filler traffic ----------------------------------------------------------
    def filler(self, k: int):
        rng = self.rng
        r = rng.random()
        bulk, http = self.mix_cut
        if r < bulk:
            yield from self.bulk()
        elif r < http:
            yield from self.http_session()
        else:
            yield from self.api_via_proxy()

    def bulk(self):
        rng = self.rng
        kind = rng.random()
        if kind < 0.35:
            c = Conn(self, BACKEND, self.eph(BACKEND), DB, 5432)
            q = b"Q\x00\x00\x00\x40SELECT * FROM recordings WHERE room_id = $1 ORDER BY ts;\x00"
            src, up = self.binary, False
        elif kind < 0.55:
            c = Conn(self, BACKEND, self.eph(BACKEND), REDIS, 6379)
            q = b"*2\r\n$3\r\nGET\r\n$24\r\nroom:snapshot:%08d\r\n" % rng.randrange(10**8)
            src, up = self.binary, False
        elif kind < 0.75:
            c = Conn(self, BACKEND, self.eph(BACKEND), MINIO, 9000)
            q = None
            src, up = self.binary, True
        else:
            c = Conn(self, BACKEND, self.eph(BACKEND), rng.choice(OUTSIDE), 443)
            q = b"\x17\x03\x03\x00\x40" + rng.randbytes(64)
            src, up = self.binary, False
        yield from c.open()
        size = int(rng.paretovariate(1.2) * 60_000)
        size = min(size, 40_000_000)
        if q is None:  # upload: PUT with a body (not a websocket, not an upgrade)
            head = (b"PUT /recordings/%d.webm HTTP/1.1\r\nHost: minio:9000\r\n"
                    b"Content-Length: %d\r\nContent-Type: video/webm\r\n\r\n" % (rng.randrange(10**6), size))
            yield from c.send_head(True, head, mangle=False)
            yield from c.send_bulk(True, size, src)
            if self.stopping:
                return
            yield from c.send_head(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"%x\"\r\n\r\n"
                                   % rng.getrandbits(64), mangle=False)
        else:
            yield from c.send_head(True, q, mangle=False)
            yield from c.send_bulk(up, size, src)
        if not self.stopping:
            yield from c.close(rng.random() < 0.5)

    def http_session(self):
        """A keep-alive HTTP/1.1 connection from the browser to vite or the port-80 proxy."""
        rng = self.rng
        if rng.random() < 0.8:
            server, port, host = VITE, 5173, "localhost:5173"
        else:
            server, port, host = EDGE, 80, "localhost"
        c = Conn(self, GW, self.eph(GW), server, port)
        yield from c.open()
        for _ in range(rng.randrange(1, 12)):
            if self.stopping:
                return
            path = rng.choice(["/src/main.tsx", "/src/App.tsx", "/@vite/client", "/node_modules/.vite/deps/react.js",
                               "/src/components/Room.tsx", "/assets/logo.svg", "/favicon.ico", "/"])
            req = (f"GET {path}?t={rng.randrange(10**12)} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Connection: keep-alive\r\nUser-Agent: {CHROME_UA}\r\nAccept: */*\r\n"
                   f"Referer: http://{host}/\r\nAccept-Encoding: gzip, deflate, br\r\n"
                   f"Accept-Language: en-US,en;q=0.9\r\n\r\n").encode()
            yield from c.send_head(True, req)
            if rng.random() < 0.2:
                yield from c.send_head(False, (f"HTTP/1.1 304 Not Modified\r\nEtag: W/\"{rng.getrandbits(32):x}\"\r\n"
                                               f"Date: {http_date(self.now)}\r\nConnection: keep-alive\r\n"
                                               f"Keep-Alive: timeout=5\r\n\r\n").encode())
                continue
            size = int(rng.paretovariate(1.1) * 3_000)
            size = min(size, 8_000_000)
            head = (f"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/javascript\r\n"
                    f"Cache-Control: no-cache\r\nEtag: W/\"{rng.getrandbits(32):x}\"\r\nDate: {http_date(self.now)}\r\n"
                    f"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: {size}\r\n\r\n").encode()
            yield from c.send_head(False, head)
            yield from c.send_bulk(False, size, self.text)
        if not self.stopping:
            yield from c.close(rng.random() < 0.3)

    def api_via_proxy(self):
        """Ordinary HTTP proxied by vite to the backend: an HTTP chain, not a WebSocket one."""
        rng = self.rng
        a = Conn(self, GW, self.eph(GW), VITE, 5173)
        yield from a.open()
        for _ in range(rng.randrange(1, 4)):
            if self.stopping:
                return
            b = Conn(self, VITE, self.eph(VITE), BACKEND, 5000)
            path = rng.choice(["/api/rooms", "/api/me", "/api/rooms/r%d/members" % rng.randrange(40)])
            req = (f"GET {path} HTTP/1.1\r\nHost: localhost:5173\r\nConnection: keep-alive\r\n"
                   f"User-Agent: {CHROME_UA}\r\nAccept: application/json\r\n"
                   f"Origin: http://localhost:5173\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n").encode()
            yield from a.send_head(True, req)
            yield from b.open()
            ureq = (f"GET {path} HTTP/1.1\r\nhost: meetsonar-backend:5000\r\nconnection: close\r\n"
                    f"user-agent: {CHROME_UA}\r\naccept: application/json\r\norigin: http://localhost:5173\r\n"
                    f"accept-encoding: gzip, deflate, br\r\nx-forwarded-for: {GW}\r\nx-forwarded-port: 5173\r\n"
                    f"x-forwarded-proto: http\r\n\r\n").encode()
            yield from b.send_head(True, ureq)
            body = self.json_rooms
            head = (f"HTTP/1.1 200 OK\r\nServer: Werkzeug/3.0.1 Python/3.11.7\r\nDate: {http_date(self.now)}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            yield from b.send_head(False, head + body)
            yield from b.close(False)
            phead = (f"HTTP/1.1 200 OK\r\nserver: Werkzeug/3.0.1 Python/3.11.7\r\ndate: {http_date(self.now)}\r\n"
                     f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n").encode()
            yield from a.send_head(False, phead + body)
        if not self.stopping:
            yield from a.close(True)

    # -- WebSocket chains ----------------------------------------------------------
    def chain(self, topo: str, cause: str):
        """Plan one chain now (ports, keys, ground truth) and return its packet generator."""
        rng = self.rng
        _, legs_spec, origin = TOPOLOGIES[topo]
        port = rng.choice(ODD_PORTS)
        legs = []
        for cip, sip, sport, host in legs_spec:
            sport = sport or port
            legs.append({"cip": cip, "cport": self.eph(cip, ws=True), "sip": sip, "sport": sport,
                         "host": host.format(port=sport)})
        origin = origin.format(port=port)
        key = base64.b64encode(rng.randbytes(16)).decode()
        variant = cause
        if cause == "origin-rejected":
            variant = "origin-kept-host-rewritten" if len(legs) == 1 or rng.random() < 0.6 else "origin-rewritten"
        elif cause == "upstream-refused":
            variant = "refused-then-fin" if rng.random() < 0.6 else "refused-then-502"
        elif cause == "proxy-rejected":
            variant = rng.choice(["502-no-upstream", "502-no-upstream", "503-unavailable"])
        elif cause == "bad-accept":
            variant = rng.choice(["accept-without-guid", "accept-of-other-key", "accept-garbled"])
        elif cause == "upgrade-header-stripped":
            # the proxy drops the Upgrade header; sometimes Connection too ("close")
            variant = rng.choice(["stripped-426", "stripped-400", "stripped-upgrade-only-426"])
        elif cause == "timeout":
            variant = "upstream-silent" if len(legs) > 1 else "server-silent"
            # "upstream-syn-unanswered" (the proxy's SYN never answered) exists but is not
            # drawn: the cause list has no code for it (wscap calls it
            # upstream-unreachable) and a proxy that never answers its client is unrealistic.
        elif cause == "ok":
            variant = rng.choice(["close", "close", "open-pings", "stream"])
        # which legs exist on the wire
        if cause == "proxy-rejected":
            legs = legs[:1]
        hop = None
        if cause != "ok":
            hop = 0 if len(legs) == 1 else 1
        path = [legs[0]["cip"]] + [f"{lg['sip']}:{lg['sport']}" for lg in legs]
        upg_legs = []
        for i, lg in enumerate(legs):
            upstream = i > 0
            upg = not (upstream and (cause in ("upstream-refused", "upgrade-header-stripped")
                                     or variant == "upstream-syn-unanswered"))
            upg_legs.append(upg)
        n_upg_req = sum(upg_legs)
        n_101 = n_upg_req if cause in ("ok", "bad-accept") else 0
        truth = {
            "id": len(self.truth) + 1,
            "legs": [{"client": f"{lg['cip']}:{lg['cport']}", "server": f"{lg['sip']}:{lg['sport']}",
                      "upgrade_request": upg} for lg, upg in zip(legs, upg_legs)],
            "path": path,
            "names": [NAMES.get(legs[0]["cip"], "?")] + [NAMES.get(lg["sip"], "?") for lg in legs],
            "topology": topo,
            "cause": cause,
            "hop": hop,
            "variant": variant,
            "key": key,
            "target": None,
            "upgrade_requests": n_upg_req,
            "responses_101": n_101,
        }
        target = rng.choice(["/ws", "/ws/room/%s" % rng.choice(["standup", "r12", "design-review"]),
                             "/socket.io/?EIO=4&transport=websocket", "/ws?token=%x" % rng.getrandbits(48)])
        truth["target"] = target
        self.truth.append(truth)
        return self._chain(legs, cause, variant, key, origin, target, truth, len(legs_spec) == 1)

    def _chain(self, legs, cause, variant, key, origin, target, truth, direct):
        rng = self.rng
        ua = CHROME_UA if rng.random() < 0.8 else FIREFOX_UA
        l0 = legs[0]
        a = Conn(self, l0["cip"], l0["cport"], l0["sip"], l0["sport"])
        assert a.client == truth["legs"][0]["client"]
        req_headers = [("Host", l0["host"]), ("Connection", "Upgrade"), ("Pragma", "no-cache"),
                       ("Cache-Control", "no-cache"), ("User-Agent", ua), ("Upgrade", "websocket"),
                       ("Origin", origin), ("Sec-WebSocket-Version", "13"),
                       ("Accept-Encoding", "gzip, deflate, br"), ("Accept-Language", "en-US,en;q=0.9"),
                       ("Sec-WebSocket-Key", key),
                       ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
        if ua is FIREFOX_UA:
            req_headers[1] = ("Connection", "keep-alive, Upgrade")
        req = head_bytes(f"GET {target} HTTP/1.1", req_headers)
        yield from a.open()
        yield from a.send_head(True, req)

        good_accept = accept_for(key)
        if cause == "bad-accept":
            if variant == "accept-without-guid":
                accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
            elif variant == "accept-of-other-key":
                accept = accept_for(base64.b64encode(rng.randbytes(16)).decode())
            else:
                accept = good_accept[:-4] + "AAA="
        else:
            accept = good_accept
        srv = "Python/3.11 websockets/12.0"
        resp101 = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept),
                   ("Sec-WebSocket-Extensions", "permessage-deflate"), ("Date", http_date(self.now)),
                   ("Server", srv)]

        if direct:
            # direct connection to an odd-port WebSocket server
            if cause == "timeout":
                return
            if cause == "origin-rejected":
                body = f"Failed to open a WebSocket connection: invalid Origin header: {origin}.\n".encode()
                resp = head_bytes("HTTP/1.1 403 Forbidden", [
                    ("Date", http_date(self.now)), ("Server", srv), ("Content-Length", str(len(body))),
                    ("Content-Type", "text/plain"), ("Connection", "close")]) + body
                yield from a.send_head(False, resp)
                yield from a.close(False)
                return
            yield from a.send_head(False, head_bytes("HTTP/1.1 101 Switching Protocols", resp101))
            if cause == "bad-accept":
                yield from a.close(True)   # the browser fails the connection
                return
            yield from self.ws_session(variant, [a])
            return

        # proxied: the proxy may answer itself
        if cause == "proxy-rejected":
            status = "502 Bad Gateway" if variant.startswith("502") else "503 Service Unavailable"
            body = b"Bad Gateway" if status.startswith("502") else b"Service Unavailable"
            yield rng.randrange(200, 5_000)
            yield from a.send_head(False, head_bytes(f"HTTP/1.1 {status}", [
                ("Content-Type", "text/plain"), ("Date", http_date(self.now)), ("Connection", "close"),
                ("Content-Length", str(len(body)))]) + body)
            yield from a.close(False)
            return

        l1 = legs[1]
        b = Conn(self, l1["cip"], l1["cport"], l1["sip"], l1["sport"])
        if cause == "upstream-refused":
            yield from b.refuse()
            if variant == "refused-then-502":
                body = b"Bad Gateway"
                yield from a.send_head(False, head_bytes("HTTP/1.1 502 Bad Gateway", [
                    ("Content-Type", "text/plain"), ("Date", http_date(self.now)),
                    ("Connection", "close"), ("Content-Length", str(len(body)))]) + body)
                yield from a.close(False)
            else:
                yield from a.close(False)   # vite: socket.end() on proxy error
            return
        if cause == "timeout" and variant == "upstream-syn-unanswered":
            yield from b.unanswered()
            return

        # node http-proxy: lower-cased names, host rewritten, x-forwarded-* appended
        up_headers = []
        for name, value in req_headers:
            lname = name.lower()
            if lname == "host":
                value = l1["host"]
            if lname == "origin" and variant == "origin-rewritten":
                value = "http://" + l1["host"]
            if cause == "upgrade-header-stripped":
                if lname == "upgrade":
                    continue
                if lname == "connection" and "upgrade-only" not in variant:
                    value = "close"
            up_headers.append((lname, value))
        up_headers += [("x-forwarded-for", l0["cip"]), ("x-forwarded-port", str(l0["sport"])),
                       ("x-forwarded-proto", "ws")]
        ureq = head_bytes(f"GET {target} HTTP/1.1", up_headers)
        yield from b.open()
        yield from b.send_head(True, ureq)
        if cause == "timeout":
            return   # the backend never answers; neither does the proxy

        if cause in ("origin-rejected", "upgrade-header-stripped"):
            if cause == "origin-rejected":
                sent_origin = dict(up_headers)["origin"]
                status = "403 Forbidden"
                body = f"Failed to open a WebSocket connection: invalid Origin header: {sent_origin}.\n".encode()
                extra = []
            elif variant.endswith("-426"):
                status = "426 Upgrade Required"
                body = b"Failed to open a WebSocket connection: missing Upgrade header.\n"
                extra = [("Upgrade", "websocket")]
            else:
                status = "400 Bad Request"
                body = b'Can "Upgrade" only to "WebSocket".'
                extra = []
            hdrs = [("Date", http_date(self.now)), ("Server", srv)] + extra + [
                ("Content-Length", str(len(body))), ("Content-Type", "text/plain"), ("Connection", "close")]
            yield from b.send_head(False, head_bytes(f"HTTP/1.1 {status}", hdrs) + body)
            yield from b.close(False)
            relay = [(n.lower(), v) for n, v in hdrs]
            yield from a.send_head(False, head_bytes(f"HTTP/1.1 {status}", relay) + body)
            yield from a.close(False)
            return

        yield from b.send_head(False, head_bytes("HTTP/1.1 101 Switching Protocols", resp101))
        relay101 = [(n.lower(), v) for n, v in resp101]
        yield from a.send_head(False, head_bytes("HTTP/1.1 101 Switching Protocols", relay101))
        if cause == "bad-accept":
            yield from a.close(True)   # the browser fails the connection, the proxy closes upstream
            yield from b.close(True)
            return
        yield from self.ws_session(variant, [a, b])

    def ws_session(self, variant, conns):
        """WebSocket traffic after a good 101; frames are relayed byte-for-byte by the proxy.
        conns: legs client side first; server->client frames flow from the last leg back."""
        rng = self.rng
        fwd = conns            # client -> server order
        back = conns[::-1]     # server -> client order

        def from_server(data):
            for c in back:
                yield from c.send_head(False, data, mangle=False)

        def from_client(data):
            for c in fwd:
                yield from c.send_head(True, data, mangle=False)

        yield from from_server(ws_frame(1, b'{"type":"hello","server":"meetsonar","v":3}'))
        mask = rng.randbytes(4)
        yield from from_client(ws_frame(1, b'{"type":"join","room":"%d"}' % rng.randrange(1000), mask))
        for _ in range(rng.randrange(1, 5)):
            yield from from_server(ws_frame(1, b'{"type":"presence","members":%d}' % rng.randrange(30)))
        if variant == "stream":
            for _ in range(rng.randrange(3, 12)):
                if self.stopping:
                    return
                yield rng.randrange(20_000, 400_000)   # the backend pushes a chunk now and then
                n = rng.randrange(1_000, 16_000)
                off = rng.randrange(self.binary.size)
                msg = ws_frame(2, self.binary.get(off, n))
                for c in back:
                    yield from c.send_bulk(False, len(msg), Payload(msg), off=0)
        elif variant == "open-pings":
            while not self.stopping and self.now < self.end_us:
                yield rng.randrange(20_000_000, 40_000_000)
                if self.stopping:
                    return
                yield from from_server(ws_frame(9, b""))
                yield from from_client(ws_frame(10, b"", rng.randbytes(4)))
            return
        if self.stopping:
            return
        yield from from_client(ws_frame(8, struct.pack("!H", 1000), rng.randbytes(4)))
        yield from from_server(ws_frame(8, struct.pack("!H", 1000)))
        for c in back:
            yield from c.close(False)


def head_bytes(start: str, headers) -> bytes:
    return (start + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


def generate(preset: str, out_dir: str, seed: int = 1, name: str | None = None, **overrides) -> dict:
    """Write <out_dir>/<name>.pcap and <name>.truth.json; return the truth dict
    (with "pcap_path" and "truth_path" added)."""
    os.makedirs(out_dir, exist_ok=True)
    mix = overrides.get("mix") or "default"
    name = name or f"{preset}-s{seed}" + ("" if mix == "default" else f"-{mix}")
    pcap_path = os.path.join(out_dir, name + ".pcap")
    truth_path = os.path.join(out_dir, name + ".truth.json")
    g = Gen(preset, seed, **overrides)
    truth = g.run(pcap_path)
    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    truth["pcap_path"] = pcap_path
    truth["truth_path"] = truth_path
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    ap.add_argument("--name", help="file stem (default PRESET-sSEED)")
    ap.add_argument("--packets", type=int, help="override the preset's packet target")
    ap.add_argument("--chains", type=int, help="override the preset's chain count")
    ap.add_argument("--mix", choices=sorted(MIXES), default="default",
                    help="traffic mix: default, or bulk (~85%% bulk transfers, like a busy Docker bridge)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    t = generate(args.preset, args.out, args.seed, args.name, packets=args.packets, chains=args.chains,
                 mix=args.mix)
    dt = time.perf_counter() - t0
    s = t["summary"]
    print(f"{t['pcap_path']}: {t['packets']} packets, {t['bytes'] / 1e6:.1f} MB, "
          f"{s['chains']} chains {s['by_cause']} in {dt:.1f}s", file=sys.stderr)
    print(t["truth_path"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
