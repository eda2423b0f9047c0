"""wscap.flow.session on its own: stream bytes in, session events and modes out (no TCP, no pcap).

Expected values follow from the bytes each test builds (tests/builders.py writes
the HTTP heads and WebSocket frames; the TLS ClientHello and HTTP/2 frames are
built here).
"""
from __future__ import annotations

import glob
import os
import struct

import hpack

from builders import accept_for, ws_frame, ws_request, ws_response
from wscap.engine.analyze import analyze_paths
from wscap.flow.session import NEXT, Mode, Session
from wscap.model.events import C2S, S2C, H2Stream, HeadSeen, Hello, Upgraded
from wscap.model.limits import Limits

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def session(**limits: int) -> Session:
    return Session(Limits(**limits))


def only_request(s: Session):
    """The one exchange an upgrade request just opened."""
    [seen] = s.take()
    assert isinstance(seen, HeadSeen) and seen.direction == C2S
    return seen.exchange


def test_upgrade_request_then_101_then_frames() -> None:
    s = session()
    req = ws_request(key=KEY)
    s.on_data(C2S, req, 4, 4000)
    [seen] = s.take()
    ex = seen.exchange
    assert seen == HeadSeen(C2S, ex) and ex.request is not None
    assert ex.request.method == b"GET" and ex.request.target == b"/ws" and ex.request.frame == 4
    assert s.mode == [Mode.WAIT, Mode.HEAD]          # client bytes wait for the answer
    s.on_data(S2C, ws_response(key=KEY) + ws_frame(b"hi"), 6, 6000)
    assert s.take() == [HeadSeen(S2C, ex), Upgraded(ex)]
    assert ex.response is not None and ex.response.status == 101
    assert ex.response.get(b"sec-websocket-accept") == accept_for(KEY).encode()
    assert s.mode == [Mode.FRAMES, Mode.FRAMES]
    assert ex.server_frames is not None and [f.preview for f in ex.server_frames.frames] == ["hi"]
    assert "data-with-101" in [a.code for a in ex.anomalies]      # the frame rode in the 101's segment
    s.on_data(C2S, ws_frame(b"yo", mask=True), 7, 7000)
    assert ex.client_frames is not None and [f.preview for f in ex.client_frames.frames] == ["yo"]
    assert s.take() == []                                          # frames are not session events


def test_client_bytes_sent_before_the_101_are_read_as_frames_after_it() -> None:
    s = session()
    s.on_data(C2S, ws_request(key=KEY) + ws_frame(b"early", mask=True), 4, 4000)
    ex = only_request(s)
    s.on_data(S2C, ws_response(key=KEY), 5, 5000)
    assert ex.client_frames is not None and [f.preview for f in ex.client_frames.frames] == ["early"]


