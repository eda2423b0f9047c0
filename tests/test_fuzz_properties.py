"""Hypothesis strategies for HTTP heads, WebSocket frames, segment orders and capture files.

Extends tests/test_properties.py: generated inputs are *structured* (a head is
a start line plus fields with chosen line endings; a frame is opcode/flags/
mask/length), so the properties can say what the answer must be, not just
that nothing raised.
"""
from __future__ import annotations

import gzip
import os
import struct
import tempfile

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import wscap
from builders import Capture, frames_of, pcap_bytes, pcapng_bytes, ws_frame, ws_request, ws_response
from wscap.capture.files import ReadResult, read_frames
from wscap.wire.http1 import find_head_end, parse_head
from wscap.wire.wsframe import INFLATE_CHUNK, FrameScanner

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])

# -- HTTP heads ---------------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(alphabet=TCHAR, min_size=1, max_size=20).map(str.encode)
clean_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(
    lambda s: s.encode())
any_value = st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b)
eol = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def http_head(draw, kind: str = "request", clean: bool = False):
    """(raw head bytes, [(name, value)...], terminated)."""
    nl = b"\r\n" if clean else None
    if kind == "request":
        method = draw(st.sampled_from([b"GET", b"POST", b"OPTIONS", b"PRI", b"M-SEARCH"]) if clean
                      else st.one_of(st.sampled_from([b"GET", b"get", b"G\x00T"]), token))
        target = draw(st.sampled_from([b"/", b"/ws", b"/a?b=c", b"*"]) | token.map(lambda t: b"/" + t))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]) if clean
                       else st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b"", b"http/1.1"]))
        start = method + b" " + target + (b" " + version if version else b"")
    else:
        status = draw(st.integers(100, 599) if clean else st.integers(0, 1200))
        reason = draw(st.sampled_from([b"OK", b"Switching Protocols", b"Forbidden"]) if clean
                      else st.sampled_from([b"OK", b"", b"Switching  Protocols", b"\xff"]))
        start = b"HTTP/1.1 " + str(status).encode() + (b" " + reason if reason or clean else b"")
    fields = draw(st.lists(st.tuples(token, clean_value if clean else any_value), max_size=12))
    lines = [start] + [n + b": " + v for n, v in fields]
    if not clean and draw(st.booleans()):
        # Sprinkle odd lines: obs-fold, no colon, whitespace before the colon.
        odd = draw(st.lists(st.sampled_from([b" folded", b"\tfolded", b"NoColonHere", b"Name : v", b": empty"]),
                            max_size=3))
        for o in odd:
            lines.insert(draw(st.integers(1, len(lines))), o)
    ends = [nl or draw(eol) for _ in lines]
    terminated = clean or draw(st.booleans())
    raw = b"".join(line + e for line, e in zip(lines, ends)) + ((nl or draw(eol)) if terminated else b"")
    return raw, fields, terminated


@FAST
@given(http_head("request", clean=True))
def test_clean_request_heads_parse_back_exactly(h):
    raw, fields, _ = h
    head = parse_head(raw, "request")
    assert [(f.raw_name, f.value) for f in head.fields] == [(n, v.strip(b" \t")) for n, v in fields]
    assert head.raw == raw
    assert not [a for a in head.anomalies if a.severity.value == "error"], head.anomalies


@FAST
@given(http_head("response", clean=True))
def test_clean_response_heads_parse_back_exactly(h):
    raw, fields, _ = h
    head = parse_head(raw, "response")
    assert head.status is not None and 100 <= head.status <= 599
    assert [(f.raw_name, f.value) for f in head.fields] == [(n, v.strip(b" \t")) for n, v in fields]


@FAST
@given(st.sampled_from(["request", "response"]).flatmap(lambda k: st.tuples(st.just(k), http_head(k))))
def test_any_head_parses_without_raising_and_keeps_its_bytes(kh):
    kind, (raw, _fields, _t) = kh
    head = parse_head(raw, kind)
    assert head.raw == raw
    assert len(head.fields) <= raw.count(b"\n") + 1
    head.to_json()


