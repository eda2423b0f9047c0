"""Document codec: contract v1 dicts <-> typed values. Dicts live here and in the renderers only.

The spool keeps handshake documents as the dicts the JSON writer prints, byte for byte; the
judge reads them through `decode_handshake`, and the chains it builds are written back by
`encode_chain` into exactly the dicts of contract v1. Times: the document's seconds carry 6
decimals, so `s_to_ns` is exact (µs) and `ns_to_s` gives back the same float.
"""
from __future__ import annotations

from typing import Any, Callable

from wscap.model.anomaly import Anomaly, Severity
from wscap.model.chain import (Cause, Change, Evidence, HeaderDiff, HopChain, Link, LinkBy, StatusChange,
                               Verdict)
from wscap.model.endpoint import Endpoint
from wscap.model.handshake import Frame, Handshake, Head, Outcome, Tcp, TcpEnd
from wscap.wire.pcapio import _fastpath

Doc = dict[str, Any]


def _call(cls: Any, *fields: Any) -> Any:
    return cls(*fields)


# cls(*fields) for the model's values: at their slots in C (wire/_fastpath.c make: a frozen
# dataclass's __init__ sets each field through object.__setattr__, and every leg is decoded at
# least twice), else the call. Fields are given in order, all of them.
_make: Callable[..., Any] = _fastpath.make if _fastpath is not None else _call
SCHEMA_VERSION = 1         # the document's "version": fields are only ever added within one version


def s_to_ns(s: float) -> int:
    return round(s * 1_000_000) * 1000


def ns_to_s(ns: int) -> float:
    return round(ns / 1e9, 6)


_ENDPOINTS: dict[str, Endpoint] = {}       # text -> value: every leg is decoded twice (link view, judging)


def endpoint(text: str) -> Endpoint:
    """`Endpoint.parse`, remembered (Endpoint is immutable; at most 4096 texts are kept)."""
    ep = _ENDPOINTS.get(text)
    if ep is None:
        if len(_ENDPOINTS) >= 4096:
            _ENDPOINTS.clear()
        ep = _ENDPOINTS[text] = Endpoint.parse(text)
    return ep


# -- anomalies ------------------------------------------------------------------------------
# Enum lookups by value through a dict: calling the Enum class costs several times more, and
# every leg of every chain is decoded.
_SEVERITY = {s.value: s for s in Severity}
_OUTCOME = {o.value: o for o in Outcome}


def decode_anomaly(d: Doc) -> Anomaly:
    sev = _SEVERITY.get(d["severity"]) or Severity(d["severity"])
    return _make(Anomaly, d["code"], sev, d["message"], d.get("frame"), d.get("side"), d.get("head"))


def encode_anomaly(a: Anomaly) -> Doc:
    return a.to_json()


# -- handshakes ------------------------------------------------------------------------------
def _head(d: Doc | None) -> Head | None:
    if d is None:
        return None
    g = d.get
    return Head(d["version"], tuple(map(tuple, d["headers"])), g("frame"), s_to_ns(d["ts"]),  # type: ignore[arg-type]
                g("raw", ""), g("complete", True), g("method"), g("target"), g("status"), g("reason"))


def _encode_head(h: Head | None) -> Doc | None:
    if h is None:
        return None
    base = {"version": h.version, "headers": [[n, v] for n, v in h.headers], "frame": h.frame,
            "ts": ns_to_s(h.ts_ns), "raw": h.raw, "complete": h.complete}
    if h.method is not None:
        return {"method": h.method, "target": h.target, **base}
    return {**base, "status": h.status, "reason": h.reason}


def _frame(d: Doc) -> Frame:
    try:        # the core engine writes every key
        return Frame(d["dir"], d["frame"], round(d["ts"] * 1_000_000) * 1000, d["fin"], d["rsv1"], d["rsv2"],
                     d["rsv3"], d["opcode"], d["opcode_name"], d["masked"], d["length"], d["close_code"],
                     d["close_reason"], d["preview"])
    except KeyError:
        pass
    g = d.get
    return Frame(d["dir"], g("frame"), s_to_ns(d["ts"]), g("fin", True), g("rsv1", False), g("rsv2", False),
                 g("rsv3", False), d["opcode"], g("opcode_name", ""), g("masked", False), g("length", 0),
                 g("close_code"), g("close_reason"), g("preview"))


def _encode_frame(f: Frame) -> Doc:
    return {"dir": f.dir, "frame": f.frame, "ts": ns_to_s(f.ts_ns), "fin": f.fin, "rsv1": f.rsv1,
            "rsv2": f.rsv2, "rsv3": f.rsv3, "opcode": f.opcode, "opcode_name": f.opcode_name,
            "masked": f.masked, "length": f.length, "close_code": f.close_code,
            "close_reason": f.close_reason, "preview": f.preview}


