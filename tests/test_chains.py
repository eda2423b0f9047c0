"""Hop-by-hop: linking legs, diffs and one capture per cause code (truth = how each was built)."""
from __future__ import annotations

import random

import pytest

import wscap
from builders import (Capture, accept_for, new_key, proxied_chain, ws_frame, ws_request, ws_response)

GW, VITE, BACK, NGINX = "172.18.0.1", "172.18.0.2", "172.18.0.3", "172.18.0.4"


def run(tmp_path, cap: Capture) -> dict:
    return wscap.analyze_paths([cap.write(tmp_path / "c.pcap")])


def verdicts(doc) -> list[tuple[str, int | None]]:
    return [(c["verdict"]["cause"], c["verdict"]["hop"]) for c in doc["chains"]]


def legs(cap, n=0, key=None, down_req=None, up_req=None):
    key = key or new_key(n)
    down = cap.conn((GW, 50000 + n), (VITE, 5173)).open()
    down.send(True, down_req or ws_request("/ws", key=key))
    up = cap.conn((VITE, 40000 + n), (BACK, 5000)).open()
    up.send(True, up_req if up_req is not None else ws_request("/ws", host="meetsonar-backend:5000", key=key,
                                                               lower=True))
    return down, up, key


def test_healthy_two_hop_chain_roles_and_expected_diffs(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0)
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("ok", None)]
    c = doc["chains"][0]
    by_id = {h["id"]: h for h in doc["handshakes"]}
    assert [by_id[i]["server"] for i in c["hops"]] == [f"{VITE}:5173", f"{BACK}:5000"]
    assert c["links"][0]["by"] == "key"
    roles = {e["ip"]: e["role"] for e in doc["endpoints"]}
    assert roles == {GW: "client", VITE: "proxy", BACK: "backend"}      # the bridge gateway reads as the client
    req_diff = [d for d in c["diffs"] if d["direction"] == "request"][0]
    assert {ch["class"] for ch in req_diff["changes"]} == {"expected"}
    kinds = {(ch["kind"], ch["name"]) for ch in req_diff["changes"]}
    assert ("changed", "host") in kinds and ("added", "x-forwarded-for") in kinds
    assert ("case-changed", "sec-websocket-key") in kinds


def test_origin_rewritten_then_403(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0, backend_status=403, origin_rewrite=True)
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("origin-rejected", 1)]
    v = doc["chains"][0]["verdict"]
    assert "http://localhost:5173" in v["summary"] and "http://meetsonar-backend:5000" in v["summary"]
    origin = [ch for d in doc["chains"][0]["diffs"] for ch in d["changes"] if ch["name"] == "origin"][0]
    assert origin["class"] == "breaking"


def test_origin_not_allowed_without_rewrite_is_still_origin_rejected(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0, backend_status=403)
    assert verdicts(run(tmp_path, cap)) == [("origin-rejected", 1)]


@pytest.mark.parametrize("strip,cause", [("upgrade", "upgrade-header-stripped"),
                                         ("connection", "connection-header-stripped")])
def test_hop_by_hop_header_stripped(tmp_path, strip, cause):
    cap = Capture()
    proxied_chain(cap, 0, strip=strip)
    assert verdicts(run(tmp_path, cap)) == [(cause, 1)]


def test_key_regenerated_link_is_inferred_and_key_changed(tmp_path):
    cap = Capture()
    down, up, key = legs(cap, 0, up_req=ws_request("/ws", host="b:5000", key=new_key(99), lower=True))
    up.send(False, ws_response(new_key(99)))
    down.send(False, ws_response(new_key(99), lower=True))     # relays the accept of the other key
    doc = run(tmp_path, cap)
    assert doc["chains"][0]["links"][0]["by"] == "inferred"
    assert verdicts(doc) == [("key-changed", 1)]


