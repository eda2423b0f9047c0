"""wscap.flow.tcp on its own: segments in, typed events out (no pcap, no session).

Every expected value follows from how the segments below are built: sequence
numbers count from the ISN + 1, frame numbers are the test's own.
"""
from __future__ import annotations

from wscap.flow.tcp import ACK, FIN, RST, SYN, TcpFlow
from wscap.model.events import C2S, S2C, Closed, Conflict, Data, EndKind, Gap, Opened, Overflow, Probe, ProbeKind

ISN_C, ISN_S = 1000, 5000
PSH_ACK = ACK | 0x08


def opened(buffer: int = 1 << 16) -> TcpFlow:
    """A flow after the handshake: client ISN 1000, server ISN 5000."""
    f = TcpFlow(buffer)
    assert f.segment(C2S, SYN, ISN_C, b"", 0, 65535, 1, 1_000) == [Opened(C2S, 1, 1_000)]
    assert f.segment(S2C, SYN | ACK, ISN_S, b"", 0, 65535, 2, 2_000) == [Opened(S2C, 2, 2_000)]
    assert f.segment(C2S, ACK, ISN_C + 1, b"", 0, 65535, 3, 3_000) == []
    return f


def c2s(f: TcpFlow, off: int, data: bytes, frame: int, paylen: int | None = None, flags: int = PSH_ACK,
        window: int = 65535) -> list:
    """A client segment at stream offset `off` (seq = ISN + 1 + off)."""
    return f.segment(C2S, flags, ISN_C + 1 + off, data, len(data) if paylen is None else paylen, window,
                     frame, frame * 1000)


def s2c(f: TcpFlow, off: int, data: bytes, frame: int, flags: int = PSH_ACK, window: int = 65535) -> list:
    return f.segment(S2C, flags, ISN_S + 1 + off, data, len(data), window, frame, frame * 1000)


def test_in_order_bytes_come_out_once_each() -> None:
    f = opened()
    assert f.syn_frame == 1 and f.synack_frame == 2
    assert c2s(f, 0, b"GET / ", 4) == [Data(C2S, b"GET / ", 4, 4000)]
    assert c2s(f, 6, b"HTTP/1.1\r\n", 5) == [Data(C2S, b"HTTP/1.1\r\n", 5, 5000)]
    assert s2c(f, 0, b"HTTP/1.1 101", 6) == [Data(S2C, b"HTTP/1.1 101", 6, 6000)]
    assert f.delivered(C2S) == 16 and f.delivered(S2C) == 12
    assert f.saw_payload and f.gaps() == 0 and not f.closed


def test_out_of_order_waits_for_the_hole() -> None:
    f = opened()
    assert c2s(f, 3, b"DEF", 4) == []                      # offset 3 before 0..2 arrived
    assert f.buffering and f.delivered(C2S) == 0
    assert c2s(f, 0, b"ABC", 5) == [Data(C2S, b"ABC", 5, 5000), Data(C2S, b"DEF", 4, 4000)]
    assert not f.buffering and f.delivered(C2S) == 6


def test_overlapping_retransmission_with_other_bytes_is_a_conflict() -> None:
    f = opened()
    c2s(f, 0, b"ABCDEF", 4)
    assert c2s(f, 0, b"ABCDEF", 5) == []                   # an honest retransmission says nothing
    assert c2s(f, 0, b"ABX", 6) == [Conflict(C2S, 2, 4, 6)]  # first differing byte: offset 2
    # Straddling the delivered edge: the old part is checked, the new part delivered.
    assert c2s(f, 4, b"QFGH", 7) == [Conflict(C2S, 4, 4, 7), Data(C2S, b"GH", 7, 7000)]
    assert f.delivered(C2S) == 8


def test_two_buffered_segments_at_one_offset_disagreeing() -> None:
    f = opened()
    assert c2s(f, 5, b"xyz", 4) == []
    assert c2s(f, 5, b"xqz", 5) == [Conflict(C2S, 5, 4, 5)]


