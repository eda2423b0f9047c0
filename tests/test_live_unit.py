"""Unprivileged tests of the live-capture building blocks.

Streaming pcap reader, crash-safe writer (formats, ring buffer, disk-full
handling simulated), BPF filter composition, hosts-file names, sysfs
interface discovery on a fake tree, the Docker Engine API client against a
fake Engine on a unix socket, and the privilege helpers.
"""
from __future__ import annotations

import errno
import http.server
import json
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import threading

import pytest

from wscap.capture import docker as dockerapi
from wscap.capture import ifaces as ifmod
from wscap.capture import privilege
from wscap.capture import writer as wmod
from wscap.capture.live import PcapStreamReader
from wscap.capture.writer import PcapWriter
from wscap.cli.live import build_filter
from wscap.model.raw import RawFrame

dpkt = pytest.importorskip("dpkt")


def frames(n: int, size: int = 60, t0: int = 1_700_000_000_123_456_789) -> list[RawFrame]:
    return [RawFrame(i + 1, t0 + i * 1_000_500, 1, bytes([i % 256]) * size, size + 4) for i in range(n)]


def read_dpkt(path: str) -> list[tuple[float, bytes]]:
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        r = dpkt.pcapng.Reader(f) if head == b"\n\r\r\n" else dpkt.pcap.Reader(f)
        return [(float(ts), bytes(buf)) for ts, buf in r]


# ---- streaming pcap reader ---------------------------------------------------------------

def test_stream_reader_any_chunking(tmp_path):
    p = tmp_path / "a.pcap"
    w = PcapWriter(str(p), 1)
    fs = frames(50, size=123)
    for f in fs:
        w.write(f)
    w.close()
    data = p.read_bytes()
    for step in (1, 7, 16, 17, 4096):
        r = PcapStreamReader()
        got = []
        for i in range(0, len(data), step):
            got += r.feed(data[i:i + step])
        assert [g.data for g in got] == [f.data for f in fs]
        assert [g.ts_ns for g in got] == [f.ts_ns // 1000 * 1000 for f in fs]  # µs pcap
        assert all(g.wirelen == 127 and g.linktype == 1 for g in got)
        assert r.pending == 0


def test_stream_reader_nanosecond_big_endian():
    head = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 276)
    rec = struct.pack(">IIII", 10, 123456789, 3, 9) + b"abc"
    r = PcapStreamReader()
    out = r.feed(head + rec + rec[:5])
    assert r.linktype == 276
    assert out == [RawFrame(1, 10_123_456_789, 276, b"abc", 9)]   # numbered from 1, as Wireshark does
    assert r.pending == 5


def test_stream_reader_rejects_garbage():
    with pytest.raises(ValueError):
        PcapStreamReader().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


# ---- writer ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["pcap", "pcapng"])
def test_writer_formats_readable(tmp_path, ext):
    p = str(tmp_path / f"x.{ext}")
    w = PcapWriter(p, 1, iface_name="br-0123456789ab")
    fs = frames(20)
    for f in fs:
        w.write(f)
    w.close()
    assert w.fmt == ext and w.packets == 20 and w.error is None
    got = read_dpkt(p)
    assert [b for _, b in got] == [f.data for f in fs]
    assert abs(got[3][0] - fs[3].ts_ns / 1e9) < 2e-6
    from wscap.capture.files import ReadResult, read_frames
    res = ReadResult(p)
    back = list(read_frames(p, res))
    assert res.complete and len(back) == 20
    # microsecond timestamps (pcapng: wscap.capture.files multiplies the µs count by a
    # float, which costs up to ~200 ns at today's epoch; allow that)
    want = [f.ts_ns // 1000 * 1000 for f in fs]
    if ext == "pcap":
        assert [b.ts_ns for b in back] == want
    else:
        assert all(abs(b.ts_ns - w) < 1000 for b, w in zip(back, want))
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", p, "-T", "fields", "-e", "frame.number"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.split() == [str(i) for i in range(1, 21)]


def test_writer_ring_keeps_newest(tmp_path):
    base = str(tmp_path / "ring.pcap")
    w = PcapWriter(base, 1, ring_files=3, ring_size=2000)
    fs = frames(100, size=200)
    for f in fs:
        w.write(f)
    w.close()
    assert len(w.files) == 3
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in w.files)
    got = [b for path in w.files for _, b in read_dpkt(path)]
    assert got == [f.data for f in fs[-len(got):]]  # the newest packets, in order
    assert all(os.path.getsize(f) <= 2000 for f in w.files)


