"""Captures built to attack wscap on purpose (issue 16): each test builds the attack with the
builders, then asserts the bound holds AND the result is still right (truth = how it was built)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import wscap
from builders import Capture, new_key, proxied_chain, ws_request, ws_response

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="     # RFC 6455's sample key, hard-coded by many test clients
SERVER = ("172.18.0.9", 8080)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "wscap", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def direct_clients_sharing_key(cap: Capture, n: int, reject: int) -> None:
    """n unrelated clients, each its own address, each straight to SERVER with the sample key;
    the one numbered `reject` is refused with a 403."""
    for i in range(n):
        c = cap.conn((f"10.1.{i // 200}.{i % 200 + 1}", 40000 + i), SERVER).open()
        c.send(True, ws_request("/ws", host="srv:8080", key=SAMPLE_KEY))
        if i == reject:
            c.send(False, ws_response(SAMPLE_KEY, status=403, reason="Forbidden"))
            c.fin(False)
        else:
            c.send(False, ws_response(SAMPLE_KEY))
        cap.wait(0.01)


def test_same_key_on_unrelated_clients_never_merges_and_the_403_is_found(tmp_path):
    cap = Capture()
    direct_clients_sharing_key(cap, 40, reject=17)
    # a real proxied chain in the same capture, with the same (sample) key: still linked by key
    proxied_chain(cap, 0, key=SAMPLE_KEY)
    path = cap.write(tmp_path / "c.pcap")
    doc = wscap.analyze_paths([path])
    by_id = {h["id"]: h for h in doc["handshakes"]}
    chains = doc["chains"]
    assert len(chains) == 41                       # 40 direct, one proxied
    multi = [c for c in chains if len(c["hops"]) > 1]
    assert len(multi) == 1
    assert [by_id[i]["server"] for i in multi[0]["hops"]] == ["172.18.0.2:5173", "172.18.0.3:5000"]
    assert multi[0]["links"][0]["by"] == "key"
    broken = [c for c in chains if c["verdict"]["cause"] != "ok"]
    assert len(broken) == 1
    hop = by_id[broken[0]["hops"][0]]
    assert hop["client"] == "10.1.0.18:40017" and hop["response"]["status"] == 403
    assert doc["summary"]["broken"] == 1
    r = cli("analyze", path, "--format", "json")
    assert r.returncode == 1, r.stderr


def test_key_linking_follows_the_topology_in_time_order(tmp_path):
    """A later leg from the proxy is linked, an earlier one (before the request arrived) is not."""
    cap = Capture()
    up_early = cap.conn(("172.18.0.2", 39999), ("172.18.0.3", 5000)).open()
    up_early.send(True, ws_request("/ws", host="b:5000", key=SAMPLE_KEY, lower=True))
    up_early.send(False, ws_response(SAMPLE_KEY))
    cap.wait(1)
    proxied_chain(cap, 0, key=SAMPLE_KEY)
    doc = wscap.analyze_paths([cap.write(tmp_path / "c.pcap")])
    by_id = {h["id"]: h for h in doc["handshakes"]}
    multi = [c for c in doc["chains"] if len(c["hops"]) > 1]
    assert len(multi) == 1
    assert [by_id[i]["client"] for i in multi[0]["hops"]] == ["172.18.0.1:50000", "172.18.0.2:40000"]


# -- flows that never speak HTTP count under --max-flows ------------------------------------------

def non_http_flows(path: str, n: int, handshake_at: int) -> None:
    """n one-packet mid-stream flows of non-HTTP bytes, each its own 4-tuple; one real upgrade
    after `handshake_at` of them."""
    from test_bounds import WS_REQ, WS_RESP, Flow, PcapWriter, ip4, packet, PSH, ACK
    w = PcapWriter(path)
    server = ip4(0x0A000002)
    for i in range(n):
        if i == handshake_at:
            f = Flow(w, ip4(0x0C000001), 45000, server, 80).handshake()
            f.client(WS_REQ)
            f.server(WS_RESP)
        w.add(packet(ip4(0x0B000000 + (i >> 14)), 1024 + (i & 0x3FFF), server, 9000, i * 7919, 1, PSH | ACK,
                     b"\x00\x01binary"))
    w.close()


def test_ignored_flows_count_under_max_flows(tmp_path):
    from test_bounds import analyse_in_child
    path = str(tmp_path / "f.pcap")
    n = 5000
    non_http_flows(path, n, handshake_at=2500)
    doc, rss, secs = analyse_in_child(path, "--max-flows", "100")
    assert len(doc["handshakes"]) == 1 and doc["handshakes"][0]["outcome"] == "upgraded"
    assert doc["stats"]["limits_hit"]["max_flows"] >= n - 100


def test_pipeline_holds_at_most_max_flows_of_any_kind(tmp_path):
    """Fed record by record (fast path included), the flow table and its eviction order never
    grow past the bound, ignored flows included."""
    from wscap.capture.files import ReadResult, read_frames
    from wscap.model.limits import Limits
    from wscap.engine.core import Options, Pipeline
    path = str(tmp_path / "f.pcap")
    non_http_flows(path, 20000, handshake_at=10)
    p = Pipeline(Options(limits=Limits(max_flows=50), stream=False))
    peak_conns = peak_order = 0
    for frame in read_frames(path, ReadResult(path=path), source=0,
                             record_filter=lambda lt: p.record_filter(lt, 0)):
        p.feed(frame)
        peak_conns = max(peak_conns, len(p.conns))
        peak_order = max(peak_order, len(p.flows.order))
    p.finish()
    doc = p.document()
    assert peak_conns <= 50
    assert peak_order <= 2 * 50 + 4096 + 1
    assert [h["outcome"] for h in doc["handshakes"]] == ["upgraded"]
    assert doc["stats"]["limits_hit"]["max_flows"] >= 20000 - 50


def test_live_has_the_same_bounds_as_analyze():
    """`live --max-*` options exist with analyze's names and reach the pipeline's Limits."""
    from click.testing import CliRunner
    from wscap.cli.main import analyze
    from wscap.cli.live import _make_pipeline, live_command
    names = lambda cmd: {o for p in cmd.params for o in p.opts if o.startswith("--max-")}  # noqa: E731
    # a live capture has no gzip input: the reader's work bound is for files only
    assert names(analyze) - {"--max-gzip-records-per-kib"} <= names(live_command)
    p = _make_pipeline(3.0, {}, {"max_flows": 7, "max_head_bytes": 999, "max_dns": 5})
    assert (p.limits.max_flows, p.limits.head_bytes, p.limits.max_dns) == (7, 999, 5)
    r = CliRunner().invoke(live_command, ["--max-flows", "0"])
    assert r.exit_code == 2 and "--max-flows" in r.output


# -- HTTP/2: the HPACK table and decoded header bytes are bounded ----------------------------------

def _h2():
    from test_http2_ws import PREFACE, H2Pair, connect_headers, h2frame, settings
    return PREFACE, H2Pair, connect_headers, h2frame, settings


def h2_amplification(cap: Capture, streams: int, pad: int) -> list:
    """One connection: stream 1 puts a `pad`-byte header in the client's HPACK table, every later
    extended CONNECT references it by index (1-2 bytes on the wire each). -> the request lists."""
    PREFACE, H2Pair, connect_headers, h2frame, settings = _h2()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1, header_table_size=65536) + h2frame(4, 1, 0))
    pair.c.header_table_size = 65536            # room for the pad entry (within the default cap)
    lists, reqs, resps = [], b"", b""
    for i in range(streams):
        hs = connect_headers(path=f"/ws/{i}", extra=[("x-pad", "p" * pad)])
        lists.append(hs)
        # :path never indexed, so the pad entry is never evicted: every stream references it
        reqs += pair.req(2 * i + 1, [(n, v, True) if n == ":path" else (n, v) for n, v in hs])
        resps += pair.resp(2 * i + 1, 200)
    c.send(True, h2frame(4, 1, 0) + reqs, split=1400)
    c.send(False, resps, split=1400)
    return lists


def test_hpack_amplification_is_cut_per_connection_and_every_stream_still_found(tmp_path):
    cap = Capture()
    budget = 1 << 20
    lists = h2_amplification(cap, 400, 60_000)
    path = cap.write(tmp_path / "amp.pcap")
    wire = os.path.getsize(path)
    r = cli("analyze", path, "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    hs = doc["handshakes"]
    # every stream is a WebSocket handshake, in order, with its own :path
    assert [h["request"]["target"] for h in hs] == [f"/ws/{i}" for i in range(400)]
    assert all(h["websocket"] and h["status"] == 200 for h in hs)
    # the truth: which streams fit in the connection's budget in full
    sizes = [sum(len(n) + len(v) for n, v in l) for l in lists]
    full, left = 0, budget
    for s in sizes:
        if s > left:
            break
        left -= s
        full += 1
    assert full == 17
    pads = [dict(map(tuple, h["request"]["headers"])).get("x-pad", "") for h in hs]
    assert all(len(p) == 60_000 for p in pads[:full])
    assert all(p == "p" * 128 + "..." for p in pads[full:])
    assert doc["stats"]["limits_hit"]["h2_header_bytes"] == 400 - full
    assert "h2-headers-cut" in {a["code"] for a in hs[-1]["anomalies"]}
    # the document is no longer amplified: ~2 x budget (headers + raw) plus a few KB per stream
    assert len(r.stdout) < 2 * budget + 400 * 6_000 + 100 * wire
    # and every other format redacts and renders the 60 KB values in linear time (a backtracking
    # URL pattern once took minutes here; the subprocess timeout is generous, not a timing goal)
    r = cli("analyze", path, "--format", "markdown")
    assert r.returncode in (0, 1) and "/ws/399" in r.stdout


def test_hpack_table_cannot_grow_past_the_cap_whatever_the_peer_allows(tmp_path):
    PREFACE, H2Pair, connect_headers, h2frame, settings = _h2()
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    # the server allows the client's encoder a 4 GiB table
    c.send(False, settings(enable_connect_protocol=1, header_table_size=0xFFFFFFFF) + h2frame(4, 1, 0))
    c.send(True, h2frame(4, 1, 0) + pair.req(1, connect_headers(path="/ok")))
    c.send(False, pair.resp(1, 200))
    pair.c.header_table_size = 8 << 20          # the client's encoder takes 8 MiB and fills it
    c.send(True, pair.req(3, connect_headers(path="/big", extra=[("x-a", "a" * 50_000)])), split=1400)
    c.send(True, pair.req(5, connect_headers(path="/after")))
    doc = wscap.analyze_paths([cap.write(tmp_path / "t.pcap")])
    hs = doc["handshakes"]
    assert [h["request"]["target"] for h in hs] == ["/ok"]          # nothing decoded past the cap
    codes = {a["code"] for a in hs[0]["anomalies"]}
    assert {"h2-hpack-table-capped", "h2-hpack-error"} <= codes
    assert doc["stats"]["limits_hit"]["hpack_table"] == 1


def test_hpack_table_within_the_cap_decodes_normally(tmp_path):
    PREFACE, H2Pair, connect_headers, h2frame, settings = _h2()
    cap = Capture()
    pair = H2Pair()
    c = cap.conn(("10.0.0.1", 40000), ("10.0.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1, header_table_size=0xFFFFFFFF) + h2frame(4, 1, 0))
    pair.c.header_table_size = 60_000
    for i, s in enumerate((1, 3)):
        c.send(True, (h2frame(4, 1, 0) if i == 0 else b"") +
               pair.req(s, connect_headers(path=f"/p{i}", extra=[("x-a", "a" * 20_000)])), split=1400)
        c.send(False, pair.resp(s, 200))
    doc = wscap.analyze_paths([cap.write(tmp_path / "t.pcap")])
    hs = doc["handshakes"]
    assert [h["request"]["target"] for h in hs] == ["/p0", "/p1"]
    assert all(["x-a", "a" * 20_000] in h["request"]["headers"] for h in hs)


# -- redaction: one pass over every string that leaves the document ------------------------------

ECHO_TOKEN = "tKn4e9f2b7c1d8a3e6f0b5c2d9a4e7f1b8c3d6aZ"            # 40 chars, not a JWT
ACCESS = "AT" + "x7Qm2" * 13 + "pq"                                # 69 chars
BEARER = "opaqueBearer0123456789abcdefXYZ"
API = {"X-Goog-Api-Key": "AIzaGoog12", "Private-Token": "glpat-AbCd", "Api-Key": "kQ_zz",
       "X-Api-Key": "xak-77QQ", "X-Custom-Thing": "custV4lue!"}
USERPW = "s3cr3tPw_Z"
H2PWD = "pw_Zq"                                                    # 5 chars: shorter than the substring pass


def secret_capture(tmp_path) -> str:
    from builders import ws_frame
    PREFACE, H2Pair, connect_headers, h2frame, settings = _h2()
    cap = Capture()
    # 1. a ?token= echoed in the first message, the 64-byte preview cuts it
    c = cap.conn(("10.2.0.1", 40001), ("10.2.0.9", 8080)).open()
    key = new_key(1)
    c.send(True, ws_request(f"/ws?token={ECHO_TOKEN}&room=blue", host="srv:8080", key=key,
                            extra=[(n, v) for n, v in API.items()]))
    c.send(False, ws_response(key))
    c.send(False, ws_frame(("welcome! your session token is " + ECHO_TOKEN + " keep it safe").encode()))
    # 2. a malformed request line quoting a long access_token (the anomaly cuts it at 80 chars)
    c = cap.conn(("10.2.0.2", 40002), ("10.2.0.9", 8080)).open()
    c.send(True, b"GET /ws?access_token=" + ACCESS.encode() + b" HTTP/1.1 extra\r\nHost: srv\r\n"
           b"Authorization Bearer " + BEARER.encode() + b"\r\nUpgrade: websocket\r\n\r\n")
    c.fin(True)
    # 3. userinfo in an absolute-form target
    c = cap.conn(("10.2.0.3", 40003), ("10.2.0.9", 8080)).open()
    key = new_key(3)
    c.send(True, ws_request(f"ws://alice:{USERPW}@srv:8080/ws", host="srv:8080", key=key))
    c.send(False, ws_response(key, status=403, reason="Forbidden"))
    # 4. a short secret in an HTTP/2 :path
    pair = H2Pair()
    c = cap.conn(("10.2.0.4", 40004), ("10.2.0.9", 8443)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1) + h2frame(4, 1, 0))
    c.send(True, h2frame(4, 1, 0) + pair.req(1, connect_headers(path=f"/h2?pwd={H2PWD}&x=1")))
    c.send(False, pair.resp(1, 200))
    return cap.write(tmp_path / "secrets.pcap")


def leaks(text: str) -> list[str]:
    """Any 8-character piece of a long secret, or a short secret whole, that is still in `text`."""
    out = []
    for sec in (ECHO_TOKEN, ACCESS, BEARER, USERPW):
        out += [sec[i:i + 8] for i in range(len(sec) - 7) if sec[i:i + 8] in text]
    out += [v for v in list(API.values()) + [H2PWD] if v in text]
    return out


def test_redaction_covers_every_string_in_every_default_redacted_format(tmp_path):
    path = secret_capture(tmp_path)
    raw = cli("analyze", path, "--format", "json")
    doc = json.loads(raw.stdout)
    # the capture really carries them (JSON is not redacted by default), where the builder put them
    assert set(leaks(raw.stdout)) >= {ECHO_TOKEN[:8], ACCESS[:8], BEARER[:8], USERPW[:8], H2PWD, *API.values()}
    previews = [f["preview"] for h in doc["handshakes"] for f in h["frames"] if f.get("preview")]
    assert any(p.endswith(ECHO_TOKEN[:64 - 31]) for p in previews)       # the cut lands inside the token
    for fmt in ("markdown", "html", "csv"):
        r = cli("analyze", path, "--format", fmt, "--redact-header", "X-Custom-Thing")
        assert r.returncode in (0, 1), r.stderr
        assert leaks(r.stdout) == [], (fmt, leaks(r.stdout))
    r = cli("analyze", path, "--format", "json", "--redact", "--redact-header", "x-custom-thing")
    assert r.returncode in (0, 1), r.stderr
    assert leaks(r.stdout) == []
    red = json.loads(r.stdout)
    # names and structure kept: the token's marker is the hash of the whole token, also in the preview
    assert marker_of(ECHO_TOKEN) in red["handshakes"][0]["request"]["target"]
    assert any(marker_of(ECHO_TOKEN) in (f.get("preview") or "") for f in red["handshakes"][0]["frames"])
    assert "room=blue" in red["handshakes"][0]["request"]["target"]
    out = tmp_path / "r.md"
    r = cli("report", path, "-o", str(out), "--redact-header", "X-Custom-Thing")
    assert r.returncode in (0, 1), r.stderr
    assert leaks(out.read_text()) == []


def marker_of(v: str) -> str:
    from wscap.render.redact import marker
    return marker(v)


def test_redact_query_adds_keys():
    from wscap.render import redact
    try:
        redact.configure(query_keys=["room"])
        assert redact.redact_target("/ws?room=blue&x=1") == f"/ws?room={marker_of('blue')}&x=1"
    finally:
        redact.EXTRA_QUERY_KEYS.clear()
    assert redact.redact_target("/ws?room=blue") == "/ws?room=blue"


# -- TSO/GSO-sized packets captured on the sending host -----------------------------------------

def tso_capture(tmp_path, ip_len: int) -> str:
    """A handshake whose request and 101 travel in packets whose IPv4 total length is `ip_len`
    (0: left by the stack for the NIC to fill; larger than the frame: a GSO super-packet)."""
    from scapy.all import IP, TCP, Raw  # type: ignore[attr-defined]
    cap = Capture()
    c = cap.conn(("10.3.0.1", 40000), ("10.3.0.2", 8080)).open()
    key = new_key(7)
    req, resp = ws_request("/tso", host="srv", key=key), ws_response(key)
    for from_client, data in ((True, req), (False, resp)):
        src, dst = (c.client, c.server) if from_client else (c.server, c.client)
        seq, ack = (c.cseq, c.sseq) if from_client else (c.sseq, c.cseq)
        cap.add(IP(src=src[0], dst=dst[0], len=ip_len) /
                TCP(sport=src[1], dport=dst[1], flags="PA", seq=seq, ack=ack) / Raw(data))
        if from_client:
            c.cseq += len(data)
        else:
            c.sseq += len(data)
    return cap.write(tmp_path / f"tso{ip_len}.pcap")


def test_tso_packets_keep_their_payload(tmp_path):
    for ip_len in (0, 60000):
        path = tso_capture(tmp_path, ip_len)
        doc = wscap.analyze_paths([path])
        hs = doc["handshakes"]
        assert [(h["request"]["target"], h["status"], h["outcome"]) for h in hs] == [("/tso", 101, "upgraded")], ip_len
        assert not {a["code"] for a in hs[0]["anomalies"]} & {"tcp-gap", "truncated-packet"}
        r = cli("analyze", path, "--format", "json", "--engine", "tshark")
        if r.returncode == 2 and "tshark" in r.stderr:
            continue                       # tshark not installed: the wscap engine was checked
        t = json.loads(r.stdout)["handshakes"]
        assert [(h["request"]["target"], h["status"]) for h in t] == [("/tso", 101)], ip_len


# -- permessage-deflate with context takeover ---------------------------------------------------

def deflate_messages(msgs: list[bytes]) -> list[bytes]:
    """RFC 7692 with context takeover: one compressor for all messages, each sync-flushed and
    stripped of its 00 00 ff ff tail."""
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = []
    for m in msgs:
        b = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert b.endswith(b"\x00\x00\xff\xff")
        out.append(b[:-4])
    return out


def deflate_capture(tmp_path, msgs: list[bytes], split_frames: bool = False) -> str:
    from builders import ws_frame
    cap = Capture()
    c = cap.conn(("10.4.0.1", 40000), ("10.4.0.2", 8080)).open()
    key = new_key(11)
    ext = [("Sec-WebSocket-Extensions", "permessage-deflate")]
    c.send(True, ws_request("/ws", host="srv", key=key, extra=ext))
    c.send(False, ws_response(key, extra=ext))
    for i, body in enumerate(deflate_messages(msgs)):
        if split_frames and len(body) > 10:
            # client, masked, fragmented in two frames, the bytes cut at odd offsets across segments
            a, b = body[:len(body) // 2 + 1], body[len(body) // 2 + 1:]
            data = ws_frame(a, opcode=1, fin=False, mask=True, rsv1=True) + ws_frame(b, opcode=0, mask=True)
            c.send(True, data, split=[3, 7, len(data) // 2 + 1])
        else:
            c.send(False, ws_frame(body, rsv1=True), split=1400)
    return cap.write(tmp_path / "deflate.pcap")


def _msgs() -> list[bytes]:
    base = b'{"type":"update","items":[' + b",".join(b'{"id":%d,"name":"item-%d"}' % (i, i) for i in range(400)) + b"]}"
    # each later message repeats most of the first: its back-references point into earlier messages
    return [base, b'{"type":"again"}' + base[20:], base[::-1][:3000] + base[:9000], b'{"type":"last","n":1}']


def test_context_takeover_inflates_every_message_right(tmp_path):
    msgs = _msgs()
    assert len(msgs[0]) > 8000                         # more than the old 4 KiB output cap
    for split in (False, True):
        doc = wscap.analyze_paths([deflate_capture(tmp_path, msgs, split_frames=split)])
        [h] = doc["handshakes"]
        got = [f["preview"] for f in h["frames"] if f["fin"]]
        assert got == [m[:64].decode() for m in msgs], split
        assert "inflate-failed" not in {a["code"] for a in h["anomalies"]}


def test_inflate_bomb_is_bounded_and_later_previews_are_none_not_garbage(tmp_path):
    bomb = b"A" * (50 << 20)                            # 50 MiB inflating from ~50 KB
    msgs = [b"hello first", bomb, b"after the bomb"]
    path = deflate_capture(tmp_path, msgs)
    assert os.path.getsize(path) < 200_000
    r = cli("analyze", path, "--format", "json", "--max-inflate-bytes", str(1 << 20))
    doc = json.loads(r.stdout)
    [h] = doc["handshakes"]
    got = [f["preview"] for f in h["frames"]]
    assert got == ["hello first", "A" * 64, None]      # the bomb's first bytes are right; then no guess
    assert doc["stats"]["limits_hit"]["inflate_bytes"] == 1
    assert "inflate-failed" in {a["code"] for a in h["anomalies"]}


# -- many handshakes: linear renderers, and running out of memory is exit 2 ----------------------

def many_handshakes(path: str, n: int) -> None:
    from test_bounds import WS_REQ, WS_RESP, Flow, PcapWriter, ip4
    w = PcapWriter(path)
    for i in range(n):
        f = Flow(w, ip4(0x0A000100 + i), 40000 + (i % 20000), ip4(0x0B000000 + (i % 50)), 80).handshake()
        f.client(WS_REQ.replace(b"/ws", b"/ws/%d" % i))
        f.server(WS_RESP)
    w.close()


def test_markdown_endpoint_lookups_are_indexed():
    """Per-row lookups use one index per list (the old scan per row made markdown quadratic)."""
    from wscap.render import mermaid
    eps = [{"ip": f"10.0.{i // 250}.{i % 250}", "name": f"n{i}", "role": "client"} for i in range(3000)]
    doc = {"endpoints": eps, "handshakes": [{"id": i} for i in range(3000)]}
    assert mermaid.endpoint_label(doc, "10.0.11.249:80") == ("n2999", "client")
    assert mermaid.endpoint_label(doc, "10.9.9.9:1") == (None, "unknown")
    eps.append({"ip": "10.9.9.9", "name": "late", "role": "proxy"})     # an append is seen
    assert mermaid.endpoint_label(doc, "10.9.9.9:1") == ("late", "proxy")
    assert mermaid.handshake_index(doc)[2999] == {"id": 2999}
    # the index is built once, not per lookup
    assert mermaid._INDEXES["endpoints"][0] is eps


def test_out_of_memory_is_one_line_and_exit_2(tmp_path):
    import resource
    path = str(tmp_path / "many.pcap")
    many_handshakes(path, 20000)
    limit = 400 << 20

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    env = dict(os.environ, PYTHONPATH=REPO)
    # HTML used to build the whole document and ran out of memory here; it renders from the
    # spool now, under the same cap as the streamed JSON.
    for fmt in ("html", "json"):
        r = subprocess.run([sys.executable, "-m", "wscap", "analyze", path, "--format", fmt], capture_output=True,
                           text=True, env=env, timeout=600, preexec_fn=cap_memory)
        assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout and json.loads(r.stdout)["summary"]["handshakes"] == 20000
    # A cap the analysis itself cannot live within: still one line and exit 2.
    limit = 120 << 20
    r = subprocess.run([sys.executable, "-m", "wscap", "analyze", path, "--format", "html"], capture_output=True,
                       text=True, env=env, timeout=600, preexec_fn=cap_memory)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "wscap: out of memory" in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
        ln for ln in r.stderr.splitlines() if ln.startswith("wscap: out of memory")]


# -- output files and Markdown links -------------------------------------------------------------

def test_output_refuses_symlinks_and_inputs(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0)
    path = cap.write(tmp_path / "c.pcap")
    before = open(path, "rb").read()
    r = cli("report", path, "-o", path)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert open(path, "rb").read() == before
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "r.md"
    link.symlink_to(victim)
    r = cli("report", path, "-o", str(link))
    assert r.returncode == 2 and "symbolic link" in r.stderr
    assert victim.read_text() == "keep me"
    r = cli("slice", path, "--chain", "1", "-o", str(link))
    assert r.returncode == 2 and victim.read_text() == "keep me"
    r = cli("slice", path, "--chain", "1", "-o", path)
    assert r.returncode == 2 and open(path, "rb").read() == before
    r = cli("report", path, "-o", str(tmp_path / "ok.md"))
    assert r.returncode == 0 and (tmp_path / "ok.md").read_text().startswith("#")


def test_markdown_header_values_never_become_links_on_github(tmp_path):
    import pytest
    cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (GitHub's cmark-gfm) not installed")
    from cmarkgfm.cmark import Options
    cap = Capture()
    key = new_key(21)
    c = cap.conn(("10.5.0.1", 40000), ("10.5.0.2", 8080)).open()
    c.send(True, ws_request("/ws", host="www.evil-host.example", key=key, origin="http://www.evil.example",
                            extra=[("From", "admin@evil.example"), ("X-Note", "mail ops@corp.example or www.x.example"),
                                   ("X-Bidi", "a\u061cb")]))
    c.send(False, ws_response(key, status=403, reason="Forbidden"))
    key = new_key(22)
    c = cap.conn(("10.5.0.3", 40000), ("10.5.0.2", 8080)).open()
    c.send(True, ws_request("/ws", host="admin@evil.example", key=key, origin="www.evil.example"))
    c.send(False, ws_response(key, status=403, reason="Forbidden"))
    path = cap.write(tmp_path / "l.pcap")
    for args in (["analyze", path, "--format", "markdown"], ["report", path, "-o", str(tmp_path / "r.md")]):
        r = cli(*args)
        assert r.returncode == 1, r.stderr
        md = r.stdout if args[0] == "analyze" else (tmp_path / "r.md").read_text()
        html = cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)
        outward = re.findall(r'<a href="(?!#)[^"]*"', html)          # the report's own TOC anchors are fine
        assert outward == [], outward
        assert "admin@evil.example" in html and "\u061c" not in md       # shown as text, bidi mark visible


# -- slice streams ---------------------------------------------------------------------------------

_SLICE_CHILD = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                os.write(2, ("\\nWSCAP_VMHWM_KB %s\\n" % line.split()[1]).encode())
atexit.register(_hwm)
sys.argv = ["wscap", "slice"] + sys.argv[1:]
from wscap.cli.main import main
main()
"""


