"""Tiny, dependency-free reader for the lab's own captures.

Used by `scripts/lab/run` to check a fresh recording against the scenario's
expectations *without* wscap (the expected files must never be derived from
the tool under test). It understands exactly what the lab writes: classic
pcap, Ethernet (or Linux cooked v1), IPv4, TCP, no loss. TLS legs are
recognised by their ClientHello and h2c by its frames; reading inside TLS
(and HPACK) is left to tshark with the scenario's key log (decrypted_legs).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field


@dataclass
class Conn:
    client: tuple
    server: tuple
    syn_ts: float
    synack: bool = False
    rst_to_syn: bool = False
    data: dict = field(default_factory=lambda: {"c": {}, "s": {}})  # seq -> bytes
    isn: dict = field(default_factory=dict)

    def stream(self, d: str) -> bytes:
        segs = self.data[d]
        if not segs:
            return b""
        base = self.isn.get(d)
        if base is None:
            base = min(segs)
        out = b""
        pos = base
        for seq in sorted(segs):
            seg = segs[seq]
            rel = (seq - pos) & 0xFFFFFFFF
            if rel > 0x7FFFFFFF:  # overlap / retransmission
                over = (pos - seq) & 0xFFFFFFFF
                seg = seg[over:]
                rel = 0
            if rel != 0:
                break  # gap
            out += seg
            pos = (pos + len(seg)) & 0xFFFFFFFF
        return out

    @property
    def request(self) -> bytes:
        return self.stream("c")

    @property
    def response(self) -> bytes:
        return self.stream("s")

    def request_target(self):
        m = re.match(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r?\n", self.request)
        return m.group(2).decode("latin-1") if m else None

    def request_head(self) -> bytes:
        r = self.request
        i = r.find(b"\r\n\r\n")
        return r[:i] if i >= 0 else r

    def response_status(self):
        """Status of a *complete* response head (CRLF CRLF or LF LF), else None."""
        r = self.response
        m = re.match(rb"HTTP/1\.[01] (\d{3})[^\n]*\n", r)
        if not m:
            return None
        if b"\r\n\r\n" not in r and b"\n\n" not in r:
            return None
        return int(m.group(1))


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e, nano = "<", False
    elif magic == b"\xa1\xb2\xc3\xd4":
        e, nano = ">", False
    elif magic == b"\x4d\x3c\xb2\xa1":
        e, nano = "<", True
    elif magic == b"\xa1\xb2\x3c\x4d":
        e, nano = ">", True
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_f, incl, _orig = struct.unpack(e + "IIII", data[off : off + 16])
        off += 16
        pkt = data[off : off + incl]
        off += incl
        ts = ts_s + ts_f / (1e9 if nano else 1e6)
        if linktype == 1:
            l3, etype = pkt[14:], struct.unpack("!H", pkt[12:14])[0]
            if etype == 0x8100:
                etype, l3 = struct.unpack("!H", pkt[16:18])[0], pkt[18:]
        elif linktype == 113:
            l3, etype = pkt[16:], struct.unpack("!H", pkt[14:16])[0]
        else:
            continue
        if etype != 0x0800 or len(l3) < 20 or l3[9] != 6:
            continue
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        src, dst = ".".join(map(str, l3[12:16])), ".".join(map(str, l3[16:20]))
        tcp = l3[ihl:total]
        sport, dport, seq, _ack = struct.unpack("!HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield ts, (src, sport), (dst, dport), seq, flags, tcp[doff:]


def connections(path):
    conns: dict = {}
    order = []
    for ts, a, b, seq, flags, payload in read_pcap(path):
        syn, ack, rst = flags & 0x02, flags & 0x10, flags & 0x04
        if syn and not ack:
            key = (a, b)
            if key not in conns or conns[key].synack or conns[key].rst_to_syn:
                if key in conns and (conns[key].synack or conns[key].rst_to_syn):
                    order.remove(conns[key])
                c = Conn(client=a, server=b, syn_ts=ts)
                conns[key] = c
                order.append(c)
            conns[key].isn["c"] = (seq + 1) & 0xFFFFFFFF
            continue
        if (a, b) in conns:
            c, d = conns[(a, b)], "c"
        elif (b, a) in conns:
            c, d = conns[(b, a)], "s"
        else:
            continue
        if syn and ack and d == "s":
            c.synack = True
            c.isn["s"] = (seq + 1) & 0xFFFFFFFF
            continue
        if rst and d == "s" and not c.synack:
            c.rst_to_syn = True
        if payload:
            c.data[d].setdefault(seq, payload)
    return order


def legs(path, ws_path: str, upstream_ports=(5000,)):
    """Legs of the app's WebSocket chain in SYN order: every connection whose
    request targets ws_path, plus every connection to an upstream port (in the
    lab only the app's socket goes there: rewritten targets, refused and
    unanswered SYNs included)."""
    out = []
    for c in connections(path):
        t = c.request_target()
        if (
            c.server[1] in upstream_ports
            or t is not None
            and t.split("?")[0] == ws_path
        ):
            out.append(c)
    return out


def hmr_legs(path):
    return [c for c in connections(path) if b"vite-hmr" in c.request_head()]


def leg_status(c: Conn):
    return c.response_status()


# -- TLS and HTTP/2 (tls-*, h2-websocket, h2c-websocket) ----------------------
#
# Without the key log a TLS leg shows only that it is TLS (its ClientHello);
# its statuses come from tshark with `-o tls.keylog_file:` (decrypted_legs).
# Cleartext h2 (h2c, prior knowledge) is read here: frames, SETTINGS and the
# first byte of the response HEADERS block (HPACK static index 8-14 =
# :status 200/204/206/304/400/404/500), which is how nghttp2 (Node) sends them.

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
UPSTREAM_PORTS = (5000, 5443)


def client_random(c: Conn):
    """Hex client random of the ClientHello that opens c's client stream, else None."""
    r = c.request
    # record: type 22, version, length; handshake: type 1, length(3), version(2), random(32)
    if len(r) >= 43 and r[0] == 0x16 and r[1] == 0x03 and r[5] == 0x01:
        return r[11:43].hex()
    return None


