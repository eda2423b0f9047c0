"""Input problems: one line on stderr naming the file (and the frame, when there is one),
exit code 2, and every result recovered before the problem still printed (JSON and table).

Runs the real CLI (`python -m wscap analyze`) in a subprocess, as a user would.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

import wscap
from builders import Capture, frames_of, pcap_bytes, pcapng_bytes, ws_frame, ws_request, ws_response

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def run(*args: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([*(user or []), sys.executable, "-m", "wscap", "analyze", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def two_handshakes() -> Capture:
    """Two complete upgrades, then a third request whose records the tests cut or corrupt."""
    cap = Capture()
    for n in range(3):
        c = cap.conn(("10.7.0.1", 41000 + n), ("10.7.0.2", 8080)).open()
        c.send(True, ws_request(f"/ws{n}", key=KEY))
        c.send(False, ws_response(KEY))
        c.send(False, ws_frame(b"hi"))
    return cap


def healthy_bytes() -> tuple[bytes, list[int]]:
    """pcap bytes and the file offset where each record starts."""
    frames = frames_of(two_handshakes())
    data = pcap_bytes(frames)
    offs, pos = [], 24
    for _ts, d in frames:
        offs.append(pos)
        pos += 16 + len(d)
    return data, offs


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    data, offs = healthy_bytes()
    p = d / "good.pcap"
    p.write_bytes(data)
    return str(p), data, offs


def assert_one_problem(r: subprocess.CompletedProcess, path: str, frame: int | None = None) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = problem_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert path in lines[0]
    if frame is not None:
        assert f"frame {frame}" in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


def test_the_intact_capture_is_fine(good):
    path, _data, _offs = good
    r = run(path, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["upgraded"] == 3


def test_missing_file(tmp_path):
    p = str(tmp_path / "nope.pcap")
    r = run(p)
    assert_one_problem(r, p)
    assert "no such file" in r.stderr


def test_missing_file_does_not_hide_the_results_of_the_others(good, tmp_path):
    path, _data, _offs = good
    missing = str(tmp_path / "nope.pcap")
    r = run(path, missing, "--format", "json")
    assert r.returncode == 2
    assert missing in r.stderr
    assert json.loads(r.stdout)["summary"]["upgraded"] == 3


def test_directory(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    r = run(str(d))
    assert r.returncode == 2
    assert str(d) in r.stderr or "adir" in r.stderr
    assert "Traceback" not in r.stderr


def test_directory_through_the_api_is_an_input_error(tmp_path):
    doc = wscap.analyze_paths([str(tmp_path)])
    (src,) = doc["source"]
    assert src["complete"] is False
    assert len(src["errors"]) == 1 and str(tmp_path) in src["errors"][0]


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    line = assert_one_problem(run(str(p)), str(p))
    assert "empty" in line


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 10)
    line = assert_one_problem(run(str(p)), str(p))
    assert "not a pcap or pcapng" in line


def test_pcap_global_header_truncated(tmp_path, good):
    _path, data, _offs = good
    p = tmp_path / "hdr.pcap"
    p.write_bytes(data[:13])
    line = assert_one_problem(run(str(p)), str(p))
    assert "header" in line


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_truncated_mid_record_keeps_everything_before_the_cut(tmp_path, good, fmt):
    _path, data, offs = good
    # Cut inside the third connection's request (its 4th record): the first two upgrades are complete.
    third = 2 * 6 + 3            # 6 records per connection (3 handshake + request + response + frame)
    cut = offs[third] + 30
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:cut])
    r = run(str(p), "--format", fmt)
    line = assert_one_problem(r, str(p), frame=third + 1)
    assert "truncated" in line
    if fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["source"][0]["packets"] == third
        assert doc["source"][0]["complete"] is False
        ok = [h for h in doc["handshakes"] if h["outcome"] == "upgraded"]
        assert sorted(h["request"]["target"] for h in ok) == ["/ws0", "/ws1"]
    else:
        assert "/ws0" in r.stdout and "/ws1" in r.stdout
        assert "upgraded" in r.stdout


def test_absurd_record_length_stops_with_the_frame_named(tmp_path, good):
    _path, data, offs = good
    b = bytearray(data)
    struct.pack_into("<I", b, offs[8] + 8, 0x7FFFFFFF)          # caplen of frame 9
    p = tmp_path / "absurd.pcap"
    p.write_bytes(bytes(b))
    r = run(str(p), "--format", "json")
    line = assert_one_problem(r, str(p), frame=9)
    assert "corrupt record header" in line
    doc = json.loads(r.stdout)
    assert doc["source"][0]["packets"] == 8
    assert [h["request"]["target"] for h in doc["handshakes"] if h["outcome"] == "upgraded"] == ["/ws0"]


def _pcapng(cap: Capture) -> tuple[bytes, list[int]]:
    frames = frames_of(cap)
    data = pcapng_bytes([1], [(0, ts, d) for ts, d in frames])
    # Offsets of each Enhanced Packet Block.
    offs, pos = [], 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            offs.append(pos)
        pos += blen
    return data, offs


@pytest.mark.parametrize("how", ["length", "not-multiple-of-4", "cut"])
def test_corrupt_pcapng_block(tmp_path, how):
    data, offs = _pcapng(two_handshakes())
    b = bytearray(data)
    k = 7                                    # frame 8: first record of the second connection's request side
    if how == "length":
        struct.pack_into("<I", b, offs[k] + 4, 0xFFFFFFF0)
    elif how == "not-multiple-of-4":
        struct.pack_into("<I", b, offs[k] + 4, struct.unpack_from("<I", b, offs[k] + 4)[0] + 2)
    else:
        del b[offs[k] + 20:]
    p = tmp_path / f"corrupt-{how}.pcapng"
    p.write_bytes(bytes(b))
    r = run(str(p), "--format", "json")
    line = assert_one_problem(r, str(p), frame=k + 1)
    assert "block" in line
    doc = json.loads(r.stdout)
    assert doc["source"][0]["packets"] == k
    assert [h["request"]["target"] for h in doc["handshakes"] if h["outcome"] == "upgraded"] == ["/ws0"]


def test_pcapng_packet_before_any_interface(tmp_path):
    data, offs = _pcapng(two_handshakes())
    # Drop the Interface Description Block: packets name interface 0, never described.
    shb_len = struct.unpack_from("<I", data, 4)[0]
    idb_len = struct.unpack_from("<I", data, shb_len + 4)[0]
    p = tmp_path / "noidb.pcapng"
    p.write_bytes(data[:shb_len] + data[shb_len + idb_len:])
    r = run(str(p), "--format", "json")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "never described" in r.stderr and str(p) in r.stderr


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_gzip_cut_keeps_the_frames_before_the_cut(tmp_path, where):
    # Big enough that the cut falls after several compressed blocks of good frames.
    cap = Capture()
    for n in range(40):
        c = cap.conn(("10.7.0.1", 42000 + n), ("10.7.0.2", 8080)).open()
        c.send(True, ws_request(f"/g{n}", key=KEY, extra=[("X-Pad", os.urandom(600).hex())]))
        c.send(False, ws_response(KEY))
    raw = pcap_bytes(frames_of(cap))
    gz = gzip.compress(raw)
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(gz[:int(len(gz) * where)])
    r = run(str(p), "--format", "json")
    line = assert_one_problem(r, str(p))
    assert "gzip" in line and "frame" in line
    doc = json.loads(r.stdout)
    n = doc["source"][0]["packets"]
    assert n > 0.3 * len(cap.packets) * where
    assert f"frame {n + 1}" in line
    assert doc["summary"]["upgraded"] >= int(40 * where * 0.6)


def test_gzip_corrupt_is_one_line(tmp_path, good):
    _path, data, _offs = good
    gz = bytearray(gzip.compress(data * 1))
    gz[len(gz) // 2] ^= 0xFF
    p = tmp_path / "bad.pcap.gz"
    p.write_bytes(bytes(gz))
    line = assert_one_problem(run(str(p)), str(p))
    assert "gzip" in line


def test_intact_gzip_is_read_whole(tmp_path, good):
    _path, data, _offs = good
    p = tmp_path / "ok.pcap.gz"
    p.write_bytes(gzip.compress(data))
    r = run(str(p), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["upgraded"] == 3


def test_problem_in_one_file_keeps_the_other_files(tmp_path, good):
    path, data, offs = good
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:offs[5] + 3])
    r = run(path, str(p), "--format", "json")
    assert_one_problem(r, str(p), frame=6)
    doc = json.loads(r.stdout)
    assert doc["source"][0]["complete"] is True and doc["source"][1]["complete"] is False
    assert sum(1 for h in doc["handshakes"] if h["source"] == 0 and h["outcome"] == "upgraded") == 3


def _unprivileged() -> list[str] | None:
    """A command prefix that runs as nobody (we are root, for whom chmod 000 changes nothing)."""
    if os.geteuid() != 0:
        return []
    for tool, args in (("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"]),
                       ("runuser", ["-u", "nobody", "--"])):
        exe = shutil.which(tool)
        if exe:
            return [exe, *args]
    return None


def test_permission_denied(tmp_path, good):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root and neither setpriv nor runuser is available")
    _path, data, _offs = good
    os.chmod(tmp_path, 0o755)
    p = tmp_path / "secret.pcap"
    p.write_bytes(data)
    os.chmod(p, 0o000)
    r = run(str(p), user=prefix)
    if "No module named" in r.stderr:
        pytest.skip("the unprivileged user cannot import wscap from here")
    line = assert_one_problem(r, str(p))
    assert "ermission denied" in line


def test_permission_denied_in_process(tmp_path, good, monkeypatch):
    """Same, without changing user: the reader's open() is refused."""
    import builtins
    _path, data, _offs = good
    p = tmp_path / "secret.pcap"
    p.write_bytes(data)
    real_open = builtins.open

    def refusing_open(file, mode="r", *a, **kw):
        if str(file) == str(p):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", refusing_open)
    doc = wscap.analyze_paths([str(p)])
    (src,) = doc["source"]
    assert src["errors"] == [f"{p}: cannot open: Permission denied"]
