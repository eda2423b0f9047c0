"""wire/pcapio.py: the one pcap/pcapng codec. Writer -> reader round trips in both byte orders,
µs and ns, pcapng with several interfaces, sections and Name Resolution Blocks, damage at the
tail, and any chunking of the input giving the same frames.

Expected values are the ones each capture was built with; dpkt (an independent reader) checks
that what our writer produces is what other tools read.
"""
from __future__ import annotations

import io
import random
import struct

import pytest

from wscap.model.raw import RawFrame
from wscap.wire import pcapbuild, pcapio
from wscap.wire.pcapio import CaptureReader

T0 = 1_733_300_000_123_456_789          # ns: a present-day epoch value with every digit used


def packets(n: int, seed: int = 1) -> list[tuple[int, bytes, int]]:
    """(ts_ns, data, wirelen): sizes 0..300 bytes (odd ones too, for pcapng padding), some cut."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        data = bytes(r.getrandbits(8) for _ in range(r.randrange(0, 300)))
        out.append((T0 + i * 1_000_003 + r.randrange(1000), data, len(data) + (r.randrange(50) if i % 3 == 0 else 0)))
    return out


def pcap_bytes(pkts: list[tuple[int, bytes, int]], nano: bool, endian: str = "<", linktype: int = 1) -> bytes:
    if endian == "<":
        out = [pcapbuild.pcap_header(linktype, 65535, nano)]
        for ts, data, wl in pkts:
            sec, ns = divmod(ts, 10**9)
            out.append(pcapbuild.pcap_record(sec, ns if nano else ns // 1000, data, wl))
        return b"".join(out)
    # big-endian, built by hand: the writer only writes little-endian
    out = [struct.pack(">IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, data, wl in pkts:
        sec, ns = divmod(ts, 10**9)
        out.append(struct.pack(">IIII", sec, ns if nano else ns // 1000, len(data), wl) + data)
    return b"".join(out)


def read_all(data: bytes, step: int | None = None, **kw: object) -> tuple[list[RawFrame], CaptureReader]:
    r = CaptureReader(**kw)  # type: ignore[arg-type]
    out: list[RawFrame] = []
    if step is None:
        out += r.feed(data)
    else:
        for i in range(0, len(data), step):
            out += r.feed(data[i:i + step])
    r.finish()
    return out, r


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_round_trip(endian, nano):
    pkts = packets(60)
    frames, r = read_all(pcap_bytes(pkts, nano, endian, linktype=276))
    assert r.format == "pcap" and r.linktypes == [276] and r.errors == []
    assert [(f.no, f.linktype, f.data, f.wirelen) for f in frames] == \
        [(i + 1, 276, d, wl) for i, (_, d, wl) in enumerate(pkts)]
    want_ts = [ts if nano else ts // 1000 * 1000 for ts, _, _ in pkts]
    assert [f.ts_ns for f in frames] == want_ts
    assert (r.packets, r.nbytes, r.first_ts, r.last_ts) == (60, sum(len(d) for _, d, _ in pkts), want_ts[0], want_ts[-1])


def test_linktype_upper_bits_are_fcs_flags():
    frames, r = read_all(pcap_bytes(packets(2), False, linktype=0x10000001))
    assert r.linktypes == [1] and {f.linktype for f in frames} == {1}


def _epb_be(ifid: int, ts: int, data: bytes, wirelen: int) -> bytes:
    pad = -len(data) % 4
    ln = 32 + len(data) + pad
    return struct.pack(">IIIIIII", 6, ln, ifid, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen) + data + b"\0" * pad \
        + struct.pack(">I", ln)


def pcapng_capture() -> tuple[bytes, list[tuple[int, int, int, bytes, int]], dict[str, str]]:
    """Two sections. LE: if0 Ethernet µs (named), if1 SLL2 ns, if2 RAW with 2^-20 s units and a
    100 s if_tsoffset; an NRB; EPBs over all three, an SPB, a custom block. BE: one interface.
    -> (bytes, expected (iface, linktype, ts_ns, data, wirelen), expected names)."""
    pkts = packets(30, seed=2)
    names = {"10.0.0.1": "web", "fd00::2": "api"}
    tsoff = struct.pack("<HHq", 14, 8, 100)
    idb2 = struct.pack("<HHI", 101, 0, 0) + pcapbuild.option(9, bytes([0x80 | 20])) + tsoff + pcapbuild.option(0, b"")
    out = [pcapbuild.pcapng_shb("test"), pcapbuild.pcapng_idb(1, 65535, "eth0"), pcapbuild.pcapng_idb(276, 65535, None, 9),
           pcapbuild.block(1, idb2), pcapbuild.pcapng_nrb(names)]
    expect = []
    for i, (ts, data, wl) in enumerate(pkts):
        ifid = i % 3
        if ifid == 0:
            raw, got_ts, lt = ts // 1000, ts // 1000 * 1000, 1
        elif ifid == 1:
            raw, got_ts, lt = ts, ts, 276
        else:
            raw = (ts * 2**20) // 10**9
            got_ts, lt = raw * 10**9 // 2**20 + 100 * 10**9, 101
        out.append(pcapbuild.pcapng_epb(ifid, raw, data, wl))
        expect.append((ifid, lt, got_ts, data, wl))
    # Simple Packet Block: interface 0, the last timestamp, caplen bounded by the snap length (65535)
    spb = b"\x45" * 21
    out.append(pcapbuild.block(3, struct.pack("<I", 21) + pcapbuild.pad4(spb)))
    expect.append((0, 1, expect[-1][2], spb, 21))
    out.append(pcapbuild.block(0x40000BAD, b"custom!!"))          # skipped, not counted
    # A big-endian section: interfaces start again
    body = struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1)
    out.append(struct.pack(">II", 0x0A0D0D0A, 12 + len(body)) + body + struct.pack(">I", 12 + len(body)))
    idb = struct.pack(">HHI", 113, 0, 0)
    out.append(struct.pack(">II", 1, 12 + len(idb)) + idb + struct.pack(">I", 12 + len(idb)))
    for ts, data, wl in pkts[:5]:
        out.append(_epb_be(0, ts // 1000, data, wl))
        expect.append((0, 113, ts // 1000 * 1000, data, wl))
    return b"".join(out), expect, names


def test_pcapng_interfaces_sections_and_names():
    data, expect, names = pcapng_capture()
    frames, r = read_all(data)
    assert r.format == "pcapng" and r.errors == []
    assert [(f.iface, f.linktype, f.ts_ns, f.data, f.wirelen) for f in frames] == expect
    assert [f.no for f in frames] == list(range(1, len(expect) + 1))
    assert r.linktypes == [1, 276, 101, 113] and r.interfaces == ["eth0", "if1", "if2", "if0"]
    assert r.names == names and r.names_skipped == 0


@pytest.mark.parametrize("kind", ["pcap-us", "pcap-ns-be", "pcapng"])
def test_any_chunking_gives_the_same_frames(kind):
    if kind == "pcapng":
        data = pcapng_capture()[0]
    else:
        data = pcap_bytes(packets(40), kind != "pcap-us", ">" if kind.endswith("be") else "<")
    whole, r0 = read_all(data)
    for step in (1, 3, 7, 64, 1000):
        got, r = read_all(data, step)
        assert got == whole and r.errors == [] and r.pending == 0 and r.bytes == len(data)
    r = CaptureReader()
    rnd = random.Random(5)
    got, i = [], 0
    while i < len(data):
        n = rnd.randrange(1, 200)
        got += r.feed(data[i:i + n])
        i += n
    assert got == whole


def test_truncated_tail_pcap():
    pkts = packets(10)
    data = pcap_bytes(pkts, True)
    cut = data[:-5]                                   # the last record loses 5 bytes
    frames, r = read_all(cut)
    assert [f.data for f in frames] == [d for _, d, _ in pkts[:9]]
    left = 16 + len(pkts[9][1]) - 5
    assert r.errors == [f"frame 10: record truncated ({left} bytes left at the end of the file); "
                        "analysed the 9 complete frames before it"]
    _, r = read_all(data[:20])
    assert r.errors == ["pcap global header truncated"]


def test_truncated_tail_pcapng():
    data, expect, _ = pcapng_capture()
    frames, r = read_all(data[:-6])
    assert len(frames) == len(expect) - 1
    last_block = 32 + len(expect[-1][3]) + (-len(expect[-1][3]) % 4)
    assert r.errors == [f"frame {len(expect)}: block truncated ({last_block - 6} of {last_block} bytes at the end "
                        f"of the file); analysed the {len(expect) - 1} complete frames before it"]
    _, r = read_all(data[:5])
    assert r.errors == ["frame 1: block header truncated at the end of the file"]


def test_damage_stops_reading_and_keeps_what_came_before():
    pkts = packets(4)
    data = pcap_bytes(pkts, False)
    bad = data + struct.pack("<IIII", 1, 0, pcapio.MAX_RECORD + 1, 10) + b"x" * 50
    frames, r = read_all(bad, 13)
    assert len(frames) == 4 and r.stopped
    assert r.error == ("frame 5: corrupt record header (captured length 262145); stopped reading, "
                       "4 frames analysed")
    frames, r = read_all(b"GET / HTTP/1.1\r\n")
    assert frames == [] and r.error == "not a pcap or pcapng capture (starts with 47455420)"
    assert read_all(b"")[1].errors == ["empty file"]
    assert read_all(b"\xd4\xc3")[1].errors == ["not a pcap or pcapng capture (starts with d4c3)"]
    ng = pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0) + struct.pack("<II", 6, 14) + b"\0" * 8
    frames, r = read_all(ng)
    assert r.error == "frame 1: corrupt block (type 0x6, length 14); stopped reading, 0 frames analysed"


def test_packet_of_an_undescribed_interface_is_counted_and_said():
    ng = (pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0) + pcapbuild.pcapng_epb(3, 5, b"abc", 3)
          + pcapbuild.pcapng_epb(0, 7, b"defg", 4))
    frames, r = read_all(ng)
    assert [(f.no, f.data, f.ts_ns) for f in frames] == [(2, b"defg", 7000)]
    assert r.errors == ["frame 1: packet names interface 3, which was never described"] and not r.stopped


def test_record_filter_sees_the_record_in_the_buffer():
    pkts = packets(20)
    seen: list[tuple[int, bytes, int]] = []

    def record_filter(linktype: int):
        assert linktype == 1

        def want(buf: bytes, off: int, caplen: int, no: int, ts: int) -> bool:
            seen.append((no, bytes(buf[off:off + caplen]), ts))
            return no % 2 == 1                       # odd frames become RawFrames
        return want

    for data in (pcap_bytes(pkts, True), pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0, None, 9)
                 + b"".join(pcapbuild.pcapng_epb(0, ts, d, wl) for ts, d, wl in pkts)):
        seen.clear()
        frames, r = read_all(data, 50, no=100, record_filter=record_filter)
        assert seen == [(101 + i, d, ts) for i, (ts, d, _) in enumerate(pkts)]
        assert [f.no for f in frames] == list(range(101, 121, 2)) and r.packets == 20 and r.no == 120


def test_record_filter_changed_mid_capture_applies_to_the_next_records():
    """Live turns the fast path on after the reader started, and off for the drain."""
    pkts = packets(30)
    skip_all = lambda lt: (lambda *a: False)     # noqa: E731 - the filter accounts for every record
    for data in (pcap_bytes(pkts, False), pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0, None, 6)
                 + b"".join(pcapbuild.pcapng_epb(0, ts, d, wl) for ts, d, wl in pkts)):
        r = CaptureReader()
        # feed the first 10 records with no filter, then 10 with one that skips all, then none again
        cuts = [_record_end(data, k) for k in (10, 20)]
        first = r.feed(data[:cuts[0]])
        r.set_record_filter(skip_all)
        middle = r.feed(data[cuts[0]:cuts[1]])
        r.set_record_filter(None)
        last = r.feed(data[cuts[1]:])
        assert [f.no for f in first] == list(range(1, 11)) and middle == []
        assert [f.no for f in last] == list(range(21, 31)) and r.no == 30


def _record_end(data: bytes, k: int) -> int:
    """Offset just past the k-th packet record of a little-endian pcap or pcapng."""
    r = CaptureReader()
    for i in range(len(data) + 1):
        if i and len(r.feed(data[i - 1:i])) and r.no == k:
            return i
    raise AssertionError(k)


def test_shedding_skips_what_worth_rejects_and_counts_it():
    pkts = packets(10)
    r = CaptureReader(worth=lambda buf, start, end, lt: end - start > 150)
    r.shedding = True
    frames = r.feed(pcap_bytes(pkts, False))
    assert [f.data for f in frames] == [d for _, d, _ in pkts if len(d) > 150]
    assert r.shed == sum(1 for _, d, _ in pkts if len(d) <= 150)


def test_clone_counts_without_asking_the_filter():
    pkts = packets(6)
    data = pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0) + b"".join(
        pcapbuild.pcapng_epb(0, ts // 1000, d, wl) for ts, d, wl in pkts)
    calls = []
    r = CaptureReader(record_filter=lambda lt: (lambda *a: calls.append(a) or False))
    half = len(data) // 2
    assert r.feed(data[:half]) == [] and calls
    n_calls = len(calls)
    c = r.clone()
    rest = c.feed(data[half:])
    assert len(calls) == n_calls                     # the copy never asked the filter
    assert [f.data for f in rest] == [d for _, d, _ in pkts][len(pkts) - len(rest):] and rest
    assert r.pending < len(data) - half + r.pending and r.packets + len(rest) == len(pkts)


def test_dpkt_reads_what_the_writer_writes():
    dpkt = pytest.importorskip("dpkt")
    pkts = packets(25)
    for nano in (False, True):
        rd = dpkt.pcap.Reader(io.BytesIO(pcap_bytes(pkts, nano)))
        got = [(ts, bytes(buf)) for ts, buf in rd]
        assert [b for _, b in got] == [d for _, d, _ in pkts]
        unit = 10**9 if nano else 10**6
        # dpkt gives float seconds for µs files and Decimal for ns ones (wscap keeps integer ns)
        for (ts, _), (want, _, _) in zip(got, pkts):
            units = want // (10**9 // unit)
            assert (int(ts * unit) if nano else round(ts * unit)) == units
    ng = pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 65535, "eth0") + b"".join(
        pcapbuild.pcapng_epb(0, ts // 1000, d, wl) for ts, d, wl in pkts)
    got_ng = [bytes(buf) for _, buf in dpkt.pcapng.Reader(io.BytesIO(ng))]
    assert got_ng == [d for _, d, _ in pkts]


def test_nrb_split_and_bounded():
    names = {f"10.{i // 250}.{i % 250}.1": f"host-{i}" for i in range(5000)}
    blob = pcapbuild.pcapng_nrb(names)
    blocks = 0
    i = 0
    while i < len(blob):
        kind, ln = struct.unpack_from("<II", blob, i)
        assert kind == 4 and ln <= pcapbuild.NRB_MAX_BLOCK + 16
        i += ln
        blocks += 1
    assert blocks > 1
    _, r = read_all(pcapbuild.pcapng_shb("t") + pcapbuild.pcapng_idb(1, 0) + blob)
    assert r.names == names and r.errors == []


def test_damaged_input_never_raises_and_chunking_does_not_change_the_outcome():
    """Random byte flips and cuts: the reader never raises, and frames, errors and names are the
    same whether the damaged bytes come whole or in random pieces."""
    seeds = [pcapng_capture()[0], pcap_bytes(packets(20), True, ">"), pcap_bytes(packets(20), False)]
    r = random.Random(3)
    for _ in range(300):
        d = bytearray(r.choice(seeds))
        for _ in range(r.randrange(1, 6)):
            d[r.randrange(len(d))] = r.getrandbits(8)
        if r.random() < 0.3:
            d = d[:r.randrange(len(d))]
        whole, a = read_all(bytes(d))
        b = CaptureReader()
        pieces: list[RawFrame] = []
        i = 0
        while i < len(d):
            n = r.randrange(1, 400)
            pieces += b.feed(bytes(d[i:i + n]))
            i += n
        b.finish()
        assert pieces == whole and b.errors == a.errors and b.names == a.names
