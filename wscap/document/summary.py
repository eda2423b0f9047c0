"""The document's endpoints (every address with its role and ports) and its summary counts.

Both are computed from light values kept in memory (link views, verdicts, per-handshake count
bits taken when a document is spooled), never from the full handshake documents.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from wscap.document.codec import Doc
from wscap.model.chain import Cause, HopChain
from wscap.model.handshake import Handshake, Outcome


class Addresses:
    """What `endpoints` reads of the legs alone (every address, the server ports, the legs by id):
    taken before the chains are judged, while the judging helper may still be at work."""

    def __init__(self, legs: Sequence[tuple[int | None, Handshake]]) -> None:
        self.by_id = dict(legs)
        self.roles: dict[str, set[str]] = {}
        self.ports: dict[str, set[int]] = {}
        roles, ports = self.roles, self.ports
        for _id, h in legs:
            roles.setdefault(h.client.ip, set())
            roles.setdefault(h.server.ip, set())
            ports.setdefault(h.server.ip, set()).add(h.server.port)


def endpoints(legs: Sequence[tuple[int | None, Handshake]] | Addresses, chains: Iterable[tuple[Sequence[int], str]],
              names: dict[str, str]) -> list[Doc]:
    """Every address with its role and server ports. `legs`: (final id, leg), or their Addresses;
    `chains`: (hop ids, verdict cause)."""
    seen = legs if isinstance(legs, Addresses) else Addresses(legs)
    by_id, roles, ports = seen.by_id, seen.roles, seen.ports
    for hop_ids, cause in chains:
        hops = [by_id[i] for i in hop_ids if i in by_id]
        for i, h in enumerate(hops):
            roles[h.client.ip].add("client" if i == 0 else "proxy")
            role = _last_server_role(cause, hops) if i == len(hops) - 1 else "proxy"
            if role:
                roles[h.server.ip].add(role)
    out = []
    for ip in sorted(roles):
        r = roles[ip]
        role = "proxy" if "proxy" in r else "client" if r == {"client"} else "backend" if r == {"backend"} else (
            "client" if "client" in r else "unknown")
        out.append({"ip": ip, "name": names.get(ip), "role": role, "ports": sorted(ports.get(ip, ()))})
    return out


_PROXY_ANSWERED = frozenset({Cause.NO_UPSTREAM_CONNECTION.value, Cause.PROXY_REJECTED.value})


def _last_server_role(cause: str, hops: Sequence[Handshake]) -> str | None:
    """Role of the deepest leg's server, from the chain rather than a guess: a proxy when the
    verdict says it answered or gave up without going upstream; the backend only when the chain
    reached it (its request arrived, or its host answered the SYN with RST); else unknown —
    a server that never answered may be a proxy waiting on its own upstream."""
    last = hops[-1]
    if cause in _PROXY_ANSWERED:
        return "proxy"
    if len(hops) > 1:
        return "backend" if last.request is not None or last.outcome is Outcome.REFUSED else None
    return "backend" if last.response is not None else None


def count_flags(h: Doc) -> int:
    """What the summary counts of one handshake document, as bits (kept beside its spool location,
    so the summary needs no second read of every document)."""
    return ((h["request"] is not None) | bool(h["websocket"]) << 1 | (h["outcome"] == "upgraded") << 2
            | any(a["severity"] == "error" and a["code"] != "not-websocket-upgrade" for a in h["anomalies"]) << 3)


def counts_of(flags: Iterable[int]) -> dict[str, int]:
    n = {"handshakes": 0, "websocket": 0, "upgraded": 0, "with_errors": 0}
    for f in flags:
        n["handshakes"] += f & 1
        n["websocket"] += f >> 1 & 1
        n["upgraded"] += f >> 2 & 1
        n["with_errors"] += f >> 3 & 1
    return n


def handshake_counts(handshakes: Iterable[Doc]) -> dict[str, int]:
    return counts_of(count_flags(h) for h in handshakes)


def summary(counts: dict[str, int], chains: Sequence[HopChain], tls: Sequence[Doc] = ()) -> Doc:
    by_cause: dict[str, int] = {}
    for c in chains:
        assert c.verdict is not None
        by_cause[c.verdict.cause.value] = by_cause.get(c.verdict.cause.value, 0) + 1
    return {**counts, "chains": len(chains),
            "broken": sum(1 for c in chains if c.verdict is not None and c.verdict.broken),
            "by_cause": dict(sorted(by_cause.items())),
            "tls": {"connections": len(tls), "decrypted": sum(1 for t in tls if t["decrypted"])}}
