"""The hop ladder of a chain, as a model and as a Mermaid sequence diagram.

A chain ``hops = [a, b]`` is client -> proxy -> backend. :func:`ladder` turns
it into participants (the client, then the server of each hop) and messages
(each hop's request and its response, or how its connection ended), ordered
by capture timestamp, with the failing hop marked. :func:`sequence_diagram`
writes that as Mermaid (GitHub and GitLab render it); the HTML report draws
the same model as inline SVG (:func:`wscap.render.html.ladder_svg`).

All wire text goes through :func:`wscap.render.escape.mermaid`, which writes
anything outside a small safe set as a Mermaid ``#NN;`` entity: ``;`` would
end the statement, ``#`` start an entity, ``<`` inject HTML, ``%%`` a comment.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

from wscap.render import escape
from wscap.document.spool import SpooledList
from wscap.model.endpoint import split_endpoint

__all__ = ["Participant", "Message", "Note", "Ladder", "ladder", "sequence_diagram",
           "handshake_index", "endpoint_label", "split_addr", "header", "fmt_ts",
           "wireshark_filter", "chain_of", "linktype_name", "hop_status"]

# Wire values are cut to this many characters in diagram labels.
LABEL_MAX = 60
FAIL_MARK = "\u2716"   # heavy multiplication x
WARN_MARK = "\u26a0"   # warning sign: a problem the client tolerated
OK_MARK = "\u2714"     # heavy check mark


@dataclass
class Participant:
    key: str                 # Mermaid id: P0, P1, ...
    addr: str                # ip:port as in the document
    name: str | None         # endpoint name (DNS/container), if known
    role: str                # client / proxy / backend / unknown

    @property
    def lines(self) -> list[str]:
        if self.name:
            return [f"{self.name} ({self.role})", self.addr]
        return [self.role, self.addr]


@dataclass
class Message:
    src: int                 # index into participants
    dst: int
    lines: list[str]         # label lines (unescaped wire text)
    kind: str                # request | response | end | syn
    hop: int                 # 0-based hop index
    failing: bool = False    # this is the verdict's failing hop
    bad: bool = False        # not a 101 (rejected, reset, refused, ...)
    ts: float | None = None
    order: int = 0           # nested ladder order, the tie-break


@dataclass
class Note:
    left: int
    right: int
    lines: list[str]
    failing: bool = False
    after: int = -1          # index of the message it follows


@dataclass
class Ladder:
    chain_id: Any
    participants: list[Participant]
    messages: list[Message]
    notes: list[Note] = field(default_factory=list)
    fail_hop: int | None = None
    cause: str | None = None


def split_addr(addr: str) -> tuple[str, int | None]:
    """``"1.2.3.4:80"`` -> ``("1.2.3.4", 80)``; ``"[::1]:80"`` -> ``("::1", 80)``."""
    return split_endpoint(str(addr or ""))


LINKTYPE_NAMES = {0: "NULL (BSD loopback)", 1: "EN10MB (Ethernet)", 12: "RAW", 14: "RAW",
                  101: "RAW (IP)", 108: "LOOP", 113: "LINUX_SLL (any)", 228: "IPV4", 229: "IPV6",
                  276: "LINUX_SLL2 (any)"}


def linktype_name(lt: Any) -> str:
    name = LINKTYPE_NAMES.get(lt) if isinstance(lt, int) else None
    return f"{lt} {name}" if name else str(lt)


def hop_status(hs: dict[str, Any] | None) -> str:
    """Short outcome of one handshake: ``101``, ``403``, ``refused``, ..."""
    if not hs:
        return "?"
    if isinstance(hs.get("status"), int):
        return str(hs["status"])
    return str(hs.get("outcome") or "?")


def wireshark_filter(client: str, server: str) -> str:
    """Wireshark display filter isolating one TCP connection (one leg).

    ``ip.addr==A && tcp.port==P && ip.addr==B && tcp.port==Q`` (``ipv6.addr``
    for IPv6). Built only from parsed addresses and integer ports, so it is
    safe to paste.
    """
    import ipaddress

    terms: list[str] = []
    for addr in (client, server):
        host, port = split_addr(addr)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        field_ = "ipv6.addr" if ip.version == 6 else "ip.addr"
        terms.append(f"{field_}=={ip.compressed}")
        if port is not None:
            terms.append(f"tcp.port=={port}")
    return " && ".join(terms)


def fmt_ts(ts: Any) -> str:
    """Capture timestamp as ``YYYY-MM-DD HH:MM:SS.ffffff UTC`` ('' when absent)."""
    import datetime as _dt

    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return ""
    try:
        d = _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return d.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def header(head: dict[str, Any] | None, name: str) -> str | None:
    """First value of header ``name`` (case-insensitive) in a request/response head.

    HTTP/2 has no Host header: its :authority pseudo-header says the same (RFC 9113 §8.3.1)."""
    value = _header(head, name.lower())
    if value is None and name.lower() == "host":
        value = _header(head, ":authority")
    return value


class _SpooledChainOf(Mapping):
    """chain_of() for spooled chains: handshake id -> (chain, hop), the chain read on demand."""

    def __init__(self, chains: Any) -> None:
        self._chains = chains
        self._pos: dict[Any, tuple[int, int]] = {}
        for k, ch in enumerate(chains.raw_iter()):
            if isinstance(ch, dict):
                for i, h in enumerate(ch.get("hops") or []):
                    self._pos.setdefault(h, (k, i))

    def __getitem__(self, h: Any) -> tuple[dict[str, Any], int]:
        k, i = self._pos[h]
        return self._chains[k], i

    def __contains__(self, h: Any) -> bool:
        return h in self._pos

    def __iter__(self) -> Iterator[Any]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)


def chain_of(doc: dict[str, Any]) -> Mapping:
    """handshake id -> (chain, hop index) for every handshake that is in a chain."""
    chains = doc.get("chains")
    if isinstance(chains, SpooledList):
        hit = _INDEXES.get("chain_of")
        if hit is not None and hit[0] is chains:
            return hit[2]
        index = _SpooledChainOf(chains)
        _INDEXES["chain_of"] = (chains, len(chains), index)
        return index
    out: dict[Any, tuple[dict[str, Any], int]] = {}
    for ch in doc.get("chains") or []:
        if isinstance(ch, dict):
            for i, h in enumerate(ch.get("hops") or []):
                out.setdefault(h, (ch, i))
    return out


# Renderers ask per row (per chain, per endpoint label): an index built once per list, not a
# scan per row, or a document with many handshakes renders in quadratic time. One entry per
# kind, holding the list itself (so its id cannot be reused) and its length (appends rebuild).
_INDEXES: dict[str, tuple[Any, int, Any]] = {}   # (source list, its length, index): dict or spooled view


def _indexed(kind: str, items: list, key: str) -> dict:
    hit = _INDEXES.get(kind)
    if hit is not None and hit[0] is items and hit[1] == len(items):
        return hit[2]
    index: dict = {}
    for x in items:
        if isinstance(x, dict):
            index.setdefault(x.get(key), x)
    _INDEXES[kind] = (items, len(items), index)
    return index


def handshake_index(doc: dict[str, Any]) -> Mapping:
    hs = doc.get("handshakes") or []
    if isinstance(hs, SpooledList):
        return hs.index_by("id")          # handshakes read back from the spool on demand
    return _indexed("handshakes", hs, "id") if isinstance(hs, list) else {}   # read-only: shared


def _endpoint(doc: dict[str, Any], ip: str) -> dict[str, Any]:
    eps = doc.get("endpoints") or []
    return _indexed("endpoints", eps, "ip").get(ip) or {} if isinstance(eps, list) else {}


def endpoint_label(doc: dict[str, Any], addr: str) -> tuple[str | None, str]:
    """(name, role) of the endpoint owning ``addr``."""
    e = _endpoint(doc, split_addr(addr)[0])
    return e.get("name"), e.get("role") or "unknown"


def _cut(s: Any, n: int = LABEL_MAX) -> str:
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "\u2026"


def _header(head: dict[str, Any] | None, name: str) -> str | None:
    for pair in (head or {}).get("headers") or []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and str(pair[0]).lower() == name:
            return str(pair[1])
    return None


def _end_text(hs: dict[str, Any]) -> tuple[str, int | None, str]:
    """(label, frame, who) for a hop that got no response head."""
    outcome = hs.get("outcome")
    end = (hs.get("tcp") or {}).get("end") or {}
    by = end.get("by") or "server"
    frame = end.get("frame")
    if outcome == "refused":
        return "RST: connection refused", frame, "server"
    if outcome == "unanswered":
        return "no SYN-ACK: SYN never answered", None, "server"
    if outcome == "reset":
        return f"RST by {by} before a response", frame, by
    if outcome == "closed":
        return f"FIN by {by} before a response", frame, by
    if outcome == "no-response":
        waited = hs.get("waited")
        w = f" (waited {waited:.1f} s)" if isinstance(waited, (int, float)) else ""
        return f"no response{w}", None, "server"
    return f"{outcome or 'unknown'}", frame, by


def _breaking_changes(chain: dict[str, Any], boundary: int) -> dict[str, str | None]:
    """name -> value after, for request changes classed 'breaking' at ``boundary``."""
    out: dict[str, str | None] = {}
    for d in chain.get("diffs") or []:
        if not isinstance(d, dict) or d.get("boundary") != boundary or d.get("direction") != "request":
            continue
        for c in d.get("changes") or []:
            if isinstance(c, dict) and c.get("class") == "breaking":
                out[str(c.get("name") or "?").lower()] = c.get("after")
    return out


def ladder(doc: dict[str, Any], chain: dict[str, Any]) -> Ladder:
    """Build the hop ladder of ``chain`` from ``doc``."""
    by_id = handshake_index(doc)
    hops = [by_id.get(h) or {"id": h} for h in chain.get("hops") or []]
    verdict = chain.get("verdict") or {}
    fail_hop = verdict.get("hop") if verdict.get("broken") else None
    if not isinstance(fail_hop, int) or not (0 <= fail_hop < len(hops)):
        fail_hop = None

    # Roles come from the position in the ladder, not from the endpoint
    # table: on loopback one IP is client, proxy and backend at once.
    parts: list[Participant] = []
    if hops:
        addr = str(hops[0].get("client") or "?")
        parts.append(Participant("P0", addr, endpoint_label(doc, addr)[0], "client"))
    for i, hs in enumerate(hops):
        addr = str(hs.get("server") or "?")
        role = "proxy" if i < len(hops) - 1 else ("backend" if len(hops) > 1 else "server")
        parts.append(Participant(f"P{i + 1}", addr, endpoint_label(doc, addr)[0], role))

    msgs: list[Message] = []
    n = len(hops)
    for i, hs in enumerate(hops):
        req = hs.get("request")
        resp = hs.get("response")
        failing = fail_hop == i
        # Nested ladder order: requests go down 0..n-1, responses come back n-1..0.
        if isinstance(req, dict):
            lines = [_cut(f"{req.get('method', '?')} {req.get('target', '?')} {req.get('version', '')}".strip())]
            # Headers a proxy broke on the way to this hop are shown, marked.
            broke = _breaking_changes(chain, i - 1) if i > 0 else {}
            for hname in ("host", "origin"):
                v = _header(req, hname)
                if v is not None and hname not in broke:
                    lines.append(_cut(f"{hname.capitalize()}: {v}"))
            for hname, after in broke.items():
                shown = "(removed)" if after is None else after
                lines.append(_cut(f"{FAIL_MARK} {hname}: {shown}"))
            lines.append(f"frame {req.get('frame')}")
            msgs.append(Message(i, i + 1, lines, "request", i, ts=req.get("ts"), order=i))
        else:
            syn = (hs.get("tcp") or {}).get("syn_frame")
            msgs.append(Message(i, i + 1, ["SYN" + (f" frame {syn}" if syn else "")], "syn", i,
                                ts=hs.get("first_ts"), order=i))
        if isinstance(resp, dict):
            status = resp.get("status")
            lines = [_cut(f"{status} {resp.get('reason') or ''}".strip())]
            if failing:
                lines[0] = f"{FAIL_MARK} {lines[0]}"
            elif status == 101:
                lines[0] = f"{OK_MARK} {lines[0]}"
            lines.append(f"frame {resp.get('frame')}")
            msgs.append(Message(i + 1, i, lines, "response", i, failing, status != 101,
                                resp.get("ts"), order=2 * n - 1 - i))
        else:
            text, frame, who = _end_text(hs)
            if failing:
                text = f"{FAIL_MARK} {text}"
            lines = [text] + ([f"frame {frame}"] if frame else [])
            src, dst = (i, i + 1) if who == "client" else (i + 1, i)
            end = (hs.get("tcp") or {}).get("end") or {}
            msgs.append(Message(src, dst, lines, "end", i, failing, True,
                                end.get("ts") or hs.get("last_ts"), order=2 * n - 1 - i))

    # Timestamp order shows what really happened (a proxy answering before
    # it connected upstream, say); the nested order breaks ties and places
    # events without a timestamp.
    def key(m: Message) -> tuple[float, int]:
        return (m.ts if isinstance(m.ts, (int, float)) else float("inf"), m.order)

    if all(isinstance(m.ts, (int, float)) for m in msgs):
        msgs.sort(key=key)
    else:
        msgs.sort(key=lambda m: m.order)

    notes: list[Note] = []
    cause = verdict.get("cause")
    if fail_hop is not None:
        idx = max((k for k, m in enumerate(msgs) if m.hop == fail_hop), default=len(msgs) - 1)
        notes.append(Note(fail_hop, fail_hop + 1,
                          [f"{FAIL_MARK} failing hop {fail_hop}: {cause or 'broken'}"], True, idx))
    elif cause not in (None, "ok") and isinstance(verdict.get("hop"), int) and 0 <= verdict["hop"] < len(hops):
        # Not broken, but not clean either (e.g. a malformed 101 the client tolerated).
        h = verdict["hop"]
        idx = max((k for k, m in enumerate(msgs) if m.hop == h), default=len(msgs) - 1)
        notes.append(Note(h, h + 1, [f"{WARN_MARK} hop {h}: {cause} (tolerated)"], False, idx))
    return Ladder(chain.get("id"), parts, msgs, notes, fail_hop, cause)


def _join(lines: list[str]) -> str:
    # '<br/>' is written by us between escaped lines; it is the only markup.
    return "<br/>".join(escape.mermaid(x) for x in lines)


def sequence_diagram(doc: dict[str, Any], chain: dict[str, Any]) -> str:
    """Mermaid ``sequenceDiagram`` source for one chain (no code fence)."""
    lad = ladder(doc, chain)
    out = ["sequenceDiagram"]
    for p in lad.participants:
        out.append(f"    participant {p.key} as {_join(p.lines)}")
    notes_after: dict[int, list[Note]] = {}
    for note in lad.notes:
        notes_after.setdefault(note.after, []).append(note)
    for k, m in enumerate(lad.messages):
        if m.kind in ("request", "syn"):
            arrow = "->>"
        elif not m.bad:
            arrow = "-->>"
        else:
            arrow = "--x"
        out.append(f"    P{m.src}{arrow}P{m.dst}: {_join(m.lines)}")
        for note in notes_after.get(k, []):
            out.append(f"    Note over P{note.left},P{note.right}: {_join(note.lines)}")
    return "\n".join(out) + "\n"
