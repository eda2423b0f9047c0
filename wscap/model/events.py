"""Events between the flow stages: the TCP reassembler's output, the session's input.

`wscap.flow.tcp.TcpFlow` turns segments into these; `wscap.flow.session.Session`
consumes them. NamedTuples rather than frozen dataclasses: one `Data` is built
per delivered segment, and tuple construction is several times cheaper on the
per-packet path. Directions are the ints C2S = 0 (client to server) and
S2C = 1: they index per-direction pairs everywhere downstream.
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, NamedTuple, Union

if TYPE_CHECKING:
    from wscap.flow.handshake import Exchange, H2Exchange
    from wscap.wire.tls import ClientHello

C2S, S2C = 0, 1


class ProbeKind(str, Enum):
    KEEP_ALIVE = "keep-alive"                 # 1 byte at snd.nxt-1 (RFC 9293 §3.8.4)
    ZERO_WINDOW = "zero-window-probe"         # 1 byte at snd.nxt into a zero window


class EndKind(str, Enum):
    FIN = "fin"
    RST = "rst"


class Opened(NamedTuple):
    """The first SYN (client, C2S) or SYN-ACK (server, S2C) of the connection."""

    direction: int
    frame: int
    ts_ns: int


class Data(NamedTuple):
    """In-order stream bytes, delivered once each."""

    direction: int
    data: bytes
    frame: int
    ts_ns: int


class Gap(NamedTuple):
    """`length` stream bytes that will never be delivered (not captured, cut, or given up on)."""

    direction: int
    length: int
    frame: int
    ts_ns: int


class Conflict(NamedTuple):
    """A retransmission carried different bytes at `offset` than `old_frame` did; the old ones were kept."""

    direction: int
    offset: int
    old_frame: int
    new_frame: int


class Probe(NamedTuple):
    """A TCP probe (never data, never a conflict)."""

    direction: int
    kind: ProbeKind
    offset: int
    frame: int


class Overflow(NamedTuple):
    """The out-of-order buffer hit `limit` bytes; the hole before them becomes a Gap.

    `first`: the first time for this direction (the one worth an anomaly)."""

    direction: int
    limit: int
    frame: int
    first: bool


class Closed(NamedTuple):
    """A RST, or FINs from both sides: no more stream bytes will come (`reason` is this segment's)."""

    reason: EndKind
    direction: int
    frame: int
    ts_ns: int


StreamEvent = Union[Data, Gap, Conflict, Probe, Overflow]
TcpEvent = Union[Opened, Data, Gap, Conflict, Probe, Overflow, Closed]


# -- the session's events (wscap.flow.session.Session.take) ----------------------------

class HeadSeen(NamedTuple):
    """An upgrade request opened `exchange` (C2S), or its response head arrived (S2C)."""

    direction: int
    exchange: Exchange


class Upgraded(NamedTuple):
    """`exchange` became a WebSocket: its frames are read from now on."""

    exchange: Exchange


class H2Stream(NamedTuple):
    """An HTTP/2 extended CONNECT opened stream `stream_id` as `exchange`."""

    stream_id: int
    exchange: H2Exchange


class Hello(NamedTuple):
    """The client spoke TLS: its ClientHello, read as far as it came."""

    hello: ClientHello
    frame: int | None


SessionEvent = Union[HeadSeen, Upgraded, H2Stream, Hello]
