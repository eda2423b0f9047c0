#!/usr/bin/env python3
"""Captures built to attack wscap (issue 16), each analysed in a child that reports its own peak
RSS (VmHWM): the figures in the README's Security section.

    python3 scripts/bench/hostile.py [--out DIR] [--only NAME ...] [--scale 1.0]

Prints one Markdown row per attack: attack, capture size, bound that holds, peak RSS, time, result.
The builders write records with struct (tests/test_bounds.py) so large captures take seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]

from test_bounds import (ACK, PSH, SYN, WS_REQ, WS_RESP, Flow, PcapWriter, ip4, packet)  # noqa: E402

CHILD = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                os.write(2, ("\\nWSCAP_VMHWM_KB %s\\n" % line.split()[1]).encode())
atexit.register(_hwm)
sys.argv = ["wscap"] + sys.argv[1:]
from wscap.cli.main import main
main()
"""


def run(*args: str) -> tuple[int, float, float, int, str]:
    """-> (exit code, peak RSS MiB, seconds, stdout bytes, stdout head)"""
    env = dict(os.environ, PYTHONPATH=ROOT)
    t = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([sys.executable, "-c", CHILD, *args], stdout=out, stderr=err, env=env, cwd=ROOT)
        secs = time.monotonic() - t
        size = out.tell()
        out.seek(0)
        head = out.read().decode(errors="replace") if size <= 1_000_000_000 else ""
        err.seek(0)
        e = err.read().decode(errors="replace")
    m = re.search(r"WSCAP_VMHWM_KB (\d+)", e)
    return p.returncode, int(m.group(1)) / 1024 if m else -1, secs, size, head


# -- builders -------------------------------------------------------------------------------------

def same_key(path: str, n: int) -> None:
    w = PcapWriter(path)
    for i in range(n):
        f = Flow(w, ip4(0x0A000100 + i), 40000 + i % 20000, ip4(0x0B000001), 80).handshake()
        f.client(WS_REQ)
        f.server(WS_RESP if i != n // 2 else b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    w.close()


def non_http(path: str, n: int) -> None:
    w = PcapWriter(path)
    for i in range(n):
        w.add(packet(ip4(0x0B000000 + (i >> 14)), 1024 + (i & 0x3FFF), ip4(0x0A000002), 9000, i * 7919, 1,
                     PSH | ACK, b"\x00\x01binary"))
    f = Flow(w, ip4(0x0C000001), 45000, ip4(0x0A000002), 80).handshake()
    f.client(WS_REQ)
    f.server(WS_RESP)
    w.close()


def _h2_flow(w):
    f = Flow(w, ip4(0x0A000001), 40000, ip4(0x0A000002), 8080).handshake()
    return f


def _frame(t: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([t, flags]) + stream.to_bytes(4, "big") + payload


def _send(f, data: bytes, client: bool) -> None:
    for i in range(0, len(data), 1400):
        (f.client if client else f.server)(data[i:i + 1400])


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":authority", "x:8080"),
           ("sec-websocket-version", "13")]


def hpack_table(path: str, mb: int) -> None:
    """The server allows a 4 GiB table; the client's encoder takes 1 GiB and fills it."""
    import hpack
    w = PcapWriter(path)
    f = _h2_flow(w)
    enc = hpack.Encoder()
    f.client(PREFACE + _frame(4, 0, 0, b""))
    f.server(_frame(4, 0, 0, (1).to_bytes(2, "big") + (0xFFFFFFFF).to_bytes(4, "big") +
                    (8).to_bytes(2, "big") + (1).to_bytes(4, "big")))
    enc.header_table_size = 1 << 30
    sid, sent = 1, 0
    while sent < mb << 20:
        block = enc.encode(CONNECT + [(":path", f"/p{sid}"), (f"x-fill-{sid}", "f" * 60_000)], huffman=False)
        data = _frame(1, 4, sid, block)
        _send(f, data, True)
        sent += len(data)
        sid += 2
    w.close()


def hpack_amp(path: str, streams: int) -> None:
    """Stream 1 puts a 65,000-byte header in the table; every later stream references it."""
    import hpack
    w = PcapWriter(path)
    f = _h2_flow(w)
    enc, senc = hpack.Encoder(), hpack.Encoder()
    f.client(PREFACE + _frame(4, 0, 0, b""))
    f.server(_frame(4, 0, 0, (1).to_bytes(2, "big") + (65536).to_bytes(4, "big") +
                    (8).to_bytes(2, "big") + (1).to_bytes(4, "big")))
    enc.header_table_size = 65536
    reqs, resps = bytearray(), bytearray()
    for i in range(streams):
        hs = CONNECT + [(":path", f"/ws/{i}", True), ("x-pad", "p" * 65_000)]
        reqs += _frame(1, 4, 2 * i + 1, enc.encode(hs, huffman=False))
        resps += _frame(1, 4, 2 * i + 1, senc.encode([(":status", "200")]))
    _send(f, bytes(reqs), True)
    _send(f, bytes(resps), False)
    w.close()