@FAST
@given(http_head("request"), st.lists(st.integers(1, 400), max_size=10), st.binary(max_size=30))
def test_head_end_is_found_the_same_way_however_the_bytes_arrive(h, cuts, tail):
    raw, _fields, terminated = h
    whole = raw + tail
    expected = find_head_end(whole)
    buf = bytearray()
    found = None
    pos = 0
    for c in sorted(set(min(c, len(whole)) for c in cuts)) + [len(whole)]:
        buf += whole[pos:c]
        pos = c
        found = find_head_end(buf)
        if found is not None:
            break
    assert found == expected
    if terminated:
        assert expected is not None and expected <= len(raw)


# -- WebSocket frames ------------------------------------------------------------------------------

def encode_frame(payload: bytes, opcode: int, fin: bool, mask: bool) -> bytes:
    """RFC 6455 §5.2 framing, written independently of wscap (mask XOR as one integer operation)."""
    n = len(payload)
    b1 = 0x80 if mask else 0
    hdr = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        hdr += bytes([b1 | n])
    elif n < 65536:
        hdr += bytes([b1 | 126]) + n.to_bytes(2, "big")
    else:
        hdr += bytes([b1 | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    key = b"\x37\xfa\x21\x3d"
    stream = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big") if n else b""
    return hdr + key + body


@st.composite
def ws_frames(draw, masked: bool | None = None, max_frames: int = 12, big: bool = True):
    """[(fin, opcode, masked, length, payload)] and their wire bytes (all three length encodings)."""
    out = []
    wire = b""
    sizes = [0, 1, 2, 5, 125, 126, 127, 300] + ([65535, 65536] if big else [])
    for _ in range(draw(st.integers(1, max_frames))):
        opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 3, 11]))
        n = draw(st.sampled_from(sizes))
        if opcode >= 8 and draw(st.booleans()):
            n = min(n, 125)
        payload = bytes(draw(st.binary(min_size=min(n, 8), max_size=min(n, 8)))) + b"x" * max(0, n - 8)
        fin = draw(st.booleans()) if opcode < 8 else True
        m = draw(st.booleans()) if masked is None else masked
        wire += encode_frame(payload, opcode, fin, m)
        out.append((fin, opcode, m, len(payload), payload))
    return out, wire


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0] + sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


@SLOW
@given(ws_frames(), st.lists(st.integers(0, 1 << 20), max_size=15), st.sampled_from(["client", "server"]))
def test_frames_are_parsed_exactly_whatever_the_chunking(fr, cuts, direction):
    frames, wire = fr
    assume(frames[0][1] in (0, 1, 2, 8, 9, 10))   # a reserved first opcode desyncs on purpose
    sc = FrameScanner(direction, False, keep=64)
    for i, c in enumerate(_chunks(wire, cuts)):
        sc.feed(c, i + 1, i)
    got = [(f.fin, f.opcode, f.masked, f.length) for f in sc.frames]
    want = [(fin, op, m, n) for fin, op, m, n, _p in frames]
    if sc.desynced:
        assert any(op not in (0, 1, 2, 8, 9, 10) for _f, op, _m, _n, _p in frames)
        assert got == want[:len(got)]
    else:
        assert got == want
        assert sc.count == len(frames)
    for f, (_fin, op, _m, n, p) in zip(sc.frames, frames):
        if op == 8 and n >= 2:
            assert f.close_code == int.from_bytes(p[:2], "big")
        if op == 1 and n:
            assert f.preview == p[:64].decode("utf-8", "replace")


@SLOW
@given(ws_frames(max_frames=24, big=False), st.integers(1, 8))
def test_frame_summaries_are_bounded_and_drops_counted(fr, keep):
    frames, wire = fr
    assume(frames[0][1] in (0, 1, 2, 8, 9, 10))
    sc = FrameScanner("server", False, keep=keep)
    sc.feed(wire, 1, 0)
    assert len(sc.frames) <= keep + 1
    assert len(sc.frames) + sc.dropped == sc.count