def test_slice_of_a_big_chain_holds_no_packets(tmp_path):
    """60,000 packets of 1,400 bytes on one upgraded leg (84 MB): the slice copies them all and
    the process stays far below their size (they were once all kept in a list)."""
    import re as _re
    from test_bounds import WS_REQ, WS_RESP, Flow, PcapWriter, ip4
    path = str(tmp_path / "big.pcap")
    w = PcapWriter(path)
    f = Flow(w, ip4(0x0A000001), 40000, ip4(0x0A000002), 80).handshake()
    f.client(WS_REQ)
    f.server(WS_RESP)
    chunk = b"\x82\x7e\x05\x74" + bytes(1396)          # 1,400 bytes: one binary frame of 1,396
    for _ in range(60_000):
        f.server(chunk)
    w.close()
    n_packets = 3 + 2 + 60_000
    out = str(tmp_path / "slice.pcap")
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", _SLICE_CHILD, path, "--chain", "1", "-o", out],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rss_mb = int(_re.search(r"WSCAP_VMHWM_KB (\d+)", r.stderr).group(1)) / 1024
    assert os.path.getsize(out) == os.path.getsize(path)            # every packet, same record sizes
    assert open(out, "rb").read()[24:] == open(path, "rb").read()[24:]
    assert rss_mb < 84 * 0.6, rss_mb
    assert n_packets == 60_005


