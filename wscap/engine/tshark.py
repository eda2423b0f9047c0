"""`--engine tshark`: the same JSON document, with the handshakes taken from Wireshark's dissection.

tshark (through pyshark, one `tshark -T json -x` run per file) does the TCP reassembly, the
HTTP/1 head parsing, the WebSocket frame dissection after a 101 and the HTTP/2 dissection;
this module only reads its fields:

- connections: `tcp.stream`, the SYN / SYN-ACK / FIN / RST flags, `tcp.len`
  (retransmissions flagged by `tcp.analysis.retransmission` are not counted; for a connection
  tshark decrypted with the key log, the decrypted record lengths, `data.len`, instead);
- heads: `http.request.method/uri/version`, `http.response.version/code/phrase` and the
  header lines `http.request.line` / `http.response.line` (their `_raw` bytes when present:
  wire order, wire case, duplicates kept). `raw` is the `http` protocol item's bytes from
  tshark's reassembled tvb, cut after the empty line ending the head;
- frames: `websocket.fin/rsv/opcode/mask/payload_length`, the unmasked `websocket.payload`
  bytes, `websocket.payload.text` (inflated by tshark when permessage-deflate is on) and the
  close status code / reason;
- HTTP/2 (RFC 8441): per HTTP/2 frame `http2.type/flags/streamid`, the decoded header list
  `http2.header.name/value` (wire order, CONTINUATION appended until END_HEADERS), the server's
  `http2.settings.id` and value (SETTINGS_ENABLE_CONNECT_PROTOCOL), `http2.rst_stream.error`,
  `http2.goaway.error` and the DATA bytes `http2.data.data`. tshark does not run its websocket
  dissector on DATA, so the RFC 6455 frames in it are decoded by `wsframe.FrameScanner`
  (framing of tshark's bytes, no reassembly); the RFC 8441 checks are `http2.check_*` on an
  `H2Head` built from tshark's header list.

wscap's own reassembly (`tcp.py`, `connection.py`) is not used. Above the handshakes, wscap's
pure layers are reused so the documents compare: `http1.parse_head` on tshark's raw head bytes
for the lexical anomalies (bare LF, obs-fold, ...) only — method, target, status and headers
are tshark's — `handshake.check_request/check_response` for RFC 6455, `opinions` for the
`parsers` block (llhttp and h11 fed tshark's raw head bytes, exactly as the core engine does
with its own), and `assemble.document` (chains, verdicts, endpoints, summary).

HTTP on any port: tshark's `http_tcp` heuristic is on by default; a stream whose first client
bytes look like a request line but that tshark did not dissect as HTTP (its port belongs to
another dissector) triggers a second run with `-d tcp.port==P,http` for those ports.
"""
from __future__ import annotations

import binascii
import io
import os
import re
from dataclasses import dataclass, field

from wscap.judge import checks as hs
from wscap.model.anomaly import Anomaly, make
from wscap.document.build import document
from wscap.wire.http1 import Field, HttpHead, parse_head
from wscap.wire.http2 import ENABLE_CONNECT_PROTOCOL, H2Head, check_connect_response, check_extended_connect, error_name
from wscap.engine.core import Options
from wscap.flow.connection import opinion_anomalies, parser_opinion
from wscap.wire.wsframe import _REQUEST_LINE as _WS_REQUEST_LINE
from wscap.wire.wsframe import FrameScanner, preview

ENGINE = "tshark"
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
_BAD_CLOSE = {1004, 1005, 1006, 1015}
_HEAD_END = re.compile(rb"\n\r?\n")
_REQUEST_LINE = re.compile(rb"^[A-Z][A-Z-]{1,15} \S")     # a request line's start (a segment may end there)
# tshark's frame.encap_type (WTAP_ENCAP_*) -> pcap LINKTYPE_*
_ENCAP_TO_LINKTYPE = {1: 1, 7: 101, 15: 0, 25: 113, 129: 228, 130: 229, 210: 276}
PREFS = {
    # A head is reported in the frame holding its last byte (not where a body completed).
    "http.desegment_body": "FALSE",
    "http.desegment_headers": "TRUE",
    "tcp.desegment_tcp_streams": "TRUE",
    "tcp.analyze_sequence_numbers": "TRUE",
    # tshark 4.0 reassembles a PDU only from in-order segments unless told otherwise: a head whose
    # segments arrive out of order would never be dissected (core buffers them and reorders).
    "tcp.reassemble_out_of_order": "TRUE",
}


# -- tshark's JSON, as pyshark hands it over --------------------------------------------------

def _dicts(layer) -> list[dict]:
    """A pyshark JsonLayer and its duplicates (one per PDU) as plain dicts."""
    out = []
    for ly in [layer] + list(getattr(layer, "duplicate_layers", []) or []):
        d = getattr(ly, "_all_fields", None)
        if isinstance(d, dict) and d:
            out.append(d)
    return out


def _raw_hexes(layer) -> list[str]:
    """The hex strings of a `<proto>_raw` layer ([hex, offset, length, mask, type], possibly repeated)."""
    out = []
    for ly in [layer] + list(getattr(layer, "duplicate_layers", []) or []):
        v = getattr(ly, "value", None)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list) and v and isinstance(v[0], str):
            out.append(v[0])
    return out


def _find(d, key: str):
    """First value of `key` anywhere in a nested tshark JSON dict (tshark nests fields in text items)."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            if isinstance(v, (dict, list)):
                r = _find(v, key)
                if r is not None:
                    return r
    elif isinstance(d, list):
        for v in d:
            if isinstance(v, dict):
                r = _find(v, key)
                if r is not None:
                    return r
    return None


def _findall(d, key: str) -> list:
    """Every value of `key` anywhere in a nested dict (repeated keys arrive as lists)."""
    out: list = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k == key:
                out += v if isinstance(v, list) and not (v and isinstance(v[0], (int, float))) else [v]
            elif isinstance(v, (dict, list)):
                out += _findall(v, key)
    elif isinstance(d, list):
        for v in d:
            if isinstance(v, (dict, list)):
                out += _findall(v, key)
    return out


_TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def _client_hello(tls: list[dict]) -> dict | None:
    """SNI, ALPN and versions of a ClientHello, from tshark's tls.handshake.* fields."""
    for d in tls:
        if "1" not in [str(x) for x in _findall(d, "tls.handshake.type")]:
            continue
        sni = _findall(d, "tls.handshake.extensions_server_name")
        alpn = [a for a in _findall(d, "tls.handshake.extensions_alpn_str") if isinstance(a, str)]
        vers = []
        for v in _findall(d, "tls.handshake.extensions.supported_version"):
            name = _TLS_VERSIONS.get(_int(v, -1))
            if name and name not in vers:
                vers.append(name)
        if not vers:
            name = _TLS_VERSIONS.get(_int(_find(d, "tls.handshake.version"), -1))
            vers = [name] if name else []
        return {"sni": sni[0] if sni and isinstance(sni[0], str) else None, "alpn": alpn, "versions": vers,
                "complete": True, "decrypted": False}
    return None


def _one(v):
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _strs(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str)]
    return [v]


def _raw_list(v) -> list[bytes]:
    """`<field>_raw` values: [hex, off, len, mask, type] once, or a list of those."""
    if not isinstance(v, list) or not v:
        return []
    items = [v] if isinstance(v[0], str) else [x for x in v if isinstance(x, list) and x and isinstance(x[0], str)]
    out = []
    for it in items:
        try:
            out.append(binascii.unhexlify(it[0]))
        except (binascii.Error, ValueError):
            return []
    return out


def _int(v, default=None):
    v = _one(v)
    try:
        return int(v, 0) if isinstance(v, str) else (int(v) if v is not None else default)
    except (TypeError, ValueError):
        return default


def _ns(epoch: str | None) -> int:
    if not epoch:
        return 0
    s, _, frac = epoch.partition(".")
    return int(s) * 1_000_000_000 + int((frac + "000000000")[:9])


def _flag(d: dict, name: str) -> bool:
    v = _find(d, name)
    return _one(v) in ("1", "True", "true", 1, True)


@dataclass
class Http:
    kind: str                 # "request" | "response"
    fields: dict
    raw: bytes | None         # the http item's bytes (reassembled), head and maybe body
    partial: bool = False     # from the second run without header desegmentation: never terminated


@dataclass
class Ws:
    fields: dict


@dataclass
class Pkt:
    no: int
    ts_ns: int
    caplen: int
    stream: int | None = None
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    syn: bool = False
    ack: bool = False
    fin: bool = False
    rst: bool = False
    tcplen: int = 0
    seq: int | None = None                             # tshark's relative sequence number
    retrans: bool = False
    payload: bytes = b""
    segments: list[int] = field(default_factory=list)
    segdata: list[int] = field(default_factory=list)   # sizes of this segment's pieces of reassembled PDUs
    https: list[Http] = field(default_factory=list)
    ws: list[Ws] = field(default_factory=list)
    ws_bytes: int = 0
    h2: list[dict] = field(default_factory=list)
    tls: bool = False
    hello: dict | None = None
    tunnel: list | None = None                          # encapsulation layers (see _tunnel)
    probe: str | None = None                            # "keep-alive" | "zero-window-probe" (tcp.analysis)


