"""Hypothesis: any segmentation / reordering / duplication of a valid exchange gives the same heads;
arbitrary bytes never raise in the head parser or the frame scanner."""
from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wscap
from builders import Capture, ws_frame, ws_request, ws_response
from wscap.wire.http1 import _parse_clean, _parse_general, parse_head
from wscap.wire.wsframe import FrameScanner

KEY = "x3JJHMbDL1EzLkh9GBhXDw=="
REQ = ws_request("/prop?x=1", key=KEY, protocol="chat", extra=[("User-Agent", "hyp/1.0")])
RESP = ws_response(KEY, extra=[("Sec-WebSocket-Protocol", "chat")])
FRAMES = ws_frame(b"one") + ws_frame(b"two" * 50, opcode=2)


@st.composite
def segmentation(draw, data: bytes):
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=12)))
    bounds = [0] + cuts + [len(data)]
    segs = [(a, data[a:b]) for a, b in zip(bounds, bounds[1:])]
    order = draw(st.permutations(range(len(segs))))
    dups = draw(st.lists(st.integers(0, len(segs) - 1), max_size=3))
    return [segs[i] for i in order] + [segs[i] for i in dups]


def build(req_segs, resp_segs) -> Capture:
    cap = Capture()
    c = cap.conn(("10.9.0.1", 41000), ("10.9.0.2", 31337)).open()
    cbase, sbase = c.cseq, c.sseq
    for off, chunk in req_segs:
        c._pkt(True, "PA", chunk, seq=cbase + off)
    for off, chunk in resp_segs:
        c._pkt(False, "PA", chunk, seq=sbase + off)
    return cap


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segmentation(REQ), segmentation(RESP + FRAMES))
def test_any_segmentation_and_order_gives_the_same_heads(req_segs, resp_segs):
    cap = build(req_segs, resp_segs)
    with tempfile.TemporaryDirectory() as d:
        doc = wscap.analyze_paths([cap.write(d + "/p.pcap")])
    assert len(doc["handshakes"]) == 1
    h = doc["handshakes"][0]
    assert h["request"]["raw"].encode("latin-1") == REQ
    assert h["response"]["raw"].encode("latin-1") == RESP
    assert h["outcome"] == "upgraded"
    assert [(f["opcode"], f["length"]) for f in h["frames"]] == [(1, 3), (2, 150)]
    assert [a["code"] for a in h["anomalies"] if a["severity"] == "error"] == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["request", "response"]))
def test_head_parser_never_raises(data, kind):
    h = parse_head(data, kind)
    assert h.kind == kind


