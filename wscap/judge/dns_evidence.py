"""The DNS sentence of a verdict: the proxy's lookups around a chain that stopped at it.

A chain that ends at a proxy (`no-upstream-connection`, `timeout`, a 502/503/504 from it) may
have stopped because the proxy could not resolve its upstream name. The lookups the capture
holds (flow/dns.py's tracker) become the verdict's evidence and a sentence; when the capture
holds none, the verdict says where DNS would be visible instead.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from wscap.document.codec import ns_to_s
from wscap.flow.dns import DnsTracker, safe_name
from wscap.model.chain import Evidence, Verdict
from wscap.model.handshake import Handshake

_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RELEVANT = {"no-upstream-connection", "timeout", "proxy-rejected"}
# Worst first: what a name's lookups add up to when several were made in the window.
_SEVERITY = {"servfail": 0, "refused": 1, "nxdomain": 2, "error": 3, "no-answer": 4, "nodata": 5, "ok": 6}


def _answered_s(h: Handshake) -> float | None:
    """When the deepest leg's wait ended (its answer, its connection's end, or its timeout)."""
    if h.response is not None:
        return ns_to_s(h.response.ts_ns)
    if h.tcp.end is not None:
        return ns_to_s(h.tcp.end.ts_ns)
    if h.request is not None and h.waited_ns is not None:
        return ns_to_s(h.request.ts_ns) + ns_to_s(h.waited_ns)
    return None


def explain(tracker: DnsTracker, verdict: Verdict, last: Handshake, n_hops: int, timeout_s: float,
            names: dict[str, str] | None = None) -> Verdict:
    """`verdict` with the DNS evidence added (summary, evidence, `dns`) when the chain stopped at
    a proxy that may have failed to resolve its upstream name; unchanged otherwise."""
    if last.request is None:
        return verdict
    cause, status = verdict.cause.value, last.status
    if cause not in RELEVANT and not (status in (502, 503, 504) and last.response is not None):
        return verdict
    if cause == "proxy-rejected" and status not in (502, 503, 504):
        return verdict                   # a 403/404 from the proxy itself: not a lookup problem
    host = last.server.ip
    t0 = ns_to_s(last.request.ts_ns)
    t1 = _answered_s(last)
    hi = (t1 if t1 is not None else t0 + timeout_s) + 0.5
    lookups = tracker.near(host, t0 - 1.0, hi)
    if n_hops > 1:
        # The deepest leg was reached through a proxy (whose own lookups worked): its server is
        # likely the backend. Only its failed lookups are worth a sentence; silence otherwise.
        lookups = [e for e in lookups if e["outcome"] != "ok"]
        if not lookups:
            return verdict
    if not lookups:
        if tracker.sent_any(host):
            return replace(verdict, dns={"host": host, "visible": True, "lookups": []})
        name = (names or {}).get(host)
        target = safe_name(name) if name and _CONTAINER_NAME.fullmatch(name) else "<proxy>"
        return replace(verdict, dns={"host": host, "visible": False, "lookups": []}, summary=(
            verdict.summary + f" DNS was not visible from this capture point: it holds no lookup from {host}. A "
            "container resolves names through Docker's resolver at 127.0.0.11 on its own "
            f"loopback; `wscap live --container {target}` captures there."))
    worst = _worst(lookups)
    sentences = [_sentence(e) for e in worst[:2]]
    if len(worst) > 2:
        sentences.append(f"({len(worst) - 2} more name(s) looked up in that time.)")
    evidence = list(verdict.evidence)
    for e in worst[:2]:
        item = Evidence(last.id, e["source"], e["answer_frame"] if e["answer_frame"] is not None else e["query_frame"],
                        f"DNS {e['type']} {e['name']} → " + (e["rcode"] or "no answer"))
        # In frame order among the evidence of the same capture (the lookup precedes the 502).
        at = next((i for i, x in enumerate(evidence) if x.source == item.source
                   and x.frame is not None and item.frame is not None and x.frame > item.frame), len(evidence))
        evidence.insert(at, item)
    dns = {"host": host, "visible": True,
           "lookups": [{k: e[k] for k in ("source", "name", "type", "outcome", "rcode", "query_frame",
                                           "answer_frame", "addresses")} for e in worst]}
    return replace(verdict, summary=verdict.summary + " " + " ".join(sentences), evidence=tuple(evidence), dns=dns)


def _worst(lookups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per name, its first good answer or else its worst failure; worst first."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in lookups:
        by_name.setdefault(e["name"], []).append(e)
    worst = []
    for es in by_name.values():
        if any(e["outcome"] == "ok" for e in es):
            worst.append(min((e for e in es if e["outcome"] == "ok"), key=lambda e: e["query_ts"] or 0))
        else:
            worst.append(min(es, key=lambda e: (_SEVERITY[e["outcome"]], e["query_ts"] or 0)))
    worst.sort(key=lambda e: (_SEVERITY[e["outcome"]], e["query_ts"] or e["answer_ts"] or 0))
    return worst


def _sentence(e: dict[str, Any]) -> str:
    n = f"`{e['name']}`" if e["name"] else "a name"
    if e["outcome"] == "ok":
        return (f"The proxy resolved {n} to {', '.join(e['addresses'][:3])} (frame "
                f"{e['answer_frame']}) but no connection to it was seen.")
    if e["outcome"] == "no-answer":
        return f"The proxy's lookup of {n} got no answer (query frame {e['query_frame']})."
    if e["outcome"] == "nodata":
        return (f"The proxy's lookup of {n} returned no address (NOERROR without records, "
                f"frame {e['answer_frame']}).")
    return f"The proxy's lookup of {n} failed ({e['rcode']}, frame {e['answer_frame']})."
