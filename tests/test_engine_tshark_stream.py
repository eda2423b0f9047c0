"""The tshark engine's reassembly: wscap.flow.tcp.HalfStream with first_copy=True. Segments in
(tshark's raw sequence numbers, payloads, tcp.analysis labels), ordered bytes / gaps / probes out.
Pure: no tshark needed."""
from __future__ import annotations

from wscap.flow.tcp import HalfStream
from wscap.model.events import C2S, Gap as _Gap, Overflow, Probe as _Probe, ProbeKind
from wscap.model.events import Data as _Data

ISN = 0xFFFFFFF0          # close to the wrap: offsets must not notice


def Direction(limit: int) -> HalfStream:  # noqa: N802 - reads as the constructor it stands for
    return HalfStream(C2S, limit, first_copy=True)


def Data(data: bytes, frame: int, ts_ns: int) -> _Data:  # noqa: N802
    return _Data(C2S, data, frame, ts_ns)


def Gap(length: int, frame: int, ts_ns: int) -> _Gap:  # noqa: N802
    return _Gap(C2S, length, frame, ts_ns)


def Probe(kind: str, offset: int, frame: int) -> _Probe:  # noqa: N802
    return _Probe(C2S, ProbeKind(kind), offset, frame)


def feed(d: HalfStream, off: int, data: bytes, frame: int, paylen: int | None = None, keep_alive: bool = False,
         zwp: bool = False) -> list:
    out: list = []
    d.feed((ISN + 1 + off) & 0xFFFFFFFF, data, len(data) if paylen is None else paylen, frame, frame * 1000,
           out, zwp, keep_alive)
    return out


def test_in_order_and_out_of_order_across_the_wrap():
    d = Direction(1 << 20)
    d.set_isn(ISN)
    assert feed(d, 0, b"GET ", 1) == [Data(b"GET ", 1, 1000)]
    assert feed(d, 8, b"HTTP", 2) == []                          # a hole: waits
    assert feed(d, 4, b"/ws ", 3) == [Data(b"/ws ", 3, 3000), Data(b"HTTP", 2, 2000)]
    assert d.next == 12 and not d.ooo


def test_first_copy_of_a_byte_is_kept():
    d = Direction(1 << 20)
    d.set_isn(ISN)
    feed(d, 0, b"abcd", 1)
    assert feed(d, 0, b"XXXX", 2) == []                          # a retransmission with other bytes
    assert feed(d, 2, b"YYef", 3) == [Data(b"ef", 3, 3000)]      # overlap: only the new tail
    assert feed(d, 10, b"kl", 4) == []
    assert feed(d, 10, b"K", 5) == []                            # shorter copy of a waiting segment
    assert feed(d, 6, b"ghij", 6) == [Data(b"ghij", 6, 6000), Data(b"kl", 4, 4000)]


def test_a_hole_that_never_fills_is_a_gap_at_the_frame_after_it():
    d = Direction(1 << 20)
    d.set_isn(ISN)
    feed(d, 0, b"ab", 1)
    feed(d, 7, b"hi", 2)
    out: list = []
    d.flush_gap(out)
    assert out == [Gap(5, 2, 2000), Data(b"hi", 2, 2000)] and d.next == 9


def test_snap_length_cut_is_a_gap_of_the_missing_bytes():
    d = Direction(1 << 20)
    d.set_isn(ISN)
    assert feed(d, 0, b"abc", 1, paylen=10) == [Data(b"abc", 1, 1000), Gap(7, 1, 1000)]
    assert feed(d, 10, b"z", 2) == [Data(b"z", 2, 2000)]


def test_probes():
    d = Direction(1 << 20)
    d.set_isn(ISN)
    feed(d, 0, b"abcd", 1)
    assert feed(d, 3, b"?", 2, keep_alive=True) == [Probe("keep-alive", 3, 2)]
    assert feed(d, 4, b"Z", 3, zwp=True) == [Probe("zero-window-probe", 4, 3)]
    assert feed(d, 4, b"Z", 4, zwp=True) == []                   # the same run: said once
    assert feed(d, 4, b"ef", 5) == [Data(b"ef", 5, 5000)]        # data at the probe's offset wins
    assert feed(d, 6, b"Q", 6, zwp=True) == [Probe("zero-window-probe", 6, 6)]
    # data after the probe's offset: the receiver took the probe's byte
    assert feed(d, 7, b"gh", 7) == [Data(b"Q", 6, 6000), Data(b"gh", 7, 7000)]


def test_mid_stream_start_takes_the_first_sequence_number_seen():
    d = Direction(1 << 20)
    assert feed(d, 100, b"HTTP/1.1 101", 1) == [Data(b"HTTP/1.1 101", 1, 1000)]
    assert feed(d, 112, b"\r\n", 2) == [Data(b"\r\n", 2, 2000)]


def test_the_out_of_order_buffer_is_bounded():
    d = Direction(1000)
    d.set_isn(ISN)
    out = []
    for i in range(20):                                           # 20 segments after a hole, 100 bytes each
        out += feed(d, 10 + i * 100, b"x" * 100, i + 1)
    assert out.count(Overflow(C2S, 1000, 7, True)) == 1 and len([e for e in out if isinstance(e, Overflow)]) == 1   # 7 x (100 + 64) > 1000
    assert out[out.index(Overflow(C2S, 1000, 7, True)) + 1] == Gap(10, 1, 1000)   # the hole before them was declared a gap
    assert d.ooo_bytes <= 1000
