"""RFC 6455 §4 checks of one request/response pair, each a small function.

Every check always runs (unlike wsproto/websockets, which stop at the first
problem), so a handshake reports all that is wrong with it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Iterable, Union

from wscap.model.anomaly import Anomaly, Severity, make
from wscap.wire.http1 import HttpHead

if TYPE_CHECKING:
    from wscap.wire.http2 import H2Head
# The checks read HTTP/1.1 heads and HTTP/2 header lists alike (RFC 8441 keeps the negotiation).
AnyHead = Union[HttpHead, "H2Head"]

# RFC 6455 §1.3 / §4.2.2
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 §4.1: the only version this RFC defines
WEBSOCKET_VERSION = b"13"


def accept_key(key: bytes) -> str:
    """base64(SHA-1(key + GUID)), the value Sec-WebSocket-Accept must hold."""
    return base64.b64encode(hashlib.sha1(key.strip() + ACCEPT_GUID).digest()).decode("ascii")


def is_upgrade_request(req: HttpHead) -> bool:
    """Does this request try to upgrade? Deliberately broad: a proxy may strip Upgrade or
    Connection, and the leg must still be recognised so the chain can be linked."""
    return (req.has(b"upgrade") or "upgrade" in req.tokens(b"connection")
            or req.has(b"sec-websocket-key") or req.has(b"sec-websocket-version"))


def is_websocket_request(req: HttpHead) -> bool:
    return "websocket" in req.tokens(b"upgrade") or req.has(b"sec-websocket-key")


def check_request(req: HttpHead) -> Iterable[Anomaly]:
    fr = req.frame
    if req.method != b"GET":
        yield make("method-not-get", f"method is {req.method.decode('latin-1')!r}, not GET", fr)
    if req.is_http10:
        yield make("http-1.0", "request is HTTP/1.0; an upgrade needs HTTP/1.1", fr)
    elif req.version and req.version < b"HTTP/1.1":
        yield make("version-too-old", f"request version is {req.version.decode('latin-1')}", fr)
    hosts = req.get_all(b"host")
    if not hosts:
        yield make("host-missing", "no Host header", fr)
    elif len(hosts) > 1:
        yield make("host-duplicate", f"{len(hosts)} Host headers", fr)
    if "websocket" not in req.tokens(b"upgrade"):
        got = req.get_all(b"upgrade")
        yield make("upgrade-missing", "Upgrade header is absent" if not got else
                   f"Upgrade is {b', '.join(got).decode('latin-1')!r}, without 'websocket'", fr)
    if "upgrade" not in req.tokens(b"connection"):
        got = req.get_all(b"connection")
        yield make("connection-missing-upgrade", "Connection header is absent" if not got else
                   f"Connection is {b', '.join(got).decode('latin-1')!r}, without 'upgrade'", fr)
    keys = req.get_all(b"sec-websocket-key")
    if not keys:
        yield make("key-missing", "no Sec-WebSocket-Key", fr)
    else:
        if len(keys) > 1:
            yield make("key-duplicate", f"{len(keys)} Sec-WebSocket-Key headers", fr)
        if not key_valid(keys[0]):
            yield make("key-invalid", f"Sec-WebSocket-Key {keys[0][:40].decode('latin-1')!r} is not base64 of 16 bytes", fr)
    yield from check_version(req)


def check_version(req: AnyHead) -> Iterable[Anomaly]:
    """RFC 6455 §4.1 (and RFC 8441 §5, which keeps it): the version must be 13."""
    versions = req.get_all(b"sec-websocket-version")
    if not versions:
        yield make("version-missing", "no Sec-WebSocket-Version", req.frame)
    elif versions[0] != WEBSOCKET_VERSION:
        yield make("version-unsupported", f"Sec-WebSocket-Version is {versions[0][:20].decode('latin-1')!r}, not 13",
                   req.frame)


def key_valid(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def check_response(req: HttpHead, resp: HttpHead) -> Iterable[Anomaly]:
    fr = resp.frame
    if resp.status == 426:
        v = resp.get(b"sec-websocket-version")
        yield make("version-rejected", "426 Upgrade Required" + (
            f"; server supports version(s) {v.decode('latin-1')}" if v else ""), fr)
    if resp.status != 101:
        return
    if resp.reason and resp.reason.lower() != b"switching protocols":
        yield make("nonstandard-reason-phrase", f"101 reason phrase is {resp.reason[:60].decode('latin-1')!r}", fr)
    if resp.has(b"content-length") or resp.has(b"transfer-encoding"):
        names = [f.raw_name.decode("latin-1") for f in resp.fields if f.name in (b"content-length", b"transfer-encoding")]
        yield make("body-on-101", f"101 carries {', '.join(names)}", fr)
    if not is_websocket_request(req):
        return
    if "websocket" not in resp.tokens(b"upgrade"):
        yield make("response-upgrade-missing", "101 has no 'Upgrade: websocket'", fr)
    if "upgrade" not in resp.tokens(b"connection"):
        yield make("response-connection-missing", "101 has no 'Connection: Upgrade'", fr)
    key = req.get(b"sec-websocket-key")
    acc = resp.get(b"sec-websocket-accept")
    if acc is None:
        yield make("accept-missing", "101 has no Sec-WebSocket-Accept", fr)
    elif key is not None:
        want = accept_key(key)
        if acc.decode("latin-1") != want:
            yield make("bad-accept", f"Sec-WebSocket-Accept is {acc[:60].decode('latin-1')!r}, expected {want!r} "
                       f"for key {key.decode('latin-1')!r}", fr)
    yield from check_negotiation(req, resp)


def check_negotiation(req: AnyHead, resp: AnyHead) -> Iterable[Anomaly]:
    """Subprotocol and extensions the server accepted must be ones the client offered (RFC 6455
    §4.2.2; the same over HTTP/2, RFC 8441 §5). Heads are HttpHead or http2.H2Head."""
    fr = resp.frame
    offered = req.tokens(b"sec-websocket-protocol")
    chosen = resp.tokens(b"sec-websocket-protocol")
    if chosen and (len(chosen) > 1 or chosen[0] not in offered):
        yield make("subprotocol-not-offered", f"server chose subprotocol {', '.join(chosen)!r}; client offered "
                   f"{', '.join(offered) or 'none'}", fr)
    elif offered and not chosen:
        # WHATWG: a browser fails the connection; RFC 6455 §4.1 lets other clients go on.
        ua = (req.get(b"user-agent") or b"") if hasattr(req, "get") else b""
        browser = ua.startswith(b"Mozilla/")
        yield make("subprotocol-not-echoed" if browser else "subprotocol-declined",
                   f"client offered {', '.join(offered)!r}; the {resp.status} chose none", fr)
    offered_ext = {e.split(";")[0].strip() for e in extension_names(req)}
    for ext in extension_names(resp):
        name = ext.split(";")[0].strip()
        if name not in offered_ext:
            yield make("extension-not-offered", f"server accepted extension {name!r}, which the client did not offer", fr)


def extension_names(head: AnyHead) -> list[str]:
    return [e.split(";")[0].strip() for e in head.tokens(b"sec-websocket-extensions")]


def deflate_negotiated(resp: HttpHead | None) -> bool:
    return resp is not None and resp.status == 101 and "permessage-deflate" in extension_names(resp)


# Request-head grammar errors that a server may tolerate (RFC 9112 lets a recipient be lenient).
REQUEST_GRAMMAR = ("whitespace-before-colon", "invalid-header-name", "malformed-header-line",
                   "invalid-header-value", "malformed-start-line")


def request_anomalies(req: HttpHead, resp: HttpHead | None) -> list[Anomaly]:
    """The request head's own anomalies; a grammar error in a request that the server answered 101
    anyway is a warning (the server accepted it), not an error: blame goes to whoever failed."""
    if resp is None or resp.status != 101 or not getattr(resp, "complete", True):
        return list(req.anomalies)
    return [Anomaly(a.code, Severity.WARN, a.message + " (the server answered 101 anyway)", a.frame)
            if a.code in REQUEST_GRAMMAR and a.severity is Severity.ERROR else a for a in req.anomalies]