def test_bad_accept_from_backend(tmp_path):
    cap = Capture()
    down, up, key = legs(cap)
    up.send(False, ws_response(key, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    down.send(False, ws_response(key, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=", lower=True))
    assert verdicts(run(tmp_path, cap)) == [("bad-accept", 1)]


def test_malformed_101_bare_lf_names_nodes_parser(tmp_path):
    cap = Capture()
    down, up, key = legs(cap)
    up.send(False, ws_response(key, eol=b"\n"))
    down.rst(False)
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("malformed-response", 1)]
    assert "llhttp rejects" in doc["chains"][0]["verdict"]["summary"]


def test_upstream_refused_unreachable_closed(tmp_path):
    cap = Capture()
    for n, how in enumerate(["refused", "unanswered", "closed"]):
        down = cap.conn((GW, 50000 + n), (VITE, 5173)).open()
        down.send(True, ws_request("/ws", key=new_key(n)))
        up = cap.conn((VITE, 40000 + n), (BACK, 5000))
        up._pkt(True, "S")
        if how == "refused":
            up._pkt(False, "RA", seq=0)
        elif how == "closed":
            up.cseq += 1
            up._pkt(False, "SA")
            up.sseq += 1
            up._pkt(True, "A")
            up.fin(False)
        cap.wait(0.5)
        down.send(False, ws_response(new_key(n), status=502, reason="Bad Gateway"))
        cap.wait(10)
    assert verdicts(run(tmp_path, cap)) == [("upstream-refused", 1), ("upstream-unreachable", 1),
                                            ("upstream-closed", 1)]


def test_no_upstream_connection_and_proxy_rejected(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0)                              # makes VITE a known proxy
    cap.wait(20)
    d = cap.conn((GW, 51000), (VITE, 5173)).open()     # a path Vite does not proxy: it answers itself
    d.send(True, ws_request("/other", key=new_key(5)))
    d.send(False, ws_response(new_key(5), status=404, reason="Not Found"))
    cap.wait(20)
    d2 = cap.conn((GW, 51001), (VITE, 5173)).open()    # the proxy closes without ever connecting upstream
    d2.send(True, ws_request("/ws", key=new_key(6)))
    d2.fin(False)
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("ok", None), ("proxy-rejected", 0), ("no-upstream-connection", 0)]


def test_upstream_rejected_and_upstream_closed(tmp_path):
    cap = Capture()
    down, up, key = legs(cap, 0)
    up.send(False, ws_response(key, status=500, reason="Internal Server Error"))
    down.send(False, ws_response(key, status=500, reason="Internal Server Error"))
    cap.wait(20)
    down, up, key = legs(cap, 1)
    up.rst(False)
    down.send(False, ws_response(key, status=502, reason="Bad Gateway"))
    assert verdicts(run(tmp_path, cap)) == [("upstream-rejected", 1), ("upstream-closed", 1)]


def test_proxy_dropped_upgrade_and_response(tmp_path):
    cap = Capture()
    down, up, key = legs(cap, 0)
    up.send(False, ws_response(key))                   # backend says 101 ...
    cap.wait(5)
    down.fin(True)                                     # ... the client never hears it (Bun's node:http)
    cap.wait(20)
    down, up, key = legs(cap, 1)
    up.send(False, ws_response(key, status=401, reason="Unauthorized"))
    cap.wait(5)
    down.fin(True)                                     # http-proxy only listened for 'upgrade'
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("proxy-dropped-upgrade", 0), ("proxy-dropped-response", 0)]


def test_frames_lost_at_proxy(tmp_path):
    cap = Capture()
    down, up, key = legs(cap)
    up.send(False, ws_response(key) + ws_frame(b'0{"sid":"x"}'))   # open packet with the 101
    down.send(False, ws_response(key, lower=True))                 # relayed without the head bytes
    cap.wait(2)
    down.send(True, ws_frame(b"ping?", mask=True))
    up.send(True, ws_frame(b"ping?", mask=True))
    assert verdicts(run(tmp_path, cap)) == [("frames-lost-at-proxy", 0)]


def test_subprotocol_not_passed_back(tmp_path):
    cap = Capture()
    key = new_key(0)
    down, up, key = legs(cap, 0, key, ws_request("/ws", key=key, protocol="chat"),
                         ws_request("/ws", host="b", key=key, protocol="chat", lower=True))
    up.send(False, ws_response(key, extra=[("Sec-WebSocket-Protocol", "chat")]))
    down.send(False, ws_response(key, lower=True))
    assert verdicts(run(tmp_path, cap)) == [("subprotocol-mismatch", 0)]


def test_extension_mismatch_rsv1_from_backend(tmp_path):
    cap = Capture()
    down, up, key = legs(cap)
    up.send(False, ws_response(key))
    down.send(False, ws_response(key, lower=True))
    up.send(False, ws_frame(b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True))
    down.send(False, ws_frame(b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True))
    assert verdicts(run(tmp_path, cap)) == [("extension-mismatch", 1)]


def test_version_unsupported_426(tmp_path):
    cap = Capture()
    key = new_key(0)
    down = cap.conn((GW, 50000), (BACK, 5000)).open()
    r = ws_request("/ws", key=key).replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: vite-hmr")
    down.send(True, r)
    down.send(False, b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
    assert verdicts(run(tmp_path, cap)) == [("version-unsupported", 0)]


def test_timeout_with_how_long_it_waited(tmp_path):
    cap = Capture()
    down, up, key = legs(cap)
    cap.wait(7.5)
    down.send(True, ws_frame(b"", opcode=9, mask=True))   # unrelated later traffic moves the clock
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("timeout", 1)]
    up_leg = [h for h in doc["handshakes"] if h["server"].endswith(":5000")][0]
    assert up_leg["outcome"] == "no-response" and up_leg["waited"] >= 7.5


def test_closed_after_upgrade_idle_timeout_and_benign_teardown(tmp_path):
    cap = Capture()
    down, up, key = legs(cap, 0)
    up.send(False, ws_response(key))
    down.send(False, ws_response(key, lower=True))
    down.send(True, ws_frame(b"hi", mask=True))
    up.send(True, ws_frame(b"hi", mask=True))
    cap.wait(60)
    down.fin(False)                    # the proxy's 60 s idle timeout on the client leg
    cap.wait(20)
    down, up, key = legs(cap, 1)
    up.send(False, ws_response(key))
    down.send(False, ws_response(key, lower=True))
    for c, fromc in ((down, True), (up, True), (up, False), (down, False)):
        c.send(fromc, ws_frame(b"msg", mask=fromc))
    down.rst(True)                     # tab reload: the browser resets, then the proxy resets upstream
    up.rst(True)
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("closed-after-upgrade", 0), ("ok", None)]
    assert "60" in doc["chains"][0]["verdict"]["summary"]
    assert doc["chains"][1]["verdict"]["benign"] is True