def test_writer_disk_full_truncates_to_last_record(tmp_path, monkeypatch):
    """ENOSPC mid-write: file cut back to whole records, error reported, later writes skipped."""
    p = str(tmp_path / "full.pcap")
    errors = []
    w = PcapWriter(p, 1, on_error=errors.append)
    budget = [24 + 3 * (16 + 60) + 30]  # room for the header, 3 records and part of a 4th
    real_write = os.write

    def fake_write(fd, data):
        if fd != w._fd:
            return real_write(fd, data)
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), budget[0])
        budget[0] -= n
        return real_write(fd, bytes(data[:n]))

    monkeypatch.setattr(wmod.os, "write", fake_write)
    for f in frames(10):
        w.write(f)
    w.flush()
    for f in frames(5):
        w.write(f)
    w.close()
    assert w.error and "disk full" in w.error
    assert errors == [w.error]
    assert w.packets == 3 and w.skipped == 12
    assert os.path.getsize(p) == 24 + 3 * 76
    assert len(read_dpkt(p)) == 3


# ---- filters, names ------------------------------------------------------------------------

def test_build_filter():
    f = build_filter(None, ())
    assert f.startswith("tcp or port 53 or host 127.0.0.11 or ") and "dst port 8472" in f and "ip proto 47" in f
    assert build_filter(None, (80, 8080)) == "(tcp and (port 80 or port 8080)) or port 53 or host 127.0.0.11"
    assert build_filter("host 10.0.0.1", ()) == "host 10.0.0.1"
    assert build_filter("host 10.0.0.1", (80,)) == "(host 10.0.0.1) and tcp and (port 80)"


