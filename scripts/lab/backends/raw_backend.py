#!/usr/bin/env python3
"""Raw TCP WebSocket "backend" for byte-level malformations.

Each mode answers the upgrade request with bytes a real server has been seen
(or could plausibly be made) to send. After a 101 it echoes text frames, so
the only defect on the wire is the one the mode names.

Modes:
  ok                 correct 101, echo (control)
  bare-lf            correct 101 but every line ends in a bare LF
  bad-accept         101 whose Sec-WebSocket-Accept is computed from a wrong key
  no-upgrade-101     101 without the "Upgrade: websocket" header (RFC 6455 §4.1:
                     the client must fail the connection), then echo
  content-length-101 correct 101 that also carries "Content-Length: 5"
  deflate-rsv1       correct 101 *without* permessage-deflate, then answers the
                     first message with an RSV1 (compressed) frame
  silent             reads the request and never answers (slow/hung backend)
  close-after-request reads the request and closes the connection (FIN) without
                     a response (a backend that crashes in its upgrade handler)
  reset-after-message correct 101, then on the first message the process "dies":
                     the connection is reset (RST), like a dev server that
                     restarts (nodemon, bun --watch) under an open socket
  unterminated-101   101 status line and headers, but the empty line that ends
                     the head never comes: the server's first WebSocket frame
                     (a greeting) follows the last header line directly
"""

import argparse
import base64
import hashlib
import socket
import struct
import threading
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def read_head(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        buf += chunk
        if len(buf) > 65536:
            return None, b""
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def header(head: bytes, name: bytes):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def recv_exact(conn, n, pending):
    while len(pending) < n:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        pending += chunk
    return pending[:n], pending[n:]


def read_frame(conn, pending):
    b, pending = recv_exact(conn, 2, pending)
    fin_op, ln = b[0], b[1]
    opcode = fin_op & 0x0F
    masked = ln & 0x80
    ln &= 0x7F
    if ln == 126:
        x, pending = recv_exact(conn, 2, pending)
        ln = struct.unpack("!H", x)[0]
    elif ln == 127:
        x, pending = recv_exact(conn, 8, pending)
        ln = struct.unpack("!Q", x)[0]
    mask = b"\0\0\0\0"
    if masked:
        mask, pending = recv_exact(conn, 4, pending)
    payload, pending = recv_exact(conn, ln, pending)
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return opcode, payload, pending


def frame(opcode, payload: bytes, rsv1=False):
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + struct.pack("!H", n) + payload
    return bytes([b0, 127]) + struct.pack("!Q", n) + payload


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


def handle(conn, addr, mode):
    log = lambda msg: print(f"{addr[0]}:{addr[1]} {mode}: {msg}", flush=True)
    try:
        head, pending = read_head(conn)
        if head is None:
            return
        log(head.split(b"\r\n", 1)[0].decode("latin-1"))
        key = header(head, b"Sec-WebSocket-Key") or b""
        if mode == "silent":
            log("never answering")
            while conn.recv(4096):
                pass
            return
        if mode == "close-after-request":
            log("closing without a response")
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
            return
        accept = accept_for(key)
        if mode == "bad-accept":
            accept = accept_for(
                b"dGhlIHNhbXBsZSBub25jZQ=="
                if key != b"dGhlIHNhbXBsZSBub25jZQ=="
                else b"x"
            )
        lines = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + accept,
        ]
        if mode == "no-upgrade-101":
            lines.remove(b"Upgrade: websocket")
        if mode == "content-length-101":
            lines.append(b"Content-Length: 5")
        if mode == "bare-lf":
            resp = b"\n".join(lines) + b"\n\n"
        elif mode == "unterminated-101":
            # the final empty line never comes; the greeting frame follows at once
            resp = b"\r\n".join(lines) + b"\r\n" + frame(1, b"welcome")
        else:
            resp = b"\r\n".join(lines) + b"\r\n\r\n"
        conn.sendall(resp)
        if mode == "unterminated-101":
            log("sent unterminated 101 head + greeting frame, holding the connection")
            while conn.recv(4096):
                pass
            return
        while True:
            opcode, payload, pending = read_frame(conn, pending)
            if opcode == 8:
                conn.sendall(frame(8, payload[:2] or b"\x03\xe8"))
                log("close")
                return
            if opcode == 9:
                conn.sendall(frame(10, payload))
                continue
            if opcode in (1, 2) and mode == "reset-after-message":
                log("resetting the connection (backend crash)")
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                conn.close()
                return
            if opcode in (1, 2):
                reply = b"echo: " + payload
                if mode == "deflate-rsv1":
                    log("replying with an RSV1 (deflated) frame without negotiation")
                    conn.sendall(frame(opcode, deflate_raw(reply), rsv1=True))
                else:
                    conn.sendall(frame(opcode, reply))
    except (EOFError, ConnectionError, OSError) as e:
        log(f"connection ended: {e!r}")
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=5000)
    a = ap.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, a.port))
    s.listen(16)
    print(f"raw backend mode={a.mode} listening on {a.port}", flush=True)
    while True:
        conn, addr = s.accept()
        threading.Thread(target=handle, args=(conn, addr, a.mode), daemon=True).start()


if __name__ == "__main__":
    main()
