"""Lossless, lenient HTTP/1.x head parsing: bytes -> HttpHead with anomalies.

Keeps everything as it was on the wire (header order, case, duplicates, raw
bytes) and computes normalised views on demand. Unlike h11, leniency is loud:
bare LF, obs-fold, whitespace before the colon, bad name characters and the
like are accepted *and* recorded, because "what exactly was odd about these
bytes" is the answer wscap exists to give.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from wscap.model.anomaly import Anomaly, make
from wscap.wire.pcapio import _fastpath

# RFC 9110 §5.6.2 tchar
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEAD_END = re.compile(rb"\n\r?\n")
_REQUEST_START = re.compile(rb"^(?:\r?\n)*[A-Z][A-Z-]{1,15} \S")
_RESPONSE_START = re.compile(rb"^(?:\r?\n)*HTTP/\d")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_VERSION = re.compile(rb"^HTTP/\d\.\d$")
_CODE = re.compile(rb"^\d{3}$")


_REQUEST_PREFIX = re.compile(rb"^(?:\r?\n)*[A-Z][A-Z-]{0,15}(?: )?\Z")


def looks_like_request(data: bytes) -> bool:
    """Could these first bytes of a stream be (the start of) an HTTP/1 request line?

    By content, never by port. A segment may hold just b"GE": a prefix that can
    still become a request line counts, and is checked again as bytes arrive.
    """
    head = data[:24]
    return bool(_REQUEST_START.match(head) or _REQUEST_PREFIX.match(head))


def looks_like_response(data: bytes) -> bool:
    return bool(_RESPONSE_START.match(data[:16])) or (len(data) < 6 and b"HTTP/"[:len(data)] == data)


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Offset just past the empty line ending the head, or None if it has not arrived yet."""
    m = _HEAD_END.search(buf, start)
    return m.end() if m else None


@dataclass(slots=True)
class Field:
    """One header line as it was on the wire."""

    raw_name: bytes       # case kept, for "case changed" diffs
    name: bytes           # lowercased, for lookup only
    value: bytes          # optional whitespace around it removed (RFC 9110 §5.5)
    line: int             # 1-based line number in the head (start line = 1)


@dataclass(slots=True)
class HttpHead:
    kind: str                          # "request" | "response"
    start_line: bytes
    method: bytes = b""
    target: bytes = b""
    version: bytes = b""
    status: int | None = None
    reason: bytes = b""
    fields: list[Field] = field(default_factory=list)
    raw: bytes = b""
    anomalies: list[Anomaly] = field(default_factory=list)
    first_frame: int | None = None     # frame holding the head's first byte
    frame: int | None = None           # frame holding its last byte (where Wireshark shows it)
    ts_ns: int = 0
    complete: bool = True
    opinions: dict = field(default_factory=dict)   # parser name -> ParserOpinion, computed once
    # lowercased name -> values in order, and name -> tokens: built at the first lookup (the checks
    # look up a dozen names per head); `fields` is only changed while the head is parsed, before any
    # lookup. `drop_lookups` frees them once the handshake's checks are done (a WebSocket can stay
    # open, its heads with it, for the whole capture).
    _index: dict[bytes, list[bytes]] | None = field(default=None, repr=False, compare=False)
    _tokens: dict[bytes, list[str]] | None = field(default=None, repr=False, compare=False)

    def drop_lookups(self) -> None:
        self._index = self._tokens = None

    def _values(self) -> dict[bytes, list[bytes]]:
        index = self._index
        if index is None:
            index = {}
            for f in self.fields:
                index.setdefault(f.name, []).append(f.value)
            self._index = index
        return index

    def get_all(self, name: bytes) -> list[bytes]:
        return list(self._values().get(name.lower(), ()))

    def get(self, name: bytes) -> bytes | None:
        vals = self._values().get(name.lower())
        return vals[0] if vals else None

    def has(self, name: bytes) -> bool:
        return name.lower() in self._values()

    def tokens(self, name: bytes) -> list[str]:
        """Comma-separated tokens across repeated headers, lowercased (RFC 9110 §5.6.1)."""
        name = name.lower()
        memo = self._tokens
        if memo is None:
            memo = self._tokens = {}
        out = memo.get(name)
        if out is None:
            out = []
            for v in self._values().get(name, ()):
                for t in v.split(b","):
                    t = t.strip(b" \t")
                    if t:
                        out.append(t.decode("latin-1").lower())
            memo[name] = out
        return list(out)

    @property
    def is_http10(self) -> bool:
        return self.version.upper() == b"HTTP/1.0"

    def to_json(self) -> dict:
        base = {"version": self.version.decode("latin-1"),
                "headers": [[f.raw_name.decode("latin-1"), f.value.decode("latin-1")] for f in self.fields],
                "frame": self.frame, "ts": round(self.ts_ns / 1e9, 6),
                "raw": self.raw.decode("latin-1"), "complete": self.complete}
        if self.kind == "request":
            return {"method": self.method.decode("latin-1"), "target": self.target.decode("latin-1"), **base}
        return {**base, "status": self.status, "reason": self.reason.decode("latin-1")}


# A head with nothing for the line-by-line checks below to flag: CRLF line ends throughout, and
# every header line a token, a colon, and printable ASCII or tabs (no obs-fold, no whitespace
# before the colon, no control or non-ASCII bytes). Nearly every head on a real bridge is one;
# `_parse_clean` reads it with one match instead of five regex calls a line. tests/test_properties.py
# holds it to the general parser's result.
_CLEAN_FIELDS = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*")


