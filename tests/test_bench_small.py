"""The benchmark generator (scripts/bench, issue #7) on its tiny preset:
valid pcap, sound TCP streams, determinism, ground truth consistent with the
wire and, once wscap can analyze files, wscap's chains equal to the ground truth.
Never asserts time."""
from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

dpkt = pytest.importorskip("dpkt")

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"wscap_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gen = _load("gen")
pcapcheck = _load("pcapcheck")
compare = _load("compare")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return gen.generate("tiny", str(out), seed=7)


def test_valid_pcap_and_packet_count(tiny):
    path = Path(tiny["pcap_path"])
    assert path.stat().st_size == tiny["bytes"]
    n = 0
    last = 0.0
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        assert r.datalink() == dpkt.pcap.DLT_EN10MB
        for ts, buf in r:
            n += 1
            assert ts >= last, "records must be in capture-time order"
            last = ts
            eth = dpkt.ethernet.Ethernet(buf)
            assert eth.type in (dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_ARP)
    assert n == tiny["packets"]
    assert 2_000 <= n <= 6_000


def test_checksums_and_streams_reassemble(tiny):
    r = pcapcheck.check(tiny["pcap_path"])
    assert r["packets"] == tiny["packets"]
    assert r["errors"] == []
    streams = {st["name"]: st["bytes"] for st in r["streams"].values()}
    for c in tiny["chains"]:
        for i, leg in enumerate(c["legs"]):
            up = streams.get(f"{leg['client']}->{leg['server']}")
            assert up is not None, f"chain {c['id']} leg {i}: no SYN from the client"
            if c["cause"] == "upstream-refused" and i == 1 or c["variant"] == "upstream-syn-unanswered" and i == 1:
                assert up == b""
                continue
            head = up.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            assert head.startswith(f"GET {c['target']} HTTP/1.1\r\n")
            assert c["key"] in head, "every leg carries the same Sec-WebSocket-Key"
            assert ("\r\nUpgrade: websocket" in head or "\r\nupgrade: websocket" in head) == leg["upgrade_request"]
            if i > 0:   # node http-proxy: lower-case names, forwarded-for appended
                assert "\r\nhost: " in head and "\r\nx-forwarded-for: " in head
            down = streams.get(f"{leg['server']}->{leg['client']}", b"")
            status = down[:12]
            if c["cause"] in ("ok", "bad-accept"):
                assert status == b"HTTP/1.1 101"
            elif c["cause"] == "timeout":
                assert down == b""
            elif c["cause"] == "origin-rejected":
                assert status == b"HTTP/1.1 403"
            elif c["cause"] == "proxy-rejected":
                assert status in (b"HTTP/1.1 502", b"HTTP/1.1 503")


def test_ground_truth_shape(tiny):
    chains = tiny["chains"]
    assert len(chains) == gen.PRESETS["tiny"]["chains"]
    assert set(Counter(c["cause"] for c in chains)) == set(gen.CAUSES)
    legs = [(lg["client"], lg["server"]) for c in chains for lg in c["legs"]]
    assert len(legs) == len(set(legs)), "no 4-tuple reuse between WebSocket legs"
    for c in chains:
        assert (c["hop"] is None) == (c["cause"] == "ok")
        if c["hop"] is not None:
            assert 0 <= c["hop"] < len(c["legs"])
        assert c["path"][0] == c["legs"][0]["client"].rsplit(":", 1)[0]
        assert c["path"][1:] == [lg["server"] for lg in c["legs"]]
    ports = {lg["server"].rsplit(":", 1)[1] for c in chains for lg in c["legs"]}
    assert {"5173", "5000", "80"} <= ports and ports & {"8765", "9001", "31337"}
    with open(tiny["truth_path"]) as f:
        on_disk = json.load(f)
    assert on_disk["chains"] == chains and on_disk["packets"] == tiny["packets"]


def test_deterministic(tiny, tmp_path):
    again = gen.generate("tiny", str(tmp_path / "a"), seed=7)
    assert Path(again["pcap_path"]).read_bytes() == Path(tiny["pcap_path"]).read_bytes()
    assert Path(again["truth_path"]).read_bytes() == Path(tiny["truth_path"]).read_bytes()
    other = gen.generate("tiny", str(tmp_path / "b"), seed=8)
    assert Path(other["pcap_path"]).read_bytes() != Path(tiny["pcap_path"]).read_bytes()


def _wscap_document(path: str) -> dict:
    wscap = pytest.importorskip("wscap", reason="wscap not importable")
    fn = getattr(wscap, "analyze_paths", None)
    if fn is None:
        pytest.skip("wscap.analyze_paths does not exist yet")
    doc = fn([path])
    for attr in ("to_dict", "as_dict", "to_json"):
        if not isinstance(doc, dict) and hasattr(doc, attr):
            doc = getattr(doc, attr)()
    if isinstance(doc, str):
        doc = json.loads(doc)
    if isinstance(doc, tuple):
        doc = next(d for d in doc if isinstance(d, dict))
    assert isinstance(doc, dict), f"analyze_paths returned {type(doc).__name__}"
    return json.loads(json.dumps(doc))   # plain JSON values, as the CLI would print


# Disagreements reported to the analyzer core and not decided yet: tolerated as
# xfail only while they are the *only* differences.  Remove an entry once decided.
# Format: "truth-cause -> wscap-cause".  (Upgrade+Connection both stripped was one,
# decided in favour of upgrade-header-stripped.)
KNOWN_OPEN: set[str] = set()


def test_wscap_chains_equal_ground_truth(tiny):
    doc = _wscap_document(tiny["pcap_path"])
    r = compare.compare(tiny, doc)
    detail = compare.report(r, examples=3)
    off = {k for k in r["confusion"] if k.split(" -> ")[0] != k.split(" -> ")[1]}
    if off and off <= KNOWN_OPEN and set(r["counts"]) <= {"wrong-cause"}:
        pytest.xfail("known open disagreement(s): " + ", ".join(sorted(off)))
    assert r["by_cause_truth"] == {k: v for k, v in r["by_cause_wscap"].items() if k != "None"}, detail
    assert r["counts"] == {}, detail
    assert r["matched"] == len(tiny["chains"]), detail
