"""Names travel with the capture (pcapng Name Resolution Blocks) and label every output.

The NRB bytes come from `wscap.capture.writer.pcapng_nrb`; the reader, Wireshark's own
tools and the verdict sentences must all see the names that were written.
"""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from click.testing import CliRunner

from builders import Capture, frames_of, new_key, proxied_chain, ws_request, ws_response
from wscap.engine.analyze import analyze_paths
from wscap.capture.files import MAX_NAME_LEN, ReadResult, read_frames, read_names
from wscap.capture.writer import pcapng_epb, pcapng_idb, pcapng_nrb, pcapng_shb
from wscap.cli.main import main
from wscap.model.raw import RawFrame
from wscap.engine.core import Options

NAMES = {"172.18.0.1": "host", "172.18.0.2": "vite", "172.18.0.3": "meetsonar-backend"}


def pcapng_with(cap: Capture, path, names: dict | None = None, nrb: bytes | None = None) -> str:
    """The capture as a pcapng written by wscap's live writer functions, NRB right after the IDB."""
    out = [pcapng_shb(), pcapng_idb(1, 65535, "br-test"), nrb if nrb is not None else pcapng_nrb(names or {})]
    for i, (ts, data) in enumerate(frames_of(cap), start=1):
        out.append(pcapng_epb(RawFrame(i, int(round(ts * 1e6)) * 1000, 1, data, len(data))))
    with open(path, "wb") as f:
        f.write(b"".join(out))
    return str(path)


def origin_chain(tmp_path, names=NAMES) -> str:
    cap = Capture()
    proxied_chain(cap, origin_rewrite=True, backend_status=403)
    return pcapng_with(cap, tmp_path / "c.pcapng", names)


def test_nrb_layout():
    b = pcapng_nrb({"10.0.0.1": "a", "fd00::1": ["x", "yz"]})
    btype, blen = struct.unpack_from("<II", b)
    assert btype == 4 and blen == len(b) and blen % 4 == 0
    assert struct.unpack_from("<I", b, blen - 4)[0] == blen
    body = b[8:-4]
    # ipv4 record: type 1, length 4 + "a\0" = 6, padded to 8
    assert body[:4] == struct.pack("<HH", 1, 6) and body[4:8] == bytes([10, 0, 0, 1]) and body[8:12] == b"a\0\0\0"
    # ipv6 record: type 2, 16 + "x\0yz\0" = 21, padded to 24
    assert body[12:16] == struct.pack("<HH", 2, 21) and body[32:37] == b"x\0yz\0" and body[37:40] == b"\0\0\0"
    assert body[40:] == struct.pack("<HH", 0, 0)          # end record
    assert pcapng_nrb({}) == b"" and pcapng_nrb({"not-an-ip": "x"}) == b""


def test_nrb_split_into_bounded_blocks():
    names = {f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}": "n" * 40 for i in range(3000)}
    b = pcapng_nrb(names)
    off, blocks = 0, 0
    while off < len(b):
        btype, blen = struct.unpack_from("<II", b, off)
        assert btype == 4 and blen <= 64 * 1024 + 64
        off += blen
        blocks += 1
    assert blocks > 1
    res = ReadResult(path="x")
    data = pcapng_shb() + pcapng_idb(1, 65535, None) + b
    import io
    list(read_frames("x", res, stream=io.BytesIO(data)))
    assert res.names == names and not res.errors


def test_round_trip_labels_everything(tmp_path):
    path = origin_chain(tmp_path)
    doc = analyze_paths([path], Options())
    assert doc["source"][0]["names"] == NAMES
    assert {e["ip"]: e["name"] for e in doc["endpoints"]} == NAMES
    v = doc["chains"][0]["verdict"]
    assert v["cause"] == "origin-rejected"
    # The endpoint is labelled, the rewritten Origin value (a URL with a name) is left as the wire said.
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in v["summary"]
    assert "'http://meetsonar-backend:5000'" in v["summary"]
    r = CliRunner().invoke(main, ["analyze", path])
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in r.output
    assert "host:50000 ─[403]→ vite:5173" in r.output


def test_names_in_reports(tmp_path):
    path = origin_chain(tmp_path)
    md = CliRunner().invoke(main, ["analyze", path, "--format", "markdown"]).output
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in md and "vite 172.18.0.2:5173" in md
    out = tmp_path / "r.html"
    CliRunner().invoke(main, ["report", path, "-o", str(out)])
    html = out.read_text()
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in html