@FAST
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=30), st.integers(16, 4096))
def test_compressed_message_buffer_is_bounded(parts, inflate_bytes):
    """A deflate message fragmented into many frames buffers no compressed bytes (they stream into
    the inflater) and keeps at most preview_bytes of output, however the frames are cut."""
    sc = FrameScanner("server", True, keep=4, inflate_bytes=inflate_bytes)
    wire = ws_frame(parts[0], opcode=1, fin=len(parts) == 1, rsv1=True)
    for i, p in enumerate(parts[1:]):
        wire += ws_frame(p, opcode=0, fin=i == len(parts) - 2)
    sc.feed(wire, 1, 0)
    assert len(sc._msg_out) <= sc.preview_bytes and not sc._cur_payload
    assert sc._msg_total <= inflate_bytes + INFLATE_CHUNK


# -- segment orders ----------------------------------------------------------------------------------

KEY = "x3JJHMbDL1EzLkh9GBhXDw=="
REQ = ws_request("/fuzz?q=1", key=KEY, protocol="chat", extra=[("User-Agent", "hyp/2.0")])
RESP = ws_response(KEY, extra=[("Sec-WebSocket-Protocol", "chat")])
FRAMES = ws_frame(b"one", mask=False) + ws_frame(b"two" * 50, opcode=2) + ws_frame(b"\x03\xe8bye", opcode=8)


@st.composite
def segments(draw, data: bytes, overlap: bool = True):
    """Segments covering `data` (maybe overlapping, same bytes), in any order, some repeated."""
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=10)))
    bounds = [0] + cuts + [len(data)]
    segs = []
    for a, b in zip(bounds, bounds[1:]):
        extra = draw(st.integers(0, 20)) if overlap else 0          # overlap into the next segment
        segs.append((a, data[a:min(len(data), b + extra)]))
    order = draw(st.permutations(range(len(segs))))
    dups = draw(st.lists(st.integers(0, len(segs) - 1), max_size=3))
    return [segs[i] for i in order] + [segs[i] for i in dups]


def _build(req_segs, resp_segs, cisn: int, sisn: int, interleave: list[bool] | None = None) -> Capture:
    cap = Capture()
    c = cap.conn(("10.9.0.1", 41000), ("10.9.0.2", 31337), cseq=cisn, sseq=sisn).open()
    cbase, sbase = c.cseq, c.sseq
    cq = [(True, off, chunk) for off, chunk in req_segs]
    sq = [(False, off, chunk) for off, chunk in resp_segs]
    seq = cq + sq
    if interleave is not None:
        seq = []
        for pick_client in interleave + [True] * len(cq) + [False] * len(sq):
            src = cq if (pick_client and cq) or not sq else sq
            if src:
                seq.append(src.pop(0))
    for client, off, chunk in seq:
        c._pkt(client, "PA", chunk, seq=(cbase if client else sbase) + off)
    return cap


def _analyse(cap: Capture) -> dict:
    with tempfile.TemporaryDirectory() as d:
        return wscap.analyze_paths([cap.write(d + "/p.pcap")])


@SLOW
@given(segments(REQ), segments(RESP + FRAMES),
       st.sampled_from([1000, 0xFFFFFFF0, 0xFFFFFFFF, 0x7FFFFFFF, 0]),
       st.sampled_from([5000, 0xFFFFFF00, 0xFFFFFFFE]))
def test_overlaps_duplicates_and_sequence_wrap_give_the_same_handshake(req_segs, resp_segs, cisn, sisn):
    doc = _analyse(_build(req_segs, resp_segs, cisn, sisn))
    assert len(doc["handshakes"]) == 1
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode("latin-1") == REQ
    assert h["response"]["raw"].encode("latin-1") == RESP
    assert h["outcome"] == "upgraded"
    assert [(f["opcode"], f["length"]) for f in h["frames"]] == [(1, 3), (2, 150), (8, 5)]
    assert not [a for a in h["anomalies"] if a["code"] == "retransmission-conflict"]


