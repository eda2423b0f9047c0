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

import contextlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

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


@contextlib.contextmanager
def loop(fast: bool) -> Iterator[None]:
    """The compiled record loop (fast), or the pure-Python one, for what runs inside."""
    saved = pcapio._fastpath
    if not fast:
        pcapio._fastpath = None
    try:
        yield
    finally:
        pcapio._fastpath = saved


def read(data: bytes, pipe: Pipeline | None, source: int = 0, fast: bool = True, chunk: int = 0):
    """All frames of `data` through a CaptureReader asking `pipe`'s record filter, with the
    compiled loop (fast) or the Python one."""
    with loop(fast):
        rf = (lambda lt: pipe.record_filter(lt, source)) if pipe is not None else None
        r = CaptureReader(0, source, rf)
        frames = []
        step = chunk or len(data)
        for i in range(0, len(data), step):
            frames += r.feed(data[i:i + step])
        r.finish()
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
    with loop(fast):
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


def _both_ways(cap, path: Path) -> tuple[set[int], set[int], dict]:
    """Write `cap`, run the pipeline with the compiled loop and without: the documents must be the
    same. -> (the frames the compiled loop accounted itself, the frames it fed, the document)."""
    cap.write(path)
    data = path.read_bytes()
    fed_c, out_c = _run_pipeline(data, True)
    fed_p, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    fed = {f[0] for f in fed_c}
    return {f[0] for f in fed_p} - fed, fed, json.loads(out_c[-1])


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
    lane, fed, doc = _both_ways(cap, tmp_path / "t.pcap")
    assert lane == {2} | set(range(6, 17)) | {18}        # SYN-ACK, the server's frames, the first FIN
    assert fed == {1, 4, 5, 17, 19}
    assert [f["length"] for f in doc["handshakes"][0]["frames"]] == [5000, 3]   # the frames themselves


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
    lane, _, doc = _both_ways(cap, tmp_path / "f.pcap")
    assert len(lane) >= len(cuts) + 1                      # the server's frame segments took the lane
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
    lane, _, doc = _both_ways(cap, tmp_path / "d.pcap")
    assert len(lane) >= 4
    (hs,) = doc["handshakes"]
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
    with loop(fast):
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


# -- the heads lane: plain keep-alive HTTP/1 in C (issue #19) ----------------------------------
def _slots(o) -> dict:
    out = {}
    for cls in type(o).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(o, name):
                out[name] = getattr(o, name)
    return out


def _conn_state(pipe: Pipeline) -> list:
    """Every tracked connection's state, as far as reading more bytes depends on it: the
    connection's, its TCP flow's and half streams', and its session's (pending as the None/request
    pattern, exchanges by their requests)."""
    from wscap.flow.connection import Connection
    out = []
    for key, conn in sorted(pipe.conns.items(), key=repr):
        if not isinstance(conn, Connection):
            out.append((key, conn))
            continue
        c = {k: v for k, v in _slots(conn).items() if k not in ("tcp", "session", "attempt")}
        tcp = {k: v for k, v in _slots(conn.tcp).items() if k != "halves"}
        halves = [{k: (bytes(v) if isinstance(v, bytearray) else v) for k, v in _slots(h).items()}
                  for h in conn.tcp.halves]
        s = conn.session
        sess = {k: v for k, v in _slots(s).items() if k not in ("limits", "exchanges", "pending", "events", "buf",
                                                                 "held", "anomalies", "h2", "h2_streams")}
        sess.update(pending=[p is None for p in s.pending], buf=[bytes(b) for b in s.buf], events=len(s.events),
                    exchanges=[bytes(ex.request.raw) if ex.request else None for ex in s.exchanges],
                    anomalies=[str(a) for a in s.anomalies], held=bytes(s.held))
        out.append((key, repr(c), repr(tcp), repr(halves), repr(sess)))
    return out


def _records(data: bytes) -> list[int]:
    """The offsets where each pcap record ends (the file header first)."""
    pos, out = 24, []
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        out.append(pos)
    return out


