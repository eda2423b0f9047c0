"""The compiled record loop (wscap/wire/_fastpath.c) against the pure-Python one it replaces.

Two kinds of test:
- differential: `wscap analyze --format json` on every capture in pcaps/ (and pcaps/hostile/),
  the peer traces and a bench `tiny` capture, once with the extension and once with
  WSCAP_PURE=1: stdout bytes and exit codes must be identical;
- unit: hand-built records (flows the pipeline knows as uninteresting, IPv4 options, VLAN tags,
  SLL/SLL2, truncated records, a corrupt record length, pcapng with several interfaces and
  timestamp resolutions) whose expected frames, timestamps and counters follow from how the
  bytes were built; each is read with the extension and with the Python loop.
Skipped, with the reason, where the extension was not built (no compiler at install time).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from wscap.engine.core import Options, Pipeline
from wscap.wire import pcapbuild, pcapio
from wscap.wire.pcapio import MAX_RECORD, CaptureReader

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "pcaps" / "peer"
BUILT = pcapio._fastpath is not None
needs_ext = pytest.mark.skipif(not BUILT, reason="wscap.wire._fastpath is not built (no C compiler or Python "
                               "headers at install time, or WSCAP_PURE is set): only the Python loop exists")

A, B, C = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])
T0 = 1_733_300_000_000_000_000


# -- hand-built packets ------------------------------------------------------------------------
def ipv4_tcp(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes = b"", flags: int = 0x10,
             seq: int = 1000, ihl: int = 5, win: int = 512, frag: int = 0) -> bytes:
    opts = b"\x01" * (4 * (ihl - 5))          # NOPs: an IPv4 header with options
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, win, 0, 0) + payload
    total = 4 * ihl + len(tcp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, 6, 0, src, dst) + opts
    return ip + tcp


def ether(l3: bytes, vlan: int | None = None) -> bytes:
    head = b"\x02" * 6 + b"\x04" * 6
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + b"\x08\x00" + l3


def sll(l3: bytes) -> bytes:               # Linux cooked v1: 14 bytes, protocol at 14
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x04" * 6 + b"\0\0", 0x0800) + l3


def sll2(l3: bytes) -> bytes:              # Linux cooked v2: protocol first, 20 bytes
    return struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 0, 6, b"\x04" * 6 + b"\0\0") + l3


def pcap(records: list[tuple[int, bytes]], linktype: int = 1, big: bool = False) -> bytes:
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, linktype)]   # nanosecond pcap
    for ts, data in records:
        sec, ns = divmod(ts, 10**9)
        out.append(struct.pack(e + "IIII", sec, ns, len(data), len(data)) + data)
    return b"".join(out)


def read(data: bytes, pipe: Pipeline | None, source: int = 0, fast: bool = True, chunk: int = 0):
    """All frames of `data` through a CaptureReader asking `pipe`'s record filter, with the
    compiled loop (fast) or the Python one."""
    saved = pcapio._fastpath
    if not fast:
        pcapio._fastpath = None
    try:
        rf = (lambda lt: pipe.record_filter(lt, source)) if pipe is not None else None
        r = CaptureReader(0, source, rf)
        frames = []
        step = chunk or len(data)
        for i in range(0, len(data), step):
            frames += r.feed(data[i:i + step])
        r.finish()
    finally:
        pcapio._fastpath = saved
    return frames, r


def state(pipe: Pipeline, r: CaptureReader) -> tuple:
    return (r.no, r.nbytes, r.first_ts, r.last_ts, r.empty, r.blocks, r.errors, r.stopped, pipe.now_ns,
            dict(pipe._clock), pipe.decoder.stats.packets, pipe.decoder.stats.tcp)


def key(src: bytes, sport: int, dst: bytes, dport: int) -> tuple:
    return (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)


def known_pipe(source: int = 0) -> Pipeline:
    """A pipeline that already knows A:1111 <-> B:5432 as uninteresting (the key flow_key() makes)."""
    p = Pipeline(Options(stream=False))
    k = key(A, 1111, B, 5432)
    p.conns[(source, k) if source else k] = None
    return p


def both(data: bytes, source: int = 0, chunk: int = 0) -> tuple[list, list[int], tuple]:
    """Read with both loops; they must agree on frames and every counter. -> (frames, their numbers, state)."""
    out = []
    for fast in (True, False):
        p = known_pipe(source)
        frames, r = read(data, p, source, fast, chunk)
        out.append((frames, state(p, r)))
    assert out[0] == out[1]
    frames, st = out[0]
    return frames, [f.no for f in frames], st


# -- unit tests --------------------------------------------------------------------------------
@needs_ext
@pytest.mark.parametrize("big", [False, True])
def test_pcap_known_flow_skipped_everything_unusual_is_a_frame(big):
    skip = ether(ipv4_tcp(A, 1111, B, 5432, b"x" * 30))
    recs = [
        (T0 + 1, skip),                                                     # 1 skipped (known, ignored)
        (T0 + 2, ether(ipv4_tcp(B, 5432, A, 1111))),                        # 2 skipped (other direction)
        (T0 + 3, ether(ipv4_tcp(A, 1111, B, 5432, ihl=6))),                 # 3 IPv4 options: frame
        (T0 + 4, ether(ipv4_tcp(A, 1111, B, 5432), vlan=7)),                # 4 VLAN tag: frame
        (T0 + 5, skip[:40]),                                                # 5 cut short (< 54 bytes): frame
        (T0 + 6, b""),                                                      # 6 no bytes: counted, empty
        (T0 + 7, ether(ipv4_tcp(A, 1111, C, 80, b"GET / HTTP/1.1\r\n"))),   # 7 unseen flow: frame
        (T0 + 8, ether(ipv4_tcp(A, 1111, B, 5432, flags=0x11))),            # 8 FIN: counted, flow forgotten
        (T0 + 9, ether(ipv4_tcp(A, 1111, B, 5432, frag=0x2000))),           # 9 a fragment: frame
        (T0 + 10, skip),                                                    # 10 unseen again: frame
    ]
    frames, nos, st = both(pcap(recs, big=big))
    assert nos == [3, 4, 5, 7, 9, 10]
    assert [f.ts_ns for f in frames] == [T0 + n for n in nos]
    assert frames[2].data == skip[:40]
    no, nbytes, first, last, empty, blocks, errors, stopped, now, clock, packets, tcp = st
    assert (no, empty, blocks, errors, stopped) == (10, 1, 10, [], False)
    assert nbytes == sum(len(d) for _, d in recs)
    assert (first, last) == (T0 + 1, T0 + 10)
    # the three skipped records were accounted by the filter: stats and the clock moved with them
    assert (packets, tcp) == (3, 3)
    assert now == T0 + 8 and clock == {0: T0 + 8}     # frames 9 and 10 are feed()'s to count


@needs_ext
def test_bare_ack_of_an_untracked_flow_is_counted_not_decoded():
    """The last ACK after both FINs retired a flow starts nothing (Pipeline._new_connection): both
    loops count it without a frame; anything else about an untracked flow is still a frame."""
    dns = bytes([127, 0, 0, 11])
    recs = [
        (T0 + 1, ether(ipv4_tcp(A, 4000, C, 80))),                          # 1 bare ACK: counted
        (T0 + 2, ether(ipv4_tcp(C, 80, A, 4001, b"x"))),                    # 2 a byte of payload: frame
        (T0 + 3, ether(ipv4_tcp(A, 4002, C, 80, flags=0x02))),              # 3 a SYN: frame
        (T0 + 4, ether(ipv4_tcp(A, 4003, C, 53))),                          # 4 DNS over TCP: frame
        (T0 + 5, ether(ipv4_tcp(A, 4004, dns, 8080))),                      # 5 Docker's resolver: frame
        (T0 + 6, ether(ipv4_tcp(C, 80, A, 4005, flags=0x12))),              # 6 a SYN-ACK nobody knows: frame
        (T0 + 7, ether(ipv4_tcp(C, 80, A, 4006) + b"\0" * 6)),             # 7 Ethernet padding: counted
    ]
    frames, nos, st = both(pcap(recs))
    assert nos == [2, 3, 4, 5, 6]
    packets, tcp = st[-2:]
    assert (packets, tcp) == (2, 2)
    assert st[8] == T0 + 7       # the clock moved with the counted ones


@needs_ext
@pytest.mark.parametrize("chunk", [0, 1, 7, 61])
def test_any_chunking_gives_the_same_frames_and_counters(chunk):
    recs = [(T0 + i, ether(ipv4_tcp(A, 1111, B, 5432, b"y" * (i % 5))) if i % 3 else
             ether(ipv4_tcp(A, 2000 + i, C, 80, b"GET / HTTP/1.1\r\n"))) for i in range(40)]
    whole = both(pcap(recs))
    assert both(pcap(recs), chunk=chunk) == whole
    assert whole[1] == [i + 1 for i in range(40) if i % 3 == 0]


@needs_ext
def test_second_source_keys_carry_the_source():
    recs = [(T0 + 1, ether(ipv4_tcp(A, 1111, B, 5432))), (T0 + 2, ether(ipv4_tcp(A, 1, B, 2, b"?")))]
    _, nos, st = both(pcap(recs), source=3)
    assert nos == [2] and st[-2] == 1 and st[9] == {3: T0 + 1}


@needs_ext
@pytest.mark.parametrize("linktype,wrap", [(113, sll), (276, sll2)])
def test_linux_cooked_headers(linktype, wrap):
    recs = [(T0 + 1, wrap(ipv4_tcp(A, 1111, B, 5432, b"z"))), (T0 + 2, wrap(ipv4_tcp(B, 9, A, 8, b"?")))]
    frames, nos, st = both(pcap(recs, linktype))
    assert nos == [2] and frames[0].linktype == linktype and st[-1] == 1


@needs_ext
def test_corrupt_record_length_stops_with_the_python_message():
    good = ether(ipv4_tcp(A, 1, B, 2, b"?"))
    data = pcap([(T0 + 1, good), (T0 + 2, good)])
    bad = data[:-len(good) - 16] + struct.pack("<IIII", 0, 0, MAX_RECORD + 1, 60) + b"\0" * 64
    frames, nos, st = both(bad)
    assert nos == [1]
    assert st[6] == [f"frame 2: corrupt record header (captured length {MAX_RECORD + 1}); stopped reading, "
                     f"1 frames analysed"] and st[7]


@needs_ext
def test_truncated_last_record_is_reported_like_python():
    data = pcap([(T0 + 1, ether(ipv4_tcp(A, 1, B, 2, b"?"))), (T0 + 2, ether(ipv4_tcp(A, 1, B, 2, b"?")))])[:-5]
    _, nos, st = both(data)
    assert nos == [1] and "frame 2: record truncated" in st[6][0]


def _ng_block(kind: int, body: bytes) -> bytes:
    return pcapbuild.block(kind, body)


def _ng_idb(linktype: int, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += pcapbuild.option(9, bytes([tsresol]))
    if tsoffset is not None:
        opts += pcapbuild.option(14, struct.pack("<q", tsoffset))
    return _ng_block(1, struct.pack("<HHI", linktype, 0, 65535) + opts + pcapbuild.option(0, b""))


@needs_ext
def test_pcapng_interfaces_with_their_own_link_types_and_resolutions():
    skip_e = ether(ipv4_tcp(A, 1111, B, 5432, b"q"))
    skip_c = sll2(ipv4_tcp(B, 5432, A, 1111))
    new = ether(ipv4_tcp(A, 7, C, 80, b"?"))
    raw_us, raw_ns, raw_bin = 1_733_300_000_123_456, 1_733_300_000_987_654_321, 5 << 20
    data = b"".join([
        pcapbuild.pcapng_shb("test"),
        _ng_idb(1),                                   # 0: Ethernet, µs (the default)
        _ng_idb(276, tsresol=9),                      # 1: SLL2, ns
        _ng_idb(1, tsresol=0x80 | 20, tsoffset=100),  # 2: Ethernet, 2^-20 s units, +100 s
        pcapbuild.pcapng_epb(0, raw_us, skip_e, len(skip_e)),          # 1 skipped
        pcapbuild.pcapng_epb(1, raw_ns, skip_c, len(skip_c)),          # 2 skipped
        pcapbuild.pcapng_epb(2, raw_bin, new, len(new)),               # 3 frame
        _ng_block(5, b"\0" * 8),                                    # an Interface Statistics Block
        pcapbuild.pcapng_epb(1, raw_ns + 1, b"", 0),                   # 4 empty
        pcapbuild.pcapng_epb(0, raw_us + 1, new, len(new)),            # 5 frame
    ])
    frames, nos, st = both(data)
    assert nos == [3, 5]
    assert [f.iface for f in frames] == [2, 0]
    assert frames[0].ts_ns == (raw_bin * 10**9 >> 20) + 100 * 10**9
    assert frames[1].ts_ns == (raw_us + 1) * 1000
    no, nbytes, first, last, empty, blocks, errors, stopped, now, clock, packets, tcp = st
    assert (no, empty, errors) == (5, 1, [])
    assert blocks == 3 + 5 + 1                  # interfaces, packets, statistics (not the section header)
    assert (first, last) == (raw_us * 1000, (raw_us + 1) * 1000)
    assert packets == 2 and now == raw_ns      # the newest skipped packet's time (the filter's clock)


@needs_ext
def test_pcapng_new_section_and_undescribed_interface_go_through_python():
    pkt = ether(ipv4_tcp(A, 1111, B, 5432))
    sec = pcapbuild.pcapng_shb("t") + _ng_idb(1, tsresol=9)
    data = (sec + pcapbuild.pcapng_epb(0, T0 + 1, pkt, len(pkt)) + pcapbuild.pcapng_epb(3, T0 + 2, pkt, len(pkt))
            + sec + pcapbuild.pcapng_epb(0, T0 + 3, pkt, len(pkt)))
    _, nos, st = both(data)
    assert nos == [] and st[0] == 3 and st[10] == 2
    assert st[6] == ["frame 2: packet names interface 3, which was never described"]


@needs_ext
def test_a_python_filter_is_still_asked():
    """A record filter without the pipeline's spec (tests, read_names) keeps the Python loop's semantics."""
    data = pcap([(T0 + i, ether(ipv4_tcp(A, 1, B, 2, b"?"))) for i in range(5)])
    asked = []
    r = CaptureReader(0, 0, lambda lt: (lambda buf, off, caplen, no, ts: asked.append(no) or no % 2 == 0))
    frames = r.feed(data)
    assert asked == [1, 2, 3, 4, 5] and [f.no for f in frames] == [2, 4]


# -- differential: whole documents -----------------------------------------------------------
def _captures() -> list[Path]:
    out = sorted(ROOT.glob("pcaps/*.pcap")) + sorted(ROOT.glob("pcaps/hostile/*.pcap*"))
    if PEER.is_dir():
        out += sorted(p for p in PEER.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    return out


def _analyze(path: Path, pure: bool) -> tuple[int, bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", WSCAP_PURE="1" if pure else "0")
    cmd = [sys.executable, "-m", "wscap", "analyze", "--format", "json"]
    keys = path.with_suffix(".keys")
    if keys.exists():
        cmd += ["--keylog", str(keys)]
    p = subprocess.run(cmd + [str(path)], cwd=ROOT, env=env, capture_output=True, timeout=600)
    return p.returncode, p.stdout


def _differential(paths: list[Path]) -> None:
    diffs = []
    for path in paths:
        fast, pure = _analyze(path, False), _analyze(path, True)
        if fast != pure:
            diffs.append(f"{path.name}: exit {fast[0]} vs {pure[0]}, stdout {len(fast[1])} vs {len(pure[1])} bytes")
    assert not diffs, "\n".join(diffs)


@needs_ext
@pytest.mark.slow
def test_every_repo_capture_gives_the_same_document():
    paths = _captures()
    assert len([p for p in paths if "hostile" not in str(p)]) >= 20
    _differential([p for p in paths if PEER not in p.parents])


@needs_ext
def test_peer_traces_give_the_same_document():
    if not PEER.is_dir():
        pytest.skip(f"peer traces not present ({PEER})")
    paths = [p for p in _captures() if PEER in p.parents]
    if not paths:
        pytest.skip(f"no .pcap/.pcapng under {PEER}")
    _differential(paths)


@needs_ext
def test_bench_capture_gives_the_same_document(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    try:
        import gen
    finally:
        sys.path.pop(0)
    gen.generate("tiny", str(tmp_path), seed=3, name="tiny")
    _differential([tmp_path / "tiny.pcap"])
    if "mix" in gen.generate.__code__.co_varnames or hasattr(gen, "MIXES"):
        gen.generate("tiny", str(tmp_path), seed=3, name="tiny-bulk", mix="bulk")
        _differential([tmp_path / "tiny-bulk.pcap"])


@needs_ext
def test_pcapng_times_beyond_64_bits_stay_exact():
    """An interface whose offset puts times past 2^63 ns is read by Python (exact integers), and a
    later interface in C does not disturb the first timestamp Python set."""
    pkt = ether(ipv4_tcp(A, 1111, B, 5432))
    data = (pcapbuild.pcapng_shb("t") + _ng_idb(1, tsresol=9, tsoffset=1 << 40) + _ng_idb(1, tsresol=9)
            + pcapbuild.pcapng_epb(0, 5, pkt, len(pkt)) + pcapbuild.pcapng_epb(1, 7, pkt, len(pkt))
            + pcapbuild.pcapng_epb(0, 9, pkt, len(pkt)))
    frames, nos, st = both(data)
    assert nos == [] and st[0] == 3
    assert (st[2], st[3]) == ((1 << 40) * 10**9 + 5, (1 << 40) * 10**9 + 9)
    assert st[8] == (1 << 40) * 10**9 + 9      # now_ns: the newest time any skipped packet carried


def _run_pipeline(data: bytes, fast: bool) -> tuple:
    """Read `data` in 4 KiB chunks into a real pipeline (frames fed as they come, so flows become known
    and the filter's answers change) -> everything the reader and the pipeline counted, and the
    document. (Which frames reach feed() differs by design: the compiled loop also hands a
    WebSocket direction's in-order bytes to its frame scanner and accounts a server's SYN-ACK,
    which the Python filter leaves to the full path.)"""
    saved = pcapio._fastpath
    if not fast:
        pcapio._fastpath = None
    try:
        pipe = Pipeline(Options(stream=False))
        r = CaptureReader(0, 0, lambda lt: pipe.record_filter(lt, 0))
        fed = []
        for i in range(0, len(data), 4096):
            for f in r.feed_iter(data[i:i + 4096]):
                fed.append((f.no, f.ts_ns, f.iface, f.linktype, f.wirelen, f.data))
                pipe.feed(f)
        r.finish()
        pipe.finish()
        doc = json.dumps(pipe.document(), sort_keys=True, default=str)
        return fed, (state(pipe, r), pipe.flows_seen, sorted(pipe.limits_hit.items()), len(pipe.views), doc)
    finally:
        pcapio._fastpath = saved


@needs_ext
def test_damaged_captures_read_the_same_both_ways(tmp_path):
    """Seeded byte flips, cuts and splices of real captures (pcap and pcapng): the compiled loop
    never crashes and reaches exactly the Python loop's frames, counters and pipeline state."""
    import random
    sample = (ROOT / "pcaps" / "sample-proxy.pcap").read_bytes()
    frames, _ = read(sample, None)
    as_pcapng = pcapbuild.pcapng_shb("t") + _ng_idb(1, tsresol=9) + _ng_idb(1) + b"".join(
        pcapbuild.pcapng_epb(f.no % 2, f.ts_ns if f.no % 2 == 0 else f.ts_ns // 1000, f.data, f.wirelen) for f in frames)
    sources = [("sample-proxy.pcap", sample), ("sample-proxy as pcapng, two interfaces", as_pcapng),
               ("tso-length-0.pcap", (ROOT / "pcaps" / "hostile" / "tso-length-0.pcap").read_bytes())]
    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    try:
        import gen
    finally:
        sys.path.pop(0)
    gen.generate("tiny", str(tmp_path), seed=5, name="tiny")
    # the bench capture's first ~250 KB: known flows, skipped bodies and pure ACKs (the C decisions)
    sources.append(("bench tiny prefix", (tmp_path / "tiny.pcap").read_bytes()[:250_000]))
    fed, (st, *_) = _run_pipeline(sources[-1][1], True)
    assert st[10] > 2 * len(fed)       # most records were accounted by the filter
    rng = random.Random(19)
    cases = 0
    for name, base in sources:
        assert _run_pipeline(base, True)[1] == _run_pipeline(base, False)[1]
        for _ in range(25):
            data = bytearray(base)
            for _ in range(rng.randrange(1, 6)):
                k = rng.randrange(len(data))
                op = rng.randrange(3)
                if op == 0:
                    data[k] = rng.randrange(256)
                elif op == 1:
                    del data[k:k + rng.randrange(1, 64)]
                else:
                    j = rng.randrange(len(data))
                    data[k:k] = data[j:j + rng.randrange(1, 200)]
            data = bytes(data)
            assert _run_pipeline(data, True)[1] == _run_pipeline(data, False)[1], f"{name} case {cases}"
            cases += 1
    assert cases == 25 * len(sources)


@needs_ext
def test_frames_synack_and_fin_lanes(tmp_path):
    """A 5,000-byte server frame in 500-byte segments after a 101, then the client's close. The
    compiled loop hands every in-order server segment after the 101 (frame header, payload, the
    frame's end) straight to the frame scanner, and accounts the server's SYN-ACK itself. The
    client's close is its first segment after the 101, while its direction still keeps
    retransmission memory from reading the request head: that one takes the full path (which then
    stops keeping it). The client's FIN is the connection's first: accounted in C too; the
    server's, which closes it, is the full path's. Same document either way."""
    from builders import Capture, ws_frame, ws_request, ws_response
    cap = Capture()
    c = cap.conn(("172.18.0.1", 50000), ("172.18.0.3", 5000)).open()   # frames 1-3: SYN, SYN-ACK, ACK
    c.send(True, ws_request("/ws"))                                      # 4
    c.send(False, ws_response())                                         # 5
    big = ws_frame(b"x" * 5000)
    assert len(big) == 5004
    c.send(False, big, split=500)                        # 11 segments: 500 x 10 + 4 (frames 6-16)
    c.send(True, ws_frame(b"bye", opcode=8, mask=True))  # 17
    c.fin(True)                                          # 18
    c.fin(False)                                         # 19
    cap.write(tmp_path / "t.pcap")
    data = (tmp_path / "t.pcap").read_bytes()
    fed_c, out_c = _run_pipeline(data, True)
    fed_p, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    lane = {f[0] for f in fed_p} - {f[0] for f in fed_c}
    assert lane == {2} | set(range(6, 17)) | {18}        # SYN-ACK, the server's frames, the first FIN
    assert {f[0] for f in fed_c} == {1, 4, 5, 17, 19}
    assert '"length": 5000' in out_c[-1]                 # the frame itself is still in the document


@needs_ext
def test_synack_lane_sets_the_base_once_and_leaves_the_rest_to_the_full_path():
    """SYN (seq 100), SYN-ACK (seq 500), the same SYN-ACK again, an unrelated SYN-ACK with a byte
    of payload, then an upgrade request at 101 and its 101 at 501 (out of order). The server's first SYN-ACK sets
    the base its 101 is read from, and synack_frame stays the first one's. The compiled loop
    accounts both plain SYN-ACKs itself; the one with payload is the full path's."""
    req = (b"GET /ws HTTP/1.1\r\nHost: c\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    recs = [
        (T0 + 1, ether(ipv4_tcp(A, 4000, C, 80, flags=0x02, seq=100))),
        (T0 + 2, ether(ipv4_tcp(C, 80, A, 4000, flags=0x12, seq=500))),
        (T0 + 3, ether(ipv4_tcp(C, 80, A, 4000, flags=0x12, seq=500))),
        (T0 + 4, ether(ipv4_tcp(A, 4001, C, 80, flags=0x02, seq=7))),
        (T0 + 5, ether(ipv4_tcp(C, 80, A, 4001, b"!", flags=0x12, seq=9))),
        (T0 + 6, ether(ipv4_tcp(A, 4000, C, 80, req, flags=0x18, seq=101))),
        # the 101 in two segments, the second first: only a base from the SYN-ACK (501) puts
        # them in order (without one, the first to arrive would become offset 0)
        (T0 + 7, ether(ipv4_tcp(C, 80, A, 4000, resp[20:], flags=0x18, seq=521))),
        (T0 + 8, ether(ipv4_tcp(C, 80, A, 4000, resp[:20], flags=0x18, seq=501))),
    ]
    data = pcap(recs)
    fed_c, out_c = _run_pipeline(data, True)
    fed_p, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    assert {f[0] for f in fed_p} - {f[0] for f in fed_c} == {2, 3}
    doc = json.loads(out_c[-1])
    (hs,) = [h for h in doc["handshakes"] if h["client"].endswith(":4000")]
    assert hs["tcp"]["synack_frame"] == 2
    assert hs["response"]["status"] == 101 and hs["outcome"] == "upgraded"


@needs_ext
def test_compiled_frame_scan_matches_the_scanner_on_every_split(tmp_path):
    """Server and client frames after a 101, cut at every kind of place: inside a header, inside
    a payload kept for the preview, after it, a frame left open across segments, 20 frames past
    the 16 kept, pings and pongs, an empty frame, 16- and 64-bit lengths, then frames the compiled
    scan hands to FrameScanner._scan in the middle of a segment (RSV bits, a reserved opcode, an
    unmasked client frame, a fragmented ping) and a close open across segments. Same document both
    ways; the counts are the construction's."""
    from builders import Capture, ws_frame, ws_request, ws_response
    server = [ws_frame(b"hello"), ws_frame(b""), ws_frame(b"p", opcode=9), ws_frame(b"x" * 300),
              ws_frame(b"\xff\xfe bin", opcode=2), ws_frame(b"y" * 70_000)]
    server += [ws_frame(f"m{i}".encode()) for i in range(20)]
    odd = [ws_frame(b"r", rsv1=True), ws_frame(b"z", opcode=3), ws_frame(b"after")]
    close = ws_frame((1000).to_bytes(2, "big") + b"bye", opcode=8)
    client = [ws_frame(b"hi", mask=True), ws_frame(b"q", opcode=10, mask=True), ws_frame(b"plain"),
              ws_frame(b"ping", opcode=9, fin=False, mask=True), ws_frame(b"last", mask=True)]
    s_bytes = b"".join(server)
    cuts = [1, 3, 7, 9, 40, 200, 333, 1000, 60_000, len(s_bytes) - 5]
    cap = Capture()
    c = cap.conn(("172.18.0.1", 50001), ("172.18.0.3", 5000)).open()
    c.send(True, ws_request("/ws"))
    c.send(False, ws_response())
    c.send(False, s_bytes, split=cuts)
    c.send(False, b"".join(odd) + close, split=[4, 7, len(b"".join(odd)) + 3])
    c.send(True, client[0])                    # the client's first bytes after the 101: full path
    c.send(True, b"".join(client[1:]), split=[1, 12])
    c.fin(True)
    c.fin(False)
    cap.write(tmp_path / "f.pcap")
    data = (tmp_path / "f.pcap").read_bytes()
    fed_c, out_c = _run_pipeline(data, True)
    fed_p, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    assert len(fed_p) - len(fed_c) >= len(cuts) + 1        # the server's frame segments took the lane
    doc = json.loads(out_c[-1])
    (hs,) = doc["handshakes"]
    frames = hs["frames"]
    srv = [f for f in frames if f["dir"] == "server"]
    # 16 kept plus the close (kept past the bound); 26 + 3 + 1 server frames counted
    assert len(srv) == 17 and srv[-1]["opcode"] == 8 and srv[-1]["close_code"] == 1000
    assert [f["preview"] for f in srv[:3]] == ["hello", "", "p"]
    assert srv[5]["length"] == 70_000 and srv[3]["preview"] == "x" * 64
    assert srv[4]["preview"] == "0x" + b"\xff\xfe bin".hex()
    codes = {a["code"] for a in hs["anomalies"]}
    assert {"rsv1-without-extension", "reserved-opcode", "client-frame-unmasked",
            "control-frame-fragmented"} <= codes
    cli = [f for f in frames if f["dir"] == "client"]
    assert [f["preview"] for f in cli] == ["hi", "q", "plain", "ping", "last"]


@needs_ext
def test_compiled_frame_scan_with_permessage_deflate(tmp_path):
    """permessage-deflate negotiated: uncompressed messages are the compiled scan's, compressed
    ones (RSV1 on their first frame, and their continuations, even with a ping between) go to the
    scanner's inflater. Segments start exactly where the compiled scan must step aside: at a
    continuation of a compressed message, inside a compressed frame after the context was lost
    (a message that does not inflate). Same document both ways; previews as sent."""
    import zlib
    from builders import Capture, ws_frame, ws_request, ws_response

    def deflate(text: bytes) -> bytes:
        c = zlib.compressobj(wbits=-15)              # one context per message (no takeover needed)
        out = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]
    ext = [("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover")]
    frags = deflate(b"fragmented message")
    segments = [
        [ws_frame(b"plain"), ws_frame(deflate(b"hello hello hello"), rsv1=True)],
        [ws_frame(frags[:5], rsv1=True, fin=False), ws_frame(b"!", opcode=9)],
        [ws_frame(frags[5:], opcode=0), ws_frame(b"ab", fin=False), ws_frame(b"cd", opcode=0)],
        [ws_frame(b"\xff\xff\xff\xff", rsv1=True)],          # does not inflate: context lost
    ]
    late = ws_frame(deflate(b"late late late late"), rsv1=True)
    tail = ws_frame(b"tail")
    cap = Capture()
    c = cap.conn(("172.18.0.1", 50002), ("172.18.0.3", 5000)).open()
    c.send(True, ws_request("/ws", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]))
    c.send(False, ws_response(extra=ext))
    for seg in segments:
        c.send(False, b"".join(seg))
    c.send(False, late + tail, split=[5])            # a compressed frame open across segments
    c.fin(True)
    c.fin(False)
    cap.write(tmp_path / "d.pcap")
    data = (tmp_path / "d.pcap").read_bytes()
    fed_c, out_c = _run_pipeline(data, True)
    fed_p, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    assert len(fed_p) - len(fed_c) >= 4
    (hs,) = json.loads(out_c[-1])["handshakes"]
    previews = [f["preview"] for f in hs["frames"] if f["dir"] == "server"]
    assert previews == ["plain", "hello hello hello", None, "!", "fragmented message", "ab", "cd", None, None,
                        "tail"]
    assert "inflate-failed" in {a["code"] for a in hs["anomalies"]}


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("chunk", [4097, 5000, 65536])
def test_split_reads_give_the_same_frames_even_when_abandoned(fast, chunk):
    """read_frames' readers complete a buffered record from the next chunk's head and read the
    chunk in place (no copy onto the tail). Any chunking, and a consumer that stops after a few
    frames of each feed (the rest stays buffered), give the frames of one whole read."""
    if fast and not BUILT:
        pytest.skip("wscap.wire._fastpath is not built")
    recs = [(T0 + i, ether(ipv4_tcp(A, 1000 + i % 7, B, 80, b"p" * (i * 37 % 1400)))) for i in range(300)]
    data = pcap(recs)
    whole, r0 = read(data, None, fast=fast)
    assert [f.no for f in whole] == list(range(1, 301))
    saved = pcapio._fastpath
    if not fast:
        pcapio._fastpath = None
    try:
        for abandon in (None, 0, 2):                   # stop after the completed record, or later
            r = CaptureReader(0, 0, None)
            r.split_reads = True
            got = []
            for i in range(0, len(data), chunk):
                it = r.feed_iter(data[i:i + chunk])
                for k, f in enumerate(it):
                    got.append(f)
                    if k == abandon:
                        break                      # the rest of this feed stays buffered
                del it
            got += r.feed(b"")                     # what was left buffered
            while r.pending and not r.stopped:
                n = len(got)
                got += r.feed(b"")
                if len(got) == n:
                    break
            r.finish()
            assert [(f.no, f.ts_ns, f.data) for f in got] == [(f.no, f.ts_ns, f.data) for f in whole]
            assert (r.no, r.nbytes, r.first_ts, r.last_ts, r.errors, r.pending) == \
                   (r0.no, r0.nbytes, r0.first_ts, r0.last_ts, [], 0)
    finally:
        pcapio._fastpath = saved