def test_fifty_concurrent_handshakes_on_one_path_never_cross_linked(tmp_path):
    rng = random.Random(7)
    cap = Capture(step=0.0002)
    truth = {}
    downs, ups = [], []
    for n in range(50):
        key = new_key(1000 + n)
        d = cap.conn((GW, 52000 + n), (VITE, 5173)).open()
        downs.append((n, d, key))
    for n, d, key in rng.sample(downs, 50):
        d.send(True, ws_request("/ws", key=key))
    for n, d, key in rng.sample(downs, 50):
        u = cap.conn((VITE, 42000 + n), (BACK, 5000)).open()
        u.send(True, ws_request("/ws", host="b:5000", key=key, lower=True))
        ups.append((n, u, key))
        truth[f"{GW}:{52000 + n}"] = f"{VITE}:{42000 + n}"
    failing = set(rng.sample(range(50), 12))
    for n, u, key in rng.sample(ups, 50):
        if n in failing:
            u.send(False, ws_response(key, status=403, reason="Forbidden"))
        else:
            u.send(False, ws_response(key))
    for n, d, key in rng.sample(downs, 50):
        if n in failing:
            d.send(False, ws_response(key, status=403, reason="Forbidden"))
        else:
            d.send(False, ws_response(key, lower=True))
    doc = run(tmp_path, cap)
    by_id = {h["id"]: h for h in doc["handshakes"]}
    assert len(doc["chains"]) == 50
    for c in doc["chains"]:
        down, up = (by_id[i] for i in c["hops"])
        assert truth[down["client"]] == up["client"]
        n = int(down["client"].rsplit(":", 1)[1]) - 52000
        assert c["verdict"]["cause"] == ("origin-rejected" if n in failing else "ok")