def h2_one_byte_data(cap: Capture, payload: bytes, seg: int = 60_000) -> None:
    """A WebSocket over HTTP/2 whose client message arrives as 1-byte DATA frames, many per segment."""
    from builders import ws_frame
    PREFACE, H2Pair, connect_headers, h2frame, settings = _h2()
    pair = H2Pair()
    c = cap.conn(("10.6.0.1", 40000), ("10.6.0.2", 8080)).open()
    c.send(True, PREFACE + settings())
    c.send(False, settings(enable_connect_protocol=1) + h2frame(4, 1, 0))
    c.send(True, h2frame(4, 1, 0) + pair.req(1, connect_headers(path="/bytes")))
    c.send(False, pair.resp(1, 200))
    wire = ws_frame(payload, opcode=2, mask=True)
    c.send(True, b"".join(h2frame(0, 0, 1, wire[i:i + 1]) for i in range(len(wire))), split=seg)


def test_one_byte_http2_data_frames_reassemble_the_message(tmp_path):
    payload = bytes(range(256)) * 80                       # 20 KB binary message
    cap = Capture()
    h2_one_byte_data(cap, payload)
    doc = wscap.analyze_paths([cap.write(tmp_path / "d.pcap")])
    [h] = doc["handshakes"]
    [f] = [f for f in h["frames"] if f["dir"] == "client"]
    assert (f["opcode_name"], f["length"], f["masked"]) == ("binary", len(payload), True)
    assert f["preview"] == "0x" + payload[:64].hex()


