"""Recordings made by the reproduction lab (scripts/lab/run) against wscap.

Every pcaps/NAME.pcap that has a pcaps/NAME.expected.json is checked three ways:

* the expected file is well formed (always runs);
* the capture really shows what the expected file claims, read with the lab's
  own tiny pcap reader, not with wscap (always runs);
* wscap.analyze_paths([pcap]) finds the same chains with the same verdicts
  (skipped until wscap.analyze_paths exists; see docs/json-contract.md).

TLS and HTTP/2 recordings (expected "transport": tls | h2 | h2c) carry their
key log as pcaps/NAME.keys ("keylog"). Without it a capture only shows TLS
connections (checked always); with tshark the decrypted legs are checked too
(skipped without tshark), and wscap analyses them with Options(keylog=...)
(skipped while wscap.engine.core.Options has no keylog field; h2 recordings are
skipped while wscap's handshakes carry no "http_version").

The end-to-end re-recording of a scenario lives in tests/lab/test_lab_live.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# WSCAP_LAB_PCAPS=DIR compares a fresh `scripts/lab/run --out DIR` instead.
PCAPS = Path(os.environ.get("WSCAP_LAB_PCAPS") or REPO / "pcaps")
sys.path.insert(0, str(REPO / "scripts" / "lab" / "lib"))
import pcapcheck

CAUSES = {
    "ok",
    "origin-rejected",
    "upgrade-header-stripped",
    "connection-header-stripped",
    "key-changed",
    "bad-accept",
    "malformed-response",
    "upstream-refused",
    "upstream-unreachable",
    "no-upstream-connection",
    "upstream-rejected",
    "upstream-closed",
    "proxy-rejected",
    "proxy-dropped-upgrade",
    "proxy-dropped-response",
    "frames-lost-at-proxy",
    "subprotocol-mismatch",
    "extension-mismatch",
    "version-unsupported",
    "timeout",
    "closed-after-upgrade",
    # issue 14
    "invalid-101",
    "malformed-request",
    "client-http-after-101",
    "unanswered-at-capture-end",
}


# Where wscap and the ground truth disagree today. Non-strict xfail: the
# expected files stay the truth (they come from how the scenario is built and
# what Chromium reported), and an XPASS shows when wscap catches up.
KNOWN_WSCAP_GAPS: dict[str, str] = {}


def recordings(with_gaps=False):
    out = []
    for exp in sorted(PCAPS.glob("*.expected.json")):
        pcap = exp.with_name(exp.name[: -len(".expected.json")] + ".pcap")
        if pcap.exists():
            marks = ()
            if with_gaps and pcap.stem in KNOWN_WSCAP_GAPS:
                marks = (
                    pytest.mark.xfail(reason=KNOWN_WSCAP_GAPS[pcap.stem], strict=False),
                )
            out.append(pytest.param(pcap, exp, id=pcap.stem, marks=marks))
    return out


RECORDINGS = recordings()


def load(exp: Path) -> dict:
    return json.loads(exp.read_text())


def test_recordings_present_and_small():
    assert RECORDINGS, f"no lab recordings in {PCAPS} (run scripts/lab/run)"
    total = sum(p.stat().st_size for p in PCAPS.glob("*.pcap"))
    assert total < 5 * 1024 * 1024, (
        f"pcaps/ holds {total} bytes of captures; keep it well under 5 MB"
    )


@pytest.mark.parametrize("pcap,exp", RECORDINGS)
def test_expected_file_well_formed(pcap, exp):
    e = load(exp)
    assert e["scenario"] == pcap.stem
    for key in ("description", "topology", "names", "browser", "chains", "versions"):
        assert key in e, key
    assert {"event", "close_code", "console"} <= set(e["browser"])
    transport = e.get("transport", "")
    assert transport in ("", "tls", "h2", "h2c"), transport
    # h2/h2c talk to the h2 backend directly (no Vite); h2c's client is Node's
    # http2 module (no browser speaks h2c), named in "client".
    if transport not in ("h2", "h2c"):
        assert e["versions"].get("vite")
    if "client" in e:
        assert e["client"] and e["versions"].get("node")
    else:
        assert e["versions"].get("chromium")
    if transport:
        assert isinstance(e.get("encrypted_legs"), list)
        assert all(
            0 <= i < ch["hops"] for ch in e["chains"] for i in e["encrypted_legs"]
        )
    if transport in ("tls", "h2"):
        assert e["keylog"] == f"{pcap.stem}.keys", e.get("keylog")
        assert e["encrypted_legs"], "a TLS recording has at least one encrypted leg"
    else:
        assert "keylog" not in e
    assert e["chains"]
    for ch in e["chains"]:
        assert ch["cause"] in CAUSES, ch
        assert len(ch["statuses"]) == ch["hops"] >= 1, ch
        if ch["cause"] == "ok":
            assert ch["hop"] is None, ch
        else:
            assert isinstance(ch["hop"], int) and 0 <= ch["hop"] < ch["hops"], ch
        assert ch["path"].startswith("/")
        assert set(ch.get("also_acceptable", ())) <= CAUSES, ch
        assert isinstance(ch.get("broken", True), bool)


KEYLOG_LINE = re.compile(
    r"(CLIENT_RANDOM|CLIENT_EARLY_TRAFFIC_SECRET|CLIENT_HANDSHAKE_TRAFFIC_SECRET|"
    r"SERVER_HANDSHAKE_TRAFFIC_SECRET|CLIENT_TRAFFIC_SECRET_0|SERVER_TRAFFIC_SECRET_0|"
    r"EXPORTER_SECRET|EARLY_EXPORTER_SECRET) [0-9a-f]{64} [0-9a-f]{64,96}"
)


def keylog_of(pcap: Path, e: dict) -> Path | None:
    return pcap.with_name(e["keylog"]) if e.get("keylog") else None


TRANSPORT_RECORDINGS = [p for p in RECORDINGS if load(p.values[1]).get("transport")]


@pytest.mark.parametrize("pcap,exp", TRANSPORT_RECORDINGS)
def test_keylog_well_formed(pcap, exp):
    """SSLKEYLOGFILE format; one set of secrets for every TLS connection of the
    capture (read without wscap), nothing else."""
    e = load(exp)
    keys = keylog_of(pcap, e)
    randoms = set(pcapcheck.tls_client_randoms(pcap))
    if keys is None:
        assert not randoms, f"{pcap.name} has TLS connections but no key log"
        return
    lines = keys.read_text().splitlines()
    assert lines, keys
    for line in lines:
        assert KEYLOG_LINE.fullmatch(line), line
    assert pcapcheck.keylog_randoms(keys) == randoms
    # TLS 1.3 (what Chromium and Node negotiate): both traffic secrets per connection.
    for r in randoms:
        labels = {ln.split()[0] for ln in lines if ln.split()[1] == r}
        assert {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels, r


@pytest.mark.parametrize(
    "pcap,exp", [p for p in TRANSPORT_RECORDINGS if load(p.values[1]).get("twin")]
)
def test_twin_has_the_same_chains(pcap, exp):
    """tls-healthy / tls-origin-rewrite reproduce their cleartext twin over
    TLS: same chains (hops, statuses, cause, failing hop) and browser outcome."""
    e = load(exp)
    twin_exp = PCAPS / f"{e['twin']}.expected.json"
    if not twin_exp.exists():  # WSCAP_LAB_PCAPS with only the TLS scenarios re-recorded
        twin_exp = REPO / "pcaps" / twin_exp.name
    twin = load(twin_exp)
    assert e["chains"] == twin["chains"]
    for k in ("event", "close_code", "received", "ws_error"):
        assert e["browser"].get(k) == twin["browser"].get(k), k


@pytest.mark.parametrize("pcap,exp", RECORDINGS)
def test_expected_file_matches_scenario_definition(pcap, exp):
    """pcaps/NAME.expected.json was written by scripts/lab/run from lib/scenarios.py:
    editing one without re-recording is caught here."""
    from scenarios import BY_NAME

    sc = BY_NAME.get(pcap.stem)
    if sc is None:
        pytest.skip(f"{pcap.stem} is not a lab scenario")
    e = load(exp)
    assert e["chains"] == sc.chains
    assert e["description"] == sc.description


@pytest.mark.parametrize("pcap,exp", RECORDINGS)
def test_capture_shows_expected_legs(pcap, exp):
    """Independent of wscap: number of legs and the status on each leg."""
    e = load(exp)
    if e.get("transport"):
        # Without the key log: TLS legs show as TLS, cleartext legs (and h2c
        # frames) with their status. The decrypted statuses: next test.
        for ch in e["chains"]:
            assert not pcapcheck.structural_problems(
                pcap, ch, e["transport"], e["encrypted_legs"]
            ), ch
        return
    for ch in e["chains"]:
        legs = (
            pcapcheck.hmr_legs(pcap)
            if ch["path"] == "/"
            else pcapcheck.legs(pcap, ch["path"])
        )
        statuses = [pcapcheck.leg_status(c) for c in legs]
        assert (len(legs), statuses) == (ch["hops"], ch["statuses"]), ch
        # Client side first: each leg starts after the previous one.
        assert [c.syn_ts for c in legs] == sorted(c.syn_ts for c in legs)
    browser = e["browser"]
    if browser["event"] and "message" in browser["event"]:
        assert browser.get("received", "").startswith("echo: ")


@pytest.mark.parametrize("pcap,exp", TRANSPORT_RECORDINGS)
def test_decrypted_capture_shows_expected_legs(pcap, exp):
    """TLS/h2/h2c recordings read by tshark with the key log (not wscap): legs,
    status per leg, HTTP version; h2 legs are RFC 8441 extended CONNECTs."""
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed: the decrypted legs cannot be read")
    e = load(exp)
    keys = keylog_of(pcap, e)
    for ch in e["chains"]:
        assert pcapcheck.decrypted_problems(pcap, ch, e["transport"], keys) == []
    if "legs_seen" in e:
        seen = pcapcheck.decrypted_legs(
            pcap, e["chains"][0]["path"], e["transport"], keys
        )
        assert [{k: v for k, v in d.items() if k != "leg"} for d in seen] == e[
            "legs_seen"
        ]
    if e.get("transport") == "tls" and keys is not None:
        # The key log is what makes the difference: without it no HTTP is seen
        # on the encrypted legs.
        blind = pcapcheck.decrypted_legs(pcap, e["chains"][0]["path"], "tls", None)
        assert len(blind) < e["chains"][0]["hops"] or any(
            d["status"] is None for d in blind
        ), blind


# -- wscap -------------------------------------------------------------------


def analyze_paths():
    wscap = pytest.importorskip("wscap")
    fn = getattr(wscap, "analyze_paths", None)
    if fn is None:
        try:  # the entry point may live in a submodule that wscap/__init__ does not import yet
            fn = getattr(
                importlib.import_module("wscap.engine.analyze"), "analyze_paths", None
            )
        except ImportError:
            fn = None
    if fn is None:
        pytest.skip(
            "wscap.analyze_paths does not exist yet (planned entry point, docs/json-contract.md)"
        )
    return fn


def _path_of(handshake) -> str | None:
    req = handshake.get("request") or {}
    target = req.get("target")
    return target.split("?", 1)[0] if target else None


def chains_by_path(doc: dict) -> dict:
    hs = {h["id"]: h for h in doc.get("handshakes", [])}
    out: dict = {}
    for ch in doc.get("chains", []):
        hops = [hs[i] for i in ch["hops"] if i in hs]
        if not hops:
            continue
        # The path of a chain is the client side's request target; a leg that
        # never got a request (refused/unanswered) takes its neighbour's.
        path = next((p for p in map(_path_of, hops) if p), None)
        out.setdefault(path, []).append((ch, hops))
    return out


def keylog_options(keys: Path):
    """Options(keylog=...) for a TLS recording; skips while wscap has no key log support."""
    try:
        from wscap.engine.core import Options
    except ImportError:
        pytest.skip("wscap.engine.core.Options does not exist")
    if "keylog" not in {f.name for f in dataclasses.fields(Options)}:
        pytest.skip(
            "wscap.engine.core.Options has no keylog field yet (TLS recordings are analysed with "
            "Options(keylog=pcaps/NAME.keys), issue 9)"
        )
    return Options(keylog=str(keys))


@pytest.mark.parametrize("pcap,exp", recordings(with_gaps=True))
def test_wscap_matches_expected(pcap, exp):
    fn = analyze_paths()
    e = load(exp)
    keys = keylog_of(pcap, e)
    if keys is not None:
        doc = fn([str(pcap)], keylog_options(keys))
    else:
        doc = fn([str(pcap)])
    assert doc.get("version") == 1
    if e.get("transport") in ("h2", "h2c"):
        hs = doc.get("handshakes", [])
        if not any("http_version" in h for h in hs):
            pytest.skip(
                'wscap\'s handshakes carry no "http_version" yet: no RFC 8441 (WebSocket over '
                "HTTP/2) support to compare with (issue 9)"
            )
    found = chains_by_path(doc)
    for want in e["chains"]:
        got = found.get(want["path"])
        assert got, (
            f"no chain for {want['path']} in {pcap.name}; chains: {sorted(map(str, found))}"
        )
        ch, hops = got[0]
        verdict = ch["verdict"]
        actual = {
            "hops": len(ch["hops"]),
            "cause": verdict["cause"],
            "hop": verdict["hop"],
            "statuses": [h.get("status") for h in hops],
        }
        expected = {k: want[k] for k in ("hops", "cause", "hop", "statuses")}
        if actual["cause"] in want.get("also_acceptable", ()):
            expected["cause"] = actual["cause"]
        assert actual == expected, (
            f"{pcap.name} {want['path']}: {verdict.get('summary')}"
        )
        broken = want.get("broken", want["cause"] != "ok")
        assert verdict["broken"] is broken, (
            f"{pcap.name}: broken={verdict['broken']}, expected {broken}"
        )