def _ws_length(d: dict) -> int:
    n = _int(d.get("websocket.payload_length"), 0)
    if n == 126:
        n = _int(d.get("websocket.payload_length_ext_16"), n)
    elif n == 127:
        n = _int(d.get("websocket.payload_length_ext_64"), n)
    return n


def _ws_wire_bytes(d: dict) -> int:
    n = _ws_length(d)
    return 2 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0) + (4 if _one(d.get("websocket.mask")) == "1" else 0) + n


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _extract(pkt, p: Pkt) -> None:
    """What only tshark's full dissection gives, for a packet the JSON pass emitted (JSON_FILTER):
    HTTP/1 heads, WebSocket frames, HTTP/2 frames, a ClientHello. Its TCP facts come from the
    fields pass (`_fields_pkt`)."""
    by: dict[str, list] = {}
    for ly in pkt.layers:
        by.setdefault(ly.layer_name, []).append(ly)
    dicts = [d for ly in by.get("http", []) for d in _dicts(ly)]
    raws = [h for ly in by.get("http_raw", []) for h in _raw_hexes(ly)]
    for i, d in enumerate(dicts):
        kind = "request" if _find(d, "http.request.method") is not None else (
            "response" if _find(d, "http.response.code") is not None else None)
        if kind is None:
            continue
        raw = None
        if i < len(raws):
            try:
                raw = binascii.unhexlify(raws[i])
            except (binascii.Error, ValueError):
                raw = None
        p.https.append(Http(kind, d, raw))
    for ly in by.get("websocket", []):
        p.ws += [Ws(d) for d in _dicts(ly)]
    p.ws_bytes = sum(len(h) // 2 for ly in by.get("websocket_raw", []) for h in _raw_hexes(ly))
    for ly in by.get("http2", []):
        p.h2 += _dicts(ly)
    if "tls" in by:
        p.hello = _client_hello(pkt_layers_dict(by, "tls"))


def pkt_layers_dict(by: dict, name: str) -> list[dict]:
    return [d for ly in by.get(name, []) for d in _dicts(ly)]


# -- running tshark ---------------------------------------------------------------------------
#
# Two tshark processes per read, one after the other (tshark dissects every packet in both; a display
# filter only chooses which packets are written out, it never changes their dissection):
# - the fields pass: `-T fields` with one line of TCP facts per packet (`TCP_FIELDS`), parsed with
#   str.split; every packet costs a line, not a JSON tree;
# - the JSON pass: pyshark (`-T json -x -J JSON_PROTOCOLS`) restricted by `-Y JSON_FILTER` to the
#   packets that carry something only the full dissection gives (an HTTP/1 head, WebSocket or
#   HTTP/2 frames, a ClientHello), about one packet in ten on the bench captures.

@dataclass
class FileRead:
    path: str
    packets: list[Pkt] = field(default_factory=list)
    count: int = 0
    bytes: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    encaps: list[int] = field(default_factory=list)
    tcp_packets: int = 0
    errors: list[str] = field(default_factory=list)
    plain: dict[int, int] = field(default_factory=dict)   # frame -> plaintext bytes tshark decrypted in it
    plain_streams: set[int] = field(default_factory=set)  # tcp.stream of connections tshark decrypted
    dns: list[tuple] = field(default_factory=list)        # DnsTracker.record() arguments, from tshark's dns fields


def _file_format(path: str) -> str:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return "unknown"
    if magic == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return "pcap"
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    return "unknown"


TCP_FIELDS = ("frame.number", "frame.time_epoch", "frame.cap_len", "frame.encap_type", "frame.protocols",
              "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.stream", "tcp.srcport", "tcp.dstport",
              "tcp.flags", "tcp.len", "tcp.seq", "tcp.analysis.retransmission",
              "tcp.analysis.spurious_retransmission", "tcp.segment.count", "tcp.segment",
              "tcp.segment_data", "tcp.payload",
              # the tunnels a packet came out of (see _tunnel): the same layers the core decoder opens
              "eth.type", "udp.dstport", "vxlan.vni", "geneve.vni", "gtp.teid", "gre.key", "gre.proto",
              "erspan.version", "erspan.spanid", "mpls.label", "mpls.bottom",
              # TCP probes (core: tcp.HalfStream.feed): tshark's tcp.analysis labels
              "tcp.analysis.keep_alive", "tcp.analysis.zero_window_probe")
# DNS as tshark dissects it (UDP/TCP port 53): the same transactions the core reads with dpkt.
# (udp.dstport is in TCP_FIELDS: tshark fills only the last column of a field asked for twice.)
DNS_FIELDS = ("udp.srcport", "dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name",
              "dns.qry.type", "dns.a", "dns.aaaa", "dns.count.answers")
# tshark decodes VXLAN only on its IANA port 4789; Linux's (and flannel's) default is 8472.
DECODE_AS = {"udp.port==8472": "vxlan"}
JSON_PROTOCOLS = "frame http websocket http2 tls"
# Exactly the packets `_extract` finds something in: an http item that is a request or a response,
# any websocket or http2 layer, a TLS handshake of type 1 (ClientHello).
JSON_FILTER = "http.request.method || http.response.code || websocket || http2 || tls.handshake.type == 1"
_NESTING = {"icmp", "icmpv6"}      # protocols whose payload quotes an IP/TCP header inside their own item


def _last(v: str) -> str:
    return v.rpartition(",")[2]


def _fields_pkt(cols: list[str]) -> tuple[Pkt, int | None]:
    """One line of the fields pass -> (Pkt with its TCP facts, frame.encap_type). With several
    occurrences (a tunnel), the innermost header's, as the JSON reading took the last layer."""
    (no, epoch, caplen, encap, protos, ip_src, ip_dst, ip6_src, ip6_dst, stream, sport, dport, flags, tcplen,
     seq, retrans, spurious, seg_count, segs, segdata, payload) = cols[:21]
    p = Pkt(no=int(no), ts_ns=_ns(epoch), caplen=int(caplen or 0))
    enc = int(encap) if encap else None
    names = protos.split(":")
    if not stream or "tcp" not in names or _NESTING.intersection(names[:names.index("tcp")]):
        return p, enc      # no TCP header of its own (an ICMP error quotes one inside its item)
    p.tunnel = _tunnel(names[:names.index("tcp")], ip_src, ip_dst, ip6_src, ip6_dst, cols[21:32])
    p.probe = "keep-alive" if cols[32] else "zero-window-probe" if cols[33] else None
    above = names[:names.index("tcp")]
    inner6 = next((n for n in reversed(above) if n in ("ip", "ipv6")), "ipv6" if ip6_src else "ip") == "ipv6"
    if inner6:      # the innermost IP header is the TCP's (an IPv6 outer header may carry IPv4)
        p.src, p.dst = _last(ip6_src), _last(ip6_dst)
    else:
        p.src, p.dst = _last(ip_src), _last(ip_dst)
    p.stream = int(_last(stream))
    p.sport = int(_last(sport) or 0)
    p.dport = int(_last(dport) or 0)
    fl = int(_last(flags) or "0", 0)
    p.fin, p.syn, p.rst, p.ack = bool(fl & 1), bool(fl & 2), bool(fl & 4), bool(fl & 16)
    p.tcplen = int(_last(tcplen) or 0)
    p.seq = int(_last(seq)) if seq else None
    p.retrans = bool(retrans or spurious)
    if payload:
        p.payload = binascii.unhexlify(_last(payload)[:64])
    if segs:
        # The first reassembled PDU's segment list (tcp.segment.count says where it ends).
        n = int(seg_count.split(",", 1)[0] or 0) if seg_count else None
        p.segments = [int(s or 0) for s in segs.split(",")[:n]]
    if segdata:
        p.segdata = [len(h) // 2 for h in segdata.split(",")]
    p.tls = "tls" in names
    return p, enc


def _dns_record(cols: list[str], p: Pkt, res: FileRead) -> None:
    """A DNS message from the fields pass -> DnsTracker.record() arguments (first question only,
    as the core reads it). Over TCP the ports come from the TCP facts."""
    import ipaddress
    from wscap.flow.dns import MAX_ADDRESSES, QTYPES, safe_name
    t = dict(zip(TCP_FIELDS, cols))
    d = dict(zip(DNS_FIELDS, cols[len(TCP_FIELDS):]))
    if not _last(t["frame.protocols"]).endswith("dns") and ":dns" not in t["frame.protocols"]:
        return
    src = _last(t["ipv6.src"] or t["ip.src"])
    dst = _last(t["ipv6.dst"] or t["ip.dst"])
    if not src or not dst:
        return
    if d["udp.srcport"]:
        sport, dport, transport = int(_last(d["udp.srcport"])), int(_last(t["udp.dstport"])), "udp"
    else:
        sport, dport, transport = int(_last(t["tcp.srcport"]) or 0), int(_last(t["tcp.dstport"]) or 0), "tcp"
    first = lambda v: v.split(",", 1)[0]   # noqa: E731
    qtype = first(d["dns.qry.type"])
    addrs = [a for a in (d["dns.a"].split(",") if d["dns.a"] else []) + (d["dns.aaaa"].split(",") if d["dns.aaaa"] else [])]
    res.dns.append((p.no, p.ts_ns, ipaddress.ip_address(src).packed, sport, ipaddress.ip_address(dst).packed, dport,
                    transport, int(first(d["dns.id"]), 0), first(d["dns.flags.response"]) in ("1", "True"),
                    int(first(d["dns.flags.rcode"]) or 0), safe_name(first(d["dns.qry.name"])),
                    QTYPES.get(int(qtype), qtype) if qtype.isdigit() else qtype, addrs[:MAX_ADDRESSES],
                    int(first(d["dns.count.answers"]) or 0)))
def _tunnel(names: list[str], ip_src: str, ip_dst: str, ip6_src: str, ip6_dst: str, tun: list[str]) -> list | None:
    """The encapsulation layers above the TCP header, from tshark's protocol path and fields, in the
    core's JSON shape (decode.tunnel_json): outermost first; None for a packet outside any tunnel."""
    eth_type, udp_dport, vni, gvni, teid, gkey, gproto, ever, espan, labels, bottoms = (
        [x for x in v.split(",")] if v else [] for v in tun)
    idx = dict.fromkeys(("eth", "ip", "ipv6", "udp", "vxlan", "geneve", "gtp", "gre", "erspan", "mpls"), 0)
    addrs = {"ip": (ip_src.split(",") if ip_src else [], ip_dst.split(",") if ip_dst else []),
             "ipv6": (ip6_src.split(",") if ip6_src else [], ip6_dst.split(",") if ip6_dst else [])}
    label_at = 0
    last: tuple[str | None, str | None] = (None, None)
    out: list[dict] = []

    def at(v: list[str], i: int) -> str:
        return v[i] if i < len(v) else ""

    def num(v: str) -> int | None:
        return int(v, 0) if v else None

    for k, name in enumerate(names):
        nxt = names[k + 1] if k + 1 < len(names) else ""
        if name in ("ip", "ipv6"):
            i = idx[name]
            last = (at(addrs[name][0], i), at(addrs[name][1], i))
            if nxt in ("ip", "ipv6"):
                kind = {("ip", "ip"): "ipip", ("ip", "ipv6"): "6in4", ("ipv6", "ip"): "4in6",
                        ("ipv6", "ipv6"): "ip6ip6"}[(name, nxt)]
                out.append({"type": kind, "outer_src": last[0], "outer_dst": last[1]})
        elif name == "vxlan":
            out.append({"type": "vxlan", "outer_src": last[0], "outer_dst": last[1],
                        "vni": num(at(vni, idx[name])), "port": num(at(udp_dport, idx["udp"] - 1))})
        elif name == "geneve":
            out.append({"type": "geneve", "outer_src": last[0], "outer_dst": last[1],
                        "vni": num(at(gvni, idx[name])), "port": num(at(udp_dport, idx["udp"] - 1))})
        elif name == "gtp":
            out.append({"type": "gtp-u", "outer_src": last[0], "outer_dst": last[1], "teid": num(at(teid, idx[name]))})
        elif name == "gre" and nxt != "erspan":
            d = {"type": "gre", "outer_src": last[0], "outer_dst": last[1]}
            key = num(at(gkey, idx[name]))
            if key is not None:
                d["key"] = key
            d["protocol"] = f"0x{num(at(gproto, idx[name])) or 0:04x}"
            out.append(d)
        elif name == "erspan":
            v = num(at(ever, idx[name]))
            d = {"type": "erspan", "outer_src": last[0], "outer_dst": last[1], "version": 1 if v is None else v + 1}
            if v is not None:
                d["session"] = num(at(espan, idx[name]))
            out.append(d)
        elif name == "mpls":
            stack = []
            while label_at < len(labels):
                stack.append(int(labels[label_at]))
                label_at += 1
                if at(bottoms, label_at - 1) in ("1", "True"):
                    break
            et = num(at(eth_type, idx["eth"] - 1)) if idx["eth"] else None
            out.append({"type": "mpls", "outer_src": None, "outer_dst": None, "labels": stack,
                        "multicast": et == 0x8848})
            last = (None, None)
        if name in idx:
            idx[name] += 1
    return out or None


def _prefs(keylog: str | None, extra: dict | None) -> dict:
    prefs = dict(PREFS)
    if keylog:
        prefs["tls.keylog_file"] = keylog
    prefs.update(extra or {})
    return prefs


def _tshark(path: str, keylog: str | None, ports: list[int], extra: dict | None = None,
            only: str | None = None, fields: bool = True) -> FileRead:
    """One read of `path`: the fields pass (unless `fields` is False: then only the JSON pass's
    packets, with their frame numbers and dissection) and the JSON pass, both with `only` as a
    display filter when given.

    pyshark takes the current event loop and, in the main thread, installs a SafeChildWatcher (a
    SIGCHLD handler and signal wakeup fd on that loop) that it never removes; later signals then
    show up in the caller's process as `BlockingIOError` in `_sighandler_noop`. The engine gives
    pyshark a loop of its own and, when the run is over, closes the watcher (its SIGCHLD handler
    goes, the signal disposition and wakeup fd are restored), puts the default watcher back and
    closes the loop. (In a thread of its own, pyshark would use the ThreadedChildWatcher, which
    loses tshark's exit status now and then: "Unknown child process pid".)"""
    import asyncio
    import subprocess
    import tempfile
    import warnings
    prefs = _prefs(keylog, extra)
    res = FileRead(path)
    proc = out = err = None
    if fields:
        cmd = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
               "-E", "separator=\t", "-E", "quote=n"]
        for k, v in prefs.items():
            cmd += ["-o", f"{k}:{v}"]
        for port in ports:
            cmd += ["-d", f"tcp.port=={port},http"]
        for k, v in DECODE_AS.items():
            cmd += ["-d", f"{k},{v}"]
        if only:
            cmd += ["-Y", only]
        for name in TCP_FIELDS + DNS_FIELDS:
            cmd += ["-e", name]
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        except OSError as e:
            out.close()
            err.close()
            res.errors.append(f"{path}: cannot run tshark: {e}")
            return res
        # Waited for before pyshark starts: a child of ours exiting while pyshark's SafeChildWatcher
        # is installed can leave pyshark's tshark reported as "retcode 255" (seen now and then).
        proc.wait()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        jfilter = JSON_FILTER if not only else f"({only}) && ({JSON_FILTER})"
        dissected, jerrors, jcount = _tshark_json(path, prefs, ports, jfilter)
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # child watchers are deprecated in 3.12
            try:
                watcher = asyncio.get_child_watcher()
                if isinstance(watcher, asyncio.SafeChildWatcher):    # the one pyshark installs
                    watcher.close()
                    asyncio.set_child_watcher(None)
            except (NotImplementedError, AttributeError, RuntimeError):
                pass
        loop.close()
        asyncio.set_event_loop(None)
    if proc is None:
        res.packets = sorted(dissected.values(), key=lambda p: p.no)
        res.count = jcount
        res.errors += jerrors
        return res
    code = proc.wait()
    try:
        out.seek(0)
        for line in io.TextIOWrapper(out, encoding="utf-8", errors="replace", newline="\n"):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != len(TCP_FIELDS) + len(DNS_FIELDS):
                continue
            res.count += 1
            try:
                p, enc = _fields_pkt(cols[:len(TCP_FIELDS)])
                if cols[len(TCP_FIELDS) + DNS_FIELDS.index("dns.id")]:   # a DNS message
                    _dns_record(cols, p, res)
            except Exception as e:   # one odd packet must not lose the file
                res.errors.append(f"{path}: frame {cols[0]}: cannot read tshark's fields: {e}")
                continue
            res.bytes += p.caplen
            if res.first_ts is None:
                res.first_ts = p.ts_ns
            res.last_ts = p.ts_ns
            if enc is not None and enc not in res.encaps:
                res.encaps.append(enc)
            if p.stream is not None:
                j = dissected.get(p.no)
                if j is not None:
                    p.https, p.ws, p.ws_bytes, p.h2, p.hello = j.https, j.ws, j.ws_bytes, j.h2, j.hello
                res.tcp_packets += 1
                res.packets.append(p)
        if code != 0:
            err.seek(0)
            lines = [ln.strip() for ln in err.read().decode("utf-8", "replace").splitlines()
                     if ln.strip() and "could be dangerous" not in ln]
            msg = " ".join(lines) or f"exit status {code}"
            res.errors.append(f"{path}: tshark failed after {res.count} packets: {msg[:300]}")
    finally:
        out.close()
        err.close()
    if not res.errors:
        res.errors += jerrors
    return res


def _tshark_json(path: str, prefs: dict, ports: list[int], jfilter: str) -> tuple[dict[int, Pkt], list[str], int]:
    """The JSON pass: frame number -> Pkt holding what `_extract` read (no TCP facts), errors, and
    how many packets tshark emitted."""
    import pyshark   # imported lazily: only this engine needs it
    got: dict[int, Pkt] = {}
    errors: list[str] = []
    count = 0
    cap = None
    try:
        cap = pyshark.FileCapture(
            path, use_json=True, include_raw=True, keep_packets=False, override_prefs=prefs,
            decode_as={**{f"tcp.port=={p}": "http" for p in ports}, **DECODE_AS}, display_filter=jfilter,
            custom_parameters=["-J", JSON_PROTOCOLS])
        _reuse_version(cap)
        for pkt in cap:
            count += 1
            try:
                fi = pkt.frame_info._all_fields
                p = Pkt(no=int(fi.get("frame.number", 0)), ts_ns=_ns(fi.get("frame.time_epoch")),
                        caplen=_int(fi.get("frame.cap_len"), 0), stream=-1)
                _extract(pkt, p)
            except Exception as e:   # one odd packet must not lose the file
                errors.append(f"{path}: frame {getattr(pkt, 'number', '?')}: cannot read tshark's fields: {e}")
                continue
            got[p.no] = p
    except Exception as e:
        msg = str(e).strip().replace("\n", " ") or type(e).__name__
        errors.append(f"{path}: tshark failed after {count} packets: {msg[:300]}")
    finally:
        if cap is not None:
            try:
                cap.close()
            except Exception as e:        # tshark's exit status arrives here (a file cut short)
                if not errors:
                    msg = str(e).strip().replace("\n", " ") or type(e).__name__
                    errors.append(f"{path}: tshark failed after {count} packets: {msg[:300]}")
            cap.close = lambda: None     # pyshark's __del__ would close (and raise tshark's exit status) again
    return got, errors, count


_TSHARK_VERSION: list = []


def _reuse_version(cap) -> None:
    """pyshark runs `tshark -v` once per capture object (as long as the analysis of a small file);
    ask once per process and hand the answer to every later capture."""
    try:
        if _TSHARK_VERSION:
            cap._Capture__tshark_version = _TSHARK_VERSION[0]
        else:
            _TSHARK_VERSION.append(cap._get_tshark_version())
    except Exception:
        pass


def _undissected_http_ports(read: FileRead) -> list[int]:
    """Server ports of streams whose first client bytes look like an HTTP request line but that
    tshark did not dissect as HTTP (another dissector owns the port, or tshark's `http_tcp`
    heuristic saw too little of the request line in the first segment, e.g. "GET /ws HTTP/")."""
    first: dict[int, Pkt] = {}
    has_http: set[int] = set()
    for p in read.packets:
        # A request tshark read (a response alone is not enough: its heuristic can take the server's
        # "HTTP/1.1 101" when the client's first segment held too little of the request line).
        if any(h.kind == "request" for h in p.https) or p.h2 or p.tls:
            has_http.add(p.stream)
        if p.tcplen and p.stream not in first:
            first[p.stream] = p
    ports = set()
    for s, p in first.items():
        if s not in has_http and _REQUEST_LINE.match(p.payload):
            ports.add(p.dport)
    return sorted(ports)


def _unterminated_starts(read: FileRead) -> set[int]:
    """Frames whose payload starts a response head ("HTTP/") that tshark never dissected: it was
    still waiting for the rest of the head (the empty line) when the capture ended."""
    in_pdu: set[int] = set()
    for p in read.packets:
        in_pdu.update(p.segments)
    out = set()
    for p in read.packets:
        if p.tcplen and not p.retrans and not p.https and not p.ws and not p.h2 and p.payload.startswith(b"HTTP/") \
                and p.no not in in_pdu:
            out.add(p.no)
    return out


# Dissectors that would claim decrypted bytes before the `data` dissector does (wscap.engine.decrypt's list:
# the plaintext is wanted raw, so that tshark's `data.len` is each record's plaintext length).
_CLAIMERS = ("http", "http2", "websocket", "mq", "fix", "credssp", "rdp", "5gli", "tds", "mqtt", "imap",
             "pop", "smtp", "ldap", "sip", "dns")


def _plaintext(path: str, keylog: str, read: FileRead) -> None:
    """Plaintext bytes per frame of the TLS connections tshark decrypted: the length of each
    application-data record's decrypted payload (`data.len` with the dissectors above it turned off,
    records whose inner content type is 23). tshark's record lengths are ciphertext (tag, nonce,
    inner type, padding), so they cannot be used; one `-T fields` pass, only with a key log."""
    import subprocess
    cmd = ["tshark", "-n", "-r", path, "-o", f"tls.keylog_file:{keylog}", "-Y", "tls.record.content_type == 23",
           "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t",
           "-e", "frame.number", "-e", "tcp.stream", "-e", "tls.record.content_type", "-e", "data.len"]
    for proto in _CLAIMERS:
        cmd += ["--disable-protocol", proto]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    except (OSError, subprocess.SubprocessError) as e:
        read.errors.append(f"{path}: cannot count decrypted bytes with tshark: {e}")
        return
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) < 4 or not cols[3] or "23" not in cols[2].split(","):
            continue
        try:
            n = sum(int(x) for x in cols[3].split(","))
            read.plain[int(cols[0])] = n
            read.plain_streams.add(int(cols[1]))
        except ValueError:
            continue