def test_thousands_of_pipelined_plain_heads_then_the_upgrade(tmp_path):
    """Segments packed with tiny pipelined requests (some with a body), then the upgrade: every
    plain request counted, the upgrade found (the heads are skipped by offset, not by copying the
    rest of the segment per head)."""
    cap = Capture()
    c = cap.conn(("10.7.0.1", 40000), ("10.7.0.2", 8080)).open()
    c.send(True, b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
    plain = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    posted = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    n = 6000
    key = new_key(31)
    stream = b"".join(posted if i % 100 == 7 else plain for i in range(n)) + ws_request("/ws", host="a", key=key)
    c.send(True, stream, split=60_000)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    c.send(False, ok * (n + 1) + ws_response(key), split=60_000)
    doc = wscap.analyze_paths([cap.write(tmp_path / "p.pcap")])
    [h] = doc["handshakes"]
    assert h["request"]["target"] == "/ws" and h["outcome"] == "upgraded"
    [a] = [a for a in h["anomalies"] if a["code"] == "keep-alive-before-upgrade"]
    assert a["message"].startswith(f"{n + 1} plain request(s)")


def test_max_handshakes_bounds_the_document_and_says_so(tmp_path):
    path = str(tmp_path / "many.pcap")
    many_handshakes(path, 300)
    for fmt in ("json", "markdown"):
        r = cli("analyze", path, "--format", fmt, "--max-handshakes", "100")
        assert r.returncode == 2, r.stderr
        assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
            "wscap: 200 upgrade request(s) past --max-handshakes were counted, not kept: the document is partial"]
        if fmt == "json":
            doc = json.loads(r.stdout)
            assert [h["request"]["target"] for h in doc["handshakes"]] == [f"/ws/{i}" for i in range(100)]
            assert doc["stats"]["limits_hit"]["max_handshakes"] == 200
        else:
            assert "/ws/99" in r.stdout and "/ws/100 " not in r.stdout


