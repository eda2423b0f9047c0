"""Zeek's WebSocket test traces with Zeek's own expected logs, used as a peer's test suite.

Every expected value below is parsed from Zeek's baseline files at test time;
where wscap deliberately disagrees, the README says who is right and why.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import wscap

PEER = Path(__file__).resolve().parents[1].parent / "shared" / "pcaps" / "peer" / "zeek"
pytestmark = pytest.mark.skipif(not PEER.is_dir(), reason=f"Zeek peer traces not present at {PEER} "
                                "(they live in ../shared, which only the team's machines and CI have)")
BASE = PEER / "baselines"

WEBSOCKET_LOGS = {
    "scripts.base.protocols.websocket.broker-websocket": "broker-websocket.pcap",
    "scripts.base.protocols.websocket.jupyter-websocket": "jupyter-websocket.pcap",
    "scripts.base.protocols.websocket.key-accept-wrong": "wrong-accept-header.pcap",
    "scripts.base.protocols.websocket.wstunnel-http": "wstunnel-http.pcap",
    "scripts.base.protocols.websocket.wstunnel-https": "wstunnel-https.pcap",
    "scripts.base.protocols.websocket.wstunnel-ssh": "wstunnel-ssh.pcap",
    "scripts.base.protocols.http.101-switching-protocols": "http/websocket.pcap",
}


def read_zeek_log(path: Path) -> list[dict]:
    fields = None
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line.startswith("#"):
            continue
        elif fields is None:
            fields = line.split("\t")
        else:
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def hdr(h: dict, part: str, name: str) -> str | None:
    vals = [v for n, v in (h[part] or {}).get("headers", []) if n.lower() == name]
    return ", ".join(vals) if vals else None


def tokens(v: str | None) -> str:
    return "-" if v is None else ",".join(t.strip() for t in v.split(","))


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    cache: dict[str, dict] = {}
    for trace in set(WEBSOCKET_LOGS.values()) | {"http/docker-http-upgrade.pcap", "oversized-close-frame.pcapng",
                                                  "reply-ping-coalesced.pcap", "reply-ping-separate.pcap",
                                                  "message-too-big-status.pcap", "two-binary-fragments.pcap",
                                                  "fragmented-http-reply.pcap"}:
        cache[trace] = wscap.analyze_paths([str(PEER / trace)])
    return cache


@pytest.mark.parametrize("baseline", sorted(WEBSOCKET_LOGS))
def test_websocket_log_fields_agree(docs, baseline):
    expected = read_zeek_log(BASE / baseline / "websocket.log")
    doc = docs[WEBSOCKET_LOGS[baseline]]
    ws = {(h["client"], h["server"]): h for h in doc["handshakes"] if h["websocket"]}
    assert len(ws) == len(expected)
    for row in expected:
        h = ws[(f"{row['id.orig_h']}:{row['id.orig_p']}", f"{row['id.resp_h']}:{row['id.resp_p']}")]
        assert hdr(h, "request", "host") == row["host"]
        assert h["request"]["target"] == row["uri"]
        assert (hdr(h, "request", "user-agent") or "-") == row["user_agent"]
        assert tokens(hdr(h, "response", "sec-websocket-protocol")) == row["subprotocol"]
        assert tokens(hdr(h, "request", "sec-websocket-protocol")) == row["client_protocols"]
        assert (hdr(h, "request", "sec-websocket-extensions") or "-") == row["client_extensions"]
        assert (hdr(h, "response", "sec-websocket-extensions") or "-") == row["server_extensions"]
        assert h["outcome"] == "upgraded"      # Zeek logs on websocket_established


def established_records() -> list[tuple[str, dict]]:
    """(trace, record) from the events baseline: it also prints client_key and server_accept."""
    out = []
    trace = None
    for line in (BASE / "scripts.base.protocols.websocket.events" / "out").read_text().splitlines():
        if re.match(r"^[\w.-]+\.pcap(ng)?$", line.strip()):
            trace = line.strip()
        elif line.startswith("websocket_established"):
            rec = dict(re.findall(r"(client_key|server_accept|orig_p|host)=([^,\]]+)", line))
            out.append((trace, rec))
    return out


def test_keys_and_accepts_agree_with_zeek_events(docs):
    recs = established_records()
    assert len(recs) >= 5
    for trace, rec in recs:
        doc = docs.get(trace) or wscap.analyze_paths([str(PEER / trace)])
        h = [h for h in doc["handshakes"] if h["client"].endswith(":" + rec["orig_p"].split("/")[0])][0]
        assert hdr(h, "request", "sec-websocket-key") == rec["client_key"]
        assert hdr(h, "response", "sec-websocket-accept") == rec["server_accept"]
        assert not any(a["code"] == "bad-accept" for a in h["anomalies"])


def test_wrong_accept_matches_zeeks_weird(docs):
    weird = read_zeek_log(BASE / "scripts.base.protocols.websocket.key-accept-wrong" / "weird.log")[0]
    assert weird["name"] == "websocket_wrong_accept_header"
    want, found = re.match(r"expected=(\S+), found=(\S+)", weird["addl"]).groups()
    doc = docs["wrong-accept-header.pcap"]
    h = doc["handshakes"][0]
    bad = [a for a in h["anomalies"] if a["code"] == "bad-accept"][0]
    assert repr(found) in bad["message"] and repr(want) in bad["message"]
    assert doc["chains"][0]["verdict"]["cause"] == "bad-accept" and doc["chains"][0]["verdict"]["hop"] == 0


def test_oversized_close_frame_matches_zeeks_weird(docs):
    weird = read_zeek_log(BASE / "scripts.base.protocols.websocket.close-too-large" / "weird-pac.log")[0]
    size, limit = re.match(r"(\d+) > (\d+)", weird["addl"]).groups()
    h = docs["oversized-close-frame.pcapng"]["handshakes"][0]
    a = [a for a in h["anomalies"] if a["code"] == "control-frame-too-long"][0]
    assert f"{size} bytes (> {limit})" in a["message"]
    assert h["client"] == f"{weird['id.orig_h']}:{weird['id.orig_p']}"


def test_coalesced_reply_ping_matches_zeek(docs):
    weird = read_zeek_log(BASE / "scripts.base.protocols.websocket.coalesced-reply-ping" / "weird.log")[0]
    assert weird["name"] == "protocol_data_with_HTTP_upgrade_reply"
    co = docs["reply-ping-coalesced.pcap"]["handshakes"][0]
    sep = docs["reply-ping-separate.pcap"]["handshakes"][0]
    a = [a for a in co["anomalies"] if a["code"] == "data-with-101"][0]
    assert a["message"].startswith(f"{weird['addl']} bytes")
    assert not any(a["code"] == "data-with-101" for a in sep["anomalies"])
    # Zeek: "out-separate and out-coalesced are identical": so are wscap's frames
    key = [(f["dir"], f["opcode"], f["preview"], f["close_code"]) for f in co["frames"]]
    assert key == [(f["dir"], f["opcode"], f["preview"], f["close_code"]) for f in sep["frames"]]
    out = (BASE / "scripts.base.protocols.websocket.coalesced-reply-ping" / "out-coalesced").read_text()
    zeek_frames = re.findall(r"websocket_frame, \w+, ([TF]), fin, [TF], rsv, \d+, opcode, (\w+), payload_len, (\d+)", out)
    zeek_data = re.findall(r"websocket_frame_data, \w+, [TF], len, \d+, data, (.*)", out)
    assert len(zeek_frames) == 6
    assert [("T" if f["dir"] == "client" else "F", f["opcode_name"], str(f["length"])) for f in co["frames"]] == zeek_frames
    previews = [f["preview"] for f in co["frames"] if f["opcode"] != 8]
    assert previews == [d for d in zeek_data if d.isprintable() and not d.startswith("\\x")]


def test_close_codes_agree_with_zeek_events(docs):
    out = (BASE / "scripts.base.protocols.websocket.events" / "out").read_text()
    section = out.split("message-too-big-status.pcap", 1)[1].split(".pcap", 1)[0]
    zeek = re.findall(r"websocket_close, \w+, ([TF]), status, (\d+), reason, (.*)", section)
    h = docs["message-too-big-status.pcap"]["handshakes"][0]
    mine = [("T" if f["dir"] == "client" else "F", str(f["close_code"]), f["close_reason"])
            for f in h["frames"] if f["opcode"] == 8]
    assert mine == [(d, s, r.strip()) for d, s, r in zeek]
    assert docs["message-too-big-status.pcap"]["chains"][0]["verdict"]["cause"] == "closed-after-upgrade"


def test_two_binary_fragments_frames(docs):
    h = docs["two-binary-fragments.pcap"]["handshakes"][0]
    server = [(f["opcode_name"], f["fin"]) for f in h["frames"] if f["dir"] == "server" and f["opcode"] in (0, 2)]
    assert server == [("binary", False), ("continuation", True)]


def test_docker_upgrade_to_tcp_is_not_a_broken_websocket(docs):
    rows = read_zeek_log(BASE / "scripts.base.protocols.http.upgrade-to-tcp" / "http.log.cut")
    upgraded = [r for r in rows if r.get("status_code") == "101"]
    doc = docs["http/docker-http-upgrade.pcap"]
    assert len(doc["handshakes"]) == len(upgraded) == 1
    h = doc["handshakes"][0]
    assert h["websocket"] is False and h["status"] == 101 and h["request"]["method"] == "POST"
    assert h["frames"] == []
    assert doc["chains"][0]["verdict"]["cause"] == "ok"


def test_every_peer_trace_is_a_one_hop_chain(docs):
    for trace, doc in docs.items():
        assert len(doc["chains"]) == len([h for h in doc["handshakes"] if h["request"]]), trace
        for c in doc["chains"]:
            assert len(c["hops"]) == 1, trace
        assert doc["source"][0]["complete"], trace


def test_wstunnel_status_is_101_not_zeeks_301(docs):
    rows = read_zeek_log(BASE / "scripts.base.protocols.websocket.wstunnel-http" / "http.log")
    assert any(r.get("status_code") == "301" for r in rows)       # Zeek's confusion (see README)
    assert docs["wstunnel-http.pcap"]["handshakes"][0]["status"] == 101
