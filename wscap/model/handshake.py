"""`Handshake`: the typed view of one handshake document (contract v1, "handshakes" items).

The document is what the pipeline spools and prints; this is what the judge reads. Times are
integer nanoseconds (the document's 6-decimal seconds, exactly); endpoints are `Endpoint`s;
the outcome is an enum whose values are the document's strings. Parts the judge never reads
(parser opinions, the HTTP/2 stream, TLS, tunnel) are carried as the document's own values so
the codec can write the document back unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from operator import attrgetter
from typing import Any, NamedTuple

from wscap.model.anomaly import Anomaly
from wscap.model.endpoint import Endpoint
from wscap.model.value import pickled_by_fields


class Outcome(str, Enum):  # StrEnum needs 3.11; values are the JSON strings
    UPGRADED = "upgraded"
    REJECTED = "rejected"
    NO_RESPONSE = "no-response"
    RESET = "reset"
    CLOSED = "closed"
    REFUSED = "refused"         # bare attempts (no request): SYN answered by RST
    UNANSWERED = "unanswered"   # bare attempts: SYN never answered


class Head(NamedTuple):
    """One HTTP head as the document shows it; `method`/`target` for requests, `status`/`reason`
    for responses (None on the other kind). A NamedTuple: two per leg, decoded for every judged leg."""
    version: str
    headers: tuple[tuple[str, str], ...]
    frame: int | None
    ts_ns: int
    raw: str
    complete: bool
    method: str | None = None
    target: str | None = None
    status: int | None = None
    reason: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header (name compared case-insensitively)."""
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    @property
    def path(self) -> str:
        return (self.target or "").split("?", 1)[0]


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class TcpEnd:
    kind: str            # "fin" | "rst"
    by: str              # "client" | "server"
    frame: int | None
    ts_ns: int


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Tcp:
    syn_frame: int | None
    synack_frame: int | None
    end: TcpEnd | None
    gaps: int
    client_bytes: int
    server_bytes: int


class Frame(NamedTuple):
    """A WebSocket frame summary (the fields the judge reads; the rest are pass-through). A
    NamedTuple: a leg carries up to --max-frames of these and every judged leg is decoded."""
    dir: str
    frame: int | None
    ts_ns: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    opcode_name: str
    masked: bool
    length: int
    close_code: int | None
    close_reason: str | None
    preview: Any


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Handshake:
    id: int | None
    source: int
    client: Endpoint
    server: Endpoint
    first_frame: int
    last_frame: int
    first_ts_ns: int
    last_ts_ns: int
    websocket: bool
    request: Head | None
    response: Head | None
    outcome: Outcome
    status: int | None
    anomalies: tuple[Anomaly, ...]
    frames: tuple[Frame, ...]
    tcp: Tcp
    waited_ns: int | None
    http_version: str
    parsers: Any = None      # pass-through document values (never judged)
    h2: Any = None
    tls: Any = None
    tunnel: Any = None

    @property
    def ts_ns(self) -> int:
        """When the leg asked: its request, else (a bare attempt) its first packet."""
        return self.request.ts_ns if self.request is not None else self.first_ts_ns

    @property
    def order(self) -> int:
        """Its place in its capture: the request's frame, else the SYN's (or first) frame."""
        if self.request is not None and self.request.frame is not None:
            return self.request.frame
        return self.tcp.syn_frame or self.first_frame

    @property
    def key(self) -> str | None:
        """The Sec-WebSocket-Key the request carried (stripped), if any."""
        if self.request is None:
            return None
        k = self.request.header("sec-websocket-key")
        return k.strip() if k is not None else None

    def codes(self) -> dict[str, Anomaly]:
        """The first anomaly of each code."""
        out: dict[str, Anomaly] = {}
        for a in self.anomalies:
            out.setdefault(a.code, a)
        return out

    def with_id(self, id: int | None) -> "Handshake":
        """This leg under another id (legs merged from other processes): `replace(self, id=id)`
        without its Python loop over the fields, for every leg of a capture."""
        return Handshake(id, *_AFTER_ID(self))


_AFTER_ID = attrgetter(*[f.name for f in fields(Handshake)][1:])