def test_a_secret_split_across_fragments_is_redacted_in_both_previews(tmp_path):
    from builders import ws_frame
    cap = Capture()
    c = cap.conn(("10.8.0.1", 40001), ("10.8.0.9", 8080)).open()
    key = new_key(41)
    c.send(True, ws_request(f"/ws?token={ECHO_TOKEN}", host="srv:8080", key=key))
    c.send(False, ws_response(key))
    cut = 17
    c.send(False, ws_frame(b"token is " + ECHO_TOKEN[:cut].encode(), fin=False)
           + ws_frame(ECHO_TOKEN[cut:].encode() + b" bye", opcode=0))
    path = cap.write(tmp_path / "frag.pcap")
    raw = json.loads(cli("analyze", path, "--format", "json").stdout)
    assert [f["preview"] for f in raw["handshakes"][0]["frames"]] == [
        "token is " + ECHO_TOKEN[:cut], ECHO_TOKEN[cut:] + " bye"]              # as built
    red = json.loads(cli("analyze", path, "--format", "json", "--redact").stdout)
    assert [f["preview"] for f in red["handshakes"][0]["frames"]] == [
        "token is " + marker_of(ECHO_TOKEN), marker_of(ECHO_TOKEN) + " bye"]


# -- work per gzip input ---------------------------------------------------------------------------