def _tcp(d: Doc) -> Tcp:
    e = d.get("end")
    end = None if not e else _make(TcpEnd, e["kind"], e["by"], e.get("frame"), s_to_ns(e["ts"]))
    return _make(Tcp, d.get("syn_frame"), d.get("synack_frame"), end, d.get("gaps", 0), d.get("client_bytes", 0),
                 d.get("server_bytes", 0))


def _encode_tcp(t: Tcp) -> Doc:
    end = None if t.end is None else {"kind": t.end.kind, "by": t.end.by, "frame": t.end.frame,
                                      "ts": ns_to_s(t.end.ts_ns)}
    return {"syn_frame": t.syn_frame, "synack_frame": t.synack_frame, "end": end, "gaps": t.gaps,
            "client_bytes": t.client_bytes, "server_bytes": t.server_bytes}


def decode_handshake(d: Doc) -> Handshake:
    """A handshake document (spooled, or built by the tshark engine) as a typed value."""
    waited = d.get("waited")
    return _make(      # Handshake(id, source, client, server, first_frame, last_frame, first_ts_ns, last_ts_ns,
        Handshake,     #   websocket, request, response, outcome, status, anomalies, frames, tcp, waited_ns,
                       #   http_version, parsers, h2, tls, tunnel)
        d.get("id"), d["source"], endpoint(d["client"]), endpoint(d["server"]), d["first_frame"], d["last_frame"],
        s_to_ns(d["first_ts"]), s_to_ns(d["last_ts"]), bool(d.get("websocket")), _head(d.get("request")),
        _head(d.get("response")), _OUTCOME.get(d["outcome"]) or Outcome(d["outcome"]), d.get("status"),
        tuple(decode_anomaly(a) for a in d.get("anomalies", ())), tuple(_frame(f) for f in d.get("frames") or ()),
        _tcp(d.get("tcp") or {}), None if waited is None else s_to_ns(waited), d.get("http_version", "1.1"),
        d.get("parsers"), d.get("h2"), d.get("tls"), d.get("tunnel"))


def decode_link_view(d: Doc) -> Handshake:
    """Only what linking reads (ids, endpoints, times, frames, the key): kept in memory for every
    handshake of a capture while the full documents wait in the spool."""
    req = d.get("request")
    key = None
    if req:
        for n, v in req["headers"]:
            # lower() never shortens a string, and lengthens one only by adding a combining mark:
            # a name that is not 17 characters long cannot lower to this one
            if len(n) == 17 and n.lower() == "sec-websocket-key":
                key = v.strip()
                break
    e = d["tcp"].get("end")
    return _make(
        Handshake, d.get("id"), d["source"], endpoint(d["client"]), endpoint(d["server"]), d["first_frame"],
        d["first_frame"], s_to_ns(d["first_ts"]), 0, False,
        None if not req else Head(version="", headers=(("Sec-WebSocket-Key", key),) if key else (),
                                  frame=req.get("frame"), ts_ns=s_to_ns(req["ts"]), raw="", complete=True,
                                  method="", target=req["target"]),
        _light_response(d.get("response")), _OUTCOME.get(d["outcome"]) or Outcome(d["outcome"]), None, (), (),
        _make(Tcp, d["tcp"].get("syn_frame"), None,
              None if not e else _make(TcpEnd, e["kind"], e["by"], e.get("frame"), s_to_ns(e["ts"])), 0, 0, 0),
        None, "", None, None, None, None)


def handshake_values(h: Handshake) -> tuple:
    """`h` as nested tuples of plain values (str, int, bool, None, and the document values it
    carries as they are), for `marshal`: a forked half hands its legs back this way, about twice
    as fast both ways as pickling the objects. `handshake_from_values` gives back an equal one."""
    t, end = h.tcp, h.tcp.end
    return (h.id, h.source, h.client.ip, h.client.port, h.server.ip, h.server.port, h.first_frame, h.last_frame,
            h.first_ts_ns, h.last_ts_ns, h.websocket,
            None if h.request is None else tuple(h.request), None if h.response is None else tuple(h.response),
            h.outcome.value, h.status,
            tuple((a.code, a.severity.value, a.message, a.frame, a.side, a.head) for a in h.anomalies),
            tuple(tuple(f) for f in h.frames),
            (t.syn_frame, t.synack_frame, None if end is None else (end.kind, end.by, end.frame, end.ts_ns), t.gaps,
             t.client_bytes, t.server_bytes),
            h.waited_ns, h.http_version, h.parsers, h.h2, h.tls, h.tunnel)


_SAME: Any = object()


