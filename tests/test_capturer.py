"""wscap-capture, the C program that captures and writes the evidence file (issue 13).

Root + network namespaces (skipped elsewhere with the reason), plus a C compiler and
libpcap headers to build the program. Traffic runs only inside a namespace lab of our
own (tests/netns.py's Lab, on 10.231.N.x so it cannot clash with the other live tests'
10.213.N.x). Expected values come from how the traffic was made: every UDP datagram
carries a tag and its sequence number, so the file must hold exactly the numbers sent;
TCP payload bytes are counted per connection against what the client wrote; and
`tcpdump -w` captures the same bridge at the same time as the control.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import Lab, can_make_netns  # noqa: E402

from wscap.capture import capturer  # noqa: E402
from wscap.capture.capturer import CaptureProcess, parse_status_line, snaplen_for  # noqa: E402
from wscap.capture.files import ReadResult, read_frames  # noqa: E402
from wscap.capture.live import BadFilter, CaptureError, NoSuchInterface  # noqa: E402
from wscap.capture.writer import PcapWriter  # noqa: E402


def _root_skip() -> str | None:
    ok, why = can_make_netns()
    if not ok:
        return why
    if not capturer.helper_path():
        return f"wscap-capture cannot be built here: {capturer.unavailable_reason()}"
    return None


_why = _root_skip()
def needs_lab(test):
    """Root + netns + a built wscap-capture; marked `live` like the other bridge tests."""
    return pytest.mark.live(pytest.mark.skipif(_why is not None, reason=_why or "")(test))

UDP_PORT = 40000

# Sends N datagrams "TAG:00000012:" + padding; pauses every 50 so the veth backlog
# (1000 packets) never overflows before the bridge sees them.
UDP_GEN = r"""
import socket, sys, time
host, port, n, size, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    p = ("%s:%08d:" % (tag, i)).encode()
    s.sendto(p + b"p" * max(0, size - len(p)), (host, port))
    if i % 50 == 49:
        time.sleep(0.002)