def test_keep_alive_probe_is_neither_data_nor_conflict() -> None:
    f = opened()
    c2s(f, 0, b"hello", 4)
    # 1 byte at snd.nxt-1 (offset 4), with a byte that differs from the 'o' delivered there.
    assert c2s(f, 4, b"\x00", 5) == [Probe(C2S, ProbeKind.KEEP_ALIVE, 4, 5)]
    assert f.delivered(C2S) == 5


def test_zero_window_probe_is_superseded_by_the_data_that_follows() -> None:
    f = opened()
    c2s(f, 0, b"abc", 4)
    assert s2c(f, 0, b"", 5, flags=ACK, window=0) == []    # the server's window closes
    assert f.zw
    assert c2s(f, 3, b"X", 6) == [Probe(C2S, ProbeKind.ZERO_WINDOW, 3, 6)]
    assert c2s(f, 3, b"X", 7) == []                         # the same probe again: reported once
    assert s2c(f, 0, b"", 8, flags=ACK, window=65535) == []  # the window opens again
    assert c2s(f, 3, b"defg", 9) == [Data(C2S, b"defg", 9, 9000)]   # covers the probe's offset: it wins
    assert f.delivered(C2S) == 7
    assert s2c(f, 0, b"", 10, flags=ACK) == [] and not f.zw   # no probe held any more: back to normal


def test_snap_length_cut_is_data_then_a_gap() -> None:
    f = opened()
    assert c2s(f, 0, b"ABCD", 4, paylen=10) == [Data(C2S, b"ABCD", 4, 4000), Gap(C2S, 6, 4, 4000)]
    assert c2s(f, 10, b"next", 5) == [Data(C2S, b"next", 5, 5000)]
    assert f.gaps() == 1


def test_a_hole_that_never_fills_becomes_a_gap_on_flush() -> None:
    f = opened()
    c2s(f, 0, b"ab", 4)
    assert c2s(f, 12, b"tail", 5) == []
    assert f.flush() == [Gap(C2S, 10, 5, 5000), Data(C2S, b"tail", 5, 5000)]
    assert f.gaps() == 1 and f.delivered(C2S) == 6


def test_flow_buffer_limit_is_an_overflow_event_and_a_counter() -> None:
    # SEGMENT_COST (64) is charged per buffered segment: 2 segments of 40 bytes = 208 > 200.
    f = opened(buffer=200)
    assert c2s(f, 100, b"a" * 40, 4) == []
    ev = c2s(f, 140, b"b" * 40, 5)
    assert ev == [Overflow(C2S, 200, 5, True), Gap(C2S, 100, 4, 4000), Data(C2S, b"a" * 40, 4, 4000),
                  Data(C2S, b"b" * 40, 5, 5000)]
    assert f.limits_hit == {"flow_buffer": 1}
    c2s(f, 300, b"c" * 40, 6)
    ev = c2s(f, 340, b"d" * 40, 7)
    assert ev[0] == Overflow(C2S, 200, 7, False)           # the second time: not first any more
    assert f.limits_hit == {"flow_buffer": 2}


def test_fin_from_both_sides_closes_and_the_first_end_describes_it() -> None:
    f = opened()
    c2s(f, 0, b"x", 4)
    assert c2s(f, 1, b"", 5, flags=FIN | ACK) == []        # one FIN: half closed
    assert not f.closed
    assert s2c(f, 0, b"", 6, flags=FIN | ACK) == [Closed(EndKind.FIN, S2C, 6, 6000)]
    assert f.closed
    assert (f.end.kind, f.end.by, f.end.frame) == ("fin", "client", 5)
    assert [(e.kind, e.by) for e in f.fins] == [("fin", "client"), ("fin", "server")]


def test_rst_closes_at_once() -> None:
    f = opened()
    c2s(f, 0, b"GET", 4)
    assert s2c(f, 0, b"", 5, flags=RST | ACK) == [Closed(EndKind.RST, S2C, 5, 5000)]
    assert f.closed and f.end.to_json() == {"kind": "rst", "by": "server", "frame": 5, "ts": 5e-06}


