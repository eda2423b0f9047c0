"""Mutations: a case is a seed plus a few stacked mutations, derived from (seed, index) alone.

`make_case(seeds, run_seed, index)` is deterministic, so the parent never has to
ship case bytes to a worker or keep them: a crash or hang is reproduced by
re-deriving the same case from its index. Mutations come in three layers:

- structure: whole records or blocks (duplicate, drop, reorder, repeat), file
  headers (magic, version, snap length, link type, section/interface blocks),
  record lengths (absurd caplen/wirelen/block length), timestamps;
- packet: IPv4/IPv6/TCP fields inside a record (total length, fragment bits,
  header lengths, sequence numbers, flags), HTTP/WebSocket tokens spliced into
  payloads, a segment split or turned into IP fragments;
- bytes, after serialisation: bit flips, byte sets, truncation anywhere,
  insert/delete/duplicate ranges; optionally gzip-wrapped (and then cut or flipped).
"""
from __future__ import annotations

import gzip
import random
import struct

from .corpus import (Record, Seed, block, epb_body, idb_body, pcap_header, pcap_record, seed_blocks,
                     shb_body)

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 105, 127, 147, 0xFFFF, 0x0FFFFFFF]
INTERESTING32 = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0x40001, 0x7FFFFFFF,
                 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
TOKENS = [
    b"\r\n\r\n", b"\n\n", b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"\t",
    b"GET / HTTP/1.1\r\n", b"HTTP/1.1 101 Switching Protocols\r\n", b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 101 x\r\n", b"HTTP/2 ", b"Upgrade: websocket\r\n", b"Connection: Upgrade\r\n",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"Sec-WebSocket-Version: 13\r\n",
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n", b"Content-Length: 99999999999\r\n",
    b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n", b" folded\r\n",
    b"\x81\x7f\xff\xff\xff\xff\xff\xff\xff\xff", b"\x88\x02\x03\xe8", b"\x88\x01\x03", b"\xc1\x05\xf2\x48\xcd\xc9\xc9",
    b"\x01\x7e\xff\xff", b"\x80\x00", b"\x89\xfe\x00\x10", b"\x8f\x00", b"\xc0\x80\x00\x00\x00\x00",
    b"\xff" * 16, b"A" * 300, b"\xc3\x28", b"\xed\xa0\x80",
]


def _ip_off(linktype: int, data: bytes) -> int | None:
    if linktype == 1:
        return 14 if len(data) >= 14 else None
    if linktype == 113:
        return 16
    if linktype == 276:
        return 20
    if linktype in (101, 12, 14, 228, 229):
        return 0
    if linktype in (0, 108):
        return 4
    return None


def _locate(linktype: int, data: bytes):
    """(ip offset, version, tcp offset, payload offset) for a plain IPv4/IPv6 TCP packet, else None."""
    off = _ip_off(linktype, data)
    if off is None or len(data) < off + 20:
        return None
    ver = data[off] >> 4
    if ver == 4:
        ihl = (data[off] & 15) * 4
        if data[off + 9] != 6 or ihl < 20:
            return None
        t = off + ihl
    elif ver == 6 and len(data) >= off + 40:
        if data[off + 6] != 6:
            return None
        t = off + 40
    else:
        return None
    if len(data) < t + 20:
        return None
    return off, ver, t, t + (data[t + 12] >> 4) * 4


def _put(data: bytes, at: int, fmt: str, val: int) -> bytes:
    size = struct.calcsize(fmt)
    if at < 0 or at + size > len(data):
        return data
    mask = (1 << (8 * size)) - 1
    return data[:at] + struct.pack(fmt, val & mask) + data[at + size:]