def test_precedence_names_file_over_nrb_over_docker(tmp_path):
    path = origin_chain(tmp_path)
    doc = analyze_paths([path], Options(names=(("172.18.0.2", "from-file"),),
                                        names_fallback=(("172.18.0.2", "from-docker"), ("172.18.0.3", "docker-b"),
                                                        ("172.18.0.9", "docker-only"))))
    eps = {e["ip"]: e["name"] for e in doc["endpoints"]}
    assert eps["172.18.0.2"] == "from-file"                 # --names beats the NRB's "vite"
    assert eps["172.18.0.3"] == "meetsonar-backend"         # the NRB beats the Docker API
    hosts = tmp_path / "hosts"
    hosts.write_text("172.18.0.2 from-file\n")
    r = CliRunner().invoke(main, ["analyze", path, "--names", str(hosts)])
    assert "from-file:5173" in r.output and "meetsonar-backend (172.18.0.3:5000)" in r.output


def test_docker_names_when_no_nrb(tmp_path):
    cap = Capture()
    proxied_chain(cap, origin_rewrite=True, backend_status=403)
    path = cap.write(tmp_path / "c.pcap")
    doc = analyze_paths([path], Options(names_fallback=(("172.18.0.3", "docker-b"),)))
    assert "docker-b (172.18.0.3:5000) answered 403" in doc["chains"][0]["verdict"]["summary"]


def test_names_file_labels_verdict_sentence(tmp_path):
    """--names used to relabel the table only, not the verdict sentence."""
    cap = Capture()
    proxied_chain(cap, origin_rewrite=True, backend_status=403)
    path = cap.write(tmp_path / "c.pcap")
    hosts = tmp_path / "hosts"
    hosts.write_text("172.18.0.3 meetsonar-backend\n")
    r = CliRunner().invoke(main, ["analyze", path, "--names", str(hosts)])
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in r.output
    r = CliRunner().invoke(main, ["analyze", path, "--names", str(hosts), "--format", "json"])
    assert "meetsonar-backend (172.18.0.3:5000) answered 403" in r.output


def _nrb_raw(records: list[bytes], end: bool = True) -> bytes:
    body = b"".join(records) + (struct.pack("<HH", 0, 0) if end else b"")
    body += b"\0" * (-len(body) % 4)
    ln = 12 + len(body)
    return struct.pack("<II", 4, ln) + body + struct.pack("<I", ln)


def _rec(rtype: int, value: bytes) -> bytes:
    return struct.pack("<HH", rtype, len(value)) + value + b"\0" * (-len(value) % 4)


@pytest.mark.parametrize("records, names, skipped", [
    ([_rec(1, bytes([172, 18, 0, 2]) + b"vite\0")], {"172.18.0.2": "vite"}, 0),
    ([_rec(1, bytes([172, 18, 0, 2]) + b"vite")], {}, 1),                       # name not NUL-terminated
    ([_rec(1, bytes([172, 18, 0, 2]))], {}, 1),                                 # no name at all
    ([_rec(1, bytes([172, 18, 0, 2]) + b"\xff\xfe\0")], {}, 1),                 # not UTF-8
    ([_rec(1, bytes([172, 18, 0, 2]) + b"\x1b[2Jevil\0")], {}, 1),             # control characters
    ([_rec(1, bytes([172, 18, 0, 2]) + b"a" * (MAX_NAME_LEN + 1) + b"\0")], {}, 1),
    ([_rec(9, b"whatever"), _rec(1, bytes([10, 0, 0, 1]) + b"ok\0")], {"10.0.0.1": "ok"}, 0),   # unknown type
    ([struct.pack("<HH", 1, 200) + bytes([10, 0, 0, 1]) + b"x\0\0\0"], {}, 1),  # longer than its block
])
def test_malformed_nrb_never_crashes(tmp_path, records, names, skipped):
    cap = Capture()
    proxied_chain(cap)
    path = pcapng_with(cap, tmp_path / "m.pcapng", nrb=_nrb_raw(records))
    doc = analyze_paths([path], Options())
    s = doc["source"][0]
    assert s["names"] == names and s["names_skipped"] == skipped and not s["errors"]
    assert doc["summary"]["chains"] == 1
    assert read_names(path) == (names, skipped)


def test_max_names_bound(tmp_path, monkeypatch):
    import wscap.capture.files as files
    monkeypatch.setattr(files, "MAX_NAMES", 3)
    nrb = pcapng_nrb({f"10.0.0.{i}": f"n{i}" for i in range(1, 11)})
    cap = Capture()
    proxied_chain(cap)
    path = pcapng_with(cap, tmp_path / "b.pcapng", nrb=nrb)
    doc = analyze_paths([path], Options())
    assert len(doc["source"][0]["names"]) == 3 and doc["source"][0]["names_skipped"] == 7


def test_hostile_name_escaped_in_html(tmp_path):
    path = origin_chain(tmp_path, names={**NAMES, "172.18.0.3": "<img/src=x/onerror=alert(1)>"})
    out = tmp_path / "r.html"
    CliRunner().invoke(main, ["report", path, "-o", str(out)])
    html = out.read_text()
    assert "<img" not in html and "&lt;img/src=x/onerror=alert(1)&gt; (172.18.0.3:5000) answered 403" in html