def test_three_hops_breaking_change_at_the_middle_boundary(tmp_path):
    """nginx -> Vite -> backend; Vite's hook strips Upgrade on the second boundary."""
    cap = Capture()
    key = new_key(3)
    a = cap.conn((GW, 50000), (NGINX, 80)).open()
    a.send(True, ws_request("/ws", host="app.local", key=key))
    b = cap.conn((NGINX, 33000), (VITE, 5173)).open()
    b.send(True, ws_request("/ws", host="app.local", key=key, extra=[("X-Real-IP", GW)]))
    c = cap.conn((VITE, 40000), (BACK, 5000)).open()
    c.send(True, ws_request("/ws", host="b:5000", key=key, lower=True, upgrade=None))
    c.send(False, ws_response(key, status=400, reason="Bad Request"))
    b.send(False, ws_response(key, status=400, reason="Bad Request"))
    a.send(False, ws_response(key, status=400, reason="Bad Request", extra=[("Server", "nginx")]))
    doc = run(tmp_path, cap)
    assert verdicts(doc) == [("upgrade-header-stripped", 2)]
    ch = doc["chains"][0]
    assert len(ch["hops"]) == 3
    first = [d for d in ch["diffs"] if d["boundary"] == 0 and d["direction"] == "request"][0]
    assert all(x["class"] != "breaking" for x in first["changes"])
    roles = {e["ip"]: e["role"] for e in doc["endpoints"]}
    assert roles[NGINX] == "proxy" and roles[VITE] == "proxy" and roles[BACK] == "backend"


def test_live_streaming_decides_the_same_verdicts_as_the_document(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0)
    cap.wait(1)
    proxied_chain(cap, 1, backend_status=403, origin_rewrite=True)
    path = cap.write(tmp_path / "l.pcap")
    from wscap.capture.files import ReadResult, read_frames
    pipe = wscap.Pipeline()
    streamed = []
    last = 0
    for f in read_frames(path, ReadResult(path)):
        streamed += pipe.feed(f)
        streamed += pipe.tick(f.ts_ns)
        last = f.ts_ns
    streamed += pipe.tick(last + 10_000_000_000)          # the clock runs on after the last packet
    chains = [d.json for d in streamed if d.kind == "chain"]
    assert pipe.finish() == []                            # everything was decided by the clock
    doc = wscap.analyze_paths([path])
    assert [(c["verdict"]["cause"], c["verdict"]["hop"]) for c in chains] == verdicts(doc)


LAB = __import__("pathlib").Path(__file__).resolve().parents[1] / "pcaps"


@pytest.mark.parametrize("name", ["bun-vite-healthy", "bun-vite-unterminated-101"])
def test_bun_runtime_named_in_the_verdict(name):
    """These recordings ran Vite under `bun --bun` (their expected files say so): the verdict names Bun."""
    import json
    expected = json.loads((LAB / f"{name}.expected.json").read_text())
    assert "bun" in json.dumps(expected.get("versions", {})).lower()
    doc = wscap.analyze_paths([str(LAB / f"{name}.pcap")])
    broken = [c for c in doc["chains"] if c["verdict"]["broken"]]
    assert broken and "bun (fetch-based node:http client)" in broken[0]["verdict"]["summary"]


