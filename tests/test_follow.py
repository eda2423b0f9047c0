"""The file follower reads growing pcap/pcapng files exactly as a whole-file reader does."""
from __future__ import annotations

import glob
import os

import pytest

from wscap.capture.files import ReadResult, read_frames
from wscap.capture.follow import FileFollower, PcapngStreamReader, ShedState, worth_analysing
from wscap.capture.writer import PcapWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = sorted(glob.glob(os.path.join(ROOT, "pcaps", "*.pcap")))[:12]


def _whole(path: str) -> list:
    res = ReadResult(path)
    return [(f.ts_ns, f.linktype, f.data, f.wirelen, f.iface) for f in read_frames(path, res)]


def _as_pcapng(src: str, dst: str) -> None:
    res = ReadResult(src)
    frames = list(read_frames(src, res))
    w = PcapWriter(dst, frames[0].linktype, iface_name="eth0")
    for f in frames:
        w.write(f)
    w.close()


@pytest.mark.parametrize("path", SAMPLES, ids=[os.path.basename(p) for p in SAMPLES])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_growing_file_read_in_odd_pieces(tmp_path, path, fmt):
    src = path
    if fmt == "pcapng":
        src = str(tmp_path / "x.pcapng")
        _as_pcapng(path, src)
    data = open(src, "rb").read()
    grow = str(tmp_path / f"grow.{fmt}")
    fol = FileFollower()
    with open(grow, "wb") as out:
        fol.add(0, grow)
        got = []
        # The writer appends 1, 7, 13, ... bytes at a time: every record boundary is crossed.
        pos, step = 0, 1
        while pos < len(data):
            out.write(data[pos:pos + step])
            out.flush()
            pos += step
            step = step % 97 + 6
            got += fol.read()
        got += fol.read()
    assert [(f.ts_ns, f.linktype, f.data, f.wirelen, f.iface) for f in got] == _whole(src)
    assert fol.at_end and fol.position()[1] == len(data)


def test_ring_files_in_order_and_overwritten_ones_counted(tmp_path):
    frames = list(read_frames(SAMPLES[0], ReadResult(SAMPLES[0])))
    paths = []
    for k in range(3):
        p = str(tmp_path / f"r_{k:05d}.pcapng")
        w = PcapWriter(p, frames[0].linktype)
        for f in frames:
            w.write(f)
        w.close()
        paths.append(p)
    os.unlink(paths[1])          # the ring overwrote it before the analysis got there
    fol = FileFollower()
    for k, p in enumerate(paths):
        fol.add(k, p)
    got = []
    for _ in range(10):
        got += fol.read()
    assert len(got) == 2 * len(frames)
    assert [f.no for f in got] == list(range(1, 2 * len(frames) + 1))   # numbered across files
    assert fol.skipped_files == [paths[1]]


def test_count_unread_counts_records_past_the_position(tmp_path):
    src = str(tmp_path / "x.pcapng")
    _as_pcapng(SAMPLES[0], src)
    n = len(_whole(src))
    fol = FileFollower()
    fol.add(0, src)
    first = fol.read(max_bytes=600)
    assert 0 < len(first) < n
    assert fol.count_unread() == n - len(first)


def test_pcapng_reader_rejects_a_corrupt_block():
    r = PcapngStreamReader()
    shb = (b"\x0a\x0d\x0d\x0a" + (28).to_bytes(4, "little") + b"\x4d\x3c\x2b\x1a" + b"\x01\x00\x00\x00"
           + b"\xff" * 8 + (28).to_bytes(4, "little"))
    assert r.feed(shb + b"\x01\x00\x00\x00" + (7).to_bytes(4, "little") + b"\x00" * 8) == []
    assert r.error and "corrupt block" in r.error


def _tcp_frame(flags: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags=flags) / payload)


@pytest.mark.parametrize("flags,payload,keep", [
    ("S", b"", True), ("FA", b"", True), ("R", b"", True),
    ("PA", b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", True),
    ("PA", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", True),
    ("PA", b"\x16\x03\x01\x02\x00\x01", True),
    ("PA", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True),
    ("A", b"", False),
    ("PA", b"x" * 1400, False),
    ("PA", b"\x81\x05hello", False),
])
def test_shedding_keeps_what_a_handshake_needs(flags, payload, keep):
    from wscap.model.raw import RawFrame
    data = _tcp_frame(flags, payload)
    assert worth_analysing(RawFrame(1, 0, 1, data, len(data))) is keep


def test_shed_state_hysteresis():
    s = ShedState(after_s=2.0)
    s.update(1.0)
    assert not s.active
    s.update(2.5)
    assert s.active and s.episodes == 1
    s.update(1.0)
    assert s.active           # still behind: no flapping
    s.update(0.4)
    assert not s.active
