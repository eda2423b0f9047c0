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
from dataclasses import replace
from typing import Iterable, Sequence

from wscap.model.chain import Verdict
from wscap.model.endpoint import ip_of
from wscap.model.handshake import Handshake

MAX_LABEL = 64


def clean_name(name: str) -> str:
    """A name as a label: no control characters, at most MAX_LABEL characters."""
    out = "".join(ch if ch.isprintable() else "?" for ch in name[:MAX_LABEL])
    return out + ("…" if len(name) > MAX_LABEL else "")


def label(ep: str, names: dict[str, str]) -> str:
    name = names.get(ip_of(ep))
    return f"{clean_name(name)} ({ep})" if name else ep


def label_text(text: str, endpoints: Iterable[str], names: dict[str, str]) -> str:
    eps = sorted({ep for ep in endpoints if ep and names.get(ip_of(ep))}, key=len, reverse=True)
    if not eps or not text:
        return text
    pat = re.compile(r"(?<![\w.:\[/'\"@-])(" + "|".join(re.escape(e) for e in eps) + r")(?![\w:\]]|\.\d)")
    return pat.sub(lambda m: label(m.group(1), names), text)


def label_verdict(verdict: Verdict, hops: Sequence[Handshake], names: dict[str, str]) -> Verdict:
    """The verdict with the chain's endpoints in its summary and evidence written as labels."""
    if not names:
        return verdict
    eps = [str(ep) for h in hops for ep in (h.client, h.server)]
    return replace(verdict, summary=label_text(verdict.summary, eps, names),
                   evidence=tuple(replace(ev, what=label_text(ev.what, eps, names)) for ev in verdict.evidence))
