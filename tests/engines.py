"""Both engines on one capture, compared as typed handshakes and chains (issues 14 and 18).

`facts(doc)` reads a document into typed values: per handshake its endpoints, frames, status,
outcome, TCP facts, the anomaly *codes* with their frames, the WebSocket frames' fields; per chain
its legs and the verdict's cause and hop. Prose (anomaly messages, verdict summaries, advice) is
never compared: it is the core's wording, and both engines reuse the core's judge.
`differences(core, tsh)` -> {path: (core value, tshark value)} where they differ;
`engines_differ(path)` runs both (None when tshark is not installed: the caller skips then).
"""
from __future__ import annotations

import json
import shutil
from typing import Any, NamedTuple


class Leg(NamedTuple):
    source: int
    client: str
    server: str


class HandshakeFacts(NamedTuple):
    leg: Leg
    first_frame: int
    last_frame: int
    websocket: bool
    http_version: str
    request: tuple | None          # (method, target, version, frame, complete, headers)
    response: tuple | None         # (version, frame, complete, headers)
    status: int | None
    outcome: str
    anomalies: tuple               # sorted (code, severity, frame)
    frames: tuple                  # per WebSocket frame: (dir, frame, opcode, fin, rsv1-3, masked, length, close code, reason, preview)
    tcp: tuple                     # (syn, synack, end kind, end by, end frame, gaps, client bytes, server bytes)
    h2: str | None                 # the h2 object (stream, mode, settings, reset, end_stream), as JSON
    tls: str | None
    tunnel: str | None
    parsers: str                   # llhttp/h11 verdicts, as JSON
    waited: float | None


class ChainFacts(NamedTuple):
    legs: tuple                    # Leg per hop, client side first
    links: tuple                   # (from leg index, to leg index, by)
    cause: str
    hop: int | None
    broken: bool
    evidence: tuple                # (leg index, frame) the verdict cites
    diffs: tuple                   # (boundary, direction, kind, name, class) of every header change
    encrypted_before: str | None


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _headers(head: dict) -> tuple:
    return tuple((h[0], h[1]) if isinstance(h, list) else tuple(sorted(h.items())) for h in head.get("headers", []))


def handshake_facts(h: dict) -> HandshakeFacts:
    req, resp, tcp = h["request"], h["response"], h["tcp"]
    end = tcp["end"] or {}
    return HandshakeFacts(
        leg=Leg(h["source"], h["client"], h["server"]), first_frame=h["first_frame"], last_frame=h["last_frame"],
        websocket=h["websocket"], http_version=h["http_version"],
        request=None if req is None else (req["method"], req["target"], req["version"], req["frame"],
                                          req["complete"], _headers(req)),
        response=None if resp is None else (resp["version"], resp["frame"], resp["complete"], _headers(resp)),
        status=h["status"], outcome=h["outcome"],
        anomalies=tuple(sorted((a["code"], a["severity"], a["frame"] or 0) for a in h["anomalies"])),
        frames=tuple((f["dir"], f["frame"], f["opcode"], f["fin"], f["rsv1"], f["rsv2"], f["rsv3"], f["masked"],
                      f["length"], f["close_code"], f["close_reason"], f["preview"]) for f in h["frames"]),
        tcp=(tcp["syn_frame"], tcp["synack_frame"], end.get("kind"), end.get("by"), end.get("frame"), tcp["gaps"],
             tcp["client_bytes"], tcp["server_bytes"]),
        h2=_dump(h["h2"]), tls=_dump(h["tls"]), tunnel=_dump(h["tunnel"]), parsers=json.dumps(h["parsers"]),
        waited=h["waited"])


def facts(doc: dict) -> dict[str, Any]:
    """The comparable typed values of a document, keyed by a readable path. Handshakes are keyed by
    their leg and request frame (ids may differ in order only where both are right)."""
    out: dict[str, Any] = {}
    legs = {h["id"]: Leg(h["source"], h["client"], h["server"]) for h in doc["handshakes"]}
    order = {h["id"]: i for i, h in enumerate(doc["handshakes"])}
    for h in doc["handshakes"]:
        f = handshake_facts(h)
        name = f"hs{h['id']}"
        for k, v in f._asdict().items():
            out[f"{name}.{k}"] = v
    for c in doc["chains"]:
        v = c["verdict"]
        hops = tuple(legs[i] for i in c["hops"])
        idx = {hid: order[hid] for hid in c["hops"]}
        out[f"chain{c['id']}"] = ChainFacts(
            legs=hops, links=tuple((idx[lk["from"]], idx[lk["to"]], lk["by"]) for lk in c["links"]),
            cause=v["cause"], hop=v["hop"], broken=v["broken"],
            evidence=tuple((idx.get(e["hop_id"]), e["frame"]) for e in v.get("evidence", [])),
            diffs=tuple((d["boundary"], d["direction"], ch["kind"], ch["name"], ch["class"])
                        for d in c["diffs"] for ch in d["changes"]),
            encrypted_before=_dump(c.get("encrypted_before")))
    out["tls"] = tuple(_dump({k: v for k, v in t.items() if k != "handshakes"}) for t in doc.get("tls", []))
    out["endpoints"] = _dump(doc["endpoints"])
    out["summary"] = _dump(doc["summary"])
    out["handshakes.len"] = len(doc["handshakes"])
    out["chains.len"] = len(doc["chains"])
    return out


def differences(core: dict, tsh: dict) -> dict[str, tuple]:
    a, b = facts(core), facts(tsh)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")}


def available() -> bool:
    return shutil.which("tshark") is not None


def engines_differ(path: str, options: Any = None) -> dict | None:
    if not available():
        return None
    from wscap.engine.analyze import analyze_paths as core
    from wscap.engine.tshark import analyze_paths as tsh
    return differences(core([path], options), tsh([path], options))


def analyse_checked(path: str, known: frozenset[str] | set[str] = frozenset()) -> dict:
    """The core's document; where tshark is installed, the tshark engine must agree field by field
    (except the `known` fields, each documented in docs/engine-differences.md)."""
    from wscap.engine.analyze import analyze_paths
    doc = analyze_paths([path])
    diff = engines_differ(path)
    if diff is not None:
        assert set(diff) == set(known), f"--engine tshark differs: {diff}"
    return doc
