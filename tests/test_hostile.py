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