def read_file(path: str, keylog: str | None = None) -> FileRead:
    if not os.path.exists(path):
        r = FileRead(path)
        r.errors.append(f"{path}: no such file")
        return r
    if os.path.isdir(path):
        r = FileRead(path)
        r.errors.append(f"{path}: is a directory")
        return r
    read = _tshark(path, keylog, [])
    ports = _undissected_http_ports(read)
    if ports:
        # Only those ports' packets are needed from the second run (tcp.stream numbers are the same).
        again = _tshark(path, keylog, ports, only=" || ".join(f"tcp.port == {p}" for p in ports))
        if len(again.errors) <= len(read.errors):
            keep = [p for p in read.packets if p.sport not in ports and p.dport not in ports]
            read.packets = sorted(keep + again.packets, key=lambda p: p.no)
    starts = _unterminated_starts(read)
    if starts:
        # tshark only dissects a head once its empty line arrived. Without header desegmentation
        # it dissects each segment on its own: that is tshark's reading of the unterminated head.
        second = _tshark(path, keylog, ports, {"http.desegment_headers": "FALSE"}, fields=False,
                         only="frame.number in {" + " ".join(str(n) for n in sorted(starts)) + "}")
        partial = {p.no: [h for h in p.https if h.kind == "response"] for p in second.packets if p.no in starts}
        for p in read.packets:
            for h in partial.get(p.no, []):
                h.partial = True
                p.https.append(h)
    if keylog and any(p.tls for p in read.packets):
        _plaintext(path, keylog, read)
    return read


