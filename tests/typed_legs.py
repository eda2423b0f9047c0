"""Typed handshake legs for the judge's stage tests: a leg is made from what a test says happened
(who talked to whom, when, which key, what answer), so expected values follow from the input."""
from __future__ import annotations

from wscap.model.anomaly import Anomaly, Severity
from wscap.model.endpoint import Endpoint
from wscap.model.handshake import Frame, Handshake, Head, Outcome, Tcp, TcpEnd

T0 = 1_700_000_000_000_000_000          # ns; legs are placed at T0 + ms offsets
MS = 1_000_000


def ep(text: str) -> Endpoint:
    return Endpoint.parse(text)


def request(frame: int, ms: float, key: str | None = "dGhlIHNhbXBsZSBub25jZQ==", target: str = "/ws",
            origin: str | None = None, extra: tuple[tuple[str, str], ...] = (), upgrade: str = "websocket",
            ua: str | None = None) -> Head:
    headers: list[tuple[str, str]] = [("Host", "example"), ("Connection", "Upgrade"), ("Upgrade", upgrade),
                                      ("Sec-WebSocket-Version", "13")]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if origin is not None:
        headers.append(("Origin", origin))
    if ua is not None:
        headers.append(("User-Agent", ua))
    headers += list(extra)
    return Head(version="HTTP/1.1", headers=tuple(headers), frame=frame, ts_ns=T0 + int(ms * MS), raw="",
                complete=True, method="GET", target=target)


def response(frame: int, ms: float, status: int = 101, reason: str = "Switching Protocols",
             headers: tuple[tuple[str, str], ...] | None = None) -> Head:
    if headers is None:
        headers = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "x")) \
            if status == 101 else (("Content-Length", "0"),)
    return Head(version="HTTP/1.1", headers=headers, frame=frame, ts_ns=T0 + int(ms * MS), raw="",
                complete=True, status=status, reason=reason)


def anomaly(code: str, frame: int | None = None, message: str = "", side: str | None = None,
            head: str | None = None) -> Anomaly:
    return Anomaly(code, Severity.ERROR, message or code, frame, side, head)


def frame(dir: str, no: int, ms: float, opcode: int = 1, close_code: int | None = None) -> Frame:
    return Frame(dir=dir, frame=no, ts_ns=T0 + int(ms * MS), fin=True, rsv1=False, rsv2=False, rsv3=False,
                 opcode=opcode, opcode_name="", masked=dir == "client", length=2, close_code=close_code,
                 close_reason=None, preview=None)


def leg(id: int | None, client: str, server: str, first_frame: int, ms: float, req: Head | None = None,
        resp: Head | None = None, outcome: Outcome | None = None, end: tuple[str, str, int, float] | None = None,
        anomalies: tuple[Anomaly, ...] = (), frames: tuple[Frame, ...] = (), source: int = 0,
        syn: bool = True, synack: bool = True, waited_ms: float | None = None) -> Handshake:
    if outcome is None:
        if req is None:
            outcome = Outcome.UNANSWERED
        elif resp is None:
            outcome = Outcome.NO_RESPONSE
        else:
            outcome = Outcome.UPGRADED if resp.status == 101 else Outcome.REJECTED
    tcp_end = None if end is None else TcpEnd(end[0], end[1], end[2], T0 + int(end[3] * MS))
    return Handshake(
        id=id, source=source, client=ep(client), server=ep(server), first_frame=first_frame,
        last_frame=first_frame, first_ts_ns=T0 + int(ms * MS), last_ts_ns=T0 + int(ms * MS),
        websocket=req is not None, request=req, response=resp, outcome=outcome,
        status=resp.status if resp is not None else None, anomalies=anomalies, frames=frames,
        tcp=Tcp(first_frame if syn else None, first_frame + 1 if synack and syn else None, tcp_end, 0, 0, 0),
        waited_ns=None if waited_ms is None else int(waited_ms * MS), http_version="1.1")