# Header lines drawn from the bytes the checks care about: token characters, the colon, space
# and tab (obs-fold, whitespace before the colon), CR and LF (bare LF, stray CR), controls, DEL
# and non-ASCII; most lines are clean so the fast path is taken often.
_LINE = st.one_of(
    st.tuples(st.from_regex(rb"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}\Z"), st.sampled_from([b": ", b":", b":\t"]),
              st.from_regex(rb"\A[\x20-\x7e\t]{0,20}\Z")).map(b"".join),
    st.binary(max_size=24).map(lambda b: bytes(c for c in b if c != 10)),
    st.text(alphabet=" \t:\r\x00\x7f\x80\u00e9ab-", max_size=16).map(lambda t: t.encode("utf-8")))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([b"GET /ws HTTP/1.1", b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 200", b"GET  / HTTP/1.1",
                        b"\r\nGET / HTTP/1.0"]),
       st.lists(st.tuples(_LINE, st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r\r\n"])), max_size=8),
       st.sampled_from([b"\r\n", b"\n", b""]), st.binary(max_size=8), st.sampled_from(["request", "response"]))
def test_clean_head_fast_path_reads_what_the_general_parser_reads(start, lines, blank, after, kind):
    raw = start + b"\r\n" + b"".join(line + end for line, end in lines) + blank + after
    fast, general = parse_head(raw, kind, 9), _parse_general(raw, kind, 9)
    assert fast == general          # every field: start line parts, Field list, anomalies, raw
    # The fast path is taken exactly for the heads built clean: CRLF everywhere, no blank-line
    # surprises, every line token ":" printable.
    ends = raw.find(b"\r\n\r\n")
    if raw[:1] not in (b"\r", b"\n") and ends > 0 and general.anomalies == [] \
            and all(end == b"\r\n" for _line, end in lines[:len(general.fields)]) and b"\n" not in raw[:ends].replace(b"\r\n", b""):
        assert _parse_clean(raw, ends + 2, kind, 9) is not None


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([b"GET /ws HTTP/1.1", b"HTTP/1.1 101 Switching Protocols", b"GET\n/ HTTP/1.1", b""]),
       st.lists(st.tuples(_LINE, st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r\r\n"])), max_size=8),
       st.sampled_from([b"\r\n", b"\n", b""]), st.binary(max_size=8))
def test_the_compiled_header_lines_are_the_python_ones(start, lines, blank, after):
    """_fastpath.clean_fields (C) and _parse_clean's regex reading say the same: which heads are
    clean, and their Field list."""
    import pytest
    from wscap.wire.http1 import _CLEAN_FIELDS, Field
    from wscap.wire.pcapio import _fastpath
    if _fastpath is None:
        pytest.skip("the compiled fast path is not built (or WSCAP_PURE is set)")
    raw = start + b"\r\n" + b"".join(line + end for line, end in lines) + blank + after
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return
    end += 2
    first = raw.find(b"\r\n")
    clean = raw.count(b"\n", 0, end) == raw.count(b"\r\n", 0, end) and _CLEAN_FIELDS.fullmatch(raw, first + 2, end)
    got = _fastpath.clean_fields(raw, first, end, Field)
    assert (got is not None) == bool(clean)
    if got is not None:
        want = [] if first + 2 == end else [Field(name, name.lower(), value.strip(b" \t"), n) for n, line in
                                            enumerate(raw[first + 2:end - 2].split(b"\r\n"), start=2)
                                            for name, _colon, value in [line.partition(b":")]]
        assert got == want and all(type(f) is Field for f in got)


def test_a_real_upgrade_request_takes_the_fast_path():
    assert _parse_clean(REQ, REQ.find(b"\r\n\r\n") + 2, "request", 1) is not None
    assert _parse_clean(RESP, RESP.find(b"\r\n\r\n") + 2, "response", 1) is not None
    folded = REQ.replace(b"\r\nUser-Agent", b"\r\n User-Agent")
    assert _parse_clean(folded, folded.find(b"\r\n\r\n") + 2, "request", 1) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans(), st.sampled_from(["client", "server"]))
def test_frame_scanner_never_raises_and_stays_bounded(chunks, deflate, direction):
    sc = FrameScanner(direction, deflate, keep=4)
    for i, c in enumerate(chunks):
        sc.feed(c, i + 1, i)
    assert len(sc.frames) <= 5
    assert len(sc._buf) < 14


_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@st.composite
def heads(draw):
    kind = draw(st.sampled_from(["request", "response"]))
    names = draw(st.lists(st.text(alphabet=_TOKEN_CHARS + " :\x7f", min_size=1, max_size=12), max_size=6))
    values = [draw(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=20))
              for _ in names]
    if kind == "request":
        target = draw(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1, max_size=10))
        start = f"GET {target} HTTP/1.1"
        if draw(st.booleans()):
            names, values = names + ["Host"], values + ["h"]
    else:
        start = f"HTTP/1.1 {draw(st.integers(100, 999))} {draw(st.text(alphabet='abc XYZ', max_size=8))}"
    lines = [start] + [f"{n}: {v}" for n, v in zip(names, values)]
    return kind, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@settings(max_examples=400, deadline=None)
@given(heads())
def test_heads_wscap_calls_clean_are_accepted_by_h11(case):
    """Justifies skipping h11 for clean heads: it must accept every one of them."""
    from wscap.flow.connection import _clean_for_h11
    from wscap.wire.opinions import h11_request, h11_response
    kind, raw = case
    head = parse_head(raw, kind)
    if _clean_for_h11(head):
        o = (h11_request if kind == "request" else h11_response)(raw)
        assert o.accepts, (raw, o.error)


# Content-Length lines as h11 reads them: digits, commas and OWS, sometimes something else.
_CL_VALUES = st.text(alphabet="0123456789, \t+-x", min_size=0, max_size=24)


@st.composite
def heads_with_lengths(draw):
    kind = draw(st.sampled_from(["request", "response"]))
    start = "GET /x HTTP/1.1" if kind == "request" else f"HTTP/1.1 {draw(st.integers(100, 599))} R"
    lines = [start] + (["Host: h"] if kind == "request" else [])
    lines += [f"{draw(st.sampled_from(['Content-Length', 'content-length']))}: {v}"
              for v in draw(st.lists(_CL_VALUES, min_size=1, max_size=3))]
    return kind, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@settings(max_examples=500, deadline=None)
@given(heads_with_lengths())
def test_a_content_length_wscap_calls_clean_is_one_h11_accepts(case):
    """The shortcut may only say "accepts" where h11 itself does; elsewhere h11 is run."""
    from wscap.flow.connection import _clean_for_h11
    from wscap.wire.opinions import h11_request, h11_response
    kind, raw = case
    head = parse_head(raw, kind)
    if _clean_for_h11(head):
        o = (h11_request if kind == "request" else h11_response)(raw)
        assert o.accepts, (raw, o.error)


