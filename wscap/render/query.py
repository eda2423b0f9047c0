"""The filtered view of a document (``--only-broken/--chain/--host/--path``) for every output
format: a copy that keeps the matching chains and their handshakes, with its summary recomputed."""
from __future__ import annotations

import copy
import fnmatch
from typing import Any

from wscap.document.spool import SpooledList
from wscap.render.mermaid import chain_of, endpoint_label, handshake_index, header, split_addr

__all__ = ["filter_document", "is_broken_handshake"]


def is_broken_handshake(hs: dict[str, Any]) -> bool:
    """Broken, for a handshake outside any chain (the CLI's exit-code rule).

    A WebSocket upgrade that did not upgrade, or any error-severity anomaly
    other than 'not-websocket-upgrade' (plain HTTP is not a failure).
    """
    if any(a.get("severity") == "error" and a.get("code") != "not-websocket-upgrade"
           for a in hs.get("anomalies") or []):
        return True
    return bool(hs.get("websocket")) and hs.get("outcome") != "upgraded"


def _host_matches(doc: dict[str, Any], hs: dict[str, Any], pattern: str) -> bool:
    pat = pattern.lower()
    cands: list[str] = []
    for head in (hs.get("request"),):
        h = header(head, "host")
        if h:
            cands += [h, split_addr(h)[0] if ":" in h else h]
    for addr in (hs.get("client"), hs.get("server")):
        if addr:
            ip = split_addr(str(addr))[0]
            cands.append(ip)
            name = endpoint_label(doc, str(addr))[0]
            if name:
                cands.append(name)
    return any(fnmatch.fnmatchcase(c.lower(), pat) for c in cands)


def _path_matches(hs: dict[str, Any], pattern: str) -> bool:
    target = str((hs.get("request") or {}).get("target") or "")
    if not target:
        return False
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(target, pattern)


def _summary(doc: dict[str, Any], hss: list[dict[str, Any]], chains: list[dict[str, Any]]) -> dict[str, Any]:
    by_cause: dict[str, int] = {}
    for c in chains:
        cause = (c.get("verdict") or {}).get("cause") or "ok"
        by_cause[cause] = by_cause.get(cause, 0) + 1
    out = dict(doc.get("summary") or {})
    out.update({
        # as the analyzer counts them: connections that carried a request
        "handshakes": sum(1 for h in hss if h.get("request") is not None),
        "websocket": sum(1 for h in hss if h.get("websocket")),
        "chains": len(chains),
        "broken": sum(1 for c in chains if (c.get("verdict") or {}).get("broken")),
        "by_cause": dict(sorted(by_cause.items())),
    })
    if "upgraded" in out:
        out["upgraded"] = sum(1 for h in hss if h.get("outcome") == "upgraded")
    return out


def filter_document(doc: dict[str, Any], only_broken: bool = False, chain: Any = None,
                    host: str | None = None, path: str | None = None) -> dict[str, Any]:
    """A copy of ``doc`` keeping only the chains (and their handshakes) that match.

    - ``only_broken``: chains whose verdict is broken; handshakes outside any
      chain that did not upgrade cleanly (:func:`is_broken_handshake`).
    - ``chain``: that chain id only (int or numeric str); lone handshakes are dropped.
    - ``host``: glob, case-insensitive, on the request's Host header (with or
      without port), or either endpoint's IP or name; a chain matches when
      any hop does.
    - ``path``: glob on the request target's path (query ignored; the full
      target is tried too); any hop.

    ``summary`` is recomputed for what is kept, ``endpoints`` trimmed to the
    kept handshakes; ``source`` and ``stats`` describe the captures and stay.
    The applied filters are recorded under ``"filter"``. With no filter the
    document is returned as a copy, unchanged.
    """
    spooled = isinstance(doc.get("handshakes"), SpooledList) or isinstance(doc.get("chains"), SpooledList)
    if not only_broken and chain is None and host is None and path is None:
        if spooled:                  # items are read fresh from the spool: nothing to copy
            return {k: v if isinstance(v, SpooledList) else copy.deepcopy(v) for k, v in doc.items()}
        return copy.deepcopy(doc)
    by_id = handshake_index(doc)
    want_chain = None
    if chain is not None:
        want_chain = int(chain) if isinstance(chain, str) and chain.strip().lstrip("-").isdigit() else chain

    def hs_ok(hs: dict[str, Any]) -> tuple[bool, bool]:
        return (host is None or _host_matches(doc, hs, host),
                path is None or _path_matches(hs, path))

    kept_chains = []
    kept_at: list[int] = []
    keep_ids: set = set()
    for k, ch in enumerate(doc.get("chains") or []):
        if want_chain is not None and ch.get("id") != want_chain:
            continue
        if only_broken and not (ch.get("verdict") or {}).get("broken"):
            continue
        if host is not None or path is not None:
            hops = [by_id.get(h) or {} for h in ch.get("hops") or []]
            marks = [hs_ok(h) for h in hops]
            if not (any(m[0] for m in marks) and any(m[1] for m in marks)):
                continue
        elif not ch.get("hops"):
            continue
        kept_at.append(k)
        keep_ids.update(ch.get("hops") or [])
        if not spooled:
            kept_chains.append(ch)
    if spooled:
        kept_chains = doc["chains"].subset(kept_at)
    in_chain = set(chain_of(doc))
    if want_chain is None:
        for hs in doc.get("handshakes") or []:
            if hs.get("id") in in_chain:
                continue
            if only_broken and not is_broken_handshake(hs):
                continue
            if all(hs_ok(hs)):
                keep_ids.add(hs.get("id"))
    if spooled:
        hss = doc["handshakes"].select(lambda h: h.get("id") in keep_ids)
    else:
        hss = [h for h in doc.get("handshakes") or [] if h.get("id") in keep_ids]
    ips = {split_addr(str(h.get(k) or ""))[0] for h in hss for k in ("client", "server")}
    out = copy.deepcopy({k: v for k, v in doc.items() if k not in ("handshakes", "chains", "endpoints")})
    out["handshakes"] = hss if spooled else copy.deepcopy(hss)
    out["chains"] = kept_chains if spooled else copy.deepcopy(kept_chains)
    out["endpoints"] = copy.deepcopy([e for e in doc.get("endpoints") or [] if e.get("ip") in ips])
    out["summary"] = _summary(doc, hss, kept_chains)
    out["filter"] = {"only_broken": bool(only_broken), "chain": want_chain, "host": host, "path": path}
    # Keep the document's key order (version, tool, source, handshakes, ...).
    return {k: out[k] for k in list(doc.keys()) + [k for k in out if k not in doc] if k in out}