def handshake_from_values(v: tuple, id: int | None = _SAME) -> Handshake:
    """The Handshake `handshake_values` made `v` from; with `id`, under that id instead."""
    (id_, source, cip, cport, sip, sport, first_frame, last_frame, first_ts, last_ts, websocket, req, resp, outcome,
     status, anomalies, frames, tcp, waited, http_version, parsers, h2, tls, tunnel) = v
    syn, synack, end, gaps, client_bytes, server_bytes = tcp
    return _make(
        Handshake, id_ if id is _SAME else id, source, _make(Endpoint, cip, cport), _make(Endpoint, sip, sport),
        first_frame, last_frame, first_ts, last_ts, websocket, None if req is None else Head(*req),
        None if resp is None else Head(*resp), _OUTCOME.get(outcome) or Outcome(outcome), status,
        tuple(_make(Anomaly, c, _SEVERITY.get(sev) or Severity(sev), m, f, side, head)
              for c, sev, m, f, side, head in anomalies),
        tuple(Frame(*f) for f in frames),
        _make(Tcp, syn, synack, None if end is None else _make(TcpEnd, *end), gaps, client_bytes, server_bytes),
        waited, http_version, parsers, h2, tls, tunnel)


def _light_response(d: Doc | None) -> Head | None:
    return None if not d else Head(version="", headers=(), frame=d.get("frame"), ts_ns=s_to_ns(d["ts"]), raw="",
                                   complete=True)


def encode_handshake(h: Handshake) -> Doc:
    return {
        "id": h.id, "source": h.source, "client": str(h.client), "server": str(h.server),
        "first_frame": h.first_frame, "last_frame": h.last_frame,
        "first_ts": ns_to_s(h.first_ts_ns), "last_ts": ns_to_s(h.last_ts_ns), "websocket": h.websocket,
        "request": _encode_head(h.request), "response": _encode_head(h.response), "outcome": h.outcome.value,
        "status": h.status, "anomalies": [encode_anomaly(a) for a in h.anomalies], "parsers": h.parsers,
        "frames": [_encode_frame(f) for f in h.frames], "tcp": _encode_tcp(h.tcp),
        "waited": None if h.waited_ns is None else ns_to_s(h.waited_ns), "http_version": h.http_version,
        "h2": h.h2, "tls": h.tls, "tunnel": h.tunnel,
    }


# -- chains ----------------------------------------------------------------------------------
def encode_change(c: Change) -> Doc:
    return {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "class": c.klass, "why": c.why}


def decode_change(d: Doc) -> Change:
    return Change(d["kind"], d["name"], d["before"], d["after"], d["class"], d["why"])


def encode_diff(d: HeaderDiff) -> Doc:
    sc = None if d.status_change is None else {"before": d.status_change.before, "after": d.status_change.after}
    return {"boundary": d.boundary, "direction": d.direction, "from_hop": d.from_hop, "to_hop": d.to_hop,
            "status_change": sc, "changes": [encode_change(c) for c in d.changes]}


def decode_diff(d: Doc) -> HeaderDiff:
    sc = d.get("status_change")
    return HeaderDiff(d["boundary"], d["direction"], d["from_hop"], d["to_hop"],
                      None if sc is None else StatusChange(sc["before"], sc["after"]),
                      tuple(decode_change(c) for c in d["changes"]))


def encode_evidence(e: Evidence) -> Doc:
    return {"hop_id": e.hop_id, "source": e.source, "frame": e.frame, "what": e.what}


def encode_verdict(v: Verdict) -> Doc:
    out: Doc = {"cause": v.cause.value, "hop": v.hop, "summary": v.summary,
                "evidence": [encode_evidence(e) for e in v.evidence], "broken": v.broken, "benign": v.benign,
                "software": list(v.software), "advice": v.advice}
    if v.dns is not None:
        out["dns"] = v.dns
    return out


def decode_verdict(d: Doc) -> Verdict:
    return Verdict(Cause(d["cause"]), d["hop"], d["summary"],
                   tuple(Evidence(e["hop_id"], e["source"], e["frame"], e["what"]) for e in d["evidence"]),
                   d["broken"], d["benign"], tuple(d["software"]), d["advice"], d.get("dns"))


def encode_link(link: Link) -> Doc:
    return {"from": link.from_id, "to": link.to_id, "by": link.by.value, "delay": ns_to_s(link.delay_ns)}


def encode_chain(c: HopChain, diff: Callable[[HeaderDiff], Any] = encode_diff) -> Doc:
    """`diff`: how each header diff is written (render/json.ChainEncoder passes its JSON text)."""
    out: Doc = {"id": c.id, "hops": list(c.hops), "links": [encode_link(x) for x in c.links]}
    if c.diffs is not None:
        out["diffs"] = [diff(d) for d in c.diffs]
    if c.verdict is not None:
        out["verdict"] = encode_verdict(c.verdict)
    if c.has_encrypted_before:
        out["encrypted_before"] = c.encrypted_before
    return out


def decode_chain(d: Doc) -> HopChain:
    return HopChain(
        id=d["id"], hops=tuple(d["hops"]),
        links=tuple(Link(x["from"], x["to"], LinkBy(x["by"]), s_to_ns(x["delay"])) for x in d["links"]),
        diffs=tuple(decode_diff(x) for x in d["diffs"]) if "diffs" in d else None,
        verdict=decode_verdict(d["verdict"]) if "verdict" in d else None,
        encrypted_before=d.get("encrypted_before"), has_encrypted_before="encrypted_before" in d)