def test_node_http_proxy_named_for_vite_under_node():
    doc = wscap.analyze_paths([str(LAB / "origin-rewrite.pcap")])
    assert "node http-proxy" in doc["chains"][0]["verdict"]["summary"]


def test_overlapping_refused_attempts_go_to_the_leg_whose_answer_they_caused(tmp_path):
    """Two requests, two refused upstream attempts interleaved. The nearest request would take the
    wrong attempt; the proxy's answer to each client must follow the attempt that caused it."""
    cap = Capture(step=0.0005)
    a = cap.conn((GW, 50000), (VITE, 5173)).open()
    b = cap.conn((GW, 50001), (VITE, 5173)).open()
    a.send(True, ws_request("/ws", key=new_key(1)))
    b.send(True, ws_request("/ws", key=new_key(2)))
    a1 = cap.conn((VITE, 40001), (BACK, 5000))
    a1._pkt(True, "S")
    a1._pkt(False, "RA", seq=0)                 # refused: A's attempt
    a2 = cap.conn((VITE, 40002), (BACK, 5000))
    a2._pkt(True, "S")
    a.fin(False)                                # the proxy gives up on A (after a1's RST)
    a2._pkt(False, "RA", seq=0)                 # refused: B's attempt, after A was answered
    b.send(False, ws_response(new_key(2), status=502, reason="Bad Gateway"))
    doc = run(tmp_path, cap)
    by_id = {h["id"]: h for h in doc["handshakes"]}
    legs = {by_id[c["hops"][0]]["client"]: by_id[c["hops"][1]]["client"] for c in doc["chains"]}
    assert legs == {f"{GW}:50000": f"{VITE}:40001", f"{GW}:50001": f"{VITE}:40002"}
    assert {c["verdict"]["cause"] for c in doc["chains"]} == {"upstream-refused"}


def test_live_ticks_forget_attempts_nothing_can_link_and_still_stream_every_chain(tmp_path):
    """A scanner's bare connection attempts (SYN, RST) never join a chain. The live clock must not
    carry them in its open set forever (each tick re-linked all of them), and the chains around
    them stream with the document's verdicts."""
    cap = Capture(step=0.001)
    seconds, scans = 30, 20
    for s in range(seconds):
        proxied_chain(cap, s, proxy_port=30000 + s)
        down = cap.conn((GW, 52000 + s), (VITE, 5173)).open()
        down.send(True, ws_request("/ws", key=new_key(1000 + s)))
        up = cap.conn((VITE, 41000 + s), (BACK, 5000))
        up._pkt(True, "S")
        up._pkt(False, "RA", seq=0)                     # refused upstream: the proxy answers 502
        down.send(False, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        down.fin(False)
        for k in range(scans):
            probe = cap.conn(("172.18.0.9", 20000 + s * scans + k), (VITE, 6000 + k))
            probe._pkt(True, "S")
            probe._pkt(False, "RA", seq=0)
        cap.wait(0.9)
    path = cap.write(tmp_path / "scan.pcap")
    from wscap.capture.files import ReadResult, read_frames
    pipe = wscap.Pipeline()
    streamed, most_open, next_tick, last = [], 0, 0, 0
    for f in read_frames(path, ReadResult(path)):
        streamed += pipe.feed(f)
        if f.ts_ns >= next_tick:
            streamed += pipe.tick(f.ts_ns)
            most_open = max(most_open, len(pipe._open))
            next_tick = f.ts_ns + 200_000_000
        last = f.ts_ns
    streamed += pipe.tick(last + 10_000_000_000)
    streamed += pipe.finish()
    chains = [d.json for d in streamed if d.kind == "chain"]
    assert [(c["verdict"]["cause"], c["verdict"]["hop"]) for c in chains] == \
        [("ok", None), ("upstream-refused", 1)] * seconds
    assert verdicts(wscap.analyze_paths([path])) == [("ok", None), ("upstream-refused", 1)] * seconds
    # Kept for the link window (10 s) at most, not for the whole capture (600 attempts).
    assert most_open <= 11 * scans + 10, most_open