# -- connections and handshakes ---------------------------------------------------------------

@dataclass
class End:
    kind: str
    by: str
    frame: int
    ts_ns: int

    def to_json(self) -> dict:
        return {"kind": self.kind, "by": self.by, "frame": self.frame, "ts": round(self.ts_ns / 1e9, 6)}


@dataclass
class Exchange:
    request: HttpHead
    response: HttpHead | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)
    frame_anomalies: dict[str, list[Anomaly]] = field(default_factory=lambda: {"client": [], "server": []})
    seen_codes: dict[str, set] = field(default_factory=lambda: {"client": set(), "server": set()})
    kept: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    dropped: int = 0
    deflate: bool = False
    h2: dict | None = None                        # the Handshake's "h2" object (RFC 8441 stream)
    scanners: dict[str, FrameScanner] | None = None   # HTTP/2: RFC 6455 frames decoded from DATA bytes
    done: int | None = None                       # frame where the request head was complete (ids' order)


class Conn:
    def __init__(self, stream: int, source: int) -> None:
        self.stream = stream
        self.source = source
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.first_frame: int | None = None
        self.first_ts = 0
        self.last_frame = 0
        self.last_ts = 0
        self.syn_frame: int | None = None
        self.synack_frame: int | None = None
        self.end: End | None = None
        self.fins: set[str] = set()
        self.closed = False
        self.closed_ts: int | None = None
        self.saw_payload = False
        self.bytes = {"client": 0, "server": 0}
        self.gaps = 0
        self.anomalies: list[Anomaly] = []
        self.exchanges: list[Exchange] = []
        self.pending: list[Exchange | None] = []
        self.plain_requests = 0
        self.ws_mode: Exchange | None = None     # after a 101 to a WebSocket request
        self.server_nonhttp_noted = False
        self.hello: dict | None = None           # the ClientHello, for a TLS connection
        self.hello_frame: int | None = None
        self.plaintext = False                   # tshark decrypted it (HTTP/WebSocket inside TLS)
        self.h2_mode: str | None = None          # prior-knowledge | h2c-upgrade | tls (first HTTP/2 frame seen)
        self.h2_enable: bool | None = None       # server's SETTINGS_ENABLE_CONNECT_PROTOCOL so far (None: unseen)
        self.h2_streams: dict[int, Exchange] = {}
        self.h2_blocks: dict[str, tuple] = {}    # side -> (stream, headers, end_stream, frame, ts) until END_HEADERS
        self.h2_broken: set[str] = set()         # sides whose header blocks tshark could not decode (HPACK)
        self.noted: dict[str, int] = {}          # connection-level anomalies per code (bounded as in core)
        self.closed_frame: int | None = None     # the RST or second FIN that ended it
        self.unterminated: set[int] = set()      # ids of head-incomplete anomalies awaiting that frame
        self.seq_end: dict[str, int] = {}        # side -> highest relative sequence number seen + its length
        self.holes: dict[str, list[list[int]]] = {"client": [], "server": []}   # [start, end, frame] unfilled
        self.tunnel: list[dict] | None = None    # the encapsulation it came through (core: Connection.tunnel)
        self.probing: dict[str, bool] = {}       # side -> inside a run of zero-window probes
        self.ws_first: set[str] = set()          # sides whose first bytes after the 101 were seen
        self.ws_dead: set[str] = set()           # sides that sent HTTP after the 101: no frames follow


def _split_line(line: bytes) -> tuple[bytes, bytes]:
    line = line.rstrip(b"\n").rstrip(b"\r")
    name, _, value = line.partition(b":")
    return name.rstrip(b" \t"), value.strip(b" \t")


