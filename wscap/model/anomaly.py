"""Anomalies: everything odd that wscap sees becomes data, never an exception.

`CODES` is the single registry of anomaly codes: code -> (severity, meaning).
The README's code table is generated from it and a test checks that every code
the pipeline emits is registered here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from wscap.model.value import pickled_by_fields


class Severity(str, Enum):  # StrEnum needs 3.11; wscap supports 3.10
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Anomaly:
    code: str
    severity: Severity
    message: str
    frame: int | None = None
    # Typed facts the judge reads (never the message text). In the document only when set
    # (contract v1 added them as optional keys): `side` on every WebSocket-frame anomaly,
    # `head` on the head anomalies the verdict names a head by.
    side: str | None = None      # "client" | "server": who sent what the anomaly is about
    head: str | None = None      # "request" | "response": the head it concerns, when not by frame

    def to_json(self) -> dict:
        d = {"code": self.code, "severity": self.severity.value, "message": self.message, "frame": self.frame}
        if self.side is not None:
            d["side"] = self.side
        if self.head is not None:
            d["head"] = self.head
        return d


I, W, E = Severity.INFO, Severity.WARN, Severity.ERROR

CODES: dict[str, tuple[Severity, str]] = {
    # capture / packet layer
    "truncated-packet": (W, "a packet was cut by the snap length; its missing bytes are a gap"),
    "ip-fragment-incomplete": (W, "IPv4/IPv6 fragments never completed a datagram"),
    # TCP layer
    "mid-stream-start": (I, "the capture starts after the connection's SYN"),
    "retransmission-conflict": (E, "a retransmitted or overlapping segment carries different bytes"),
    "tcp-keep-alive": (I, "a keep-alive probe: 0 or 1 byte at snd.nxt-1 (its byte may differ: Windows); not data"),
    "tcp-zero-window-probe": (I, "a 1-byte probe into a zero receive window; later data at that offset wins"),
    "tcp-gap": (W, "bytes are missing from the stream (lost by the capture or the network)"),
    "syn-unanswered": (E, "the SYN was never answered"),
    "syn-refused": (E, "the SYN was answered by RST (connection refused)"),
    "anomalies-suppressed": (I, "more anomalies of one code than are listed per connection; the rest are counted"),
    "flow-buffer-full": (W, "out-of-order bytes exceeded the per-flow buffer; declared a gap"),
    # HTTP head parsing
    "bare-lf": (W, "a line of the head ends in LF without CR (RFC 9112 §2.2)"),
    "obs-fold": (W, "obsolete line folding (RFC 9112 §5.2)"),
    "whitespace-before-colon": (E, "whitespace between a header name and the colon (RFC 9112 §5.1)"),
    "invalid-header-name": (E, "a header name holds characters outside tchar (RFC 9110 §5.6.2)"),
    "malformed-header-line": (E, "a header line without a colon"),
    "non-ascii-header": (W, "a header holds bytes outside ASCII"),
    "invalid-header-value": (E, "a header value holds control characters (RFC 9110 §5.5)"),
    "missing-reason-phrase": (I, "the status line has no reason phrase"),
    "nonstandard-reason-phrase": (I, "the 101 reason phrase is not 'Switching Protocols'"),
    "malformed-start-line": (E, "the request or status line does not parse"),
    "http-1.0": (W, "HTTP/1.0 cannot upgrade (RFC 9110 §7.8 needs HTTP/1.1)"),
    "head-too-large": (E, "the header block exceeded the head-size limit; the rest was not read"),
    "head-incomplete": (E, "the header block never ended (no empty line before the stream ended)"),
    "response-before-request": (W, "a response head arrived before the request head was complete"),
    "body-on-101": (E, "a 101 carries Content-Length or Transfer-Encoding (RFC 9110 §8.6, §6.1)"),
    "data-with-101": (I, "WebSocket bytes arrived in the same segment as the 101 head"),
    "keep-alive-before-upgrade": (I, "plain HTTP requests preceded the upgrade on this connection"),
    "llhttp-rejects": (E, "Node's HTTP parser (llhttp) rejects this head"),
    "h11-rejects": (W, "a strict RFC parser (h11) rejects this head"),
    "non-http-response": (E, "the server's first bytes are not an HTTP/1 response"),
    # RFC 6455 §4 handshake
    "method-not-get": (E, "the opening handshake must be a GET (RFC 6455 §4.1)"),
    "version-too-old": (E, "the request must be HTTP/1.1 or later (RFC 6455 §4.1)"),
    "host-missing": (E, "the request has no Host header (RFC 6455 §4.1)"),
    "host-duplicate": (E, "the request has more than one Host header (RFC 9112 §3.2)"),
    "upgrade-missing": (E, "the request's Upgrade header lacks the token 'websocket' (RFC 6455 §4.1)"),
    "connection-missing-upgrade": (E, "the Connection header lacks the token 'upgrade' (RFC 6455 §4.1)"),
    "key-missing": (E, "Sec-WebSocket-Key is absent (RFC 6455 §4.1)"),
    "key-invalid": (E, "Sec-WebSocket-Key is not base64 of 16 bytes (RFC 6455 §4.1)"),
    "key-duplicate": (E, "Sec-WebSocket-Key appears more than once (RFC 6455 §11.3.1)"),
    "version-missing": (E, "Sec-WebSocket-Version is absent (RFC 6455 §4.1)"),
    "version-unsupported": (E, "Sec-WebSocket-Version is not 13 (RFC 6455 §4.1)"),
    "version-rejected": (E, "the server answered 426 (Upgrade Required) with the versions it supports"),
    "response-upgrade-missing": (E, "the 101 lacks 'Upgrade: websocket' (RFC 6455 §4.1)"),
    "response-connection-missing": (E, "the 101 lacks 'Connection: Upgrade' (RFC 6455 §4.1)"),
    "accept-missing": (E, "the 101 lacks Sec-WebSocket-Accept (RFC 6455 §4.1)"),
    "bad-accept": (E, "Sec-WebSocket-Accept does not match the key (RFC 6455 §4.2.2)"),
    "subprotocol-not-offered": (E, "the server chose a subprotocol the client did not offer (RFC 6455 §4.1)"),
    "subprotocol-not-echoed": (E, "a browser offered subprotocols and the 101 chose none; browsers fail the "
                                  "connection (WHATWG)"),
    "subprotocol-declined": (W, "a non-browser client offered subprotocols and the 101 chose none; RFC 6455 §4.1 "
                                "lets it go on"),
    "extension-not-offered": (E, "the server accepted an extension the client did not offer (RFC 6455 §9.1)"),
    "not-websocket-upgrade": (I, "an HTTP Upgrade to another protocol (not WebSocket)"),
    # WebSockets over HTTP/2 (RFC 8441)
    "h2-connect-protocol-not-enabled": (E, "extended CONNECT sent before the server enabled it with "
                                           "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)"),
    "h2-pseudo-header-missing": (E, "extended CONNECT without :scheme, :path or :authority (RFC 8441 §4)"),
    "h2-connection-header": (E, "Connection/Upgrade-style header in an HTTP/2 message: malformed (RFC 9113 §8.2.2)"),
    "h2-key-header": (W, "Sec-WebSocket-Key/Accept sent over HTTP/2, where they are not used (RFC 8441 §5)"),
    "h2-stream-ended": (E, "the 2xx accepting the WebSocket also ended the stream"),
    "h2-stream-reset": (E, "the WebSocket's stream was reset (RST_STREAM)"),
    "h2-goaway": (W, "an endpoint sent GOAWAY with an error code"),
    "h2-hpack-error": (E, "an HTTP/2 header block could not be decoded (HPACK); the connection is not followed"),
    "h2-malformed": (E, "HTTP/2 framing is broken (bad preface, interrupted header block)"),
    "h2-hpack-table-capped": (W, "a peer allowed an HPACK table larger than --max-hpack-table; an encoder using "
                                 "more is not followed"),
    "h2-headers-cut": (W, "decoded HTTP/2 header bytes exceeded --max-h2-header-bytes on this connection "
                          "(HPACK amplification); later header lists are kept cut"),
    "h2-frame-too-large": (W, "an HTTP/2 frame is larger than the per-flow buffer; the connection is not followed"),
    # WebSocket frames after the 101 (RFC 6455 §5)
    "client-frame-unmasked": (E, "a client frame is not masked (RFC 6455 §5.1)"),
    "server-frame-masked": (E, "a server frame is masked (RFC 6455 §5.1)"),
    "rsv1-without-extension": (E, "RSV1 set but permessage-deflate was not negotiated (RFC 7692 §6)"),
    "rsv-bits-set": (E, "RSV2 or RSV3 set without a negotiated extension (RFC 6455 §5.2)"),
    "reserved-opcode": (E, "a frame uses a reserved opcode (RFC 6455 §5.2)"),
    "control-frame-too-long": (E, "a control frame carries more than 125 bytes (RFC 6455 §5.5)"),
    "control-frame-fragmented": (E, "a control frame has FIN clear (RFC 6455 §5.5)"),
    "rsv1-on-control-frame": (E, "RSV1 set on a control or continuation frame (RFC 7692 §6.1)"),
    "invalid-close-code": (E, "the close code is not valid on the wire (RFC 6455 §7.4)"),
    "invalid-close-payload": (E, "a close frame's payload is 1 byte long (RFC 6455 §5.5.1)"),
    "inflate-failed": (W, "a compressed message did not inflate"),
    "http-after-101": (E, "HTTP text follows the 101 where WebSocket frames should be"),
    "frames-desync": (W, "frame parsing stopped: a gap or a bad length lost frame boundaries"),
}


def make(code: str, message: str, frame: int | None = None, side: str | None = None,
         head: str | None = None) -> Anomaly:
    """Build an anomaly with the registered severity (KeyError = a bug: unregistered code)."""
    return Anomaly(code, CODES[code][0], message, frame, side, head)