def is_tls(c: Conn) -> bool:
    return client_random(c) is not None


def tls_client_randoms(path):
    return [r for r in (client_random(c) for c in connections(path)) if r]


def keylog_randoms(keylog) -> set:
    out = set()
    with open(keylog, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                out.add(parts[1].lower())
    return out


def h2_frames(data: bytes, client: bool):
    """(type, flags, stream id, payload) of each complete frame; the client's
    side starts with the connection preface."""
    if client:
        if not data.startswith(H2_PREFACE):
            return []
        data = data[len(H2_PREFACE) :]
    out, off = [], 0
    while off + 9 <= len(data):
        ln = int.from_bytes(data[off : off + 3], "big")
        typ, flags = data[off + 3], data[off + 4]
        sid = int.from_bytes(data[off + 5 : off + 9], "big") & 0x7FFFFFFF
        if off + 9 + ln > len(data):
            break
        out.append((typ, flags, sid, data[off + 9 : off + 9 + ln]))
        off += 9 + ln
    return out


def is_h2c(c: Conn) -> bool:
    return c.request.startswith(H2_PREFACE)


def h2_settings(c: Conn) -> dict:
    """The server's SETTINGS (id -> value), merged in order."""
    out = {}
    for typ, flags, _sid, p in h2_frames(c.response, False):
        if typ == 4 and not flags & 1:
            for i in range(0, len(p) - 5, 6):
                out[int.from_bytes(p[i : i + 2], "big")] = int.from_bytes(
                    p[i + 2 : i + 6], "big"
                )
    return out


_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def _block(flags, p):
    if flags & 0x08:  # PADDED
        pad, p = p[0], p[1:]
        p = p[: len(p) - pad]
    if flags & 0x20:  # PRIORITY
        p = p[5:]
    return p


def h2c_websocket_status(c: Conn):
    """:status of the server's first HEADERS on the first client stream that
    carries DATA both ways (the WebSocket), when sent as an HPACK static
    index; None when there is none."""
    cf, sf = h2_frames(c.request, True), h2_frames(c.response, False)
    for _t, _f, sid, _p in [f for f in cf if f[0] == 1]:
        if not any(t == 0 and s == sid for t, _f2, s, _p2 in cf):
            continue
        for t, f, s, p in sf:
            if t == 1 and s == sid:
                b = _block(f, p)
                if b and b[0] & 0x80:
                    return _STATIC_STATUS.get(b[0] & 0x7F)
                return None
    return None


def structural_legs(path, ws_path: str, transport: str = ""):
    """The chain's legs as far as they can be told without decrypting:
    ""   the cleartext HTTP/1.1 legs (legs())
    tls  every TLS connection plus the cleartext legs to the upstream ports
         (the lab starts the capture after the page load: the only TLS
         connections in it are the WebSocket's)
    h2   every TLS connection (page and WebSocket share one h2 connection)
    h2c  every connection opening with the HTTP/2 preface
    Returns [(Conn, status)] with status "tls" for a leg that needs the key log."""
    conns = connections(path)
    if transport == "":
        return [(c, c.response_status()) for c in legs(path, ws_path)]
    if transport == "h2c":
        return [(c, h2c_websocket_status(c)) for c in conns if is_h2c(c)]
    out = []
    for c in conns:
        if is_tls(c):
            out.append((c, "tls"))
        elif transport == "tls" and (
            c.server[1] in UPSTREAM_PORTS
            or (c.request_target() or "").split("?")[0] == ws_path
        ):
            out.append((c, c.response_status()))
    return out


def _pairs(pairs):
    return pairs  # keep duplicate keys (tshark's JSON repeats them)


def _find(node, key):
    """Every value of key anywhere below node (a list of (key, value) pairs)."""
    out = []
    if isinstance(node, list):
        for k, v in node:
            if k == key:
                out.append(v)
            out.extend(_find(v, key))
    return out


def _first(node, key):
    vals = _find(node, key)
    return vals[0] if vals else None


TLS_PORTS = (5173, 5443, 8443)
H2C_PORTS = (5080,)


def tshark_messages(path, keylog=None):
    """HTTP/1.1 and HTTP/2 messages per TCP connection, read by tshark (with the
    key log for TLS): {(client, server): [msg]} where msg is
    {"dir": "c"|"s", "h1": (method, uri) | status} or
    {"dir", "h2": frame type, "sid", "headers": {name: value}}.
    None when tshark is not installed."""
    tshark = shutil.which("tshark")
    if not tshark:
        return None
    argv = [tshark, "-n", "-r", str(path)]
    for port in TLS_PORTS:
        argv += ["-d", f"tcp.port=={port},tls"]
    # Node's https client (Vite's proxy) sends no ALPN: say what the TLS carries.
    argv += ["-d", "tls.port==5443,http"]
    for port in H2C_PORTS:
        argv += ["-d", f"tcp.port=={port},http2"]
    if keylog:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    argv += ["-Y", "http or http2", "-T", "json", "-J", "ip tcp http http2"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"tshark failed: {r.stderr[-500:]}")
    conns: dict = {}
    order = {c_.client + c_.server: (c_.client, c_.server) for c_ in connections(path)}
    for pkt in json.loads(r.stdout or "[]", object_pairs_hook=_pairs):
        layers = _first(pkt, "layers")
        src = (_first(layers, "ip.src"), int(_first(layers, "tcp.srcport")))
        dst = (_first(layers, "ip.dst"), int(_first(layers, "tcp.dstport")))
        if src + dst in order:
            key, d = order[src + dst], "c"
        elif dst + src in order:
            key, d = order[dst + src], "s"
        else:
            continue  # a connection that started before the capture
        msgs = conns.setdefault(key, [])
        for k, http in layers:
            if k == "http":
                method = _first(http, "http.request.method")
                code = _first(http, "http.response.code")
                if method:
                    msgs.append(
                        {"dir": d, "h1": (method, _first(http, "http.request.uri"))}
                    )
                elif code:
                    msgs.append({"dir": d, "h1": int(code)})
            elif k == "http2":
                for k2, st in http:
                    if k2 != "http2.stream":
                        continue
                    typ = _first(st, "http2.type")
                    if typ is None:
                        continue  # the connection preface
                    hdrs = {}
                    for k3, h in st:
                        if k3 == "http2.header":
                            hdrs[_first(h, "http2.header.name")] = _first(
                                h, "http2.header.value"
                            )
                    msgs.append(
                        {
                            "dir": d,
                            "h2": int(typ),
                            "sid": int(_first(st, "http2.streamid") or 0),
                            "headers": hdrs,
                        }
                    )
    return conns


def decrypted_legs(path, ws_path, transport="", keylog=None):
    """The chain's legs read by tshark (decrypted with the key log), in SYN
    order, as [{"leg": "client:port->server:port", "status": ..., "protocol": ...,
    "http": "1.1"|"2"}]. HTTP/1.1: a connection whose request targets ws_path
    or that goes to an upstream port; status of its first response.
    HTTP/2: the connection carrying an extended CONNECT (:protocol) for
    ws_path; status of that stream's response HEADERS. None without tshark."""
    msgs = tshark_messages(path, keylog)
    if msgs is None:
        return None
    out = []
    for c in connections(path):
        key = (c.client, c.server)
        ms = msgs.get(key, [])
        name = f"{c.client[0]}:{c.client[1]}->{c.server[0]}:{c.server[1]}"
        h2 = [m for m in ms if "h2" in m]
        if h2:
            for m in h2:
                h = m["headers"]
                if (
                    m["dir"] == "c"
                    and m["h2"] == 1
                    and h.get(":method") == "CONNECT"
                    and (h.get(":path") or "").split("?")[0] == ws_path
                ):
                    status = next(
                        (
                            int(r["headers"][":status"])
                            for r in h2
                            if r["dir"] == "s"
                            and r["h2"] == 1
                            and r["sid"] == m["sid"]
                            and ":status" in r["headers"]
                        ),
                        None,
                    )
                    out.append(
                        {
                            "leg": name,
                            "http": "2",
                            "stream": m["sid"],
                            "protocol": h.get(":protocol"),
                            "status": status,
                        }
                    )
            continue
        reqs = [
            m["h1"] for m in ms if m["dir"] == "c" and isinstance(m.get("h1"), tuple)
        ]
        resps = [
            m["h1"] for m in ms if m["dir"] == "s" and isinstance(m.get("h1"), int)
        ]
        target = reqs[0][1] if reqs else None
        if c.server[1] in UPSTREAM_PORTS or (target or "").split("?")[0] == ws_path:
            out.append(
                {
                    "leg": name,
                    "http": "1.1",
                    "target": target,
                    "status": resps[0] if resps else None,
                }
            )
    return out


def structural_problems(path, chain: dict, transport: str, encrypted_legs=()):
    """What can be checked of a TLS/h2/h2c chain without the key log; [] when
    the capture agrees. encrypted_legs: hop indices carried over TLS."""
    legs = structural_legs(path, chain["path"], transport)
    got = [s for _c, s in legs]
    if transport == "h2":
        # The WebSocket rides on one of the browser's h2 connections (Chromium
        # also keeps a spare one open): every leg is TLS, at least hops of them.
        if len(got) < chain["hops"] or any(s != "tls" for s in got):
            return [
                f"chain {chain['path']}: expected >= {chain['hops']} TLS connections, capture shows {got}"
            ]
        return []
    want = [
        "tls" if i in encrypted_legs else s for i, s in enumerate(chain["statuses"])
    ]
    if got != want:
        return [
            f"chain {chain['path']}: without decrypting the capture shows {got}, scenario implies {want}"
        ]
    return []


def decrypted_problems(path, chain: dict, transport: str, keylog=None):
    """Statuses per leg after decrypting with the key log (tshark); for h2/h2c
    also that the leg is an RFC 8441 extended CONNECT. None without tshark."""
    problems = []
    if keylog is not None:
        missing = set(tls_client_randoms(path)) - keylog_randoms(keylog)
        if missing:
            problems.append(
                f"key log lacks {len(missing)} TLS connection(s) of the capture"
            )
    dec = decrypted_legs(path, chain["path"], transport, keylog)
    if dec is None:
        return None
    statuses = [d["status"] for d in dec]
    if len(dec) != chain["hops"] or statuses != chain["statuses"]:
        problems.append(
            f"chain {chain['path']}: decrypted capture shows {len(dec)} legs {statuses} ({dec}), "
            f"scenario expects {chain['hops']} {chain['statuses']}"
        )
    want_http = "2" if transport in ("h2", "h2c") else "1.1"
    for d in dec:
        if d["http"] != want_http or (
            want_http == "2" and d.get("protocol") != "websocket"
        ):
            problems.append(
                f"chain {chain['path']}: leg {d} is not HTTP/{want_http}"
                + (" with :protocol websocket (RFC 8441)" if want_http == "2" else "")
            )
    return problems
