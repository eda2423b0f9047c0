"""The command line: exit codes, formats, filters, report and slice, as a user runs them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from builders import Capture, proxied_chain
from wscap.model.anomaly import CODES
from wscap.cli.main import main
from wscap.judge.verdict import ADVICE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def captures(tmp_path):
    ok = Capture()
    proxied_chain(ok, 0)
    bad = Capture()
    proxied_chain(bad, 0)
    bad.wait(2)
    proxied_chain(bad, 1, backend_status=403, origin_rewrite=True)
    return ok.write(tmp_path / "ok.pcap"), bad.write(tmp_path / "bad.pcap")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_exit_codes(captures, tmp_path):
    ok, bad = captures
    assert run("analyze", ok).exit_code == 0
    assert run("analyze", bad).exit_code == 1
    assert run("analyze", str(tmp_path / "missing.pcap")).exit_code == 2
    truncated = tmp_path / "cut.pcap"
    truncated.write_bytes(Path(ok).read_bytes()[:-7])
    r = run("analyze", "--format", "json", str(truncated))
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["handshakes"] and "truncated" in doc["source"][0]["errors"][0]


def test_json_contract_top_level(captures):
    r = run("analyze", "--format", "json", captures[1])
    doc = json.loads(r.stdout)
    assert set(doc) >= {"version", "source", "handshakes", "chains", "endpoints", "stats", "summary"}
    assert doc["version"] == 1
    h = doc["handshakes"][0]
    assert set(h) >= {"id", "client", "server", "first_frame", "last_frame", "first_ts", "last_ts", "request",
                      "response", "outcome", "status", "anomalies", "frames"}
    c = doc["chains"][1]
    assert set(c) >= {"id", "hops", "diffs", "verdict"}
    assert set(c["verdict"]) >= {"cause", "hop", "summary", "evidence"}
    assert c["verdict"]["cause"] == "origin-rejected" and c["verdict"]["hop"] == 1


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "csv", "har", "json"])
def test_every_format_renders(captures, fmt):
    r = run("analyze", "--format", fmt, captures[1])
    assert r.exit_code == 1 and r.stdout.strip()
    if fmt in ("json", "har"):
        json.loads(r.stdout)


def test_only_broken_filter(captures):
    doc = json.loads(run("analyze", "--format", "json", "--only-broken", captures[1]).stdout)
    assert [c["verdict"]["cause"] for c in doc["chains"]] == ["origin-rejected"]


def test_report_and_slice(captures, tmp_path):
    out = tmp_path / "r.md"
    r = run("report", captures[1], "-o", str(out))
    assert r.exit_code == 1 and "origin-rejected" in out.read_text()
    sl = tmp_path / "s.pcap"
    r = run("slice", captures[1], "--chain", "2", "-o", str(sl))
    assert r.exit_code == 0
    doc = json.loads(run("analyze", "--format", "json", str(sl)).stdout)
    assert [c["verdict"]["cause"] for c in doc["chains"]] == ["origin-rejected"]
    assert run("slice", captures[1], "--chain", "9", "-o", str(sl)).exit_code == 2


def test_console_script_and_module_entry_point(captures):
    r = subprocess.run([sys.executable, "-m", "wscap", "analyze", captures[0]], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout


def test_every_anomaly_code_and_cause_is_documented_in_the_reference():
    readme = (ROOT / "docs" / "reference.md").read_text()
    for code in CODES:
        assert f"`{code}`" in readme, code
    for cause in ADVICE:
        assert f"`{cause}`" in readme, cause


def test_every_emitted_code_is_registered(captures):
    doc = json.loads(run("analyze", "--format", "json", captures[1]).stdout)
    for h in doc["handshakes"]:
        for a in h["anomalies"]:
            assert a["code"] in CODES


def test_parallel_jobs_give_identical_output(captures, tmp_path):
    """-j N analyses files in worker processes; the document must be byte-identical to -j 1."""
    files = [str(p) for p in sorted((ROOT / "pcaps").glob("*.pcap"))[:8]] + list(captures)
    one = subprocess.run([sys.executable, "-m", "wscap", "analyze", "--format", "json", *files],
                         capture_output=True, text=True)
    two = subprocess.run([sys.executable, "-m", "wscap", "analyze", "--format", "json", "-j", "2", *files],
                         capture_output=True, text=True)
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout
    doc = json.loads(two.stdout)
    assert len(doc["source"]) == len(files)
    assert [h["id"] for h in sorted(doc["handshakes"], key=lambda h: h["id"])] == list(
        range(1, len(doc["handshakes"]) + 1))