def test_rst_replaces_a_fin_only_when_no_payload_was_seen() -> None:
    f = opened()
    c2s(f, 0, b"", 4, flags=FIN | ACK)
    s2c(f, 0, b"", 5, flags=RST | ACK)
    assert (f.end.kind, f.end.by) == ("rst", "server")     # an aborted attempt: the RST tells it
    g = opened()
    c2s(g, 0, b"data", 4)
    c2s(g, 4, b"", 5, flags=FIN | ACK)
    s2c(g, 0, b"", 6, flags=RST | ACK)
    assert (g.end.kind, g.end.by) == ("fin", "client")


def test_refused_connection_has_no_synack() -> None:
    f = TcpFlow(1 << 16)
    f.segment(C2S, SYN, ISN_C, b"", 0, 65535, 1, 1000)
    assert f.segment(S2C, RST | ACK, 0, b"", 0, 0, 2, 2000) == [Closed(EndKind.RST, S2C, 2, 2000)]
    assert f.syn_frame == 1 and f.synack_frame is None and not f.saw_payload


def test_advance_counts_in_order_bytes_without_events() -> None:
    f = opened()
    c2s(f, 0, b"head", 4)
    assert f.advance(C2S, ISN_C + 1 + 4, 1000)
    assert f.delivered(C2S) == 1004
    assert not f.advance(C2S, ISN_C + 1 + 5000, 10)        # not next in order: the full path
    assert c2s(f, 1004, b"more", 5) == [Data(C2S, b"more", 5, 5000)]
    assert not f.advance(S2C, ISN_S + 1 + 10, 5)            # out of order on the other side


def test_sequence_numbers_wrap_around() -> None:
    f = TcpFlow(1 << 16)
    isn = 0xFFFFFFFA
    f.segment(C2S, SYN, isn, b"", 0, 65535, 1, 1000)
    assert f.segment(C2S, PSH_ACK, isn + 1, b"12345", 5, 65535, 2, 2000) == [Data(C2S, b"12345", 2, 2000)]
    # seq (isn + 6) mod 2^32 == 0: the next bytes after the wrap
    assert f.segment(C2S, PSH_ACK, 0, b"678", 3, 65535, 3, 3000) == [Data(C2S, b"678", 3, 3000)]
    assert f.delivered(C2S) == 8


def test_mid_stream_start_takes_the_first_seq_as_offset_zero() -> None:
    f = TcpFlow(1 << 16)
    assert f.segment(S2C, PSH_ACK, 777, b"HTTP/1.1 200", 12, 65535, 9, 9000) == [Data(S2C, b"HTTP/1.1 200", 9, 9000)]
    assert f.syn_frame is None and f.synack_frame is None


def test_flow_table_evicts_the_oldest_flow_first() -> None:
    from wscap.flow.tcp import FlowTable
    t: FlowTable[str] = FlowTable(max_flows=2)
    assert t.admit("a") is None
    t.flows["a"] = "conn-a"
    assert t.admit("b") is None
    t.flows["b"] = None                                    # an uninteresting flow counts as well
    assert t.admit("c") == ("a", "conn-a")                 # full: the oldest goes, for the owner to retire
    t.flows["c"] = "conn-c"
    del t.flows["b"]                                       # closed meanwhile: eviction skips its stale key
    assert t.admit("d") is None                            # room again (2 tracked: c, d after this)
    t.flows["d"] = "conn-d"
    assert t.admit("e") == ("c", "conn-c")
    assert list(t.flows) == ["d"]


def test_flow_table_order_stays_bounded_when_flows_close() -> None:
    from wscap.flow.tcp import FlowTable
    t: FlowTable[int] = FlowTable(max_flows=10)
    for i in range(20_000):                               # open and close one flow at a time
        t.admit(i)
        t.flows[i] = i
        del t.flows[i]
    assert len(t.order) <= 2 * len(t.flows) + 4096 + 1
