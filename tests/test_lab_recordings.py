"""Recordings made by the reproduction lab (scripts/lab/run) against wscap.

Every pcaps/NAME.pcap that has a pcaps/NAME.expected.json is checked three ways:

* the expected file is well formed (always runs);
* the capture really shows what the expected file claims, read with the lab's
  own tiny pcap reader, not with wscap (always runs);
* wscap.analyze_paths([pcap]) finds the same chains with the same verdicts
  (skipped until wscap.analyze_paths exists; see docs/json-contract.md).

The end-to-end re-recording of a scenario lives in tests/lab/test_lab_live.py.
"""

from __future__ import annotations

import importlib
import json
import os
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
    assert e["versions"].get("vite") and e["versions"].get("chromium")
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


# -- wscap -------------------------------------------------------------------


def analyze_paths():
    wscap = pytest.importorskip("wscap")
    fn = getattr(wscap, "analyze_paths", None)
    if fn is None:
        try:  # the entry point may live in a submodule that wscap/__init__ does not import yet
            fn = getattr(
                importlib.import_module("wscap.analyze"), "analyze_paths", None
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


@pytest.mark.parametrize("pcap,exp", recordings(with_gaps=True))
def test_wscap_matches_expected(pcap, exp):
    fn = analyze_paths()
    e = load(exp)
    doc = fn([str(pcap)])
    assert doc.get("version") == 1
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