def parse_head(raw: bytes, kind: str, frame: int | None = None) -> HttpHead:
    """Parse one complete (or capped) head. Never raises; oddities become anomalies."""
    if raw[:1] not in (b"\r", b"\n"):
        end = raw.find(b"\r\n\r\n")
        if end > 0:
            head = _parse_clean(raw, end + 2, kind, frame)
            if head is not None:
                return head
    return _parse_general(raw, kind, frame)


def _parse_clean(raw: bytes, end: int, kind: str, frame: int | None) -> HttpHead | None:
    """`parse_head` of a head whose lines, up to `end` (past the last header line's CRLF), pass
    `_CLEAN_FIELDS` and hold no bare LF; None for any other head."""
    first = raw.find(b"\r\n")
    fast = _fastpath is not None and type(raw) is bytes
    if fast:
        lines = _fastpath.clean_fields(raw, first, end, Field)     # type: ignore[union-attr]
        if lines is None:
            return None
    elif raw.count(b"\n", 0, end) != raw.count(b"\r\n", 0, end) or _CLEAN_FIELDS.fullmatch(raw, first + 2, end) is None:
        return None
    start = raw[:first]
    anomalies: list[Anomaly] = []
    head = HttpHead(kind=kind, start_line=start, raw=raw, frame=frame)
    _parse_start_line(head, start, anomalies, frame)
    if fast:
        head.fields = lines
    elif first + 2 < end:
        fields = head.fields
        for n, line in enumerate(raw[first + 2:end - 2].split(b"\r\n"), start=2):
            name, _colon, value = line.partition(b":")
            fields.append(Field(name, name.lower(), value.strip(b" \t"), n))
    head.anomalies = anomalies
    return head


def _parse_general(raw: bytes, kind: str, frame: int | None) -> HttpHead:
    stripped = raw.lstrip(b"\r\n")
    lines = stripped.split(b"\n")
    anomalies: list[Anomaly] = []
    bare_lf: list[int] = []
    clean: list[bytes] = []
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        elif i < len(lines) - 1:
            bare_lf.append(i + 1)
        if not line and i > 0:
            break
        clean.append(line)
    if bare_lf:
        shown = ", ".join(map(str, bare_lf[:6])) + ("…" if len(bare_lf) > 6 else "")
        anomalies.append(make("bare-lf", f"line(s) {shown} end in bare LF", frame))
    start = clean[0] if clean else b""
    head = HttpHead(kind=kind, start_line=start, raw=raw, frame=frame)
    _parse_start_line(head, start, anomalies, frame)
    prev: Field | None = None
    for n, line in enumerate(clean[1:], start=2):
        if line[:1] in (b" ", b"\t"):
            if prev is not None:
                anomalies.append(make("obs-fold", f"line {n} continues header '{_s(prev.raw_name)}' (obs-fold)", frame))
                prev.value = prev.value + b" " + line.strip(b" \t")
                continue
        name, colon, value = line.partition(b":")
        if not colon:
            anomalies.append(make("malformed-header-line", f"line {n} has no colon: {_s(line[:60])!r}", frame))
            continue
        if name != name.rstrip(b" \t"):
            anomalies.append(make("whitespace-before-colon",
                                  f"line {n}: whitespace between '{_s(name.strip())}' and the colon", frame))
            name = name.rstrip(b" \t")
        if not _TOKEN.match(name):
            anomalies.append(make("invalid-header-name", f"line {n}: header name {_s(name[:60])!r} is not a token", frame))
        v = value.strip(b" \t")
        if _NON_ASCII.search(line):
            anomalies.append(make("non-ascii-header", f"line {n} ('{_s(name[:40])}') holds non-ASCII bytes", frame))
        if _CTL.search(v):
            anomalies.append(make("invalid-header-value", f"line {n} ('{_s(name[:40])}') holds control characters", frame))
        prev = Field(name, name.lower(), v, n)
        head.fields.append(prev)
    head.anomalies = anomalies
    return head


def _parse_start_line(head: HttpHead, start: bytes, anomalies: list[Anomaly], frame: int | None) -> None:
    if head.kind == "request":
        parts = start.split(b" ")
        if len(parts) != 3:
            anomalies.append(make("malformed-start-line", f"request line {_s(start[:80])!r} is not 'METHOD target version'", frame))
            parts = start.split()
        if parts:
            head.method = parts[0]
        if len(parts) > 1:
            head.target = parts[1]
        if len(parts) > 2:
            head.version = parts[-1]
        if head.version and not _VERSION.match(head.version):
            anomalies.append(make("malformed-start-line", f"request version {_s(head.version[:20])!r} is not HTTP/x.y", frame))
        return
    version, _, rest = start.partition(b" ")
    head.version = version
    code, sp, reason = rest.partition(b" ")
    if not _VERSION.match(version) or not _CODE.match(code):
        anomalies.append(make("malformed-start-line", f"status line {_s(start[:80])!r} is not 'HTTP/x.y NNN reason'", frame))
    try:
        head.status = int(code)
    except ValueError:
        head.status = None
    head.reason = reason
    if head.status is not None and not reason:
        anomalies.append(make("missing-reason-phrase",
                              "status line has no reason phrase" + ("" if sp else " (and no space after the code)"), frame))


def _s(b: bytes) -> str:
    return b.decode("latin-1")