def test_roles_from_the_chain(tmp_path):
    """Backend stopped: the proxy never went upstream. It is not the 'backend'."""
    cap = Capture()
    down = cap.conn(("172.18.0.1", 50000), ("172.18.0.2", 5173)).open()
    down.send(True, ws_request("/ws", key=new_key(1)))
    cap.wait(5.0)
    down.fin(True)                                          # the browser gave up: no answer at all
    cap2 = Capture(t0=1_700_000_100.0)
    d2 = cap2.conn(("172.18.0.1", 50001), ("172.18.0.4", 5173)).open()
    d2.send(True, ws_request("/ws", key=new_key(2)))
    d2.send(False, ws_response(status=502, reason="Bad Gateway"))
    cap3 = Capture(t0=1_700_000_200.0)
    proxied_chain(cap3, client=("172.18.0.1", 50100), proxy=("172.18.0.6", 5173), backend=("172.18.0.7", 5000))
    paths = [cap.write(tmp_path / "a.pcap"), cap2.write(tmp_path / "b.pcap"), cap3.write(tmp_path / "c.pcap")]
    doc = analyze_paths(paths, Options())
    roles = {e["ip"]: e["role"] for e in doc["endpoints"]}
    assert roles["172.18.0.2"] == "unknown"                # never answered: proxy or backend, unknown
    assert roles["172.18.0.4"] == "proxy"                  # answered 502 without going upstream
    assert roles["172.18.0.6"] == "proxy" and roles["172.18.0.7"] == "backend"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_shows_the_names(tmp_path):
    path = origin_chain(tmp_path)
    out = subprocess.run(["tshark", "-r", path, "-N", "n", "-o", "nameres.use_external_name_resolver:FALSE",
                          "-T", "fields", "-e", "ip.src_host", "-e", "ip.dst_host"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pairs = {tuple(line.split("\t")) for line in out.stdout.splitlines() if line}
    assert ("host", "vite") in pairs and ("vite", "meetsonar-backend") in pairs
    assert ("meetsonar-backend", "vite") in pairs
    assert not any("172.18." in a or "172.18." in b for a, b in pairs)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is not installed")
def test_editcap_and_capinfos_read_it(tmp_path):
    path = origin_chain(tmp_path)
    out = tmp_path / "copy.pcapng"
    r = subprocess.run(["editcap", path, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # Wireshark 4.0's editcap writes its copy without the NRB (names are not carried over);
    # the copy must still be the same packets.
    r = subprocess.run(["capinfos", "-c", "-M", path], capture_output=True, text=True, timeout=120)
    r2 = subprocess.run(["capinfos", "-c", "-M", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r2.returncode == 0, r.stderr + r2.stderr
    count = [ln for ln in r.stdout.splitlines() if "Number of packets" in ln]
    assert count and count[0].split(":")[1].strip() == str(len(_packets_of(path)))
    assert [ln for ln in r2.stdout.splitlines() if "Number of packets" in ln][0].split(":")[1] == count[0].split(":")[1]


def _packets_of(path: str) -> list:
    res = ReadResult(path=path)
    return list(read_frames(path, res))


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_nrb_body_never_raises(body):
    import io
    body = body + b"\0" * (-len(body) % 4)
    ln = 12 + len(body)
    nrb = struct.pack("<II", 4, ln) + body + struct.pack("<I", ln)
    data = pcapng_shb() + pcapng_idb(1, 65535, None) + nrb
    res = ReadResult(path="x")
    assert list(read_frames("x", res, stream=io.BytesIO(data))) == []
    assert not res.errors and len(res.names) <= 100
    assert all(n.isprintable() and len(n.encode()) <= MAX_NAME_LEN for n in res.names.values())


def test_streamed_json_and_jobs_use_the_nrb(tmp_path):
    import json
    path = origin_chain(tmp_path)
    cap = Capture(t0=1_700_000_500.0)
    proxied_chain(cap, origin_rewrite=True, backend_status=403)
    other = cap.write(tmp_path / "plain.pcap")
    for extra in ([], ["-j", "2"]):
        r = CliRunner().invoke(main, ["analyze", path, other, "--format", "json", *extra])
        doc = json.loads(r.output)
        assert {e["ip"]: e["name"] for e in doc["endpoints"]} == NAMES
        assert all("meetsonar-backend (172.18.0.3:5000) answered 403" in c["verdict"]["summary"]
                   for c in doc["chains"]) and len(doc["chains"]) == 2


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_engine_uses_the_nrb(tmp_path):
    from wscap.engine.tshark import analyze_paths as tshark_analyze
    path = origin_chain(tmp_path)
    core, tsh = analyze_paths([path], Options()), tshark_analyze([path], Options())
    assert tsh["endpoints"] == core["endpoints"] and tsh["source"][0]["names"] == NAMES
    assert [c["verdict"] for c in tsh["chains"]] == [c["verdict"] for c in core["chains"]]