def gz_capture(path, records: list[bytes], repeat: int = 1) -> int:
    """A gzip'd classic pcap (Ethernet) of `records` (each a full record: header + data), the list
    written `repeat` times; -> the number of records."""
    import struct
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(c.compress(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)))
        block = b"".join(records)
        for _ in range(repeat):
            f.write(c.compress(block))
        f.write(c.flush())
    return len(records) * repeat


def _record(ts_us: int, data: bytes) -> bytes:
    import struct
    return struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(data), len(data)) + data


def test_gzip_of_empty_records_is_bounded_counted_and_cheap(tmp_path):
    """A small gzip that inflates to millions of empty records (the 1 MB -> 67M records attack,
    scaled): reading stops once the input gives more records per compressed KiB than the bound
    allows; the records read are counted as empty, never decoded; one line, exit 2."""
    from wscap.capture.files import GZIP_WORK_FLOOR
    from wscap.model.limits import Limits
    path = tmp_path / "empty.pcap.gz"
    n = gz_capture(path, [_record(0, b"")] * 65536, repeat=40)          # 2,621,440 empty records
    assert os.path.getsize(path) < 64 * 1024                              # ~40 KB of gzip
    r = cli("analyze", str(path), "--format", "json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    src = doc["source"][0]
    assert GZIP_WORK_FLOOR <= src["packets"] < n                          # stopped past the floor...
    assert src["packets"] <= GZIP_WORK_FLOOR + 65536                      # ... within one read chunk
    assert src["empty_records"] == src["packets"]
    assert doc["stats"]["packets"] == 0                                   # none reached the decoder
    assert doc["stats"]["limits_hit"] == {"gzip_records": 1}
    assert src["complete"] is False and "--max-gzip-records-per-kib" in src["errors"][0]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--max-gzip-records-per-kib" in lines[0], r.stderr
    # raised far enough, the whole input is read (and the empty records stay cheap: not decoded)
    big = cli("analyze", str(path), "--format", "json", "--max-gzip-records-per-kib", str(10 ** 9))
    assert big.returncode == 0, big.stderr
    src = json.loads(big.stdout)["source"][0]
    assert src["packets"] == src["empty_records"] == n and src["complete"] is True
    assert Limits().gzip_records_per_kib == 1024


def test_gzip_work_bound_keeps_zero_filled_captures_and_refuses_repeated_records(tmp_path, monkeypatch):
    """Records per compressed byte, not a byte ratio: a capture whose payloads are all zeros
    inflates > 50x and is read whole; as many byte-identical small records are refused.
    (The floor is lowered in-process so the test stays small; the CLI test above uses the real one.)"""
    import wscap.capture.files as files
    from test_bounds import ACK, PSH, ip4, packet
    monkeypatch.setattr(files, "GZIP_WORK_FLOOR", 2000)
    n = 20_000
    zero = [_record(1_700_000_000_000_000 + i * 37, packet(ip4(0x0A000001), 40000, ip4(0x0A000002), 80,
                                                           1 + i * 1400, 1, PSH | ACK, bytes(1400)))
            for i in range(n)]
    path = tmp_path / "zeros.pcap.gz"
    gz_capture(path, zero)
    res = files.ReadResult(path=str(path))
    got = sum(1 for _ in files.read_frames(str(path), res))
    assert got == n and res.complete and res.limits_hit == {}
    assert os.path.getsize(path) * 50 < n * 1400                          # it did inflate > 50x
    same = tmp_path / "same.pcap.gz"
    ack = _record(1_700_000_000_000_000, packet(ip4(0x0A000001), 40000, ip4(0x0A000002), 80, 1, 1, ACK, b""))
    gz_capture(same, [ack] * n)                                            # one pure ACK, n times
    res = files.ReadResult(path=str(same))
    got = sum(1 for _ in files.read_frames(str(same), res))
    assert 2000 <= got < n and res.limits_hit == {"gzip_records": 1} and not res.complete


def test_gzip_that_inflates_hugely_gets_one_notice_line(tmp_path, monkeypatch):
    """Past GZIP_NOTICE_BYTES at a high ratio, the reader says so once while still reading
    (lowered in-process); the capture is still read whole and it is not an error."""
    import wscap.capture.files as files
    from test_bounds import ACK, PSH, ip4, packet
    monkeypatch.setattr(files, "GZIP_NOTICE_BYTES", 4 << 20)
    recs = [_record(i * 1000, packet(ip4(0x0A000001), 40000, ip4(0x0A000002), 80, 1 + i * 1400, 1,
                                     PSH | ACK, bytes(1400))) for i in range(6000)]
    path = tmp_path / "z.pcap.gz"
    gz_capture(path, recs)
    heard: list[str] = []
    res = files.ReadResult(path=str(path), notify=heard.append)
    assert sum(1 for _ in files.read_frames(str(path), res)) == 6000
    assert len(heard) == 1 and heard == res.notices and "decompressed from" in heard[0]
    assert res.complete


def test_live_bounds_one_packet_flows_on_loopback(tmp_path):
    """`wscap live --max-flows 100` on loopback while 20,000 one-packet non-HTTP flows arrive
    (sent as raw frames: distinct spoofed sources), then one real upgrade: the flows are evicted
    and counted, the upgrade is found. Needs root (AF_PACKET).

    Robust on a loaded machine: the traffic starts only once wscap says it is capturing (not
    after a fixed sleep), the capture ends by SIGINT once the traffic is done (not by a
    --duration the traffic might outlast), and the port is a free one. (It was opt-in after
    losing its summary line: `-p PORT` had become tcpdump's -p, --no-promisc, so wscap exited
    with a usage error before capturing.)"""
    import pytest
    import select
    import signal
    import socket
    import threading
    import time as _time
    if os.geteuid() != 0:
        pytest.skip("sending raw frames on lo needs root")
    from test_bounds import PSH, ACK, ip4, packet
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    out = tmp_path / "live.json"
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.Popen([sys.executable, "-m", "wscap", "live", "-i", "lo", "--port", str(port), "--duration", "600",
                          "--format", "json", "--max-flows", "100", "--no-docker", "--drain-timeout", "240"],
                         stdout=open(out, "w"), stderr=subprocess.PIPE, env=env)
    err = b""
    ws_error: list[BaseException] = []
    try:
        deadline = _time.monotonic() + 180            # startup may compile wscap-capture, under load
        while b"capturing on" not in err:
            assert p.poll() is None, err.decode(errors="replace")
            assert _time.monotonic() < deadline, "wscap live did not start capturing: " + err.decode(errors="replace")
            if select.select([p.stderr], [], [], 0.5)[0]:
                err += os.read(p.stderr.fileno(), 65536)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("lo", 0))
        for i in range(20_000):
            s.send(packet(ip4(0x7F010000 + i), 1024 + i % 60000, ip4(0x7F000001), port, i * 7919, 1, PSH | ACK,
                          b"\x00\x01binary"))
        s.close()
        # one real WebSocket upgrade on the same port
        import asyncio
        import websockets

        async def serve():
            async def h(ws):
                await ws.send("hi")
            async with websockets.serve(h, "127.0.0.1", port):
                async with websockets.connect(f"ws://127.0.0.1:{port}/live", open_timeout=60) as c:
                    await c.recv()
                await asyncio.sleep(0.5)

        def run():
            try:
                asyncio.run(serve())
            except BaseException as e:  # noqa: BLE001 - reported below
                ws_error.append(e)
        t = threading.Thread(target=run)
        t.start()
        t.join(120)
        assert not t.is_alive() and not ws_error, ws_error
        _time.sleep(1.5)                              # the last packets reach the file (10 ms blocks)
        p.send_signal(signal.SIGINT)                  # ends like Ctrl-C: drain, then the summary
        _, more = p.communicate(timeout=300)
        err += more
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = err.decode(errors="replace")
    assert p.returncode == 0, text[-2000:]
    lines = [json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()]
    summary = [ln for ln in lines if ln.get("type") == "summary"]
    assert len(summary) == 1, text[-2000:]
    summary = summary[0]
    hs = [ln["handshake"] for ln in lines if ln.get("type") == "handshake"]
    assert [h["request"]["target"] for h in hs] == ["/live"], text[-2000:]
    loss = summary["live"]["loss"]                 # a loaded machine may drop or shed some: not flows
    lost = loss["kernel_dropped"] + loss["analysis_shed"] + loss["not_analysed"]
    assert summary["stats"]["limits_hit"]["max_flows"] >= 20_000 - 100 - lost
    assert summary["stats"]["flows_tracked"] <= 100