def test_content_lengths_h11_frames_skip_h11_and_the_others_do_not():
    """Each value below is built to pass or fail one of h11's Content-Length rules."""
    from wscap.flow.connection import _clean_for_h11, parser_opinion
    from wscap.wire.opinions import h11_response
    cases = {
        ("12",): True, ("0",): True, ("12, 12",): True, ("7", "7"): True, ("9" * 20,): True,
        ("1, 2",): False,            # conflicting values on one line
        ("7", "8"): False,           # conflicting lines
        ("+5",): False, ("5x",): False, ("",): False, ("1,",): False,   # not 1*DIGIT after the split
        ("9" * 21,): False,          # more digits than h11 allows
    }
    for values, accepted in cases.items():
        raw = ("HTTP/1.1 403 Forbidden\r\n" + "".join(f"Content-Length: {v}\r\n" for v in values)
               + "\r\n").encode()
        head = parse_head(raw, "response")
        assert _clean_for_h11(head) is accepted, values
        real = h11_response(raw)
        assert real.accepts is accepted, (values, real)
        assert parser_opinion(head, "h11") == real, values


@settings(max_examples=800, deadline=None)
@given(st.binary(min_size=0, max_size=90), st.integers(0, 0xFFFF), st.sampled_from([0x45, 0x46, 0x44, 0x55, 0x65]),
       st.sampled_from([6, 6, 6, 17, 4]), st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001]),
       st.sampled_from([0x50, 0x80, 0x40, 0xF0, 0x00]), st.integers(-40, 40), st.sampled_from([1, 1, 1, 113]))
def test_the_compiled_decoder_reads_what_decode_reads(tail, total, vi, proto, frag, offx, wire_delta, linktype):
    """_fastpath.decode_tcp4 (C) against Decoder.decode in Python: the same Segment (or none made
    in C) and the same counts, on Ethernet/IPv4/TCP frames with odd lengths, options, fragments,
    cut payloads and TSO lengths."""
    import struct as _struct
    import pytest
    from wscap.model.raw import RawFrame
    from wscap.wire import decode as dec
    if dec._decode_tcp4 is None:
        pytest.skip("the compiled fast path is not built (or WSCAP_PURE is set)")
    ip = bytes([vi, 0]) + _struct.pack("!HHH", total, 7, frag) + bytes([64, proto, 0, 0]) + bytes([10, 0, 0, 1, 10, 0, 0, 2])
    ip += b"\x00" * (((vi & 0x0F) * 4) - 20 if (vi & 0x0F) * 4 > 20 else 0)
    tcp = _struct.pack("!HHIIBBH", 40000, 5000, 0xFFFFFFF0, 12345, offx, 0x18, 512) + b"\x00\x00\x00\x00"
    data = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + tail
    frame = RawFrame(3, 1_700_000_000_123_456_000, linktype, data, max(0, len(data) + wire_delta), 0, 2)
    c, py = dec.Decoder(), dec.Decoder()
    made = dec._decode_tcp4(frame, c.stats, dec.Segment)
    dec_c = made if made is not None else c.decode(frame)
    saved, dec._decode_tcp4 = dec._decode_tcp4, None
    try:
        dec_py = py.decode(frame)
    finally:
        dec._decode_tcp4 = saved
    assert dec_c == dec_py and type(dec_c) is type(dec_py)
    for k in ("packets", "tcp", "truncated", "tunnelled", "unsupported", "too_deep"):
        assert getattr(c.stats, k) == getattr(py.stats, k), k
    if made is not None:
        assert type(made) is dec.Segment and made.tunnel is None


def test_the_compiled_decoder_takes_a_plain_segment():
    import struct as _struct
    import pytest
    from wscap.model.raw import RawFrame
    from wscap.wire import decode as dec
    if dec._decode_tcp4 is None:
        pytest.skip("the compiled fast path is not built (or WSCAP_PURE is set)")
    ip = bytes([0x45, 0]) + _struct.pack("!HHH", 20 + 20 + 5, 7, 0x4000) + bytes([64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = _struct.pack("!HHIIBBH", 40000, 5000, 1, 2, 0x50, 0x18, 512) + b"\x00" * 4
    data = b"\x02" * 12 + b"\x08\x00" + ip + tcp + b"hello"
    d = dec.Decoder()
    seg = dec._decode_tcp4(RawFrame(1, 5, 1, data, len(data), 0, 0), d.stats, dec.Segment)
    assert seg == dec.Segment(1, 5, bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 5000, 1, 2, 0x18, b"hello", 5, 0, 512)
    assert (d.stats.packets, d.stats.tcp, d.stats.truncated) == (1, 1, 0)