def _head(h: Http, frame: int, ts_ns: int) -> HttpHead:
    """An HttpHead whose semantics are tshark's; wscap's parser only adds lexical anomalies."""
    d = h.fields
    pre = "http.request" if h.kind == "request" else "http.response"
    lines = _raw_list(_find(d, f"{pre}.line_raw"))
    if not lines:
        lines = [s.encode("latin-1", "replace") for s in _strs(_find(d, f"{pre}.line"))]
    if h.kind == "request":
        method = (_one(_find(d, "http.request.method")) or "").encode("latin-1", "replace")
        target = (_one(_find(d, "http.request.uri")) or "").encode("latin-1", "replace")
        raw_uri = _raw_list(_find(d, "http.request.uri_raw"))
        if raw_uri:
            target = raw_uri[0]
        version = (_one(_find(d, "http.request.version")) or "").encode("latin-1", "replace")
        start = method + b" " + target + b" " + version
        status = None
        reason = b""
    else:
        version = (_one(_find(d, "http.response.version")) or "").encode("latin-1", "replace")
        status = _int(_find(d, "http.response.code"))
        reason_raw = _raw_list(_find(d, "http.response.phrase_raw"))
        reason = reason_raw[0] if reason_raw else (_one(_find(d, "http.response.phrase")) or "").encode(
            "latin-1", "replace")
        start = version + b" " + str(status).encode() + b" " + reason
        method = target = b""
    raw = h.raw
    if raw is not None:
        m = _HEAD_END.search(raw)
        raw = raw[:m.end()] if m else raw
    else:
        raw = start + b"\r\n" + b"".join(ln if ln.endswith(b"\n") else ln + b"\r\n" for ln in lines) + b"\r\n"
    lexical = parse_head(raw, h.kind, frame)
    fields = []
    for n, ln in enumerate(lines, start=2):
        name, value = _split_line(ln)
        fields.append(Field(name, name.lower(), value, n))
    head = HttpHead(kind=h.kind, start_line=raw.split(b"\n", 1)[0].rstrip(b"\r"), method=method, target=target,
                    version=version, status=status, reason=reason, fields=fields, raw=raw,
                    anomalies=lexical.anomalies, frame=frame, ts_ns=ts_ns)
    return head


_H2_DATA, _H2_HEADERS, _H2_RST, _H2_SETTINGS, _H2_GOAWAY, _H2_CONTINUATION = 0, 1, 3, 4, 7, 9
_END_STREAM, _END_HEADERS, _SETTINGS_ACK = 0x1, 0x4, 0x1
PER_CODE = 8     # connection-level anomalies listed per code (connection.PER_CODE)


def _h2_frames(d: dict) -> list[dict]:
    """The HTTP/2 frames of one `http2` layer (tshark: one `http2.stream` item per frame)."""
    st = d.get("http2.stream")
    items = st if isinstance(st, list) else [st]
    return [x for x in items if isinstance(x, dict) and x.get("http2.type") is not None]


def _bytes_field(d: dict, name: str) -> bytes:
    """A field's bytes: its `_raw` hex when tshark gave one, else its string (hex with colons for
    FT_BYTES, latin-1 for FT_STRING)."""
    raw = _raw_list(d.get(name + "_raw"))
    if raw:
        return raw[0]
    v = _one(d.get(name))
    return v.encode("latin-1", "replace") if isinstance(v, str) else b""


def _h2_data(d: dict) -> bytes:
    raw = _raw_list(d.get("http2.data.data_raw"))
    if raw:
        return raw[0]
    v = _one(d.get("http2.data.data"))
    if not isinstance(v, str) or not v:
        return b""
    try:
        return bytes.fromhex(v.replace(":", ""))
    except ValueError:
        return b""


def _h2_headers(d: dict) -> list[tuple[bytes, bytes]]:
    """tshark's decoded header list of a HEADERS/CONTINUATION frame, in wire order."""
    items = d.get("http2.header")
    items = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
    return [(_bytes_field(h, "http2.header.name"), _bytes_field(h, "http2.header.value"))
            for h in items if isinstance(h, dict) and "http2.header.name" in h]


def _hpack_failed(d: dict) -> bool:
    """A HEADERS/CONTINUATION fragment with bytes of which tshark decoded no header field (it gives
    `http2.header.count` for every fragment it could inflate, or a table size update)."""
    frag = _one(d.get("http2.headers") if d.get("http2.headers") is not None else d.get("http2.continuation.header"))
    return bool(frag) and d.get("http2.header.count") is None and d.get("http2.header") is None \
        and _find(d, "http2.header_table_size_update") is None


def _h2_settings(d: dict) -> dict[int, int]:
    """SETTINGS id -> value. Each `http2.settings` item holds `http2.settings.id` and one value field
    named after the setting (`http2.settings.extended_connect`, `...unknown`, ...)."""
    items = d.get("http2.settings")
    items = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
    out = {}
    for it in items:
        if not isinstance(it, dict):
            continue
        sid = _int(it.get("http2.settings.id"))
        if sid is None:
            continue
        val = None
        for k, v in it.items():
            if k.startswith("http2.settings.") and k != "http2.settings.id" and not k.endswith("_raw"):
                val = _int(v)
                break
        out[sid] = val if val is not None else 0
    return out