def test_load_names(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("# comment\n172.18.0.2 backend be  # alias\n172.18.0.3\tproxy\n"
                 "172.18.0.2 other\n\n::1 localhost6\n[fd00::5] v6host\nbadline\n")
    assert dockerapi.load_names(str(p)) == {
        "172.18.0.2": "backend", "172.18.0.3": "proxy", "::1": "localhost6", "fd00::5": "v6host"}


# ---- interfaces from a fake sysfs ----------------------------------------------------------

def _mkif(root, name, index, iflink=None, type_=1, up=True, device=False):
    d = root / name
    d.mkdir()
    (d / "ifindex").write_text(f"{index}\n")
    (d / "iflink").write_text(f"{iflink or index}\n")
    (d / "type").write_text(f"{type_}\n")
    (d / "operstate").write_text("up\n" if up else "down\n")
    (d / "flags").write_text("0x1003\n" if up else "0x1002\n")
    (d / "address").write_text("02:42:ac:11:00:01\n")
    (d / "mtu").write_text("1500\n")
    if device:
        (d / "device").mkdir()
    return d


def test_list_ifaces_fake_sysfs(tmp_path):
    _mkif(tmp_path, "lo", 1, type_=772)
    _mkif(tmp_path, "eth0", 2, device=True)
    br = _mkif(tmp_path, "br-0123456789ab", 3)
    (br / "brif").mkdir()
    d0 = _mkif(tmp_path, "docker0", 4)
    (d0 / "bridge").mkdir()
    (d0 / "brif").mkdir()
    v = _mkif(tmp_path, "veth1a2b3c", 5, iflink=9)
    (v / "master").symlink_to(br)
    (br / "brif" / "veth1a2b3c").mkdir()
    mybr = _mkif(tmp_path, "br-lan", 6)
    (mybr / "brif").mkdir()
    lst = {i.name: i for i in ifmod.list_ifaces(str(tmp_path), with_addresses=False)}
    assert [i.name for i in ifmod.list_ifaces(str(tmp_path), with_addresses=False)][:2] == ["lo", "eth0"]
    assert lst["lo"].kind == "loopback" and lst["eth0"].kind == "device"
    assert lst["br-0123456789ab"].kind == "bridge" and lst["br-0123456789ab"].docker
    assert lst["br-0123456789ab"].ports == ["veth1a2b3c"]
    assert lst["docker0"].docker and not lst["br-lan"].docker
    assert lst["veth1a2b3c"].kind == "veth" and lst["veth1a2b3c"].master == "br-0123456789ab"
    assert ifmod.docker_bridges(list(lst.values())) == ["docker0", "br-0123456789ab"]
    msg = ifmod.describe_missing("docker9", list(lst.values()))
    assert "docker9" in msg and "docker0, br-0123456789ab" in msg and "lo, eth0" in msg


def test_docker_bridge_names():
    assert ifmod.is_docker_bridge("docker0")
    assert ifmod.is_docker_bridge("br-3f2a9b8c7d6e")
    assert not ifmod.is_docker_bridge("br-3f2a9b8c7d6")
    assert not ifmod.is_docker_bridge("br-lan")
    assert not ifmod.is_docker_bridge("br-3F2A9B8C7D6E")


# ---- Docker Engine API against a fake engine on a unix socket -------------------------------

FAKE = {
    "/version": {"Version": "28.2.2"},
    "/containers/json": [
        {"Id": "aaa", "Names": ["/app-proxy-1"], "NetworkSettings": {"Networks": {
            "app_default": {"IPAddress": "172.18.0.3", "GlobalIPv6Address": ""}}}},
        {"Id": "bbb", "Names": ["/app-backend-1"], "NetworkSettings": {"Networks": {
            "app_default": {"IPAddress": "172.18.0.2"}, "bridge": {"IPAddress": "172.17.0.2"}}}},
    ],
    "/networks": [
        {"Name": "bridge", "Id": "f" * 64, "Driver": "bridge",
         "Options": {"com.docker.network.bridge.name": "docker0"}},
        {"Name": "app_default", "Id": "0123456789abcdef" * 4, "Driver": "bridge", "Internal": True,
         "Labels": {"com.docker.compose.project": "app"}},
        {"Name": "host", "Id": "e" * 64, "Driver": "host"},
    ],
    "/networks/" + "f" * 64: {"Containers": {"bbb": {"Name": "app-backend-1"}}},
    "/networks/" + "0123456789abcdef" * 4: {"Containers": {"aaa": {"Name": "app-proxy-1"},
                                                          "bbb": {"Name": "app-backend-1"}}},
    "/containers/app-backend-1/json": {"State": {"Running": True, "Pid": 4242}},
    "/containers/stopped/json": {"State": {"Running": False, "Pid": 0}},
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = FAKE.get(self.path)
        code = 200 if body is not None else 404
        data = json.dumps(body if body is not None else {"message": "No such container"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        req, _ = super().get_request()
        return req, ("local", 0)


@pytest.fixture
def fake_engine(tmp_path):
    path = str(tmp_path / "docker.sock")
    srv = _UnixServer(path, _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield dockerapi.DockerClient(path)
    srv.shutdown()
    srv.server_close()


def test_docker_names(fake_engine):
    assert fake_engine.available()
    assert dockerapi.docker_names(fake_engine) == {
        "172.18.0.3": "app-proxy-1", "172.18.0.2": "app-backend-1", "172.17.0.2": "app-backend-1"}


def test_bridge_networks(fake_engine):
    b = dockerapi.bridge_networks(fake_engine)
    assert set(b) == {"docker0", "br-0123456789ab"}
    assert b["br-0123456789ab"]["network"] == "app_default"
    assert b["br-0123456789ab"]["internal"] and b["br-0123456789ab"]["compose_project"] == "app"
    assert b["br-0123456789ab"]["containers"] == ["app-backend-1", "app-proxy-1"]


def test_container_netns(fake_engine):
    assert dockerapi.container_netns("app-backend-1", fake_engine) == "/proc/4242/ns/net"
    with pytest.raises(dockerapi.DockerError, match="not running"):
        dockerapi.container_netns("stopped", fake_engine)
    with pytest.raises(dockerapi.DockerError, match="404"):
        dockerapi.container_netns("nope", fake_engine)


def test_docker_unreachable(tmp_path):
    c = dockerapi.DockerClient(str(tmp_path / "none.sock"))
    assert not c.available()
    assert dockerapi.docker_names(c) == {} and dockerapi.bridge_networks(c) == {}
    with pytest.raises(dockerapi.DockerError, match="does not exist"):
        dockerapi.container_netns("x", c)
    # A socket that exists but nobody listens on
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "dead.sock"))
    s.close()
    assert dockerapi.docker_names(dockerapi.DockerClient(str(tmp_path / "dead.sock"))) == {}


# ---- privilege helpers -----------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="drop targets only exist when running as root")
def test_drop_target_from_sudo_env():
    t = privilege.drop_target(None, {"SUDO_UID": "65534", "SUDO_GID": "65534"})
    assert t and t.uid == 65534 and t.gid == 65534 and t.name == "nobody"
    assert privilege.drop_target(None, {}) is None
    assert privilege.drop_target(None, {"SUDO_UID": "0"}) is None
    assert privilege.drop_target("nobody", {}).uid == 65534
    with pytest.raises(ValueError):
        privilege.drop_target("no-such-user-xyz", {})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check access as another user")
def test_check_writable_as(tmp_path):
    nobody = privilege.drop_target("nobody", {})
    os.chmod(tmp_path, 0o755)
    assert "cannot create" in privilege.check_writable_as(str(tmp_path / "x.pcap"), nobody)
    assert privilege.check_writable_as(str(tmp_path / "x.pcap"), None) is None
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    assert privilege.check_writable_as(str(open_dir / "x.pcap"), nobody) is None
    f = open_dir / "root-owned.pcap"
    f.write_bytes(b"")
    os.chmod(f, 0o644)
    assert "not writable" in privilege.check_writable_as(str(f), nobody)


def test_permission_help_names_the_fix():
    msg = privilege.permission_help()
    assert "CAP_NET_RAW" in msg and "CAP_NET_ADMIN" in msg
    assert "setcap cap_net_raw,cap_net_admin=eip" in msg and "sudo" in msg


# ---- the live loop with a fake backend ------------------------------------------------------

class FakeBackend:
    """Hands out prepared frames through a pipe fd so the loop's select() wakes up."""

    name = "fake"
    linktype = 1

    def __init__(self, frames, end_after=False):
        self.frames = list(frames)
        self.ended = False
        self.end_reason = None
        self.notices = []
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.write(self.w, b"x")
        self.end_after = end_after
        self.closed = False

    def fileno(self):
        return self.r

    def read(self, max_frames=4096):
        out, self.frames = self.frames[:100], self.frames[100:]
        if not self.frames:
            try:
                os.read(self.r, 1)
            except BlockingIOError:
                pass
            if self.end_after:
                self.ended, self.end_reason = True, "interface x went away (test)"
        return out

    def stats(self):
        return {"received": 7, "dropped": 3}

    def stop(self):
        pass

    def drain(self, timeout_s=10.0):
        yield from self.read()

    def close(self):
        self.closed = True
        os.close(self.r)
        os.close(self.w)


class Exploding:
    """A pipeline whose analysis breaks at the 50th frame."""

    stats = {"flows": 1}

    def __init__(self):
        self.n = 0

    def feed(self, f):
        self.n += 1
        if self.n == 50:
            raise RuntimeError("boom")
        return []

    def tick(self, ts):
        return []

    def finish(self):
        return []


def test_loop_survives_analysis_failure(tmp_path):
    from wscap.capture.live import LiveLoop
    p = str(tmp_path / "x.pcap")
    w = PcapWriter(p, 1)
    notices = []
    loop = LiveLoop(FakeBackend(frames(300), end_after=True), pipeline=Exploding(), writer=w,
                    on_notice=notices.append)
    r = loop.run()
    assert r.packets == 300 and w.packets == 300 and len(read_dpkt(p)) == 300
    assert r.extra["analysis_error"].startswith("frame 50: RuntimeError: boom")
    assert notices and "analysis failed at frame 50" in notices[0]
    assert r.interface_gone and r.dropped == 3 and loop.backend.closed


def test_loop_count_numbers_frames_and_truncates_ts(tmp_path):
    from wscap.capture.live import LiveLoop
    got = []
    loop = LiveLoop(FakeBackend(frames(250)), on_frame=got.append, count=120)
    r = loop.run()
    assert r.reason == "--count 120 reached" and r.packets == 120
    assert [f.no for f in got] == list(range(1, 121))
    assert all(f.ts_ns % 1000 == 0 for f in got)


def test_loop_duration(tmp_path):
    import time
    from wscap.capture.live import LiveLoop
    b = FakeBackend([])
    t = time.monotonic()
    r = LiveLoop(b, duration=0.5).run()
    assert r.reason == "--duration 0.5s elapsed" and 0.45 < time.monotonic() - t < 2


def test_an_idle_stretch_before_new_packets_is_not_lag():
    """The analysis follows the file a writer without flush reports writes (tcpdump). It was at
    the file's end through an idle stretch (a quiet bridge, a bridge bouncing); the first bytes
    after it are unread for a moment: that is not 3.8 s of lag (which would start shedding past
    --shed-after 2), only what came since the analysis last caught up. Real lag still grows."""
    from wscap.capture.evidence import FollowBackend

    class Writer:                                       # a writer that wrote nothing new yet
        linktypes = [1]
        files: list = []
        flushes: list = []
        errors: list = []
        ended = False
        end_reason = None
        flush = None                                    # tcpdump reports no flushes
        packets = 0
        stats: dict = {}

        def poll(self) -> None:
            pass

    class Follower:
        at_end = True

    s = 10**9
    b = FollowBackend(Writer(), "tcpdump", slack_ns=s // 5)
    b.follower = Follower()  # type: ignore[assignment]
    b.last_frame_ns = 1000 * s                         # the last packet read
    assert b.lag_s(1000 * s + s // 2) == 0.0           # at the end of the file
    assert b.lag_s(1003 * s + 9 * s // 10) == 0.0      # still, 3.9 s later: idle, caught up
    Follower.at_end = False                            # new bytes written, not read yet
    assert b.lag_s(1004 * s) == 0.0                    # 0.1 s since caught up, within the slack
    b.last_frame_ns = 1004 * s + s // 10               # reading slowly from here on
    assert abs(b.lag_s(1010 * s) - (1010 - 1004.1 - 0.2)) < 1e-6
