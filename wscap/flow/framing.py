"""HTTP/1 message framing for the session: where a body ends, without a full parse.

The session skips plain (non-upgrade) messages by length; these read that length
from a raw head (a regex, `quick_length`) or a parsed one (`content_length`).
None means the body cannot be followed (chunked, or delimited by the close).
"""
from __future__ import annotations

import re
from collections import deque

from wscap.wire.http1 import HttpHead, find_head_end, looks_like_request

UPGRADE_HINT = re.compile(rb"(?i)upgrade|sec-websocket")
STATUS = re.compile(rb"(?:\r?\n)*HTTP/\d\.\d (\d{3})")
_CL = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$")
_TE_CHUNKED = re.compile(rb"(?im)^transfer-encoding[ \t]*:[^\n]*chunked")


def quick_length(raw: bytes, status: int | None) -> int | None:
    """Body length of a plain message without a full parse (None: chunked / until close)."""
    if status is not None and (status < 200 or status in (204, 304)):
        return 0
    if _TE_CHUNKED.search(raw):
        return None
    m = _CL.search(raw)
    if m:
        return int(m.group(1))
    return 0 if status is None else None



def content_length(head: HttpHead) -> int | None:
    """Body length to skip; None when it cannot be known without parsing (chunked, close-delimited)."""
    if head.kind == "response" and head.status is not None and (head.status < 200 or head.status in (204, 304)):
        return 0
    if "chunked" in head.tokens(b"transfer-encoding"):
        return None
    v = head.get(b"content-length")
    if v is None:
        return 0 if head.kind == "request" else None
    try:
        return max(0, int(v.split(b",")[0].strip()))
    except ValueError:
        return None


def plain_requests(data: bytes, head_bytes: int) -> tuple[int, int]:
    """Pipelined plain requests (no upgrade, no body running past `data`) counted by offset in
    one pass: the general path copies the rest of the segment per head, which made a segment of
    thousands of tiny heads quadratic. -> (offset of the first head left to the general path — an
    upgrade, a body, a head that does not end here —, how many were counted)."""
    off, n, count = 0, len(data), 0
    while off < n:
        end = find_head_end(data, off)
        if end is None or end - off > head_bytes:
            break
        raw = data[off:end]
        if not looks_like_request(raw[:24]) or UPGRADE_HINT.search(raw):
            break
        length = quick_length(raw, None)
        if length is None or length > n - end:
            break
        count += 1
        off = end + length
    return off, count


def plain_responses(data: bytes, head_bytes: int, pending: deque) -> int:
    """The answers to pipelined plain requests (the None entries at the front of `pending`, which
    each final response pops), counted off the same way; -> the offset of the first response left
    to the general path."""
    off, n = 0, len(data)
    while off < n and pending and pending[0] is None:
        end = find_head_end(data, off)
        if end is None or end - off > head_bytes:
            break
        raw = data[off:end]
        m = STATUS.match(raw)
        if not m or UPGRADE_HINT.search(raw):
            break
        status = int(m.group(1))
        length = quick_length(raw, status)
        if length is None or length > n - end:
            break
        if not (100 <= status < 200):
            pending.popleft()
        off = end + length
    return off
