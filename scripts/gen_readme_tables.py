#!/usr/bin/env python3
"""Regenerate the reference's anomaly-code and cause tables (docs/reference.md) from wscap's registries.

anomaly.CODES and verdict.ADVICE are the single sources; this rewrites the text
between the `<!-- codes:start/end -->` and `<!-- causes:start/end -->` markers.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from wscap.model.anomaly import CODES  # noqa: E402
from wscap.judge.verdict import ADVICE  # noqa: E402

readme = os.path.join(os.path.dirname(__file__), "..", "docs", "reference.md")
text = open(readme, encoding="utf-8").read()
codes = "| code | severity | meaning |\n|---|---|---|\n" + "\n".join(
    f"| `{c}` | {sev.value} | {doc.replace('|', '/')} |" for c, (sev, doc) in CODES.items())
causes = "| cause | what to check next |\n|---|---|\n" + "\n".join(
    f"| `{c}` | {a.replace('|', '/')} |" for c, a in ADVICE.items())
for name, table in (("codes", codes), ("causes", causes)):
    text = re.sub(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)",
                  lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
open(readme, "w", encoding="utf-8").write(text)
