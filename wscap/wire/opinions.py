"""What real HTTP parsers say about a raw head: llhttp (Node, via httptools) and h11.

This is the difference between "the backend sent something odd" and "Node's
parser (Vite's proxy) rejects it". Both libraries are fed the exact bytes and
their exceptions become data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

httptools: Any
h11: Any
try:
    import httptools
except ImportError:  # pragma: no cover - optional at runtime, required by the tests
    httptools = None
h11 = None                  # imported at its first use (`_load_h11`): most heads never need it
_h11_tried = False          # (flow/handshake.py _clean_for_h11), and importing it is ~6 ms of every start


@dataclass(frozen=True, slots=True)
class ParserOpinion:
    accepts: bool | None          # None: the parser is not installed
    error: str | None

    def to_json(self) -> dict:
        return {"accepts": self.accepts, "error": self.error}


ACCEPTS = ParserOpinion(True, None)     # the common opinion: one shared (frozen) value


class _Sink:
    """httptools callback object; the head is all we feed, so nothing to collect."""


def llhttp_request(raw: bytes) -> ParserOpinion:
    return _llhttp("HttpRequestParser", raw)


def llhttp_response(raw: bytes) -> ParserOpinion:
    return _llhttp("HttpResponseParser", raw)


def _llhttp(parser: str, raw: bytes) -> ParserOpinion:
    if httptools is None:
        return ParserOpinion(None, "httptools not installed")
    p = getattr(httptools, parser)(_Sink())
    try:
        p.feed_data(raw)
    except httptools.HttpParserUpgrade:
        return ACCEPTS
    except httptools.HttpParserError as e:
        return _llhttp_error(e)
    return ACCEPTS


def _llhttp_error(e: Exception) -> ParserOpinion:
    msg = str(e) or type(e).__name__
    # HPE_PAUSED_UPGRADE: llhttp stops at a valid upgrade head and hands the socket over.
    if "Pause on CONNECT/Upgrade" in msg:
        return ACCEPTS
    return ParserOpinion(False, msg)


def _load_h11() -> Any:
    global h11, _h11_tried
    if not _h11_tried:
        _h11_tried = True
        try:
            import h11 as module
            h11 = module
        except ImportError:  # pragma: no cover
            pass
    return h11


def h11_request(raw: bytes) -> ParserOpinion:
    if _load_h11() is None:
        return ParserOpinion(None, "h11 not installed")
    return _h11_reads(h11.Connection(our_role=h11.SERVER), raw)


def h11_response(raw: bytes) -> ParserOpinion:
    if _load_h11() is None:
        return ParserOpinion(None, "h11 not installed")
    conn = h11.Connection(our_role=h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[
        ("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "websocket")]))
    conn.send(h11.EndOfMessage())
    return _h11_reads(conn, raw)


def _h11_reads(conn: Any, raw: bytes) -> ParserOpinion:
    """What h11 says when `conn` receives the head `raw`."""
    try:
        conn.receive_data(raw)
        if conn.next_event() is h11.NEED_DATA:
            return ParserOpinion(False, "incomplete head")
    except h11.RemoteProtocolError as e:
        return ParserOpinion(False, str(e))
    return ACCEPTS
