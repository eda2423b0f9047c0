"""Regenerate docs/sample-report.md and docs/sample-report.html.

The sample is the incident report for the lab's origin-rewrite recording
(pcaps/origin-rewrite.pcap: a Vite proxyReqWs hook rewrites Origin, the
backend answers 403). Redacted, as `wscap report` writes by default. Run from
the repo root:

    python scripts/render_check/make_sample_report.py
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from wscap import analyze_paths  # noqa: E402
from wscap.render.redact import redact_document  # noqa: E402
from wscap.render.report import write_report  # noqa: E402

CAPTURE = "pcaps/origin-rewrite.pcap"


def main() -> None:
    import os

    os.chdir(ROOT)  # keep the capture path relative in the report
    doc = redact_document(analyze_paths([CAPTURE]))
    for suffix in (".md", ".html"):
        out = ROOT / "docs" / f"sample-report{suffix}"
        write_report(doc, str(out))
        print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