@SLOW
@given(segments(REQ, overlap=False), segments(RESP + FRAMES, overlap=False), st.lists(st.booleans(), max_size=30))
def test_interleaved_directions_never_raise_and_keep_the_request(req_segs, resp_segs, interleave):
    doc = _analyse(_build(req_segs, resp_segs, 1000, 5000, interleave))
    reqs = [h for h in doc["handshakes"] if h["request"] is not None]
    assert len(reqs) == 1
    assert reqs[0]["request"]["raw"].encode("latin-1") == REQ


@SLOW
@given(st.integers(1, len(REQ) - 1), st.integers(0, 20), st.integers(0, 255))
@example(at=len(REQ) - 1, length=0, byte=0x41)      # one different byte at snd.nxt-1: a keep-alive
@example(at=len(REQ) - 2, length=1, byte=0x41)      # two bytes ending there: a conflict
def test_conflicting_retransmission_is_reported_with_both_frames(at, length, byte):
    """Same offset, different bytes: kept the first copy, flagged a conflict."""
    length = min(length + 1, len(REQ) - at)
    other = bytes((b ^ (byte | 1)) for b in REQ[at:at + length])
    cap = Capture()
    c = cap.conn(("10.9.0.1", 41000), ("10.9.0.2", 31337)).open()
    base = c.cseq
    c._pkt(True, "PA", REQ, seq=base)
    c._pkt(True, "PA", other, seq=base + at)
    doc = _analyse(cap)
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode("latin-1") == REQ
    codes = [a["code"] for a in h["anomalies"]]
    if length == 1 and at + length == len(REQ):
        # One byte at snd.nxt-1 is the shape of a TCP keep-alive probe (Windows sends a
        # different byte there); Wireshark labels it keep-alive, and so does wscap (issue 14).
        assert "retransmission-conflict" not in codes and "tcp-keep-alive" in codes, codes
        return
    conflicts = [a for a in h["anomalies"] if a["code"] == "retransmission-conflict"]
    assert conflicts and "frame 4" in conflicts[0]["message"] and "frame 5" in conflicts[0]["message"]


# -- capture files -----------------------------------------------------------------------------------

def _healthy_frames() -> list[tuple[float, bytes]]:
    cap = Capture()
    c = cap.conn(("10.9.0.1", 41000), ("10.9.0.2", 31337)).open()
    c.send(True, REQ, split=40)
    c.send(False, RESP + FRAMES)
    c.fin(True)
    return frames_of(cap)


HEALTHY = _healthy_frames()
PCAP = pcap_bytes(HEALTHY)
PCAPNG = pcapng_bytes([1], [(0, ts, d) for ts, d in HEALTHY])


def _read(data: bytes) -> tuple[list, ReadResult]:
    fd, p = tempfile.mkstemp(suffix=".pcap")
    try:
        os.write(fd, data)
        os.close(fd)
        res = ReadResult(p)
        return list(read_frames(p, res)), res
    finally:
        os.unlink(p)


def _record_ends(data: bytes, ng: bool) -> list[int]:
    ends, pos = [], 0 if ng else 24
    while pos < len(data):
        if ng:
            btype, blen = struct.unpack_from("<II", data, pos)
            pos += blen
            if btype == 6:
                ends.append(pos)
        else:
            caplen = struct.unpack_from("<I", data, pos + 8)[0]
            pos += 16 + caplen
            ends.append(pos)
    return ends


@FAST
@given(st.sampled_from(["pcap", "pcapng"]), st.floats(0, 1), st.booleans())
def test_a_capture_cut_anywhere_yields_exactly_its_complete_records(fmt, where, zipped):
    data = PCAP if fmt == "pcap" else PCAPNG
    cut = int(len(data) * where)
    ends = _record_ends(data, fmt == "pcapng")
    blob = data[:cut]
    if zipped:
        blob = gzip.compress(blob)
    frames, res = _read(blob)
    complete = sum(1 for e in ends if e <= cut)
    assert len(frames) == complete == res.packets
    boundary = cut in ends or cut == len(data) or (fmt == "pcap" and cut == 24) or \
        (fmt == "pcapng" and cut in (0, *[e for e in _block_ends(data)]))
    if cut == 0:
        assert res.errors and "empty" in res.errors[0]
    elif cut < 4:
        assert len(res.errors) == 1 and "not a pcap" in res.errors[0]
    elif boundary:
        assert res.errors == [], res.errors
    else:
        assert len(res.errors) == 1 and f"frame {complete + 1}" in res.errors[0] or "header" in res.errors[0]