class Builder:
    """Per file: tshark's packets -> connections -> Handshake dicts and bare attempts."""

    def __init__(self, source: int, options: Options, plain: dict[int, int] | None = None,
                 plain_streams: set[int] | None = None) -> None:
        self.source = source
        self.options = options
        self.plain = plain or {}                  # frame -> decrypted bytes (FileRead.plain)
        self.plain_streams = plain_streams or set()
        self.conns: dict[int, Conn] = {}
        self.order: list[Conn] = []
        self.last_ts = 0
        self.ts: dict[int, int] = {}     # frame number -> timestamp (every TCP frame of the file)
        self.lens: dict[int, int] = {}   # frame number -> TCP payload length
        self.seqs: dict[int, tuple[int, bytes]] = {}   # frame -> (relative seq, first payload bytes), with payload
        self.segdata: dict[int, list[int]] = {}   # frame number -> its pieces of reassembled PDUs

    def feed(self, p: Pkt) -> None:
        self.last_ts = max(self.last_ts, p.ts_ns)
        self.ts[p.no] = p.ts_ns
        self.lens[p.no] = p.tcplen
        if p.tcplen and p.seq is not None:
            self.seqs[p.no] = (p.seq, p.payload)
        if p.segdata:
            self.segdata[p.no] = p.segdata
        c = self.conns.get(p.stream)
        if c is not None and c.closed:
            if p.syn and not p.ack and c.end is not None:
                c = None           # port reuse that tshark kept in the same stream
            else:
                return
        if c is None:
            c = Conn(p.stream, self.source)
            self.conns[p.stream] = c
            self.order.append(c)
        me = (p.src, p.sport)
        if c.client is None:
            if p.syn and not p.ack:
                c.client, c.server = me, (p.dst, p.dport)
            elif p.syn:
                c.client, c.server = (p.dst, p.dport), me
            elif any(h.kind == "request" for h in p.https) or (p.tcplen and _REQUEST_LINE.match(p.payload)):
                c.client, c.server = me, (p.dst, p.dport)
            elif any(h.kind == "response" for h in p.https) or (p.tcplen and p.payload.startswith(b"HTTP/")):
                c.client, c.server = (p.dst, p.dport), me
            elif p.h2 or p.hello is not None:
                c.client, c.server = me, (p.dst, p.dport)
            else:
                return
            c.first_frame = min([p.no] + [s for s in p.segments if s])
            c.first_ts = p.ts_ns
            if not p.syn:
                c.anomalies.append(make("mid-stream-start", "the capture starts after this connection's SYN", p.no))
        side = "client" if me == c.client else "server"
        c.last_frame, c.last_ts = p.no, p.ts_ns
        if p.tunnel is not None and (c.tunnel is None or side == "client" and c.tunnel[0]["direction"] != "c2s"):
            d = "c2s" if side == "client" else "s2c"
            c.tunnel = [{**t, "direction": d} for t in p.tunnel]
        if p.syn and not p.ack and side == "client" and c.syn_frame is None:
            c.syn_frame = p.no
        if p.syn and p.ack and side == "server" and c.synack_frame is None:
            c.synack_frame = p.no
        new = self._holes(c, p, side) if p.seq is not None else (0 if p.retrans else p.tcplen)
        if p.tcplen and not p.retrans:
            c.saw_payload = True
        # Stream bytes as analysed: bytes of sequence space seen for the first time (a segment
        # filling a hole counts even when tshark calls it a retransmission); for a connection
        # tshark decrypted, the plaintext of its records (as core).
        if p.stream in self.plain_streams:
            c.bytes[side] += 0 if p.retrans else self.plain.get(p.no, 0)
        else:
            c.bytes[side] += new
        if p.hello is not None and side == "client" and c.hello is None:
            c.hello, c.hello_frame = p.hello, p.no
        if p.tls and (p.https or p.ws or p.h2):
            c.plaintext = True
        if p.probe is not None and p.tcplen <= 1 and p.seq is not None:
            # Core's on_probe: the segment is a probe, not data (Wireshark's tcp.analysis agrees).
            who = side
            if p.probe == "keep-alive" and p.tcplen == 1:
                self._note(c, make("tcp-keep-alive", f"{who} keep-alive probe at stream offset {p.seq - 1} "
                                    f"(snd.nxt-1); not data, not a conflict", p.no))
            elif p.probe == "zero-window-probe":
                if not c.probing.get(side):
                    self._note(c, make("tcp-zero-window-probe", f"{who} probed a zero window with 1 byte at "
                                        f"stream offset {p.seq - 1}; later data at that offset is kept", p.no))
                c.probing[side] = True
        elif p.tcplen:
            c.probing[side] = False
        was_ws = c.ws_mode
        self._http(c, p, side)
        if was_ws is not None and c.ws_mode is was_ws and p.tcplen and not p.retrans and side not in c.ws_first \
                and p.probe is None:
            # The first bytes after the 101 on this side (core: FrameScanner.feed's first data).
            c.ws_first.add(side)
            line = p.payload.split(b"\n", 1)[0][:60].decode("latin-1").strip()
            if side == "server" and (p.payload.startswith(b"HTTP/1.") or p.payload.startswith(b"HTTP/2")):
                was_ws.frame_anomalies[side].append(make("http-after-101", f"server sent {line!r} where frames "
                                                         f"should be", p.no))
                c.ws_dead.add(side)
            elif side == "client" and _WS_REQUEST_LINE.match(p.payload):
                was_ws.frame_anomalies[side].append(make("http-after-101", f"client sent HTTP after 101: {line!r} "
                                                         f"where frames should be", p.no))
                c.ws_dead.add(side)
        if p.ws and c.ws_mode is not None and side not in c.ws_dead:
            self._frames(c, p, side)
        if p.h2:
            self._h2(c, p, side)
        if p.tcplen and side == "server" and not p.retrans and not p.https and not p.ws and not p.h2 \
                and not p.segdata and c.ws_mode is None and not p.payload.startswith(b"HTTP/"):
            ex = next((e for e in c.pending if e is not None and e.response is None), None)
            if ex is not None and not c.server_nonhttp_noted and not p.tls:
                c.server_nonhttp_noted = True
                ex.anomalies.append(make("non-http-response", f"server's first bytes are {p.payload[:16]!r}, "
                                         f"not an HTTP/1 status line", p.no))
        if p.fin or p.rst:
            end = End("rst" if p.rst else "fin", side, p.no, p.ts_ns)
            if c.end is None or (end.kind == "rst" and c.end.kind == "fin" and not c.saw_payload):
                c.end = end
            if p.fin:
                c.fins.add(side)
            if p.rst or len(c.fins) == 2:
                c.closed = True
                c.closed_frame = p.no
                c.closed_ts = p.ts_ns

    def _holes(self, c: Conn, p: Pkt, side: str) -> int:
        """Track the byte ranges of one direction that have not arrived (core's gaps); return how
        many of this segment's bytes are new. tshark's `tcp.analysis.lost_segment` marks a hole
        when it opens, also when a segment sent out of order fills it a packet later (which tshark
        may then call a retransmission); the engine keeps the holes tshark's relative sequence
        numbers leave open and reports those still open at the end."""
        start = p.seq + (1 if p.syn else 0)
        end = start + p.tcplen
        hi = c.seq_end.get(side)
        if hi is None:
            c.seq_end[side] = end + (1 if p.fin else 0)
            return p.tcplen
        new = max(0, end - max(start, hi))
        holes = c.holes[side]
        if start > hi:
            holes.append([hi, start, p.no])
        if holes and p.tcplen:
            keep = []
            for h in holes:
                if end <= h[0] or start >= h[1] or h[1] > hi:
                    keep.append(h)          # untouched (or the hole this very segment opened)
                    continue
                new += min(end, h[1]) - max(start, h[0])
                if start > h[0]:
                    keep.append([h[0], start, h[2]])
                if end < h[1]:
                    keep.append([end, h[1], h[2]])
            c.holes[side] = keep
        c.seq_end[side] = max(hi, end + (1 if p.fin else 0))
        return new

    def _last_byte_frame(self, p: Pkt, h: Http) -> int:
        """The frame holding a reassembled head's last byte (core's `frame`), which is not the frame
        completing the reassembly when the segments came out of order: tshark's segment list is in
        sequence order, the head starts its first segment, so count its length along their
        sequence numbers."""
        if len(p.segments) < 2 or h.raw is None:
            return p.no
        first = self.seqs.get(p.segments[0])
        m = _HEAD_END.search(h.raw)
        if first is None or m is None or not h.raw.startswith(first[1]):
            return p.no
        end = first[0] + m.end() - 1                  # sequence number of the head's last byte
        for s in p.segments:
            seq = self.seqs.get(s, (None,))[0]
            if seq is not None and seq <= end < seq + self.lens.get(s, 0):
                return s
        return p.no

    # -- HTTP/1 ------------------------------------------------------------------------------
    def _http(self, c: Conn, p: Pkt, side: str) -> None:
        for k, h in enumerate(p.https):
            last = self._last_byte_frame(p, h) if k == 0 else p.no
            head = _head(h, last, self.ts.get(last, p.ts_ns))
            if h.partial:
                head.complete = False
                # The message names the frame that ended the connection (as the core's does); it is
                # completed in _json, when that frame is known.
                head.anomalies.append(make("head-incomplete", f"the response head was never terminated: "
                                           f"{len(head.raw)} bytes without an empty line before the connection "
                                           f"ended", p.no))
                c.unterminated.add(id(head.anomalies[-1]))
            if h.kind == "request" and side == "client":
                if not hs.is_upgrade_request(head):
                    c.plain_requests += 1
                    c.pending.append(None)
                    continue
                ex = Exchange(head, done=p.no)
                if c.plain_requests:
                    ex.anomalies.append(make("keep-alive-before-upgrade",
                                             f"{c.plain_requests} plain request(s) preceded the upgrade", p.no))
                c.exchanges.append(ex)
                c.pending.append(ex)
            elif h.kind == "response" and side == "server":
                status = head.status or 0
                if 100 <= status < 200 and status != 101:
                    continue
                ex = c.pending.pop(0) if c.pending else None
                if ex is None:
                    continue
                ex.response = head
                if status == 101 and head.complete and hs.is_websocket_request(ex.request):
                    ex.deflate = hs.deflate_negotiated(head)
                    c.ws_mode = ex
                    if p.ws:
                        # Bytes after the head in this segment; a reassembled head: the frames' sizes.
                        n = p.tcplen - len(head.raw) if not p.segments and h.raw is not None else \
                            sum(_ws_wire_bytes(w.fields) for w in p.ws)
                        ex.anomalies.append(make("data-with-101", f"{n} bytes of WebSocket data follow the 101 head "
                                                 f"in the same segment (frame {p.no})", p.no))

    # -- WebSocket frames --------------------------------------------------------------------
    def _frames(self, c: Conn, p: Pkt, side: str) -> None:
        ex = c.ws_mode
        lim = self.options.limits
        for k, w in enumerate(p.ws):
            d = w.fields
            opcode = _int(d.get("websocket.opcode"), 0)
            rsv = _int(d.get("websocket.rsv"), 0)
            f = {"dir": side, "frame": p.no, "ts": round(p.ts_ns / 1e9, 6),
                 "fin": _one(d.get("websocket.fin")) == "1", "rsv1": bool(rsv & 4), "rsv2": bool(rsv & 2),
                 "rsv3": bool(rsv & 1), "opcode": opcode, "opcode_name": OPCODES.get(opcode, "reserved"),
                 "masked": _one(d.get("websocket.mask")) == "1",
                 "length": _ws_length(d), "close_code": None, "close_reason": None,
                 "preview": None}
            if k == 0 and p.segments:
                # A frame reassembled from several segments: tshark shows it where it completed;
                # wscap reports the frame holding its header (the first segment).
                f["frame"] = p.segments[0]
                f["ts"] = round(self.ts.get(p.segments[0], p.ts_ns) / 1e9, 6)
            self._check_frame(ex, f, p.no)
            payload = (_raw_list(d.get("websocket.payload_raw")) or [b""])[0]
            if opcode == 8:
                code = _int(_find(d, "websocket.payload.close.status_code"))
                if f["length"] == 1:
                    ex.frame_anomalies[side].append(make("invalid-close-payload",
                                                         f"{side} close frame has a 1-byte payload", p.no))
                elif code is not None:
                    f["close_code"] = code
                    reason = _raw_list(_find(d, "websocket.payload.close.reason_raw"))
                    f["close_reason"] = reason[0].decode("utf-8", "replace") if reason else (
                        _one(_find(d, "websocket.payload.close.reason")) or "")
                    if not (code not in _BAD_CLOSE and (1000 <= code <= 1014 or 3000 <= code <= 4999)):
                        ex.frame_anomalies[side].append(make(
                            "invalid-close-code", f"{side} close code {code} is not valid on the wire", p.no))
            else:
                text = _one(_find(d, "websocket.payload.text"))
                if opcode in (0, 1, 2) and f["rsv1"] and ex.deflate and isinstance(text, str):
                    # tshark inflated the message (permessage-deflate): its text is the preview.
                    f["preview"] = text[:lim.preview_bytes]
                else:
                    f["preview"] = preview(payload[:lim.preview_bytes], opcode)
            first_close = opcode == 8 and not any(x["opcode"] == 8 and x["dir"] == side for x in ex.frames)
            if ex.kept[side] < lim.frames_per_direction or first_close:
                ex.kept[side] += 1
                ex.frames.append(f)
            else:
                ex.dropped += 1

    def _check_frame(self, ex: Exchange, f: dict, frame: int) -> None:
        side = f["dir"]

        def once(code: str, msg: str) -> None:
            if code not in ex.seen_codes[side]:
                ex.seen_codes[side].add(code)
                ex.frame_anomalies[side].append(make(code, msg, frame))
        name = OPCODES.get(f["opcode"], f["opcode"])
        control = f["opcode"] >= 8
        if side == "client" and not f["masked"]:
            once("client-frame-unmasked", f"client {name} frame is not masked")
        if side == "server" and f["masked"]:
            once("server-frame-masked", f"server {name} frame is masked")
        if f["rsv1"] and not ex.deflate:
            once("rsv1-without-extension", f"{side} frame has RSV1 set but permessage-deflate was not negotiated")
        elif f["rsv1"] and (control or f["opcode"] == 0):
            once("rsv1-on-control-frame", f"{side} {OPCODES.get(f['opcode'])} frame has RSV1 set")
        if f["rsv2"] or f["rsv3"]:
            once("rsv-bits-set", f"{side} frame has RSV2/RSV3 set")
        if f["opcode"] not in OPCODES:
            once("reserved-opcode", f"{side} frame uses reserved opcode {f['opcode']}")
        if control and f["length"] > 125:
            once("control-frame-too-long", f"{side} {OPCODES.get(f['opcode'])} frame carries {f['length']} bytes (> 125)")
        if control and not f["fin"]:
            once("control-frame-fragmented", f"{side} {OPCODES.get(f['opcode'])} frame has FIN clear")

    # -- HTTP/2 (RFC 8441) -------------------------------------------------------------------
    def _h2(self, c: Conn, p: Pkt, side: str) -> None:
        """tshark's HTTP/2 frames of one packet -> extended CONNECT streams (RFC 8441), as
        Connection.h2_* does with wscap's own HTTP/2 reader."""
        if c.h2_mode is None:
            h2c = any(ex.h2 is None and ex.response is not None and ex.response.status == 101
                      and "h2c" in ex.request.tokens(b"upgrade") for ex in c.exchanges)
            c.h2_mode = "tls" if c.hello is not None else "h2c-upgrade" if h2c else "prior-knowledge"
        first = True
        for d in p.h2:
            for f in _h2_frames(d):
                # The first HTTP/2 frame of a packet may be one tshark reassembled from several segments.
                pieces = self._pieces(p, f) if first and len(p.segments) > 1 else None
                first = False
                self._h2_frame(c, f, side, p.no, p.ts_ns, pieces)

    def _pieces(self, p: Pkt, f: dict) -> list[tuple[int, int]] | None:
        """(frame, bytes) of each segment of a reassembled HTTP/2 frame: the first segment's share is
        what is left once the middle segments (whole) and the last one (its first piece) are counted."""
        total = 9 + _int(f.get("http2.length"), 0)
        tail = (self.segdata.get(p.no) or [0])[0]
        middle = [(s, self.lens.get(s, 0)) for s in p.segments[1:-1]]
        head = total - tail - sum(n for _s, n in middle)
        if head <= 0 or tail <= 0:
            return None
        return [(p.segments[0], head)] + middle + [(p.no, tail)]

    def _feed_data(self, sc: FrameScanner, f: dict, data: bytes, no: int, ts_ns: int,
                   pieces: list[tuple[int, int]] | None) -> None:
        """DATA bytes to the frame scanner, cut where the TCP segments were cut (the core reads them
        segment by segment, so a WebSocket frame is reported at the segment completing its header)."""
        if not pieces:
            sc.feed(data, no, ts_ns)
            return
        pos = -(9 + (1 if _int(f.get("http2.flags"), 0) & 0x8 else 0))     # frame header, pad length
        for frame, n in pieces:
            lo, hi = max(pos, 0), min(pos + n, len(data))
            if hi > lo:
                sc.feed(data[lo:hi], frame, self.ts.get(frame, ts_ns))
            pos += n

    def _h2_frame(self, c: Conn, f: dict, side: str, no: int, ts_ns: int,
                  pieces: list[tuple[int, int]] | None) -> None:
        if side in c.h2_broken:
            return                          # as core: a direction whose HPACK state is lost is not followed
        ftype = _int(f.get("http2.type"), -1)
        flags = _int(f.get("http2.flags"), 0)
        stream = _int(f.get("http2.streamid"), 0)
        if ftype == _H2_SETTINGS:
            if side == "server" and not flags & _SETTINGS_ACK:
                settings = _h2_settings(f)
                if ENABLE_CONNECT_PROTOCOL in settings:
                    c.h2_enable = settings[ENABLE_CONNECT_PROTOCOL] == 1
                elif c.h2_enable is None:
                    c.h2_enable = False     # absent means 0 until a later SETTINGS says otherwise
        elif ftype in (_H2_HEADERS, _H2_CONTINUATION):
            if ftype == _H2_HEADERS:
                c.h2_blocks[side] = (stream, [], bool(flags & _END_STREAM), no, ts_ns)
            blk = c.h2_blocks.get(side)
            if blk is None or blk[0] != stream:
                return
            blk[1].extend(_h2_headers(f))
            if flags & _END_HEADERS and _hpack_failed(f):
                # tshark (nghttp2's inflater) decoded nothing from a non-empty block and says no more.
                del c.h2_blocks[side]
                c.h2_broken.add(side)
                self._note(c, make("h2-hpack-error", f"HPACK cannot decode the header block on stream {stream}: "
                                   f"tshark decoded no header field from it", no))
                return
            if flags & _END_HEADERS:
                del c.h2_blocks[side]
                self._h2_head(c, side, blk[0], blk[1], blk[2], no, blk[4])
        elif ftype == _H2_DATA:
            ex = c.h2_streams.get(stream)
            if ex is None:
                return
            if ex.scanners is not None:
                data = _h2_data(f)
                if data:
                    self._feed_data(ex.scanners[side], f, data, no, ts_ns, pieces)
            if flags & _END_STREAM and ex.h2["end_stream"][side] is None:
                ex.h2["end_stream"][side] = no
        elif ftype == _H2_RST:
            ex = c.h2_streams.get(stream)
            if ex is not None and ex.h2["reset"] is None:
                code = _int(f.get("http2.rst_stream.error"), 0)
                ex.h2["reset"] = {"by": side, "code": error_name(code), "frame": no}
                ex.anomalies.append(make("h2-stream-reset", f"the {side} reset stream {stream} with RST_STREAM "
                                         f"{error_name(code)}", no))
        elif ftype == _H2_GOAWAY:
            code = _int(f.get("http2.goaway.error"), 0)
            if code:
                self._note(c, make("h2-goaway", f"the {side} sent GOAWAY {error_name(code)} (last stream "
                                   f"{_int(f.get('http2.goaway.last_stream_id'), 0)})", no))

    def _h2_head(self, c: Conn, side: str, stream: int, headers: list, end_stream: bool, no: int, ts_ns: int) -> None:
        if side == "client":
            if stream in c.h2_streams:
                return                      # trailers
            head = H2Head("request", headers, no, ts_ns, end_stream)
            if head.method == b"CONNECT" and head.has(b":protocol"):
                ex = Exchange(head)         # type: ignore[arg-type]  (an H2Head reads like an HttpHead)
                ex.h2 = {"stream_id": stream, "mode": c.h2_mode, "enable_connect_protocol": c.h2_enable,
                         "reset": None, "end_stream": {"client": no if end_stream else None, "server": None}}
                c.exchanges.append(ex)
                c.h2_streams[stream] = ex
            return
        ex = c.h2_streams.get(stream)
        if ex is None or ex.response is not None:
            return
        head = H2Head("response", headers, no, ts_ns, end_stream)
        st = head.status
        if st is not None and 100 <= st < 200:
            return                          # interim
        ex.response = head                  # type: ignore[assignment]
        if end_stream and ex.h2["end_stream"]["server"] is None:
            ex.h2["end_stream"]["server"] = no      # e.g. a 403 sent as HEADERS with END_STREAM (as core)
        if _h2_websocket(ex) and st is not None and 200 <= st < 300:
            deflate = "permessage-deflate" in [e.split(";")[0].strip()
                                               for e in head.tokens(b"sec-websocket-extensions")]
            lim, order = self.options.limits, [0]
            ex.scanners = {side: FrameScanner(side, deflate, lim.frames_per_direction, lim.preview_bytes,
                                              lim.inflate_bytes, counter=order) for side in ("client", "server")}

    def _note(self, c: Conn, a: Anomaly) -> None:
        n = c.noted.get(a.code, 0)
        c.noted[a.code] = n + 1
        if n < PER_CODE:
            c.anomalies.append(a)

    # -- output ------------------------------------------------------------------------------
    def results(self) -> tuple[list[dict], list[dict], list[dict]]:
        """-> (handshakes in request order, bare attempts, TLS connections with their handshake dicts)."""
        hands: list[dict] = []
        order: dict[int, tuple[int, int]] = {}
        attempts: list[dict] = []
        tls: list[dict] = []
        for c in self.order:
            for side in ("client", "server"):
                for lo, hi, frame in sorted(c.holes[side]):
                    c.gaps += 1
                    self._note(c, make("tcp-gap", f"{hi - lo} {side} bytes missing before frame {frame}", frame))
                c.holes[side] = []
            end_ns = c.closed_ts if c.closed_ts is not None else self.last_ts
            mine = [self._json(c, ex, end_ns) for ex in c.exchanges]
            for ex, h in zip(c.exchanges, mine):
                # ids follow the requests in the order they were complete (core's order): the frame
                # that completed the head, not the one holding its last byte (they differ out of order).
                order[id(h)] = (ex.done or ex.request.frame, h["first_frame"])
            hands += mine
            if not c.exchanges and not c.saw_payload and c.syn_frame is not None:
                attempts.append(self._json(c, None, end_ns))
            if c.hello is not None:
                tls.append({"source": c.source, "client": _fmt(*c.client), "server": _fmt(*c.server),
                            "first_frame": c.first_frame, "hello_frame": c.hello_frame,
                            "first_ts": round(c.first_ts / 1e9, 6), **self._tls(c), "handshakes": mine})
        hands.sort(key=lambda h: order[id(h)])
        return hands, attempts, tls

    def _tls(self, c: Conn) -> dict | None:
        if c.hello is None:
            return None
        return {**c.hello, "decrypted": c.plaintext}

    def _outcome(self, c: Conn, ex: Exchange | None) -> str:
        if ex is None:
            if c.synack_frame is None:
                return "refused" if c.end is not None and c.end.kind == "rst" and c.end.by == "server" else "unanswered"
            return "reset" if c.end is not None and c.end.kind == "rst" else "closed"
        resp = ex.response
        if resp is not None and resp.status is not None and resp.complete:
            if ex.h2 is not None:
                return "upgraded" if 200 <= resp.status < 300 else "rejected"
            return "upgraded" if resp.status == 101 else "rejected"
        if ex.h2 is not None and ex.h2.get("reset"):
            return "reset"
        if c.end is not None:
            return "reset" if c.end.kind == "rst" else "closed"
        return "no-response"

    def _anomalies(self, c: Conn, ex: Exchange | None) -> list[Anomaly]:
        out = list(c.anomalies)
        if ex is None:
            return out
        req, resp = ex.request, ex.response
        out += hs.request_anomalies(req, resp) if ex.h2 is None else req.anomalies
        if resp is not None:
            out += resp.anomalies
        out += ex.anomalies
        out += ex.frame_anomalies["client"] + ex.frame_anomalies["server"]
        if ex.h2 is not None:
            return out + self._h2_anomalies(ex)
        websocket = hs.is_websocket_request(req)
        out += list(hs.check_request(req)) if websocket else [
            make("not-websocket-upgrade", "Upgrade: " + ", ".join(req.tokens(b"upgrade")) or "none", req.frame)]
        if resp is not None and resp.status is not None:
            out += list(hs.check_response(req, resp))
        out += opinion_anomalies((req, resp))
        return out

    def _anomaly_json(self, c: Conn, a: Anomaly) -> dict:
        d = a.to_json()
        if id(a) in c.unterminated:
            d["message"] += f" (frame {c.closed_frame if c.closed_frame is not None else c.last_frame})"
        return d

    def _h2_anomalies(self, ex: Exchange) -> list[Anomaly]:
        out: list[Anomaly] = []
        if ex.scanners is not None:
            out += ex.scanners["client"].anomalies + ex.scanners["server"].anomalies
        req = ex.request
        if _h2_websocket(ex):
            out += check_extended_connect(req, ex.h2["enable_connect_protocol"])
            if ex.response is not None:
                out += check_connect_response(req, ex.response)
        else:
            out.append(make("not-websocket-upgrade", ":protocol " + (req.get(b":protocol") or b"").decode("latin-1"),
                            req.frame))
        return out

    def _parsers(self, ex: Exchange | None) -> dict:
        out: dict = {"llhttp": {}, "h11": {}}
        for part in ("request", "response"):
            head = None if ex is None else (ex.request if part == "request" else ex.response)
            for name in ("llhttp", "h11"):
                if head is None or (ex is not None and ex.h2 is not None):
                    out[name][part] = None
                else:
                    out[name][part] = parser_opinion(head, name).to_json()
        return out

    def _json(self, c: Conn, ex: Exchange | None, end_ns: int) -> dict:
        req = ex.request if ex is not None else None
        resp = ex.response if ex is not None else None
        if ex is not None and ex.h2 is not None:
            websocket = _h2_websocket(ex)
            fs = [] if ex.scanners is None else ex.scanners["client"].frames + ex.scanners["server"].frames
            frames = [f.to_json() for f in sorted(fs, key=lambda f: f.order)]
        else:
            websocket = req is not None and hs.is_websocket_request(req)
            frames = sorted(ex.frames, key=lambda f: f["frame"]) if ex is not None else []
        return {
            "id": None, "source": c.source,
            "client": _fmt(*c.client), "server": _fmt(*c.server),
            "first_frame": c.first_frame, "last_frame": c.last_frame,
            "first_ts": round(c.first_ts / 1e9, 6), "last_ts": round(c.last_ts / 1e9, 6),
            "websocket": websocket,
            "http_version": "2" if ex is not None and ex.h2 is not None else "1.1",
            "h2": None if ex is None or ex.h2 is None else {**ex.h2, "end_stream": dict(ex.h2["end_stream"])},
            "request": _head_json(req, ex) if req is not None else None,
            "response": _head_json(resp, ex) if resp is not None else None,
            "outcome": self._outcome(c, ex),
            "status": resp.status if resp is not None and resp.complete else None,
            "anomalies": [self._anomaly_json(c, a) for a in self._anomalies(c, ex)],
            "parsers": self._parsers(ex),
            "frames": frames,
            "tcp": {"syn_frame": c.syn_frame, "synack_frame": c.synack_frame,
                    "end": c.end.to_json() if c.end else None, "gaps": c.gaps,
                    "client_bytes": c.bytes["client"], "server_bytes": c.bytes["server"]},
            "waited": None if resp is not None or req is None else round((end_ns - req.ts_ns) / 1e9, 6),
            "tls": self._tls(c),
            "tunnel": c.tunnel,
        }


