"""Chain values: the legs of one client handshake across proxies, their header diffs, the verdict.

`Cause` values are the JSON strings of contract v1 (`verdict.cause`), so encoding is `.value`.
Hop ids are final when a `HopChain` is made (the linker hands out ids first), never patched.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from wscap.model.value import pickled_by_fields


class Cause(str, Enum):
    OK = "ok"
    ORIGIN_REJECTED = "origin-rejected"
    UPGRADE_HEADER_STRIPPED = "upgrade-header-stripped"
    CONNECTION_HEADER_STRIPPED = "connection-header-stripped"
    KEY_CHANGED = "key-changed"
    BAD_ACCEPT = "bad-accept"
    INVALID_101 = "invalid-101"
    MALFORMED_REQUEST = "malformed-request"
    CLIENT_HTTP_AFTER_101 = "client-http-after-101"
    MALFORMED_RESPONSE = "malformed-response"
    UPSTREAM_REFUSED = "upstream-refused"
    UPSTREAM_UNREACHABLE = "upstream-unreachable"
    NO_UPSTREAM_CONNECTION = "no-upstream-connection"
    UPSTREAM_REJECTED = "upstream-rejected"
    UPSTREAM_CLOSED = "upstream-closed"
    PROXY_REJECTED = "proxy-rejected"
    PROXY_DROPPED_UPGRADE = "proxy-dropped-upgrade"
    PROXY_DROPPED_RESPONSE = "proxy-dropped-response"
    FRAMES_LOST_AT_PROXY = "frames-lost-at-proxy"
    SUBPROTOCOL_MISMATCH = "subprotocol-mismatch"
    EXTENSION_MISMATCH = "extension-mismatch"
    VERSION_UNSUPPORTED = "version-unsupported"
    TIMEOUT = "timeout"
    UNANSWERED_AT_CAPTURE_END = "unanswered-at-capture-end"
    CLOSED_AFTER_UPGRADE = "closed-after-upgrade"


class LinkBy(str, Enum):
    KEY = "key"              # same Sec-WebSocket-Key, plausible topology
    INFERRED = "inferred"    # proxy regenerated the key: same source address, related path, nearest
    ATTEMPT = "attempt"      # a connection attempt from the proxy that never carried a request


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Proxies:
    """What linking learnt about addresses: `addresses` went upstream for a client (proxies);
    `dialers` opened connections of their own (a request or a bare attempt)."""
    addresses: frozenset[str] = frozenset()
    dialers: frozenset[str] = frozenset()

    def __contains__(self, ip: object) -> bool:
        return ip in self.addresses

    def dialled(self, ip: str) -> bool:
        """A proxy, or at least an address seen opening connections of its own."""
        return ip in self.addresses or ip in self.dialers


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Link:
    from_id: int
    to_id: int
    by: LinkBy
    delay_ns: int


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Change:
    kind: str                # added | removed | changed | duplicated | case-changed | reordered
    name: str
    before: str | None
    after: str | None
    klass: str               # expected | suspicious | breaking (JSON "class")
    why: str


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class StatusChange:
    before: str | None
    after: str | None


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class HeaderDiff:
    boundary: int
    direction: str           # "request" (client side -> upstream) | "response" (upstream -> client side)
    from_hop: int
    to_hop: int
    status_change: StatusChange | None
    changes: tuple[Change, ...]


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Evidence:
    hop_id: int | None
    source: int | None
    frame: int | None
    what: str


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Verdict:
    cause: Cause
    hop: int | None
    summary: str
    evidence: tuple[Evidence, ...]
    broken: bool
    benign: bool
    software: tuple[str, ...]
    advice: str
    dns: Any = None          # the DNS evidence (flow/dns.py), when a lookup explains the chain


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class HopChain:
    id: int
    hops: tuple[int, ...]    # handshake ids, client leg first
    links: tuple[Link, ...]
    diffs: tuple[HeaderDiff, ...] | None = None
    verdict: Verdict | None = None
    encrypted_before: Any = None
    has_encrypted_before: bool = True    # live chain events are printed without the key