def _lane_run(data: bytes, fast: bool) -> tuple[list[int], list]:
    """The frames that reached feed(), and the connections' state (see _conn_state)."""
    with loop(fast):
        pipe = Pipeline(Options(stream=False))
        r = CaptureReader(0, 0, lambda lt: pipe.record_filter(lt, 0))
        fed = []
        for f in r.feed_iter(data):
            fed.append(f.no)
            pipe.feed(f)
        return fed, _conn_state(pipe)


def _lane_check(cap, tmp_path, lane: set[int]) -> str:
    """Compiled vs pure on every prefix of the capture (one record more each time): the same
    connection state after each record, the same document at the end; `lane` is the set of frames
    the heads lane (or an older lane) accounts in C. -> the document (JSON)."""
    path = tmp_path / "lane.pcap"
    cap.write(path)
    data = path.read_bytes()
    ends = _records(data)
    for n, end in enumerate(ends, 1):
        fed_c, st_c = _lane_run(data[:end], True)
        fed_p, st_p = _lane_run(data[:end], False)
        assert st_c == st_p, f"state after record {n}"
    # SYN-ACKs and first FINs have lanes of their own (test_frames_synack_and_fin_lanes): only data
    # segments are this check's
    from scapy.layers.inet import TCP
    control = {n for n, p in enumerate(cap.packets, 1) if int(p[TCP].flags) & 0x03}
    assert (set(fed_p) - set(fed_c)) - control == lane
    assert set(fed_c) <= set(fed_p)
    _, out_c = _run_pipeline(data, True)
    _, out_p = _run_pipeline(data, False)
    assert out_c == out_p
    return out_c[-1]


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost:5173\r\n{extra}\r\n".encode()