def _h2_websocket(ex: Exchange) -> bool:
    return (ex.request.get(b":protocol") or b"").lower() == b"websocket"


def _head_json(head: HttpHead, ex: Exchange) -> dict:
    d = head.to_json()
    if ex.h2 is not None:
        d["version"] = "HTTP/2"
    return d


# -- the document -----------------------------------------------------------------------------

def analyze_paths(paths: list[str], options: Options | None = None, keylog: str | None = None) -> dict:
    """Analyse capture files with tshark's dissection into wscap's JSON document (schema v1),
    plus `"engine": "tshark"`. Never raises for bad input: errors land in `source[i].errors`."""
    options = options or Options()
    keylog = keylog or getattr(options, "keylog", None)
    sources: list[dict] = []
    hands: list[dict] = []
    attempts: list[dict] = []
    tls: list[dict] = []
    packets = tcp_packets = flows = 0
    from wscap.capture.files import read_names
    from wscap.flow.dns import DnsTracker
    dns = DnsTracker(options.limits.max_dns)
    capture_names: dict[str, str] = {}
    for i, path in enumerate(paths):
        read = read_file(path, keylog)
        for rec in read.dns:
            no, ts_ns, src, sport, dst, dport, *rest = rec
            dns.record(i, no, ts_ns, src, sport, dst, dport, *rest)
        nrb, skipped = read_names(path)
        for ip, name in nrb.items():
            capture_names.setdefault(ip, name)
        b = Builder(i, options, read.plain, read.plain_streams)
        for p in read.packets:
            try:
                b.feed(p)
            except Exception as e:   # a field shape tshark never gave us before: keep the rest
                read.errors.append(f"{path}: frame {p.no}: {type(e).__name__}: {e}")
        h, a, t = b.results()
        hands += h
        attempts += a
        tls += t
        packets += read.count
        tcp_packets += read.tcp_packets
        flows += len(b.order)
        sources.append({
            "path": path, "format": _file_format(path), "packets": read.count, "bytes": read.bytes,
            "first_ts": None if read.first_ts is None else round(read.first_ts / 1e9, 6),
            "last_ts": None if read.last_ts is None else round(read.last_ts / 1e9, 6),
            "linktypes": [_ENCAP_TO_LINKTYPE.get(e, e) for e in read.encaps], "interfaces": [],
            "complete": not read.errors, "errors": read.errors, "names": nrb, "names_skipped": skipped})
        if keylog:
            label = ", ".join(options.keylog_sources) if getattr(options, "keylog_sources", ()) else keylog
            sources[-1]["keylog"] = {"path": label, "decrypted": sum(1 for x in t if x["decrypted"]),
                                     "undecrypted": sum(1 for x in t if not x["decrypted"]), "error": None}
    stats = {"packets": packets, "tcp_packets": tcp_packets, "truncated_packets": 0, "flows": flows,
             "flows_tracked": 0, "evicted_flows": 0, "ip_fragments_dropped": 0, "limits_hit": {}}
    if dns.dropped:
        stats["limits_hit"]["max_dns"] = dns.dropped
    doc = document(hands, attempts, sources, stats, options, tls, dns=dns, capture_names=capture_names)
    return {"version": doc.pop("version"), "tool": doc.pop("tool"), "engine": ENGINE, **doc}