def test_live_write_refuses_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "cap.pcap"
    link.symlink_to(victim)
    r = cli("live", "-i", "lo", "--duration", "1", "--write", str(link), "--no-docker")
    assert r.returncode == 2 and "symbolic link" in r.stderr
    assert victim.read_text() == "keep me"


def test_tcpdump_spool_is_bounded_while_the_analysis_lags(tmp_path):
    """The tcpdump fallback's spool (no --write) keeps at most SPOOL_FILES files however far the
    follower lags: older files are deleted and the follower, finding them gone, counts them
    (live.loss.spool_overwritten_files). 1 MB files; ~16 MB of UDP on lo, read only afterwards."""
    import pytest
    import shutil
    import socket
    import time as _time
    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("capturing on lo with tcpdump needs root and tcpdump")
    from wscap.capture import evidence
    from wscap.capture.live import CaptureConfig
    port = 47311
    cfg = CaptureConfig(iface="lo", bpf=f"udp dst port {port}", snaplen=2048, buffer_mb=32)
    be = evidence.open_followed("tcpdump", cfg, write_path=None, spool_mb=8)   # 8 files of 1 MB
    tw = be.writer
    spool = be.spool_dir
    try:
        assert tw.keep_files == evidence.SPOOL_FILES == 8
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        most = 0
        for i in range(16_000):
            s.sendto(b"x" * 1000, ("127.0.0.1", port))
            if i % 200 == 199:
                _time.sleep(0.005)
                most = max(most, len(os.listdir(spool)))
        s.close()
        deadline = _time.monotonic() + 30
        while tw.trimmed_files == 0 and _time.monotonic() < deadline:
            _time.sleep(0.1)
            most = max(most, len(os.listdir(spool)))
        _time.sleep(2.5)                          # tcpdump's buffer timeout: the last blocks land
        most = max(most, len(os.listdir(spool)))
        assert tw.trimmed_files > 0
        assert most <= evidence.SPOOL_FILES + 2   # the kept ones, the one being written, one racing
        assert tw._created > evidence.SPOOL_FILES + 2
        be.stop()
        got = sum(1 for _ in be.drain(120))
        assert be.follower.at_end
        skipped = be.follower.skipped_files
        assert len(skipped) == tw.trimmed_files   # every deleted file is counted, once
        assert got > 0
    finally:
        be.close()
        shutil.rmtree(spool, ignore_errors=True)


