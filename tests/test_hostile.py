"""Captures built to attack wscap on purpose (issue 16): each test builds the attack with the
builders, then asserts the bound holds AND the result is still right (truth = how it was built)."""
from __future__ import annotations

import json
import os
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
    from wscap.limits import Limits
    from wscap.pipeline import Options, Pipeline
    path = str(tmp_path / "f.pcap")
    non_http_flows(path, 20000, handshake_at=10)
    p = Pipeline(Options(limits=Limits(max_flows=50), stream=False))
    peak_conns = peak_order = 0
    for frame in read_frames(path, ReadResult(path=path), source=0,
                             record_filter=lambda lt: p.record_filter(lt, 0)):
        p.feed(frame)
        peak_conns = max(peak_conns, len(p.conns))
        peak_order = max(peak_order, len(p._order))
    p.finish()
    doc = p.document()
    assert peak_conns <= 50
    assert peak_order <= 2 * 50 + 4096 + 1
    assert [h["outcome"] for h in doc["handshakes"]] == ["upgraded"]
    assert doc["stats"]["limits_hit"]["max_flows"] >= 20000 - 50


def test_live_has_the_same_bounds_as_analyze():
    """`live --max-*` options exist with analyze's names and reach the pipeline's Limits."""
    from click.testing import CliRunner
    from wscap.cli import analyze
    from wscap.live_cli import _make_pipeline, live_command
    names = lambda cmd: {o for p in cmd.params for o in p.opts if o.startswith("--max-")}  # noqa: E731
    assert names(analyze) <= names(live_command)
    p = _make_pipeline(3.0, {}, {"max_flows": 7, "max_head_bytes": 999, "max_dns": 5})
    assert (p.limits.max_flows, p.limits.head_bytes, p.limits.max_dns) == (7, 999, 5)
    r = CliRunner().invoke(live_command, ["--max-flows", "0"])
    assert r.exit_code == 2 and "--max-flows" in r.output