class Mutator:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.ops: list[str] = []

    # -- helpers -------------------------------------------------------------------
    def absurd(self, near: int = 0) -> int:
        r = self.r
        c = r.random()
        if c < 0.4:
            return r.choice(INTERESTING32)
        if c < 0.7:
            return max(0, near + r.randint(-64, 64))
        return r.getrandbits(32)

    # -- packet layer ----------------------------------------------------------------
    def packet(self, linktype: int, rec: Record) -> list[Record]:
        """Mutate one record's packet; may return several records (split, fragments)."""
        r = self.r
        data = rec.data
        loc = _locate(linktype, data)
        op = r.choice(["iplen", "ihl", "frag", "proto", "seq", "seq", "ack", "doff", "flags", "flags",
                       "token", "token", "token", "paytrunc", "split", "split", "fragment", "fragment",
                       "ver", "ip6ext"])
        self.ops.append("pkt:" + op)
        if loc is None:
            if data:
                i = r.randrange(len(data))
                return [Record(rec.sec, rec.frac, data[:i] + bytes([r.getrandbits(8)]) + data[i + 1:], rec.wirelen)]
            return [rec]
        ip, ver, t, p = loc
        if op == "iplen":
            data = _put(data, ip + (2 if ver == 4 else 4), "!H", r.choice([0, 1, 20, 40, 0xFFFF, len(data) - ip + r.randint(-30, 30)]))
        elif op == "ihl" and ver == 4:
            data = data[:ip] + bytes([(data[ip] & 0xF0) | r.randrange(16)]) + data[ip + 1:]
        elif op == "frag" and ver == 4:
            data = _put(data, ip + 6, "!H", r.getrandbits(16))
        elif op == "proto":
            data = _put(data, ip + (9 if ver == 4 else 6), "!B", r.choice([6, 17, 1, 0, 44, 43, 60, 51, 255]))
        elif op == "ver":
            data = data[:ip] + bytes([(r.randrange(16) << 4) | (data[ip] & 15)]) + data[ip + 1:]
        elif op == "ip6ext" and ver == 6:
            data = _put(data, ip + 6, "!B", r.choice([0, 43, 44, 60, 51, 135, 139, 140]))
        elif op == "seq":
            seq = struct.unpack_from("!I", data, t + 4)[0]
            data = _put(data, t + 4, "!I", r.choice([seq + r.randint(-3000, 3000), seq + 0x80000000,
                                                    seq - 0x7FFFFFFF, r.getrandbits(32), 0, 0xFFFFFFFF]))
        elif op == "ack":
            data = _put(data, t + 8, "!I", r.getrandbits(32))
        elif op == "doff":
            data = data[:t + 12] + bytes([(r.randrange(16) << 4) | (data[t + 12] & 15)]) + data[t + 13:]
        elif op == "flags":
            data = _put(data, t + 13, "!B", r.choice([0x02, 0x12, 0x01, 0x04, 0x11, 0x14, 0x18, 0x00, 0xFF,
                                                       r.getrandbits(8)]))
        elif op == "token":
            tok = r.choice(TOKENS)
            if r.random() < 0.3:
                tok = tok * r.randint(2, 50)
            at = r.randint(min(p, len(data)), len(data))
            if r.random() < 0.5:
                data = data[:at] + tok + data[at + len(tok):]      # overwrite
            else:
                data = data[:at] + tok + data[at:]                 # insert
        elif op == "paytrunc":
            if p < len(data):
                data = data[:r.randint(min(p, len(data)), len(data))]
        elif op == "split" and p < len(data) - 1:
            return self._split(rec, ip, ver, t, p)
        elif op == "fragment" and ver == 4 and len(data) - ip > 24:
            return self._fragment(rec, ip)
        return [Record(rec.sec, rec.frac, data, rec.wirelen if r.random() < 0.7 else len(data))]

    def _split(self, rec: Record, ip: int, ver: int, t: int, p: int) -> list[Record]:
        """One TCP segment becomes two (same headers, seq adjusted), maybe swapped or overlapping."""
        r = self.r
        d = rec.data
        cut = r.randint(p + 1, len(d) - 1)
        seq = struct.unpack_from("!I", d, t + 4)[0]
        overlap = r.choice([0, 0, 0, r.randint(1, 8)])
        first = d[:cut + overlap] if r.random() < 0.8 else d[:cut] + bytes(overlap)
        second_payload = d[cut:]
        second = _put(d[:p], t + 4, "!I", seq + (cut - p)) + second_payload
        out = [Record(rec.sec, rec.frac, first, len(first)), Record(rec.sec, rec.frac, second, len(second))]
        if r.random() < 0.4:
            out.reverse()
        return out

    def _fragment(self, rec: Record, ip: int) -> list[Record]:
        """An IPv4 packet becomes IP fragments: in order, reversed, overlapping, or with one missing."""
        r = self.r
        d = rec.data
        ihl = (d[ip] & 15) * 4
        body = d[ip + ihl:]
        if ihl < 20 or len(body) < 16:
            return [rec]
        step = r.choice([8, 16, 24, max(8, (len(body) // 3) & ~7)])
        parts = []
        for off in range(0, len(body), step):
            chunk = body[off:off + step]
            more = off + step < len(body)
            hdr = bytearray(d[ip:ip + ihl])
            struct.pack_into("!H", hdr, 2, ihl + len(chunk))
            struct.pack_into("!H", hdr, 6, (0x2000 if more else 0) | (off // 8))
            parts.append(Record(rec.sec, rec.frac, d[:ip] + bytes(hdr) + chunk, 0))
        parts = [Record(x.sec, x.frac, x.data, len(x.data)) for x in parts]
        c = r.random()
        if c < 0.3:
            parts.reverse()
        elif c < 0.5 and len(parts) > 1:
            del parts[r.randrange(len(parts))]
        elif c < 0.7:
            parts.insert(r.randrange(len(parts) + 1), r.choice(parts))
        elif c < 0.8:
            r.shuffle(parts)
        return parts

    # -- record layer ------------------------------------------------------------------
    def records(self, recs: list, linktype: int, allow_packet: bool = True) -> list:
        r = self.r
        if not recs:
            return recs
        op = r.choice(["dup", "drop", "swap", "shuffle", "reverse", "repeat", "move", "dropmany",
                       "packet", "packet", "packet", "packet"] if allow_packet else
                      ["dup", "drop", "swap", "shuffle", "reverse", "repeat", "move", "dropmany"])
        self.ops.append("rec:" + op)
        recs = list(recs)
        i = r.randrange(len(recs))
        if op == "dup":
            recs.insert(r.randrange(len(recs) + 1), recs[i])
        elif op == "drop":
            del recs[i]
        elif op == "dropmany":
            keep = r.random()
            recs = [x for x in recs if r.random() < keep]
        elif op == "swap":
            j = r.randrange(len(recs))
            recs[i], recs[j] = recs[j], recs[i]
        elif op == "shuffle":
            w = r.randint(2, 8)
            win = recs[i:i + w]
            r.shuffle(win)
            recs[i:i + w] = win
        elif op == "reverse":
            recs.reverse()
        elif op == "repeat":
            n = r.choice([2, 10, 200, 2000])
            n = max(2, min(n, (16 << 20) // (len(getattr(recs[i], "data", b"")) + 16)))   # cases stay <= ~16 MB
            recs[i:i + 1] = [recs[i]] * n
        elif op == "move":
            x = recs.pop(i)
            recs.append(x)
        elif op == "packet" and isinstance(recs[i], Record):
            recs[i:i + 1] = self.packet(linktype, recs[i])
        return recs

    # -- whole files ---------------------------------------------------------------------
    def pcap(self, s: Seed) -> bytes:
        r = self.r
        recs = list(s.records or [])
        lt = s.linktype
        for _ in range(r.choice([0, 1, 1, 2, 3])):
            recs = self.records(recs, lt)
        if r.random() < 0.12:
            lt = r.choice(LINKTYPES) if r.random() < 0.8 else r.getrandbits(32)
            self.ops.append(f"linktype:{lt}")
        endian, nanos = s.endian, s.nanos
        snaplen, major, minor = 262144, 2, 4
        if r.random() < 0.05:
            snaplen = self.absurd()
            self.ops.append("snaplen")
        if r.random() < 0.03:
            major, minor = r.getrandbits(16), r.getrandbits(16)
            self.ops.append("version")
        out = [pcap_header(endian, nanos, lt, snaplen, major, minor)]
        if r.random() < 0.04:
            out[0] = bytes(r.getrandbits(8) for _ in range(4)) + out[0][4:]
            self.ops.append("magic")
        bad = r.randrange(len(recs)) if recs and r.random() < 0.15 else -1
        for k, rec in enumerate(recs):
            if k == bad:
                which = r.choice(["caplen", "wirelen", "ts", "both"])
                self.ops.append("reclen:" + which)
                if which == "caplen":
                    out.append(pcap_record(endian, rec, caplen=self.absurd(len(rec.data))))
                elif which == "wirelen":
                    out.append(pcap_record(endian, rec, wirelen=self.absurd(rec.wirelen)))
                elif which == "ts":
                    out.append(pcap_record(endian, Record(r.getrandbits(32), r.getrandbits(32), rec.data, rec.wirelen)))
                else:
                    out.append(pcap_record(endian, rec, caplen=self.absurd(), wirelen=self.absurd()))
            else:
                out.append(pcap_record(endian, rec))
        return b"".join(out)

    def pcapng(self, s: Seed) -> bytes:
        r = self.r
        e = s.endian
        blocks = seed_blocks(s)
        lt = s.linktype
        nanos = s.nanos
        # Packet mutations act on EPB bodies through Record views.
        if s.records is not None:
            recs = list(s.records)
            for _ in range(r.choice([0, 1, 1, 2])):
                recs = self.records(recs, lt)
            blocks = blocks[:2] + [(6, epb_body(e, x, nanos)) for x in recs]
        else:
            for _ in range(r.choice([0, 1, 2])):
                blocks = blocks[:1] + self.records(blocks[1:], lt, allow_packet=False)
        n_extra = r.choice([0, 0, 0, 1, 2])
        for _ in range(n_extra):
            op = r.choice(["idb", "shb", "spb", "pb", "unknown", "badif", "tsresol", "tsoffset", "idblt"])
            self.ops.append("blk:" + op)
            at = r.randint(1, len(blocks))
            if op == "idb":
                blocks.insert(at, (1, idb_body(e, r.choice(LINKTYPES), self.absurd(),
                                             r.choice([None, 0, 3, 6, 9, 0x80 | 10, 0xFF, 0x7F, 0x80 | 63]))))
            elif op == "shb":
                blocks.insert(at, (0x0A0D0D0A, shb_body(e)))
            elif op == "spb":
                blocks.insert(at, (3, struct.pack(e + "I", self.absurd()) + bytes(r.getrandbits(8) for _ in range(r.randint(0, 64)))))
            elif op == "pb":
                blocks.insert(at, (2, struct.pack(e + "HHIIII", r.getrandbits(16), 0, 0, 0, self.absurd(), 60) + bytes(60)))
            elif op == "unknown":
                blocks.insert(at, (r.choice([4, 5, 0xBAD, 0x80000001, r.getrandbits(32)]),
                                   bytes(r.getrandbits(8) for _ in range(r.choice([0, 4, 17, 40])))))
            elif op == "badif":
                idx = [k for k, b in enumerate(blocks) if b[0] == 6]
                if idx:
                    k = r.choice(idx)
                    blocks[k] = (6, _put(blocks[k][1], 0, e + "I", self.absurd()))
            elif op in ("tsresol", "tsoffset", "idblt"):
                idx = [k for k, b in enumerate(blocks) if b[0] == 1]
                if idx:
                    k = r.choice(idx)
                    body = blocks[k][1][:8]
                    if op == "idblt":
                        body = _put(body, 0, e + "H", r.choice(LINKTYPES))
                        body += blocks[k][1][8:]
                    elif op == "tsresol":
                        body += struct.pack(e + "HHB3x", 9, 1, r.getrandbits(8)) + struct.pack(e + "HH", 0, 0)
                    else:
                        body += struct.pack(e + "HHq", 14, 8, r.getrandbits(63) - (1 << 62)) + struct.pack(e + "HH", 0, 0)
                    blocks[k] = (1, body)
        out = []
        bad = r.randrange(len(blocks)) if r.random() < 0.15 else -1
        for k, (t, body) in enumerate(blocks):
            if k == bad:
                which = r.choice(["blen", "caplen", "bom", "trailer"])
                self.ops.append("blk-len:" + which)
                if which == "blen":
                    out.append(block(e, t, body, blen=self.absurd(12 + len(body))))
                    continue
                if which == "caplen" and t == 6 and len(body) >= 20:
                    body = _put(body, 12, e + "I", self.absurd(len(body) - 20))
                elif which == "bom" and t == 0x0A0D0D0A:
                    body = bytes(r.getrandbits(8) for _ in range(4)) + body[4:]
                elif which == "trailer":
                    b = block(e, t, body)
                    out.append(b[:-4] + struct.pack(e + "I", self.absurd()))
                    continue
            out.append(block(e, t, body))
        return b"".join(out)

    def bytes_(self, data: bytes) -> bytes:
        r = self.r
        if not data:
            return data
        op = r.choice(["flip", "flip", "flip", "set", "trunc", "trunc", "insert", "delete", "dupe", "hdrflip"])
        self.ops.append("byte:" + op)
        b = bytearray(data)
        n = len(b)
        if op == "flip":
            for _ in range(r.choice([1, 1, 2, 4, 8, 32])):
                i = r.randrange(n)
                b[i] ^= 1 << r.randrange(8)
        elif op == "hdrflip":                     # flips in the first 64 bytes: file and first record headers
            for _ in range(r.choice([1, 2, 4])):
                i = r.randrange(min(n, 64))
                b[i] ^= 1 << r.randrange(8)
        elif op == "set":
            for _ in range(r.choice([1, 2, 4, 8])):
                b[r.randrange(n)] = r.choice([0, 0xFF, 0x7F, 0x80, 0x0A, 0x0D, r.getrandbits(8)])
        elif op == "trunc":
            del b[r.randrange(n):]
        elif op == "insert":
            i = r.randrange(n + 1)
            b[i:i] = bytes(r.getrandbits(8) for _ in range(r.choice([1, 2, 4, 16, 100])))
        elif op == "delete":
            i = r.randrange(n)
            del b[i:i + r.choice([1, 2, 4, 16, 100, 1000])]
        elif op == "dupe":
            i = r.randrange(n)
            j = min(n, i + r.choice([4, 16, 64, 500]))
            b[j:j] = b[i:j]
        return bytes(b)


def make_case(seeds: list[Seed], run_seed: int, index: int) -> tuple[bytes, str, list[str]]:
    """(file bytes, seed name, mutation list) for case `index` of a run; deterministic."""
    r = random.Random(f"wscap-fuzz:{run_seed}:{index}")
    s = r.choice(seeds)
    m = Mutator(r)
    data = m.pcap(s) if s.kind == "pcap" else m.pcapng(s)
    # Byte-level noise on most cases; structure-only on the rest so deep parsing is reached too.
    for _ in range(r.choice([0, 0, 1, 1, 1, 2, 3])):
        data = m.bytes_(data)
    if r.random() < 0.08:
        data = gzip.compress(data, compresslevel=1, mtime=0)
        c = r.random()
        if c < 0.4:
            data = data[:r.randrange(len(data))]
            m.ops.append("gzip-cut")
        elif c < 0.6:
            m.ops.append("gzip-flip")
            data = m.bytes_(data)
        else:
            m.ops.append("gzip")
    if not m.ops:
        m.ops.append("none")
    return data, s.name, m.ops


def case_files(seeds: list[Seed], run_seed: int, index: int, files: int = 1) -> list[bytes]:
    """The capture(s) of case `index` when `files` captures are analysed together."""
    out = [make_case(seeds, run_seed, index)[0]]
    out += [make_case(seeds, run_seed, index * 7919 + k + 1_000_003)[0] for k in range(files - 1)]
    return out
