"""The live benchmark harness (scripts/bench/live) runs end to end: a tiny run on a namespace
bridge gives a well-formed results table with a control row that counted packets and a row for
the subject. No timing or completeness is asserted here: those are the benchmark's numbers."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns import can_make_netns  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIVE = os.path.join(ROOT, "scripts", "bench", "live")


def _skip_reason() -> str | None:
    ok, why = can_make_netns()
    if not ok:
        return why
    if not shutil.which("tcpdump"):
        return "needs tcpdump (the benchmark's control)"
    return None


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_live_bench_smoke(tmp_path):
    out = tmp_path / "results.md"
    r = subprocess.run([sys.executable, LIVE, "--quick", "--smoke", "--out", str(out), "--tmp", str(tmp_path)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    assert re.fullmatch(r"\|(-+\|)+", rows[1]), rows[1]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]
    assert all(len(c) == len(head) for c in cells), cells
    col = {name: i for i, name in enumerate(head)}
    control = [c for c in cells if c[col["subject"]].startswith("control")]
    subject = [c for c in cells if c[col["subject"]] == "`wscap live`"]
    assert len(control) == 1 and len(subject) == 1, cells
    # The smoke load sends thousands of packets across the bridge; the control saw them.
    assert int(control[0][col["file pkts"]].replace(",", "")) > 0
    assert int(control[0][col["bridge pkts"]].replace(",", "")) > 0
