"""Handshake documents + bare connection attempts -> the analyze JSON document.

What `Pipeline.document()` does after its own reassembly, for engines that build the
Handshake dicts some other way (`engine_tshark`): ids in order of the requests, bare
attempts kept only when they could be a chain's missing hop, linking and judging through
`wscap.judge.chains`, endpoints and summary through `wscap.engine.core`. Pure: dicts in, dict out.
"""
from __future__ import annotations

from wscap import __version__
from wscap.judge.chains import LINK_WINDOW_S, EncryptedLegs, link_chains, judge_chain
from wscap.engine.core import SCHEMA_VERSION, Options, endpoints, summary


def _ip(ep: str) -> str:
    return ep.rpartition(":")[0].strip("[]")


def could_be_a_hop(attempt: dict, requests_to: dict[tuple[int, str], list[float]], window_s: float) -> bool:
    """As Pipeline._could_be_a_hop: did the attempt's client address receive an upgrade request
    within the link window before it dialled out (or up to 1 ms after)?"""
    seen = requests_to.get((attempt["source"], _ip(attempt["client"])))
    if not seen:
        return False
    lo = attempt["first_ts"] - window_s
    return any(lo <= t <= attempt["first_ts"] + 0.001 for t in seen)


def document(handshakes: list[dict], attempts: list[dict], sources: list[dict], stats: dict,
             options: Options | None = None, tls: list[dict] | None = None, dns=None,
             capture_names: dict[str, str] | None = None) -> dict:
    """`handshakes`: Handshake dicts with a request, in request order (ids are assigned here, from 1,
    in that order); `attempts`: Handshake dicts of bare connection attempts (request null);
    `tls`: connections that carried TLS, their "handshakes" holding Handshake dicts (-> ids)."""
    options = options or Options()
    window = max(LINK_WINDOW_S, options.timeout_s)
    limit = options.limits.max_handshakes
    shown: list[dict] = []
    dropped = 0
    for h in handshakes:
        if len(shown) >= limit:
            dropped += 1
            continue
        h["id"] = len(shown) + 1
        shown.append(h)
    requests_to: dict[tuple[int, str], list[float]] = {}
    for h in shown:
        requests_to.setdefault((h["source"], _ip(h["server"])), []).append(h["request"]["ts"])
    kept = [a for a in attempts if could_be_a_hop(a, requests_to, window)]
    unlinked = len(attempts) - len(kept)
    for a in kept:
        a["id"] = None
    chains, used, proxies = link_chains(shown, kept, options.timeout_s)
    next_id = len(shown) + 1
    for a in used:
        if a["id"] is None:
            a["id"] = next_id
            next_id += 1
    encrypted = EncryptedLegs(tls or [])
    # As Pipeline.names(): --names > the captures' Name Resolution Blocks > the Docker API.
    names = {**dict(options.names_fallback), **(capture_names or {}), **dict(options.names)}
    for c in chains:
        judge_chain(c, c["hops"], proxies, names, dns, options.timeout_s)
        c["encrypted_before"] = encrypted.before(c["hops"][0])
        c["hops"] = [h["id"] for h in c["hops"]]
        for link in c["links"]:
            link["from"], link["to"] = link["from"]["id"], link["to"]["id"]
    all_hs = sorted(shown + used, key=lambda h: (h["source"], h["first_frame"]))
    stats = dict(stats)
    stats["unlinked_attempts"] = unlinked
    if dropped:
        stats.setdefault("limits_hit", {})["max_handshakes"] = dropped
    tls_list = []
    for t in sorted(tls or [], key=lambda t: (t["source"], t["first_frame"])):
        tls_list.append({**t, "handshakes": [h["id"] for h in t["handshakes"] if h.get("id") is not None]})
    summ = summary(all_hs, chains)
    summ["tls"] = {"connections": len(tls_list), "decrypted": sum(1 for t in tls_list if t["decrypted"])}
    return {
        "version": SCHEMA_VERSION,
        "tool": f"wscap {__version__}",
        "source": sources,
        "handshakes": all_hs,
        "chains": chains,
        "tls": tls_list,
        **({"dns": dns.to_json()} if dns is not None else {}),
        "endpoints": endpoints(all_hs, chains, names),
        "stats": stats,
        "summary": summ,
    }