def test_refused_upgrade_goes_on_as_plain_http() -> None:
    s = session()
    s.on_data(C2S, ws_request(key=KEY), 4, 4000)
    ex = only_request(s)
    s.on_data(S2C, ws_response(status=403, reason="Forbidden", body=b"nope!"), 5, 5000)
    assert s.take() == [HeadSeen(S2C, ex)]                         # answered, not upgraded
    assert ex.response is not None and ex.response.status == 403
    assert s.mode == [Mode.HEAD, Mode.HEAD]                        # the 5-byte body was skipped by length
    s.on_data(C2S, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", 6, 6000)
    assert s.plain_requests == 1 and s.take() == []


def test_plain_requests_before_the_upgrade_are_counted_not_kept() -> None:
    s = session()
    plain = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    s.on_data(C2S, plain + plain, 4, 4000)
    s.on_data(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 2, 5, 5000)
    assert s.plain_requests == 2 and s.exchanges == [] and s.take() == []
    s.on_data(C2S, ws_request(key=KEY), 6, 6000)
    ex = only_request(s)
    assert [a.code for a in ex.anomalies] == ["keep-alive-before-upgrade"]


def test_body_skipping_for_the_fast_path() -> None:
    s = session()
    s.on_data(C2S, b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 10, 4, 4000)
    assert s.mode[C2S] is Mode.BODY and s.body_left[C2S] == 90
    assert s.skippable(C2S, 50) and not s.skippable(C2S, 90) and not s.skippable(S2C, 1)
    s.skipped(C2S, 50)
    s.on_data(C2S, b"b" * 40 + b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n", 5, 5000)
    assert s.mode[C2S] is Mode.HEAD and s.plain_requests == 2


def test_first_bytes_not_http_mean_ignored() -> None:
    s = session()
    s.on_data(C2S, b"\x00\x01SSH-2.0-OpenSSH\r\n", 4, 4000)
    assert s.mode[C2S] is Mode.IGNORE and s.ignored and s.take() == []


def test_gap_inside_a_head_drops_it_and_notes_the_gap() -> None:
    s = session()
    s.on_data(C2S, b"GET /ws HTTP/1.1\r\nHost: x\r\n", 4, 4000)
    s.on_gap(C2S, 100, 5, 5000)
    assert s.mode[C2S] is Mode.IGNORE and s.exchanges == []
    assert [(a.code, a.frame) for a in s.anomalies] == [("tcp-gap", 5)]


def test_head_too_large_is_cut_counted_and_still_an_exchange() -> None:
    s = session(head_bytes=256)
    # No empty line within the first 256 bytes: the head outgrows the bound before it ends.
    s.on_data(C2S, ws_request(key=KEY, extra=[("X-Pad", "p" * 400)])[:-4], 4, 4000)
    ex = only_request(s)
    assert ex.request is not None and ex.request.complete is False
    assert "head-too-large" in [a.code for a in ex.request.anomalies]
    assert s.limits_hit == {"head_bytes": 1}


def test_anomalies_per_code_are_capped() -> None:
    s = session()
    s.on_data(C2S, ws_request(key=KEY), 4, 4000)
    s.on_data(S2C, ws_response(key=KEY), 5, 5000)
    for i in range(12):                                            # 12 gaps, 8 listed (PER_CODE)
        s.on_gap(S2C, 10, 10 + i, 0)
    assert [a.code for a in s.anomalies].count("tcp-gap") == 8
    [extra] = s.suppressed()
    assert extra.code == "anomalies-suppressed" and "4 more 'tcp-gap'" in extra.message
    assert s.limits_hit == {"anomalies": 1}


def client_hello(sni: str) -> bytes:
    """A minimal TLS 1.2 ClientHello record with one server_name extension."""
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(sni_ext)) + sni_ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_client_hello_is_read_then_ignored_even_split() -> None:
    s = session()
    rec = client_hello("example.test")
    s.on_data(C2S, rec[:20], 4, 4000)
    assert s.mode[C2S] is Mode.HELLO and s.take() == []
    s.on_data(C2S, rec[20:], 5, 5000)
    [ev] = s.take()
    assert isinstance(ev, Hello) and ev.frame == 5 and ev.hello.sni == "example.test" and ev.hello.complete
    assert s.mode[C2S] is Mode.IGNORE and s.tls is ev.hello


def h2frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def test_http2_extended_connect_opens_a_stream_and_200_upgrades_it() -> None:
    s = session()
    enc_c, enc_s = hpack.Encoder(), hpack.Encoder()
    s.on_data(S2C, h2frame(4, 0, 0, struct.pack("!HI", 8, 1)), 3, 3000)    # SETTINGS_ENABLE_CONNECT_PROTOCOL=1
    connect = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws"),
               (":authority", "h:80"), ("sec-websocket-version", "13")]
    s.on_data(C2S, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0) + h2frame(1, 4, 1, enc_c.encode(connect)),
              4, 4000)
    [opened] = s.take()
    assert isinstance(opened, H2Stream) and opened.stream_id == 1
    ex = opened.exchange
    assert s.mode == [Mode.H2, Mode.H2] and ex.enabled is True and ex.websocket
    s.on_data(S2C, h2frame(1, 4, 1, enc_s.encode([(":status", "200")])) + h2frame(0, 0, 1, ws_frame(b"h2!")), 5, 5000)
    assert s.take() == [HeadSeen(S2C, ex), Upgraded(ex)]
    assert ex.server_frames is not None and [f.preview for f in ex.server_frames.frames] == ["h2!"]


def test_every_mode_change_in_the_captures_is_in_the_transition_table(monkeypatch) -> None:
    moves: set[tuple[Mode, Mode]] = set()
    real = Session._to

    def recording(self: Session, direction: int, mode: Mode) -> None:
        moves.add((self.mode[direction], mode))
        real(self, direction, mode)

    monkeypatch.setattr(Session, "_to", recording)
    pcaps = sorted(glob.glob(os.path.join(ROOT, "pcaps", "*.pcap")))
    assert len(pcaps) > 20
    analyze_paths(pcaps)
    assert moves, "no mode changed at all"
    assert {(a, b) for a, b in moves if b not in NEXT[a]} == set()
    # The captures cover the main road: heads, bodies, upgrade waits, frames, HTTP/2.
    assert {(Mode.HEAD, Mode.WAIT), (Mode.WAIT, Mode.FRAMES), (Mode.HEAD, Mode.H2)} <= moves