def many(path: str, n: int) -> None:
    w = PcapWriter(path)
    for i in range(n):
        f = Flow(w, ip4(0x0A000100 + i), 40000 + i % 20000, ip4(0x0B000000 + i % 50), 80).handshake()
        f.client(WS_REQ.replace(b"/ws", b"/ws/%d" % i))
        f.server(WS_RESP)
    w.close()


def inflate_bomb(path: str, mib: int) -> None:
    """Context takeover; a message inflating to `mib` MiB, then a normal one."""
    w = PcapWriter(path)
    f = Flow(w, ip4(0x0A000001), 40000, ip4(0x0A000002), 80).handshake()
    ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    f.client(WS_REQ[:-2] + ext)
    f.server(WS_RESP[:-2] + ext)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    for m in (b"hello", b"A" * (mib << 20), b"after"):
        body = (c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        n = len(body)
        hdr = bytes([0xC1]) + (bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big") if n < 65536
                               else bytes([127]) + n.to_bytes(8, "big"))
        _send(f, hdr + body, False)
    w.close()


def gzip_empty(path: str, n: int) -> None:
    """A gzip member of `n` empty records (about 1 MB of gzip for 67 million)."""
    import struct
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    rec = struct.pack("<IIII", 1_700_000_000, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(c.compress(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)))
        block = rec * 65536
        for _ in range(n // 65536):
            f.write(c.compress(block))
        f.write(c.compress(rec * (n % 65536)) + c.flush())


ATTACKS = {
    # name: (builder, size arg, wscap args, bound text, check(doc-or-head) -> result text)
    "same-key": (same_key, 8000, ["analyze", "--format", "json"],
                 "key links need the topology; (key, client) index: linear",
                 lambda d: f"{d['summary']['chains']} chains, {d['summary']['broken']} broken"),
    "non-http-flows": (non_http, 1_000_000, ["analyze", "--format", "json", "--max-flows", "1000"],
                       "--max-flows 1000 (ignored flows included)",
                       lambda d: f"max_flows hit {d['stats']['limits_hit'].get('max_flows')}, "
                                 f"{d['summary']['handshakes']} handshake"),
    "hpack-table": (hpack_table, 64, ["analyze", "--format", "json"],
                    "--max-hpack-table 64 KiB",
                    lambda d: f"limits_hit {d['stats']['limits_hit']}"),
    "hpack-amplification": (hpack_amp, 20_000, ["analyze", "--format", "json"],
                            "--max-h2-header-bytes 1 MiB per connection",
                            lambda d: f"{d['summary']['handshakes']} handshakes, h2_header_bytes hit "
                                      f"{d['stats']['limits_hit'].get('h2_header_bytes')}"),
    "inflate-bomb": (inflate_bomb, 1024, ["analyze", "--format", "json"],
                     "--max-inflate-bytes 1 MiB per message",
                     lambda d: f"previews {[f['preview'] and f['preview'][:8] for f in d['handshakes'][0]['frames']]}"),
    "gzip-empty-records": (gzip_empty, 67_000_000, ["analyze", "--format", "json"],
                           "--max-gzip-records-per-kib 1024",
                           lambda d: f"{d['source'][0]['packets']:,} records read, limits_hit "
                                     f"{d['stats']['limits_hit']}"),
    "many-json": (many, 200_000, ["analyze", "--format", "json"], "streamed JSON (spool on disk)",
                  lambda d: f"{d['summary']['handshakes']} handshakes"),
    "many-markdown": (many, 20_000, ["analyze", "--format", "markdown"], "indexed lookups (no per-row scan)",
                      lambda d: "rendered"),
}
# Every non-streamed format over many handshakes (run with --only many-table ... --scale).
for _fmt in ("table", "html", "csv", "har"):
    ATTACKS[f"many-{_fmt}"] = (many, 20_000, ["analyze", "--format", _fmt], "rendered from the spool",
                               lambda d: "rendered")
for _fmt in ("md", "html"):
    ATTACKS[f"many-report-{_fmt}"] = (many, 20_000, ["report", "-o", "-", "--format", {"md": "markdown"}.get(_fmt, _fmt)], "rendered from the spool",
                                      lambda d: "rendered")



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=tempfile.gettempdir())
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    print("| attack | capture | bound | peak RSS | time | exit | result |\n|---|---|---|---|---|---|---|")
    for name, (build, n, args, bound, check) in ATTACKS.items():
        if a.only and name not in a.only:
            continue
        n = max(1, int(n * a.scale))
        path = os.path.join(a.out, f"wscap-hostile-{name}-{n}.pcap")
        if not os.path.exists(path):
            build(path, n)
        rc, rss, secs, size, head = run(args[0], path, *args[1:])
        try:
            is_json = "json" in args
            result = check(json.loads(head)) if is_json else f"{check(None)}, {size / 1e6:.1f} MB"
            if is_json:
                result += f"; {size / 1e6:.1f} MB of JSON"
        except Exception as e:  # noqa: BLE001
            result = f"? ({type(e).__name__}: {e})"
        print(f"| {name} ({n:,}) | {os.path.getsize(path) / 1e6:.1f} MB | {bound} | {rss:.0f} MiB | {secs:.1f} s "
              f"| {rc} | {result} |", flush=True)


if __name__ == "__main__":
    main()