def test_tcpdump_write_file_is_created_without_following_a_link(tmp_path):
    """tcpdump opens --write itself and follows links: wscap creates the file first with
    O_NOFOLLOW (a link planted after wscap's check is refused, its target untouched)."""
    import pytest
    from wscap.capture import evidence
    from wscap.capture.live import CaptureError
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "cap.pcap"
    link.symlink_to(victim)
    with pytest.raises(CaptureError, match="symbolic link"):
        evidence._create_nofollow(str(link), None)
    assert victim.read_text() == "keep me"
    plain = tmp_path / "new.pcap"
    plain.write_text("old")
    evidence._create_nofollow(str(plain), None)
    assert plain.read_bytes() == b""                  # a regular file: created/truncated as tcpdump would


# -- every format renders from the spool --------------------------------------------------------

def _both_docs(path: str):
    """The same capture as the Python API's document (lists) and as the CLI's (spooled)."""
    from wscap.engine.analyze import run_pipeline
    return run_pipeline([path]).document(), run_pipeline([path]).lazy_document()


def _renders(doc: dict) -> dict:
    import io
    from wscap.render.json import write_document
    from wscap.render.redact import redact_document
    from wscap.render.report import filter_document, report_html, report_markdown, write_format
    from wscap.render.table import render_table
    out = {}
    for fmt in ("markdown", "html", "csv", "har"):
        for red in (None, True, False):
            buf = io.StringIO()
            write_format(doc, fmt, buf, redact=red)
            out[fmt, red] = buf.getvalue()
    red = redact_document(doc)
    out["report-md"], out["report-html"] = report_markdown(red), report_html(red)
    out["table"], out["table-v"] = render_table(red), render_table(red, verbose=True)
    broken = filter_document(doc, only_broken=True)
    out["broken-md"] = report_markdown(redact_document(broken))
    buf = io.StringIO()
    write_document(redact_document(broken), buf)
    out["broken-json"] = buf.getvalue()
    one = filter_document(doc, chain=1, host="*")
    out["chain-1"] = render_table(one)
    return out


def test_spooled_documents_render_exactly_as_in_memory_ones():
    """`analyze`/`report` render from the spool (Pipeline.lazy_document: handshakes and chains
    read back as the renderer walks them); every format, redacted or not, filtered or not, is
    byte-identical to rendering the in-memory document of the Python API."""
    names = ["nginx-vite-backend", "upstream-401", "origin-rewrite", "h2-websocket", "tls-origin-rewrite",
             "healthy", "backend-down-refused", "hmr-beside-app", "deflate-mismatch", "proxy-bypass-404"]
    done = 0
    for name in names:
        path = os.path.join(REPO, "pcaps", name + ".pcap")
        mem, spooled = _both_docs(path)
        assert not isinstance(spooled["handshakes"], list)
        a, b = _renders(mem), _renders(spooled)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k], (name, k)
        done += 1
    assert done == len(names)


class _Sink:
    def write(self, s: str) -> int:
        return len(s)


def _render_peak(fn) -> int:
    import gc
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_rendering_from_the_spool_holds_memory_flat(tmp_path):
    """Markdown, HTML, CSV, HAR and the report written from the spool: the rendering's own peak
    (tracemalloc, analysis excluded) stays near 1 KB per handshake (ids, positions, and here a
    distinct secret each for the redactor), not the whole document (~12 KB each here): the
    in-memory document, rendered the old way, holds far more."""
    from wscap.engine.analyze import run_pipeline
    from wscap.render.redact import redact_document
    from wscap.render.report import iter_report_html, iter_report_markdown, render_format, write_format
    n = 600
    cap = Capture()
    for i in range(n):
        key = new_key(i)
        c = cap.conn((f"10.2.{i // 250}.{i % 250 + 1}", 40000 + i % 1000), SERVER).open()
        c.send(True, ws_request(f"/ws?token=secret{i:06d}x", host="srv:8080", key=key))
        c.send(False, ws_response(key))
        c.fin(True)
        c.fin(False)
        cap.wait(0.001)
    path = cap.write(tmp_path / "many.pcap")
    doc = run_pipeline([path]).lazy_document()
    assert len(doc["handshakes"]) == n and len(doc["chains"]) == n
    bound = (1 << 20) + 1000 * n        # ~1 KB per handshake: ids, positions, its secret in the redactor
    peaks = {}
    for fmt in ("markdown", "html", "csv", "har"):
        peaks[fmt] = _render_peak(lambda: write_format(doc, fmt, _Sink()))
    red = redact_document(doc)
    peaks["report-md"] = _render_peak(lambda: [None for _ in iter_report_markdown(red)])
    peaks["report-html"] = _render_peak(lambda: [None for _ in iter_report_html(red)])
    assert all(p < bound for p in peaks.values()), (peaks, bound)
    mem = run_pipeline([path]).document()
    held = _render_peak(lambda: render_format(mem, "markdown"))
    assert held > 4 * peaks["markdown"], (held, peaks)      # the measurement can tell the two apart