def _block_ends(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        pos += struct.unpack_from("<I", data, pos + 4)[0]
        out.append(pos)
    return out


@FAST
@given(st.sampled_from(["pcap", "pcapng"]), st.floats(0, 1), st.booleans())
def test_a_cut_gzip_keeps_every_record_it_could_decompress(fmt, where, _unused):
    data = (PCAP if fmt == "pcap" else PCAPNG) * 1
    gz = gzip.compress(data)
    cut = int(len(gz) * where)
    assume(2 <= cut < len(gz))           # a 1-byte file is not recognisably gzip (nor anything else)
    frames, res = _read(gz[:cut])
    assert len(frames) == res.packets
    assert len(res.errors) == 1 and "gzip" in res.errors[0]
    assert [f.data for f in frames] == [d for _t, d in HEALTHY[:len(frames)]]


@SLOW
@given(st.sampled_from(["pcap", "pcap-be", "pcap-ns", "pcapng", "gz"]))
def test_every_container_gives_the_same_document(container):
    if container == "pcap":
        data = PCAP
    elif container == "pcap-be":
        data = pcap_bytes(HEALTHY, big_endian=True)
    elif container == "pcap-ns":
        data = pcap_bytes(HEALTHY, nanos=True)
    elif container == "pcapng":
        data = PCAPNG
    else:
        data = gzip.compress(PCAP)
    with tempfile.TemporaryDirectory() as d:
        a, b = d + "/a", d + "/b"
        with open(a, "wb") as f:
            f.write(PCAP)
        with open(b, "wb") as f:
            f.write(data)
        da, db = wscap.analyze_paths([a]), wscap.analyze_paths([b])
    for doc in (da, db):
        doc.pop("source")
    assert da == db


# -- IP fragments ----------------------------------------------------------------------------------

@SLOW
@given(st.sampled_from([8, 16, 24, 64, 256]), st.randoms(use_true_random=False), st.integers(0, 3))
def test_ip_fragments_in_any_order_give_the_same_request(size, rnd, dups):
    from scapy.all import IP, TCP, Raw, fragment  # type: ignore[attr-defined]
    cap = Capture()
    c = cap.conn(("10.9.0.1", 41000), ("10.9.0.2", 31337)).open()
    pkt = IP(src="10.9.0.1", dst="10.9.0.2", id=4242) / TCP(sport=41000, dport=31337, flags="PA",
                                                              seq=c.cseq, ack=c.sseq) / Raw(REQ)
    frags = fragment(pkt, fragsize=size)
    frags += [rnd.choice(frags) for _ in range(dups)]
    rnd.shuffle(frags)
    for f in frags:
        cap.add(f)
    c.cseq += len(REQ)
    c.send(False, RESP)
    doc = _analyse(cap)
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode("latin-1") == REQ
    assert h["outcome"] == "upgraded"


@FAST
@given(st.binary(min_size=1, max_size=4000), st.sampled_from([8, 16, 64, 512, 1480]), st.randoms(use_true_random=False))
def test_fragment_cache_reassembles_any_order_and_keeps_nothing_after(data, step, rnd):
    from wscap.wire.ipfrag import FragmentCache
    frags = [(o, data[o:o + step], o + step < len(data)) for o in range(0, len(data), step)]
    rnd.shuffle(frags)
    c = FragmentCache()
    out = [r for o, b, m in frags if (r := c.add((b"s", b"d", 1, 4), o, m, b, 1, 0)) is not None]
    assert out == [data]
    assert c.held == 0 and not c.pending