print(n, flush=True)
"""

ECHO = r"""
import socket, threading, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(128)
print("ready", flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# K connections, M messages of 100 bytes each, every one echoed before the next.
TCP_GEN = r"""
import socket, sys
host, port, k, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for c in range(k):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(m):
        msg = ("c%03dm%04d" % (c, i)).encode().ljust(100, b".")
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(4096)
    s.close()
print(k * m, flush=True)
"""


@dataclass
class CapLab(Lab):
    """The shared Lab on its own subnet (10.231.N.x)."""

    def ip(self, host: str) -> str:
        return f"10.231.{self.subnet}.{11 + self.hosts.index(host)}"

    def ports(self) -> list[str]:
        """The bridge's veth ports in host order (created as veth<i><hex>)."""
        r = subprocess.run(["ip", "-n", self.lab_ns, "-j", "link", "show", "master", self.bridge],
                           capture_output=True, text=True, check=True)
        return sorted(link["ifname"] for link in json.loads(r.stdout))


@pytest.fixture(scope="module")
def lab():
    if _why:
        pytest.skip(_why)
    with CapLab() as lab:
        lab.spawn("backend", sys.executable, "-c", ECHO, "7000")
        deadline = time.monotonic() + 10
        while not lab.run("backend", "ss", "-Hltn", "sport = :7000").stdout.strip():
            assert time.monotonic() < deadline, "echo server did not start"
            time.sleep(0.05)
        yield lab


def start(lab: CapLab, path: str, ifaces=None, **kw) -> CaptureProcess:
    cp = CaptureProcess(ifaces or [lab.bridge], path, netns=lab.netns_path(), **kw)
    cp.wait_ready(15)
    return cp


def send_udp(lab: CapLab, host: str, n: int, size: int = 64, tag: str = "T", dst: str = "backend") -> None:
    r = lab.run(host, sys.executable, "-c", UDP_GEN, lab.ip(dst), str(UDP_PORT), str(n), str(size), tag,
                timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == str(n), r.stderr


def frames(path: str):
    res = ReadResult(path)
    out = list(read_frames(path, res))
    return out, res


def udp_tags(fs, tag: str = "T") -> list[int]:
    """Sequence numbers of our datagrams (Ethernet/IPv4/UDP to UDP_PORT), in file order."""
    out = []
    for f in fs:
        d = f.data
        if len(d) < 42 or d[12:14] != b"\x08\x00" or d[23] != 17:
            continue
        ihl = (d[14] & 0x0F) * 4
        udp = 14 + ihl
        if struct.unpack_from(">H", d, udp + 2)[0] != UDP_PORT:
            continue
        payload = d[udp + 8:]
        head = f"{tag}:".encode()
        if payload.startswith(head):
            out.append(int(payload[len(head):len(head) + 8]))
    return out


def stop(cp: CaptureProcess, timeout: float = 20) -> int:
    cp.stop()
    rc = cp.wait(timeout)
    assert rc is not None, "wscap-capture did not exit after stop()"
    return rc


def blocks(path: str) -> list[tuple[int, bytes]]:
    """(type, whole block) of a little-endian pcapng file."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        t, ln = struct.unpack_from("<II", data, pos)
        assert ln >= 12 and pos + ln <= len(data), f"bad block at {pos}"
        assert struct.unpack_from("<I", data, pos + ln - 4)[0] == ln
        out.append((t, data[pos:pos + ln]))
        pos += ln
    return out


# ---- no root needed -------------------------------------------------------------------------

def test_parse_status_lines():
    assert parse_status_line("file seq=3 path=/tmp/a b/c_00003.pcapng") == {
        "kind": "file", "seq": 3, "path": "/tmp/a b/c_00003.pcapng"}
    assert parse_status_line("flush ts=1700000000123456789 packets=12 file=2 offset=4096") == {
        "kind": "flush", "ts": 1700000000123456789, "packets": 12, "file": 2, "offset": 4096}
    assert parse_status_line("ready linktypes=1,276 snaplen=65556 tsresol=9 format=pcapng") == {
        "kind": "ready", "linktypes": [1, 276], "snaplen": 65556, "tsresol": 9, "format": "pcapng"}
    assert parse_status_line("error filter syntax error in filter expression") == {
        "kind": "error", "error": "filter", "message": "syntax error in filter expression"}
    assert parse_status_line("end reason=count packets=5") == {"kind": "end", "reason": "count", "packets": 5}
    assert parse_status_line("stats if=1 recv=10 drop=2 ifdrop=0")["drop"] == 2
    assert parse_status_line("garbage here") is None


def test_snaplen_bounds():
    # lo: MTU 65536 (and GSO 65536) + the 20-byte SLL2 header.
    mtu = int(open("/sys/class/net/lo/mtu").read())
    assert snaplen_for(["lo"]) == max(1600, min(262144, max(mtu, 65536) + 20))
    assert snaplen_for(["no-such-iface-x"]) == 65536 + 20   # unknown: the default GSO size
    assert 1600 <= snaplen_for(["any"]) <= 262144


def test_no_compiler_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("WSCAP_HELPER_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "c"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CC", raising=False)
    assert capturer.helper_path(build=True) is None
    assert capturer.unavailable_reason() == "no C compiler (apt install gcc)"


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_missing_pcap_headers_reason(monkeypatch, tmp_path):
    # A compiler that cannot see /usr/include: what a machine without libpcap-dev looks like.
    cc = tmp_path / "cc-no-headers"
    cc.write_text(f"#!/bin/sh\nexec {shutil.which('gcc')} --sysroot={tmp_path}/none \"$@\"\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("WSCAP_HELPER_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "c"))
    assert capturer.helper_path(build=True) is None
    assert capturer.unavailable_reason() == "libpcap headers missing (apt install libpcap-dev)"
    assert os.listdir(tmp_path / "a") == [".build.lock"]      # no half-built binary left


@pytest.mark.skipif(not shutil.which("cc") or not os.path.exists("/usr/include/pcap/pcap.h"),
                    reason="needs cc and libpcap headers (apt install gcc libpcap-dev)")
def test_build_cached_by_source_hash(monkeypatch, tmp_path):
    d = tmp_path / "helper"
    monkeypatch.setenv("WSCAP_HELPER_DIR", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    p = capturer.helper_path()
    assert p and os.path.dirname(p) == str(d)
    import hashlib
    assert os.path.basename(p) == "wscap-capture-" + hashlib.sha256(open(capturer.SOURCE, "rb").read()).hexdigest()[:16]
    mtime = os.stat(p).st_mtime_ns
    assert capturer.helper_path() == p and os.stat(p).st_mtime_ns == mtime   # not rebuilt
    assert not stat.S_IMODE(os.stat(d).st_mode) & 0o022
    r = subprocess.run([sys.executable, "-m", "wscap.capture.capturer", "--build"], capture_output=True,
                       text=True, env={**os.environ, "WSCAP_HELPER_DIR": str(d)})
    assert r.returncode == 0 and r.stdout.strip() == p
    # Usage errors need no capture rights: exit 2 with one `error usage` line.
    r = subprocess.run([p, "-w", str(tmp_path / "x.pcap"), "-i", "a", "-i", "b"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stdout.startswith("error usage classic pcap")
    assert not (tmp_path / "x.pcap").exists()
    for bad in (["-t", "0"], ["-C", "100000"], ["-s", "x"], ["extra"], ["-n", str(tmp_path / "a.nrb")]):
        r = subprocess.run([p, "-w", str(tmp_path / "y.pcap"), *bad], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and r.stdout.startswith("error usage "), (bad, r.stdout)
        assert len(r.stdout.splitlines()) == 1
    assert not (tmp_path / "y.pcap").exists()


# ---- root + netns ----------------------------------------------------------------------------

@needs_lab
def test_udp_every_datagram_and_status(lab, tmp_path):
    out = str(tmp_path / "udp.pcapng")
    cp = start(lab, out, bpf=f"udp port {UDP_PORT}")
    assert cp.files == [(1, out)] and cp.format == "pcapng" and cp.linktypes == [1]
    assert cp.tsresol == 9
    # Snap length from the bridge in the lab namespace (not this one): its largest
    # frame (MTU / GSO / GRO size) + the SLL2 header.
    link = json.loads(subprocess.run(["ip", "-n", lab.lab_ns, "-d", "-j", "link", "show", lab.bridge],
                                     capture_output=True, text=True, check=True).stdout)[0]
    biggest = max(link["mtu"], link.get("gso_max_size", 65536), link.get("gro_max_size", 0))
    assert cp.snaplen == min(262144, max(1600, biggest + 20))
    n = 3000
    t_sent = time.time_ns()
    send_udp(lab, "client", n, size=200)
    # The watermark: wait for a flush stamped after the sends with every packet in it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (cp.flush and cp.flush["ts"] > t_sent
                                                and cp.flush["packets"] >= n):
        time.sleep(0.05)
        cp.poll()
    assert cp.flush and cp.flush["packets"] == n, cp.flush
    # Before stopping: the file already holds everything up to the flushed offset.
    assert os.path.getsize(out) >= cp.flush["offset"]
    fs, res = frames(out)
    assert res.errors == [] and udp_tags(fs) == list(range(n))
    assert stop(cp) == 0
    assert cp.end_reason == "stopped" and cp.end_packets == n
    assert cp.stats["drop"] == 0 and cp.stats["recv"] >= n
    fs, res = frames(out)
    assert res.errors == [] and res.format == "pcapng" and res.interfaces == [lab.bridge]
    assert udp_tags(fs) == list(range(n))
    assert all(len(f.data) == f.wirelen == 14 + 20 + 8 + 200 for f in fs)
    # Nanosecond timestamps, close to the wall clock of the send.
    assert all(abs(f.ts_ns - t_sent) < 60e9 for f in fs) and len({f.ts_ns % 1000 for f in fs}) > 1


@needs_lab
def test_tcp_same_as_tcpdump(lab, tmp_path):
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed (the control capture)")
    ours = str(tmp_path / "ours.pcapng")
    theirs = str(tmp_path / "tcpdump.pcap")
    bpf = "tcp port 7000"
    td_err = tmp_path / "tcpdump.err"
    with open(td_err, "wb") as errf:
        td = lab.spawn(None, "tcpdump", "-i", lab.bridge, "-w", theirs, "-U", "--immediate-mode",
                       "-s", "262144", "-B", "32768", bpf, stderr=errf)
    cp = start(lab, ours, bpf=bpf)
    deadline = time.monotonic() + 15
    while "listening on" not in td_err.read_text():
        assert time.monotonic() < deadline and td.poll() is None, "tcpdump did not start"
        time.sleep(0.05)
    time.sleep(0.3)
    k, m = 8, 40
    r = lab.run("client", sys.executable, "-c", TCP_GEN, lab.ip("backend"), "7000", str(k), str(m), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == str(k * m), r.stderr
    time.sleep(1.0)   # the last FIN/ACKs
    assert stop(cp) == 0
    lab.kill(td, signal.SIGINT)
    err = td_err.read_text()
    td_drop = int(next((ln.split()[0] for ln in err.splitlines() if "dropped by kernel" in ln), "0"))

    def tcp_payload(path: str):
        fs, res = frames(path)
        assert res.errors == []
        seen, to_server, to_client = set(), 0, 0
        for f in fs:
            d = f.data
            ihl = (d[14] & 0x0F) * 4
            tcp = 14 + ihl
            sport, dport, seq = struct.unpack_from(">HHI", d, tcp)
            off = (d[tcp + 12] >> 4) * 4
            plen = struct.unpack_from(">H", d, 16)[0] - ihl - off
            if plen > 0 and (sport, dport, seq) not in seen:   # a retransmission counts once
                seen.add((sport, dport, seq))
                if dport == 7000:
                    to_server += plen
                else:
                    to_client += plen
        return len(fs), to_server, to_client

    n_ours, up, down = tcp_payload(ours)
    n_td, up_td, down_td = tcp_payload(theirs)
    # What the client wrote, and the echo of it: every byte, both ways.
    assert up == down == k * m * 100
    assert cp.stats["drop"] == 0
    if td_drop == 0:
        assert n_ours == n_td
    else:
        assert n_ours >= n_td
    assert (up_td, down_td) == (up, down) or td_drop > 0
    # Each connection: SYN, SYN-ACK, ... at least one segment per message each way.
    assert n_ours >= k * (3 + 2 * m)


@needs_lab
def test_stop_drains_the_open_block(lab, tmp_path):
    """A long block timeout leaves the last packets in a block the kernel has not handed
    over yet; SIGINT right after the sends must still get every one of them."""
    out = str(tmp_path / "drain.pcap")
    cp = start(lab, out, bpf=f"udp port {UDP_PORT}", timeout_ms=400)
    n = 500
    send_udp(lab, "client", n)
    os.kill(cp.pid, signal.SIGINT)
    assert cp.wait(20) == 0
    assert cp.end_reason == "stopped" and cp.end_packets == n
    fs, res = frames(out)
    assert res.errors == [] and res.format == "pcap" and udp_tags(fs) == list(range(n))
    assert open(out, "rb").read(4) == struct.pack("<I", 0xA1B23C4D)      # nanosecond pcap


@needs_lab
def test_stdin_eof_stops_cleanly(lab, tmp_path):
    out = str(tmp_path / "eof.pcapng")
    cp = start(lab, out, bpf=f"udp port {UDP_PORT}")
    send_udp(lab, "client", 100)
    cp.proc.stdin.close()                       # what the parent's death looks like
    assert cp.wait(20) == 0 and cp.end_reason == "stopped" and cp.end_packets == 100
    fs, res = frames(out)
    assert res.errors == [] and udp_tags(fs) == list(range(100))


@needs_lab
def test_count(lab, tmp_path):
    out = str(tmp_path / "count.pcapng")
    cp = start(lab, out, bpf=f"udp port {UDP_PORT}", count=25)
    send_udp(lab, "client", 100)
    assert cp.wait(20) == 0
    assert cp.end_reason == "count" and cp.end_packets == 25
    fs, res = frames(out)
    assert res.errors == [] and udp_tags(fs) == list(range(25))


@needs_lab
@pytest.mark.parametrize("name", ["ring.pcapng", "ring", "ring.v2.pcap", ".hidden"])
def test_ring_rotation_and_names(lab, tmp_path, name):
    path = str(tmp_path / name)
    size, keep, n = 8192, 3, 400
    cp = start(lab, path, bpf=f"udp port {UDP_PORT}", ring_bytes=size, ring_files=keep)
    send_udp(lab, "client", n, size=100)
    assert stop(cp) == 0 and cp.end_packets == n
    # Names exactly as PcapWriter (the Python writer) makes them.
    expect = [PcapWriter._ring_name(types.SimpleNamespace(path=path), s) for s in range(1, len(cp.files) + 1)]
    assert [p for _, p in cp.files] == expect
    assert [s for s, _ in cp.files] == list(range(1, len(cp.files) + 1))
    rec = (32 + 144) if not name.endswith(".pcap") else (16 + 142)
    assert len(cp.files) >= n * rec // size     # it rotated as often as the size says
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(os.path.basename(p) for p in expect[-keep:])
    got = []
    for p in expect[-keep:]:
        assert os.path.getsize(p) <= size
        fs, res = frames(p)
        assert res.errors == [] and res.format == ("pcap" if name.endswith(".pcap") else "pcapng")
        got += udp_tags(fs)
    # The newest files hold the last packets, contiguous and in order.
    assert got == list(range(n - len(got), n)) and len(got) > 0


@needs_lab
def test_ring_never_follows_a_symlink_planted_for_a_later_file(lab, tmp_path):
    """wscap checks the first --write file before it starts; the ring's later files are opened
    by wscap-capture with O_NOFOLLOW: a symlink planted where file 2 will go stops the writing
    (an `error write` line, exit 3) and the link's target is never touched."""
    path = str(tmp_path / "ring.pcap")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    second = PcapWriter._ring_name(types.SimpleNamespace(path=path), 2)
    os.symlink(victim, second)
    cp = start(lab, path, bpf=f"udp port {UDP_PORT}", ring_bytes=8192, ring_files=3)
    send_udp(lab, "client", 200, size=100)          # ~30 KB: file 1 fills, file 2 is due
    rc = stop(cp)
    assert victim.read_bytes() == b"keep me"
    assert os.path.islink(second)
    assert rc == 3 and cp.end_reason == "write-error"
    assert [k for k, _ in cp.errors] == ["write"] and "refusing to follow" in cp.errors[0][1], cp.errors
    fs, res = frames(PcapWriter._ring_name(types.SimpleNamespace(path=path), 1))
    assert res.errors == [] and udp_tags(fs) == list(range(len(udp_tags(fs)))) and udp_tags(fs)


def test_python_ring_writer_never_follows_a_symlink(tmp_path):
    """The in-process writer (scapy backend) opens every ring file with O_NOFOLLOW too."""
    from wscap.model.raw import RawFrame
    path = str(tmp_path / "ring.pcap")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    second = PcapWriter._ring_name(types.SimpleNamespace(path=path), 2)
    os.symlink(victim, second)
    errors: list[str] = []
    w = PcapWriter(path, 1, ring_files=3, ring_size=4096, on_error=errors.append)
    for i in range(100):
        w.write(RawFrame(i + 1, 1_700_000_000_000_000_000 + i, 1, bytes(100), 100, 0, 0))
    w.close()
    assert victim.read_bytes() == b"keep me" and os.path.islink(second)
    assert len(errors) == 1 and "symbolic link" in errors[0] and w.error == errors[0]
    assert w.files == [PcapWriter._ring_name(types.SimpleNamespace(path=path), 1)]
    assert w.skipped > 0 and w.packets + w.skipped == 100


def _nrb(names: dict[str, str]) -> bytes:
    recs = b""
    for ip, host in names.items():
        v = bytes(int(x) for x in ip.split(".")) + host.encode() + b"\0"
        recs += struct.pack("<HH", 1, len(v)) + v + b"\0" * (-len(v) % 4)
    recs += struct.pack("<HH", 0, 0)
    ln = 12 + len(recs)
    return struct.pack("<II", 4, ln) + recs + struct.pack("<I", ln)


@needs_lab
def test_nrb_in_every_file(lab, tmp_path):
    blob = _nrb({lab.ip("client"): "client.lab", lab.ip("backend"): "backend.lab"}) + _nrb({"10.0.0.1": "x"})
    nrb = tmp_path / "names.nrb"
    nrb.write_bytes(blob)
    d = tmp_path / "out"
    d.mkdir()
    path = str(d / "n.pcapng")
    cp = start(lab, path, bpf=f"udp port {UDP_PORT}", nrb_path=str(nrb), ring_bytes=4096, ring_files=10)
    send_udp(lab, "client", 60, size=100)
    assert stop(cp) == 0
    assert len(cp.files) >= 2
    for _, p in cp.files:
        bl = blocks(p)
        assert [t for t, _ in bl[:4]] == [0x0A0D0D0A, 1, 4, 4]
        assert bl[2][1] + bl[3][1] == blob                     # verbatim, after the IDB
        assert all(t == 6 for t, _ in bl[4:])
        assert lab.bridge.encode() in bl[1][1]
    if shutil.which("tshark"):
        r = subprocess.run(["tshark", "-r", cp.files[0][1], "-N", "n", "-T", "fields", "-e", "ip.dst_host",
                            "-c", "1"], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "backend.lab"


@needs_lab
def test_bad_nrb_is_refused(lab, tmp_path):
    bad = tmp_path / "bad.nrb"
    bad.write_bytes(_nrb({"10.0.0.1": "x"})[:-4])
    cp = CaptureProcess([lab.bridge], str(tmp_path / "x.pcapng"), nrb_path=str(bad), netns=lab.netns_path())
    with pytest.raises(CaptureError):
        cp.wait_ready(15)
    assert cp.returncode == 2 and cp.errors[0][0] == "usage" and "bad block length" in cp.errors[0][1]
    assert not (tmp_path / "x.pcapng").exists()


@needs_lab
def test_run_as_owns_the_file(lab):
    d = tempfile.mkdtemp(prefix="wscap-capt-")
    try:
        os.chmod(d, 0o777)
        out = os.path.join(d, "z.pcapng")
        cp = start(lab, out, bpf=f"udp port {UDP_PORT}", run_as=(65534, 65534))
        status = open(f"/proc/{cp.pid}/status").read()
        uids = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
        gids = next(ln for ln in status.splitlines() if ln.startswith("Gid:")).split()[1:]
        groups = next(ln for ln in status.splitlines() if ln.startswith("Groups:")).split()[1:]
        assert set(uids) == {"65534"} and set(gids) == {"65534"} and groups == []
        send_udp(lab, "client", 50)
        assert stop(cp) == 0 and cp.end_packets == 50
        st = os.stat(out)
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        fs, res = frames(out)
        assert udp_tags(fs) == list(range(50))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@needs_lab
def test_startup_errors(lab, tmp_path):
    cp = CaptureProcess(["nosuch0"], str(tmp_path / "a.pcapng"), netns=lab.netns_path())
    with pytest.raises(NoSuchInterface) as e:
        cp.wait_ready(15)
    assert "nosuch0" in str(e.value) and cp.returncode == 2 and cp.errors[0][0] == "nodev"
    cp = CaptureProcess([lab.bridge], str(tmp_path / "b.pcapng"), bpf="tcp port nonsense",
                        netns=lab.netns_path())
    with pytest.raises(BadFilter) as e:
        cp.wait_ready(15)
    assert "nonsense" in str(e.value) and cp.returncode == 2 and cp.errors[0][0] == "filter"
    assert not os.path.exists(tmp_path / "a.pcapng") and not os.path.exists(tmp_path / "b.pcapng")
    cp = CaptureProcess([lab.bridge], str(tmp_path / "nodir" / "c.pcapng"), netns=lab.netns_path())
    with pytest.raises(CaptureError):
        cp.wait_ready(15)
    assert cp.returncode == 2 and cp.errors[0][0] == "open" and "No such file or directory" in cp.errors[0][1]


@needs_lab
def test_full_disk_cuts_back_to_whole_blocks(lab):
    d = tempfile.mkdtemp(prefix="wscap-capt-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", d], check=True)
    try:
        out = os.path.join(d, "full.pcapng")
        cp = start(lab, out, bpf=f"udp port {UDP_PORT}")
        send_udp(lab, "client", 600, size=1000)            # ~620 KB of records for 256 KiB
        assert cp.wait(30) == 3
        assert cp.end_reason == "write-error"
        assert cp.errors and cp.errors[0][0] == "write" and "No space left" in cp.errors[0][1]
        fs, res = frames(out)
        assert res.errors == []                             # readable to the last byte
        assert 0 < len(fs) == cp.end_packets < 600
        assert udp_tags(fs) == list(range(len(fs)))
        bl = blocks(out)                                    # whole blocks, nothing after
        assert sum(len(b) for _, b in bl) == os.path.getsize(out) <= 256 * 1024
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


@needs_lab
def test_two_interfaces_one_pcapng(lab, tmp_path):
    ports = lab.ports()             # [client's port, proxy's port, backend's port]
    a, b = ports[0], ports[1]
    out = str(tmp_path / "two.pcapng")
    # Warm-up on another port so the bridge knows every MAC (no flooding afterwards).
    for h in ("client", "proxy"):
        lab.run(h, sys.executable, "-c", UDP_GEN, lab.ip("backend"), "40001", "3", "10", "W", timeout=30)
    cp = start(lab, out, ifaces=[a, b], bpf=f"udp port {UDP_PORT}")
    assert cp.linktypes == [1, 1]
    send_udp(lab, "client", 70, tag="C")
    send_udp(lab, "proxy", 40, tag="P")
    assert stop(cp) == 0
    fs, res = frames(out)
    assert res.errors == [] and res.interfaces == [a, b]
    on = {0: [f for f in fs if f.iface == 0], 1: [f for f in fs if f.iface == 1]}
    assert udp_tags(on[0], "C") == list(range(70)) and udp_tags(on[0], "P") == []
    assert udp_tags(on[1], "P") == list(range(40)) and udp_tags(on[1], "C") == []
    assert [s["name"] for s in cp.stats["interfaces"]] == [a, b]


@needs_lab
def test_interface_gone(lab, tmp_path):
    # A port of our own on the lab bridge, deleted while capturing on it.
    port = "vgone" + str(os.getpid() % 10000)
    x = ("ip", "-n", lab.lab_ns)
    subprocess.run([*x, "link", "add", port, "type", "veth", "peer", "name", port + "p"], check=True)
    subprocess.run([*x, "link", "set", port, "up"], check=True)
    subprocess.run([*x, "link", "set", port + "p", "up"], check=True)
    out = str(tmp_path / "gone.pcapng")
    cp = start(lab, out, ifaces=[port, lab.bridge], bpf=f"udp port {UDP_PORT}")
    subprocess.run([*x, "link", "del", port], check=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not cp.errors:
        time.sleep(0.05)
        cp.poll()
    assert cp.errors and cp.errors[0][0] == "ifgone" and cp.errors[0][1].startswith(port + " ")
    assert not cp.ended                        # the bridge is still captured
    send_udp(lab, "client", 30)
    assert stop(cp) == 0 and cp.end_reason == "stopped"
    fs, res = frames(out)
    assert res.errors == [] and udp_tags(fs) == list(range(30)) and {f.iface for f in fs} == {1}


@needs_lab
def test_only_interface_gone_ends(lab, tmp_path):
    port = "vlone" + str(os.getpid() % 10000)
    x = ("ip", "-n", lab.lab_ns)
    subprocess.run([*x, "link", "add", port, "type", "veth", "peer", "name", port + "p"], check=True)
    subprocess.run([*x, "link", "set", port, "up"], check=True)
    out = str(tmp_path / "lone.pcapng")
    cp = start(lab, out, ifaces=[port])
    subprocess.run([*x, "link", "del", port], check=True)
    assert cp.wait(20) == 0
    assert cp.end_reason == "ifgone" and cp.errors[0][0] == "ifgone"
    fs, res = frames(out)
    assert res.errors == [] and res.interfaces == [port]


PARENT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from wscap.capture.capturer import CaptureProcess
cp = CaptureProcess([sys.argv[3]], sys.argv[2], netns=sys.argv[4], run_as=(65534, 65534))
cp.wait_ready(15)
print(cp.pid, flush=True)
time.sleep(600)
"""


@needs_lab
def test_dies_with_its_parent(lab):
    """SIGKILL of the Python side (no atexit, no stop()) still ends the capture, also
    after it switched user (which clears PR_SET_PDEATHSIG; the program sets it again)."""
    d = tempfile.mkdtemp(prefix="wscap-capt-orphan-")
    try:
        os.chmod(d, 0o777)
        out = os.path.join(d, "o.pcapng")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        p = subprocess.Popen([sys.executable, "-c", PARENT, root, out, lab.bridge, lab.netns_path()],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            pid = int(p.stdout.readline())
            assert open(f"/proc/{pid}/status").read().count("65534") >= 2
            send_udp(lab, "client", 40)
        finally:
            p.kill()
            p.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            st = open(f"/proc/{pid}/stat").read() if os.path.exists(f"/proc/{pid}/stat") else ""
            if st and st.rsplit(")", 1)[1].split()[0] == "Z":
                break          # exited; a zombie until init reaps it
            time.sleep(0.05)
        stat_now = open(f"/proc/{pid}/stat").read() if os.path.exists(f"/proc/{pid}/stat") else ""
        assert not stat_now or stat_now.rsplit(")", 1)[1].split()[0] == "Z", "capture outlived its parent"
        fs, res = frames(out)
        assert res.errors == [] and udp_tags(fs) == list(range(40))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _become_setcap_user() -> None:
    """In a forked child: uid/gid 65534 with CAP_NET_RAW + CAP_NET_ADMIN permitted,
    effective and inheritable but not ambient: what `setcap ...=eip` on python gives."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(8, 1, 0, 0, 0)                                   # PR_SET_KEEPCAPS
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)

    class Hdr(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    data = (Data * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = (1 << 12) | (1 << 13)
    if libc.capset(ctypes.byref(Hdr(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@needs_lab
def test_capabilities_instead_of_root(lab):
    """Non-root with file capabilities on python: the capture program gets them too."""
    d = tempfile.mkdtemp(prefix="wscap-capt-caps-")
    try:
        os.chmod(d, 0o777)
        exe = os.path.join(d, "wscap-capture")
        shutil.copy(capturer.helper_path(), exe)
        os.chmod(exe, 0o755)
        out = os.path.join(d, "caps.pcapng")
        # The child runs as nobody, who cannot read this Python's library directory:
        # import now what its error path would import.
        import ctypes.util  # noqa: F401
        import wscap.capture.ifaces  # noqa: F401
        import wscap.capture.privilege  # noqa: F401
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:                                            # the child: never returns
            code = 1
            try:
                os.close(r1)
                os.close(w2)
                fd = os.open(lab.netns_path(), os.O_RDONLY)
                capturer._setns_preexec(fd)()                   # entered while still root
                _become_setcap_user()
                cp = CaptureProcess([lab.bridge], out, bpf=f"udp port {UDP_PORT}", helper=exe)
                cp.wait_ready(15)
                os.write(w1, b"ready\n")
                os.read(r2, 10)
                cp.stop()
                cp.wait(20)
                os.write(w1, json.dumps([cp.end_reason, cp.end_packets]).encode())
                code = 0
            except BaseException as e:  # noqa: BLE001
                os.write(w1, repr(e).encode()[:2000])
            finally:
                os._exit(code)
        os.close(w1)
        os.close(r2)
        with os.fdopen(r1) as rd:
            first = rd.readline()
            assert first == "ready\n", first + rd.read()
            send_udp(lab, "client", 20)
            os.write(w2, b"go\n")
            os.close(w2)
            result = rd.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, result
        assert json.loads(result) == ["stopped", 20]
        assert os.stat(out).st_uid == 65534
        fs, res = frames(out)
        assert udp_tags(fs) == list(range(20))
    finally:
        shutil.rmtree(d, ignore_errors=True)
