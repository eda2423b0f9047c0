#!/usr/bin/env python3
"""Record pcaps/tls-loopback.pcap + .keys: a real TLS 1.3 WebSocket upgrade (OpenSSL via Python's ssl).

Client and server run here on 127.0.0.1 with a throwaway self-signed certificate; both write
their secrets to the key log (SSLKEYLOGFILE format), tcpdump records loopback. The exchange is a
healthy one: upgrade, one text message each way, close 1000 from the client, close echoed.
Needs root (tcpdump) and openssl. Usage: sudo scripts/make_tls_sample.py [OUT_DIR]
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "pcaps")
PORT = 8443
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int, mask: bool) -> bytes:
    head = bytes([0x80 | opcode, (0x80 if mask else 0) | len(payload)])
    if not mask:
        return head + payload
    m = os.urandom(4)
    return head + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))


def tls_exchange(work: str, port: int = PORT) -> str:
    """One healthy WebSocket upgrade over TLS 1.3 on 127.0.0.1:port; -> the key log's path."""
    cert, key, keys = (os.path.join(work, n) for n in ("cert.pem", "key.pem", "keys.log"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.keylog_filename = keys
    sctx.set_alpn_protocols(["http/1.1"])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen()

    def serve() -> None:
        c, _ = ls.accept()
        s = sctx.wrap_socket(c, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        k = next(l.split(b":", 1)[1].strip() for l in data.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key"))
        acc = base64.b64encode(hashlib.sha1(k + GUID).digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        s.recv(4096)                                   # the client's text frame
        s.sendall(frame(b"echo: hello over tls", 1, False))
        s.recv(4096)                                   # the client's close
        s.sendall(frame(b"\x03\xe8", 8, False))
        time.sleep(0.05)
        s.close()

    t = threading.Thread(target=serve)
    t.start()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.keylog_filename = keys
    cctx.set_alpn_protocols(["http/1.1"])
    c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    c.sendall(f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              f"Origin: https://localhost:{port}\r\n\r\n".encode())
    c.recv(4096)
    c.sendall(frame(b"hello over tls", 1, True))
    time.sleep(0.05)
    c.recv(4096)
    c.sendall(frame(b"\x03\xe8", 8, True))
    time.sleep(0.05)
    c.recv(4096)
    time.sleep(0.1)
    c.close()
    t.join()
    ls.close()
    return keys


def main() -> None:
    work = tempfile.mkdtemp(prefix="wscap-tls-")
    pcap = os.path.join(OUT, "tls-loopback.pcap")
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-w", pcap, "tcp", "port", str(PORT)],
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        keys = tls_exchange(work)
        time.sleep(1.0)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    with open(keys, "rb") as f, open(os.path.join(OUT, "tls-loopback.keys"), "wb") as o:
        o.write(f.read())
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {pcap} and tls-loopback.keys")


if __name__ == "__main__":
    main()
