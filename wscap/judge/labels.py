"""Endpoint labels in sentences: `vite (172.18.0.2:5173)` wherever a name is known.

Verdict sentences are written with bare `ip:port` endpoints (verdict.py never needs to
know about names); `label_verdict` then rewrites the chain's own endpoints in the summary
and the evidence. Only whole endpoints of the chain are replaced, and never inside a
quoted URL or header value (an Origin `'http://172.18.0.3:5000'` stays what the wire said).
Names can come from a capture's Name Resolution Blocks, i.e. from whoever wrote the file:
they are cut and stripped of control characters here, and renderers escape them again.
"""
from __future__ import annotations

import re

MAX_LABEL = 64


def clean_name(name: str) -> str:
    """A name as a label: no control characters, at most MAX_LABEL characters."""
    out = "".join(ch if ch.isprintable() else "?" for ch in name[:MAX_LABEL])
    return out + ("…" if len(name) > MAX_LABEL else "")


def ip_of(ep: str) -> str:
    return ep.rpartition(":")[0].strip("[]")


def label(ep: str, names: dict[str, str]) -> str:
    name = names.get(ip_of(ep))
    return f"{clean_name(name)} ({ep})" if name else ep


def label_text(text: str, endpoints, names: dict[str, str]) -> str:
    eps = sorted({ep for ep in endpoints if ep and names.get(ip_of(ep))}, key=len, reverse=True)
    if not eps or not text:
        return text
    pat = re.compile(r"(?<![\w.:\[/'\"@-])(" + "|".join(re.escape(e) for e in eps) + r")(?![\w:\]]|\.\d)")
    return pat.sub(lambda m: label(m.group(1), names), text)


def label_verdict(verdict: dict, hops: list[dict], names: dict[str, str]) -> None:
    """Rewrite the chain's endpoints in its verdict summary and evidence as labels (in place)."""
    if not names:
        return
    eps = [h.get(side) for h in hops for side in ("client", "server")]
    verdict["summary"] = label_text(verdict.get("summary", ""), eps, names)
    for ev in verdict.get("evidence") or []:
        if isinstance(ev.get("what"), str):
            ev["what"] = label_text(ev["what"], eps, names)
