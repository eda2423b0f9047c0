"""TLS where HTTP was expected: recognise a ClientHello and read what it says in clear.

Sans-IO and bounded. wscap cannot see an Upgrade inside TLS without keys, but
it can say *that* a connection is TLS, to which server name (SNI), and which
application protocols the client offered (ALPN: `h2` means a WebSocket may
arrive as an RFC 8441 extended CONNECT). That replaces a silent "no handshake
found" with the reason and the fix (`--keylog`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

HANDSHAKE = 0x16
CLIENT_HELLO = 1
MAX_HELLO = 1 << 16          # a ClientHello is at most 64 KiB of handshake bytes (RFC 8446 §4)

_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record header: type 22, major version 3, minor 0..4."""
    return len(data) >= 3 and data[0] == HANDSHAKE and data[1] == 3 and data[2] <= 4


@dataclass(slots=True)
class ClientHello:
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)     # supported_versions, else the legacy version
    complete: bool = True                                  # False: cut short (capture ended, gap, limit)
    decrypted: bool = False                                # the key log opened it (wscap.engine.decrypt)
    listed: bool = False                                   # already in the document's "tls" list

    def to_json(self) -> dict:
        return {"sni": self.sni, "alpn": self.alpn, "versions": self.versions, "complete": self.complete,
                "decrypted": self.decrypted}


def hello_bytes_needed(buf: bytes) -> int | None:
    """How many stream bytes hold the whole ClientHello (records included); None if not TLS."""
    if not looks_like_tls(buf):
        return None
    if len(buf) < 9:
        return 9
    if buf[5] != CLIENT_HELLO:
        return None
    hs_len = int.from_bytes(buf[6:9], "big") + 4
    if hs_len > MAX_HELLO:
        return None
    # The handshake message may span records: each adds a 5-byte header per <=16 KiB fragment.
    first = int.from_bytes(buf[3:5], "big")
    if first >= hs_len:
        return 5 + hs_len
    return 5 + hs_len + 5 * (1 + (hs_len - first) // 16384)


def parse_client_hello(buf: bytes) -> ClientHello | None:
    """Parse as much of a ClientHello as `buf` holds; None when it is not one."""
    if not looks_like_tls(buf) or len(buf) < 6 or buf[5] != CLIENT_HELLO:
        return None
    # Join the handshake fragments of consecutive handshake records.
    msg = bytearray()
    off = 0
    while off + 5 <= len(buf) and buf[off] == HANDSHAKE:
        n = int.from_bytes(buf[off + 3:off + 5], "big")
        msg += buf[off + 5:off + 5 + n]
        off += 5 + n
        if len(msg) >= 4 and len(msg) >= int.from_bytes(msg[1:4], "big") + 4:
            break
    hello = ClientHello()
    want = int.from_bytes(msg[1:4], "big") + 4 if len(msg) >= 4 else 1 << 30
    hello.complete = len(msg) >= want
    body = bytes(msg[4:want])
    try:
        _read_hello(body, hello)
    except IndexError:
        hello.complete = False         # cut short: keep what was read before the cut
    return hello


def _read_hello(b: bytes, hello: ClientHello) -> None:
    legacy = int.from_bytes(b[0:2], "big")
    p = 2 + 32                                   # version, random
    p += 1 + b[p]                                # session id
    p += 2 + int.from_bytes(b[p:p + 2], "big")   # cipher suites
    p += 1 + b[p]                                # compression methods
    if p + 2 > len(b):
        hello.versions = [_VERSIONS.get(legacy, hex(legacy))]
        return
    end = min(len(b), p + 2 + int.from_bytes(b[p:p + 2], "big"))
    p += 2
    while p + 4 <= end:
        etype = int.from_bytes(b[p:p + 2], "big")
        elen = int.from_bytes(b[p + 2:p + 4], "big")
        ext = b[p + 4:p + 4 + elen]
        if len(ext) < elen:
            raise IndexError("extension cut")
        p += 4 + elen
        if etype == 0 and len(ext) >= 5:               # server_name (RFC 6066 §3)
            q = 2
            while q + 3 <= len(ext):
                kind, n = ext[q], int.from_bytes(ext[q + 1:q + 3], "big")
                if kind == 0:
                    hello.sni = ext[q + 3:q + 3 + n].decode("latin-1")
                    break
                q += 3 + n
        elif etype == 16 and len(ext) >= 2:            # ALPN (RFC 7301 §3.1)
            q = 2
            while q < len(ext):
                n = ext[q]
                hello.alpn.append(ext[q + 1:q + 1 + n].decode("latin-1"))
                q += 1 + n
        elif etype == 43 and ext:                      # supported_versions (RFC 8446 §4.2.1)
            hello.versions = [_VERSIONS.get(int.from_bytes(ext[i:i + 2], "big"), None) or
                              hex(int.from_bytes(ext[i:i + 2], "big"))
                              for i in range(1, 1 + ext[0] - 1, 2)
                              if (int.from_bytes(ext[i:i + 2], "big") & 0x0F0F) != 0x0A0A]   # skip GREASE
    if not hello.versions:
        hello.versions = [_VERSIONS.get(legacy, hex(legacy))]