def _ok(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _lane_conn(cap, port: int = 40001):
    return cap.conn(("172.18.0.1", port), ("172.18.0.3", 5173)).open()


def test_fastpath_recent_matches_tcp():
    from wscap.flow.tcp import RECENT
    if not BUILT:
        pytest.skip("wscap.wire._fastpath is not built")
    assert pcapio._fastpath.RECENT == RECENT


@needs_ext
def test_heads_lane_pipelined_heads_and_bodies(tmp_path):
    """Keep-alive requests and responses, one or several per segment, bodies inside the segment:
    every data segment after the first request is the lane's (frames 4.. of a connection opened
    in 3; the first request also, since its first bytes cannot start an HTTP/2 preface)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/src/a.js"))                                    # 4
    c.send(False, _ok(b"x" * 50))                                      # 5
    c.send(True, _get("/src/b.js") + _get("/src/c.js") + _get("/src/d.js"))   # 6: three
    c.send(False, _ok(b"b") + _ok(b"", "304 Not Modified") + _ok(b"dd"))   # 7: three answers
    c.send(True, b"POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + _get("/e"))   # 8: a body, a head
    c.send(False, _ok(b"") + _ok(b"e" * 10))                           # 9
    _lane_check(cap, tmp_path, {4, 5, 6, 7, 8, 9})


@needs_ext
def test_heads_lane_split_heads(tmp_path):
    """A head split over segments: its start is buffered (head_first_frame, head_last), the rest
    completes it (the terminator may straddle the two). Not the lane's: bytes that could still be
    an HTTP/2 preface, and the segment that takes a buffered head past --max-head-bytes (64 KiB)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/a"))                                           # 4
    c.send(False, _ok(b"1"))                                           # 5
    c.send(True, _get("/split"), split=[20])                           # 6, 7
    c.send(False, _ok(b"22"), split=[30])                              # 8, 9
    c.send(True, _get("/b") + _get("/c")[:7])                          # 10: ends inside a head
    c.send(True, _get("/c")[7:-1])                                     # 11: ... still inside ("\r\n\r")
    c.send(True, _get("/c")[-1:])                                      # 12: the last "\n"
    c.send(False, _ok(b"3") + _ok(b"4")[:3])                           # 13: "HTT"
    c.send(False, _ok(b"4")[3:])                                        # 14
    d = _lane_conn(cap, 40002)                                         # 15-17
    d.send(True, b"PR")                                                # 18: a preface's start: full path
    d.send(True, b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n")                  # 19: full path
    e = _lane_conn(cap, 40003)                                         # 20-22
    start = b"GET /x HTTP/1.1\r\nX-Long: "
    e.send(True, start)                                                # 23: buffered
    e.send(True, b"a" * 70000, split=1400)                             # 24-73: 50 segments
    # 25 + 1400 k bytes buffered after the k-th: up to k = 46 within 65,536 (frames 24-69); the 47th
    # (frame 70) cuts the head and the connection is forgotten (71-73: skipped by both loops)
    assert len(start) == 25
    _lane_check(cap, tmp_path, set(range(4, 15)) | {23} | set(range(24, 70)))


@needs_ext
def test_heads_lane_body_ending_inside_a_segment_then_a_head(tmp_path):
    """A 3,000-byte body: its head and first 900 bytes (lane: -> BODY), 1,000 (the body lane),
    the last 1,100 and a 304 (lane: the body ends, a head follows), then a body ending exactly at
    a segment's end (lane)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/big") + _get("/big2"))                          # 4
    head = _ok(b"")[:-0 or None].replace(b"Length: 0", b"Length: 3000")
    body = bytes(range(256)) * 11 + b"z" * (3000 - 256 * 11)
    c.send(False, head + body[:900])                                   # 5
    c.send(False, body[900:1900])                                      # 6 (the BODY lane, both loops)
    c.send(False, body[1900:] + b"HTTP/1.1 304 Not Modified\r\n\r\n")  # 7
    c.send(True, _get("/small"))                                       # 8
    c.send(False, _ok(b"y" * 700)[:-300])                              # 9: -> BODY, 300 left
    c.send(False, b"y" * 300)                                          # 10: ends exactly here
    c.send(True, _get("/last"))                                        # 11
    c.send(False, _ok(b"!"))                                           # 12
    _lane_check(cap, tmp_path, {4, 5, 7, 8, 9, 10, 11, 12})


@needs_ext
def test_heads_lane_then_an_upgrade_and_a_conflict(tmp_path):
    """Plain requests (lane), a retransmission of one with different bytes (the full path compares
    it with the retransmission memory the lane kept: a conflict naming both frames), then an
    upgrade (full path) whose document carries the count of plain requests and the conflict."""
    from builders import Capture, ws_request, ws_response
    cap = Capture()
    c = _lane_conn(cap)
    first = _get("/a.js")
    c.send(True, first)                                                # 4 lane
    c.send(False, _ok(b"a"))                                           # 5 lane
    c.send(True, _get("/b.js"))                                        # 6 lane
    c.send(False, _ok(b"b"))                                           # 7 lane
    c.cseq -= len(_get("/b.js"))
    c.send(True, _get("/B.js"))                                        # 8: retransmission, differs
    c.send(True, ws_request("/ws"))                                    # 9: upgrade, full path
    c.send(False, ws_response())                                       # 10 full path
    doc = json.loads(_lane_check(cap, tmp_path, {4, 5, 6, 7}))
    hs = doc["handshakes"]
    assert len(hs) == 1
    text = json.dumps(hs[0])
    off = len(first) + len("GET /")                                  # where /b.js and /B.js differ
    assert f"client bytes at stream offset {off} differ between frame 6 and frame 8" in text
    assert "2 plain request(s) preceded the upgrade" in text


@needs_ext
def test_heads_lane_interim_and_bodiless_responses(tmp_path):
    """100 Continue does not answer a request; 204 and 304 have no body whatever their headers
    say; a 101 without an upgrade hint is an interim answer too (the Python fast path's rule)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/1") + _get("/2") + _get("/3"))                 # 4
    c.send(False, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 40\r\n\r\n")   # 5
    c.send(False, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 999\r\n\r\n")   # 6
    c.send(False, b"HTTP/1.1 101 Switching\r\n\r\n" + _ok(b"3"))           # 7
    c.send(True, _get("/4"))                                           # 8
    c.send(False, _ok(b"4"))                                           # 9
    _lane_check(cap, tmp_path, {4, 5, 6, 7, 8, 9})


@needs_ext
def test_heads_lane_huge_or_chunked_lengths_take_the_full_path(tmp_path):
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/1"))                                           # 4 lane
    c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0000000000000000000000000007\r\n\r\n1234567")   # 5 lane
    c.send(True, _get("/2"))                                           # 6 lane
    c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nabc")   # 7 huge: full
    d = _lane_conn(cap, 40002)                                         # 8-10
    d.send(True, _get("/3"))                                           # 11 lane
    d.send(False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n")   # 12 chunked: full
    d.send(True, _get("/4", "Content-Length: 3\r\ntransfer-encoding : x-Chunked\r\n") + b"abc")   # 13 full
    e = _lane_conn(cap, 40003)                                         # 14-16
    e.send(True, _get("/5"))                                           # 17 lane
    e.send(False, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")               # 18 no length: until close, full
    _lane_check(cap, tmp_path, {4, 5, 6, 11, 17})


@needs_ext
def test_heads_lane_odd_but_plain_heads(tmp_path):
    """Bare LF ends, CRLFs before a request line, a multi-line Content-Length search, an
    upgrade hint in any case, a lower-case method (not a request: full path), an HTTP/2 preface
    as the first bytes (full path)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, b"\r\n\r\nGET /lf HTTP/1.1\nHost: x\n\n")            # 4: leading CRLFs, a bare-LF head
    c.send(False, b"HTTP/1.1 200 OK\nX-Content-Length: 5\ncontent-length\t:\t 3 \r\n\r\nabc")   # 5 lane
    c.send(True, _get("/2", "X-Note: UPGRADE later\r\n"))                # 6: the hint: full path
    c.send(False, _ok(b"2"))                                           # 7 lane
    c.send(True, b"get /lower HTTP/1.1\r\n\r\n")                        # 8: not a request line: full
    d = _lane_conn(cap, 40002)
    d.send(True, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")                   # 12: preface: full
    e = _lane_conn(cap, 40003)
    e.send(True, b"PR")                                                 # 16: could be a preface: full
    _lane_check(cap, tmp_path, {4, 5, 7})


@needs_ext
def test_heads_lane_long_segments_use_the_counting_pass(tmp_path):
    """Segments over 1,024 bytes after a first request: framing.plain_requests / plain_responses
    count the heads (head_first_frame left alone), the general loop reads the rest (here a head
    whose body runs into the next segment)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, _get("/first"))                                       # 4 lane
    c.send(False, _ok(b"f"))                                           # 5 lane
    many = b"".join(_get(f"/m{i}") for i in range(40))
    c.send(True, many + b"POST /p HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"q" * 40)   # 6 lane
    c.send(True, b"q" * 60 + _get("/last"))                            # 7 lane: the body ends, a head
    answers = b"".join(_ok(bytes([65 + i % 26]) * (i % 7)) for i in range(40))
    c.send(False, answers + _ok(b"w" * 500)[:-200])                   # 8 lane: the last runs on
    c.send(False, b"w" * 200 + _ok(b"z" * 2000))                      # 9 lane
    c.send(True, b"".join(_get(f"/n{i}") for i in range(30)))          # 10 lane: all counted in one pass
    c.send(False, b"".join(_ok(b"n") for i in range(30)))              # 11 lane: likewise
    _lane_check(cap, tmp_path, {4, 5, 6, 7, 8, 9, 10, 11})


def _lockstep(data: bytes) -> tuple[int, int]:
    """Read `data` one record at a time with the compiled loop and the Python one side by side,
    each into its own pipeline: after every record the connections' state must be equal, and the
    documents at the end. -> how many frames reached feed() (compiled, Python)."""
    ends = _records(data)
    ext = pcapio._fastpath
    pipes = [Pipeline(Options(stream=False)) for _ in range(2)]
    readers = [CaptureReader(0, 0, lambda lt, p=p: p.record_filter(lt, 0)) for p in pipes]
    fed = [0, 0]
    try:
        for n, (a, b) in enumerate(zip([0] + ends, ends), 1):
            for i in (0, 1):
                pcapio._fastpath = ext if i == 0 else None
                for f in readers[i].feed(data[a:b]):
                    fed[i] += 1
                    pipes[i].feed(f)
            assert _conn_state(pipes[0]) == _conn_state(pipes[1]), f"state after record {n}"
        docs = []
        for i in (0, 1):
            pcapio._fastpath = ext if i == 0 else None
            readers[i].finish()
            pipes[i].finish()
            docs.append(json.dumps(pipes[i].document(), sort_keys=True, default=str))
    finally:
        pcapio._fastpath = ext
    assert docs[0] == docs[1]
    return fed[0], fed[1]


def _plain_conversation(rng, port: int) -> list[tuple[int, bytes]]:
    """One connection of plain keep-alive HTTP/1 (and the odd thing the heads lane must leave to
    Python), cut into random segments, with retransmissions, reordering and conflicts now and then."""
    cl_forms = ["Content-Length: {n}", "content-length:{n}", "Content-Length :\t{n} ", "CONTENT-LENGTH: 000{n}",
                "X-Content-Length: 9\r\nContent-Length: {n}"]
    odd = ["Upgrade-Insecure-Requests: 1", "X-Sec-WebSocket-Note: no", "Transfer-Encoding: chunked",
           "Content-Length: 123456789012345678901234", "Content-Length: 5, 5", "Transfer-Encoding: gzip"]

    def head(first: str, body: bytes, request: bool) -> bytes:
        eol = "\n" if rng.random() < 0.1 else "\r\n"
        lines = [first, "Host: localhost:5173"]
        if body or rng.random() < 0.3:
            lines.append(rng.choice(cl_forms).format(n=len(body)))
        if rng.random() < 0.03:
            lines.append(rng.choice(odd))
        lead = "\r\n" if request and rng.random() < 0.05 else ""
        return (lead + eol.join(lines) + eol + eol).encode() + body

    cbytes, sbytes = b"", b""
    for _ in range(rng.randrange(2, 9)):
        k = rng.randrange(1, 4)
        for _ in range(k):
            method = rng.choice(["GET"] * 30 + ["POST"] * 10 + ["HEAD", "M-SEARCH", "get", "PRI"])
            body = bytes(rng.randrange(97, 123) for _ in range(rng.choice([0, 0, 3, 50, 1500]))) if method == "POST" else b""
            cbytes += head(f"{method} /src/{rng.randrange(1000)}.js HTTP/1.1", body, True)
        for _ in range(k):
            status = rng.choice([200, 200, 200, 304, 204, 404, 100, 101, 500])
            body = b"" if status in (204, 304) or status < 200 else bytes(
                rng.randrange(65, 91) for _ in range(rng.choice([0, 2, 700, 3000])))
            if status < 200:
                sbytes += head(f"HTTP/1.1 {status} Interim", b"", False)
                status = 200
            sbytes += head(f"HTTP/1.{rng.randrange(2)} {status} X", body, False)
    # segments: random cuts (1 byte to a few KB), client and server interleaved roughly in order
    def cut(data: bytes) -> list[tuple[int, bytes]]:
        out, off = [], 0
        while off < len(data):
            n = rng.choice([1, 3, 40, 200, 536, 1400, 1460, 4000])
            out.append((off, data[off:off + n]))
            off += n
        return out
    C, S = (bytes([10, 1, 0, port % 200 + 1]), port), (bytes([10, 1, 1, 1]), 80)
    cisn, sisn = rng.randrange(1 << 32), rng.randrange(1 << 32)
    pkts = [ipv4_tcp(C[0], C[1], S[0], S[1], flags=0x02, seq=cisn), ipv4_tcp(S[0], S[1], C[0], C[1], flags=0x12, seq=sisn),
            ipv4_tcp(C[0], C[1], S[0], S[1], flags=0x10, seq=cisn + 1)]
    cs, ss = [(True, o, d) for o, d in cut(cbytes)], [(False, o, d) for o, d in cut(sbytes)]
    segs = []
    while cs or ss:                # each direction in order, the two merged roughly request-then-answer
        if cs and (not ss or cs[0][1] <= ss[0][1] + 300 + rng.randrange(-200, 200)):
            segs.append(cs.pop(0))
        else:
            segs.append(ss.pop(0))
    out = []
    for i, (client, off, d) in enumerate(segs):
        r = rng.random()
        if r < 0.03 and i + 1 < len(segs):
            segs[i + 1], (client, off, d) = (client, off, d), segs[i + 1]        # reordered
        elif r < 0.06:
            out.append((client, off, d))                                          # sent twice
        elif r < 0.08 and len(d) > 4:
            out.append((client, off, d[:2] + bytes([d[2] ^ 1]) + d[3:]))          # a retransmission that differs
            out.append((client, off, d))
            continue
        out.append((client, off, d))
    for client, off, d in out:
        if client:
            pkts.append(ipv4_tcp(C[0], C[1], S[0], S[1], d, flags=0x18, seq=(cisn + 1 + off) & 0xFFFFFFFF))
        else:
            pkts.append(ipv4_tcp(S[0], S[1], C[0], C[1], d, flags=0x18, seq=(sisn + 1 + off) & 0xFFFFFFFF))
    return pkts


@needs_ext
def test_heads_lane_random_conversations_lockstep():
    """Random plain keep-alive conversations (odd spellings, interim answers, bodies inside and
    across segments, upgrade hints, chunked and huge lengths, 1-byte to 4 KB segments, reordering,
    duplicates, conflicting retransmissions), three connections per capture, 40 captures: compiled
    and pure readers agree after every record, and the compiled loop takes over much of the work."""
    import random
    fed_c = fed_p = 0
    for seed in range(40):
        rng = random.Random(seed)
        c, p = _lockstep(_interleaved(rng, [_plain_conversation(rng, 40000 + seed * 10 + k) for k in range(3)]))
        fed_c, fed_p = fed_c + c, fed_p + p
    assert fed_c < 0.8 * fed_p, (fed_c, fed_p)


def _interleaved(rng, flows: list[list]) -> bytes:
    """One capture of the flows' packets, each flow in its order, the flows shuffled together."""
    recs, t = [], T0
    while any(flows):
        f = rng.choice([f for f in flows if f])
        t += 1000
        recs.append((t, ether(f.pop(0))))
    return pcap(recs)


@needs_ext
def test_heads_lane_edges(tmp_path):
    """Edges of the mirrored rules: a head in 1-byte segments (the retransmission memory's frame
    list passes 64 entries and is trimmed by 32), a first request in a segment over 1,024 bytes
    (no counting pass before the first request: head_first_frame is set), methods of 16 letters
    (a request) and 17 (not one: the client is ignored from there), a tab after the method (not
    one either), buffered bytes that the next segment shows are no request line, a server body
    ending after the client was ignored (the full path forgets the connection then)."""
    from builders import Capture
    cap = Capture()
    c = _lane_conn(cap)
    c.send(True, b"POST /first HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"p" * 2000)   # 4
    c.send(False, _ok(b"ok"))                                          # 5
    slow = _get("/" + "s" * 40)
    assert len(slow) == 80
    c.send(True, slow, split=1)                                        # 6-85: 80 one-byte segments
    c.send(False, _ok(b"s"))                                           # 86
    c.send(True, b"ABCDEFGHIJKLMNOP /16 HTTP/1.1\r\n\r\n")              # 87: a 16-letter method
    c.send(False, _ok(b"16"))                                          # 88
    c.send(True, b"ABCDEFGHIJKLMNOPQ /17 HTTP/1.1\r\n\r\n")             # 89: 17 letters: full path
    d = _lane_conn(cap, 40002)                                         # 90-92
    d.send(True, b"\r\n\r\n\r\nABCDEFGHIJKLMNOP ")                       # 93: a head of empty lines ("\r\n\r\n"),
    d.send(True, b" /x HTTP/1.1\r\n\r\n")                              # then 19 bytes that may start a request
    # line; 94: with its bytes the first 24 say it is not one: full path
    e = _lane_conn(cap, 40003)                                         # 95-97
    e.send(True, _get("/big"))                                         # 98
    e.send(False, _ok(b"b" * 3000)[:-1000])                            # 99: the body runs on (BODY)
    e.send(True, b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")   # 100: client ignored: full
    e.send(False, b"b" * 1000)                                         # 101: the body ends, the connection is
    e.send(False, _ok(b"late"))                                        # then forgotten: full path, then skipped
    g = _lane_conn(cap, 40004)                                         # 103-105
    g.send(True, _get("/t"))                                           # 106
    g.send(True, b"GET \t/tab HTTP/1.1\r\n\r\n")                       # 107: a tab is no \\S: full path
    _lane_check(cap, tmp_path, set(range(4, 89)) | {93, 98, 99, 106})


_SOUP_C = [b"GET", b"POST", b"G", b"ET", b"A-B", b"get", b" ", b" ", b"/x", b"HTTP/1.1", b"\r\n", b"\r\n", b"\n", b"\r",
           b"Content-Length", b"content-length", b"CONTENT-LENGTH", b":", b": ", b"\t", b"5", b"0", b"12", b"3",
           b"99999999999999999999", b"Transfer-Encoding", b"transfer-encoding", b"chunked", b"CHUNKED", b"gzip,",
           b"Upgrade", b"upgradE", b"Sec-WebSocket", b"sec-websockeT", b"Host", b"x", b"PRI", b" * ", b"\r\n\r\n",
           b"\n\n", b"\n\r\n", b"\x00", b"\xff", b"-", b"HTTP/"]
_SOUP_S = [b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/2.0 ", b"HTTP/1.1", b"200", b"204", b"304", b"100", b"101", b"199",
           b"404", b"20", b"2000", b" OK"]


def _soup_conversation(rng, port: int) -> list[bytes]:
    """A connection whose heads are random mixes of the tokens the mirrored regexes look at
    (request/status line pieces, CR/LF in every combination, length and encoding names in any
    case, upgrade hints, a preface's start, huge numbers), cut at random places."""
    def soup(toks: list[bytes], end: bool = True) -> bytes:
        b = b"".join(rng.choice(toks) for _ in range(rng.randrange(1, 25)))
        return b + (rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n\n", b""]) if end else b"")
    C, S = (bytes([10, 3, 0, port % 200 + 1]), port), (bytes([10, 3, 1, 1]), 80)
    cisn, sisn = rng.randrange(1 << 32), rng.randrange(1 << 32)
    out = [ipv4_tcp(C[0], C[1], S[0], S[1], flags=0x02, seq=cisn), ipv4_tcp(S[0], S[1], C[0], C[1], flags=0x12, seq=sisn),
           ipv4_tcp(C[0], C[1], S[0], S[1], flags=0x10, seq=cisn + 1)]
    co = so = 0
    for _ in range(rng.randrange(2, 12)):
        d = b"GET /" + soup(_SOUP_C, False) + b" HTTP/1.1\r\n" + soup(_SOUP_C) if rng.random() < 0.5 else soup(_SOUP_C)
        if rng.random() < 0.3:
            d = b"GET /a HTTP/1.1\r\n\r\n" + d
        cuts = sorted(rng.sample(range(1, len(d)), min(len(d) - 1, rng.randrange(0, 3)))) if len(d) > 1 else []
        for a, b in zip([0] + cuts, cuts + [len(d)]):
            out.append(ipv4_tcp(C[0], C[1], S[0], S[1], d[a:b], flags=0x18, seq=(cisn + 1 + co + a) & 0xFFFFFFFF))
        co += len(d)
        if rng.random() < 0.6:
            r = rng.choice(_SOUP_S) + rng.choice(_SOUP_S) + b"\r\n" + soup(_SOUP_C + _SOUP_S)
            if rng.random() < 0.5:
                r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + r
            out.append(ipv4_tcp(S[0], S[1], C[0], C[1], r, flags=0x18, seq=(sisn + 1 + so) & 0xFFFFFFFF))
            so += len(r)
    return out


@needs_ext
def test_heads_lane_token_soup_lockstep():
    """300 captures of token-soup heads (see _soup_conversation), three connections each: the
    compiled and pure readers agree after every record; the lane takes some of them."""
    import random
    fed_c = fed_p = 0
    for seed in range(300):
        rng = random.Random(seed)
        c, p = _lockstep(_interleaved(rng, [_soup_conversation(rng, 40000 + seed * 3 + k) for k in range(3)]))
        fed_c, fed_p = fed_c + c, fed_p + p
    assert fed_c < 0.95 * fed_p, (fed_c, fed_p)


@needs_ext
def test_the_other_halfs_records_are_counted_and_timed_both_ways():
    """engine/shards.py: a pipeline keeping half 0 of the flows (ports' sum even) skips a whole
    IPv4/TCP packet of the other half, counting it as the decoder would and moving the clock;
    anything the decoder could say more of is a frame, as is the pipeline's own half."""
    def tso(l3: bytes) -> bytes:              # IPv4 total length 0, as TSO leaves it
        return l3[:2] + b"\0\0" + l3[4:]

    def short_offset(l3: bytes) -> bytes:     # TCP data offset 4 words (< 20 bytes)
        return l3[:32] + bytes([4 << 4]) + l3[33:]
    recs = [
        (T0 + 1, ether(ipv4_tcp(A, 1111, C, 80, b"GET / HTTP/1.1\r\n"))),   # 1 other half: counted
        (T0 + 2, ether(ipv4_tcp(A, 1113, C, 80, flags=0x02))),               # 2 other half's SYN: counted
        (T0 + 3, ether(ipv4_tcp(A, 1115, C, 80, b"x" * 40))[:60]),           # 3 other half, cut short: frame
        (T0 + 4, ether(ipv4_tcp(A, 1117, C, 52, b"?"))),                     # 4 other half: counted
        (T0 + 5, ether(ipv4_tcp(A, 1119, C, 53, b"?"))),                     # 5 DNS (both halves read it): frame
        (T0 + 6, ether(tso(ipv4_tcp(A, 1121, C, 80, b"y" * 10)))),           # 6 IPv4 length 0: frame
        (T0 + 7, ether(short_offset(ipv4_tcp(A, 1123, C, 80)))),             # 7 data offset < 5: frame
        (T0 + 8, ether(ipv4_tcp(A, 1125, C, 80, ihl=6))),                    # 8 IPv4 options: frame
        (T0 + 9, ether(ipv4_tcp(A, 1112, C, 80, b"GET / HTTP/1.1\r\n"))),   # 9 this half, unseen: frame
        (T0 + 10, ether(ipv4_tcp(A, 1127, C, 82, b"!"))),                    # 10 other half: counted
    ]
    assert all((s ^ d) & 1 for s, d in [(1111, 80), (1113, 80), (1117, 52), (1127, 82)])
    out = []
    for fast in (True, False):
        p = Pipeline(Options(stream=False))
        p.shard = 0
        frames, r = read(pcap(recs), p, 0, fast)
        out.append(([f.no for f in frames], state(p, r)))
    assert out[0] == out[1]
    nos, st = out[0]
    assert nos == [3, 5, 6, 7, 8, 9]
    assert st[-2:] == (4, 4)                  # packets, tcp: the four counted here
    assert st[8] == T0 + 10 and st[9] == {0: T0 + 10}
