"""RawFrame -> Segment: link layer, IPv4/IPv6 (+ fragments), tunnels, TCP, with struct at fixed offsets.

This is the per-packet hot path, so it builds no per-layer objects: one
function walks the headers by offset and returns a `Segment` (a NamedTuple) or
None for anything that is not TCP. dpkt's classes would cost ~30 s per million
packets here; the layouts below are the same ones dpkt declares.

Tunnels are decapsulated, nested too (at most `max_depth` layers, then the
packet is counted in `limits_hit["tunnel_depth"]`): VXLAN (UDP 4789 and Linux's
default 8472), VXLAN-GPE (4790), GENEVE (6081), GTP-U (2152), GRE (IPv4/IPv6,
transparent Ethernet bridging 0x6558, ERSPAN I/II/III, MPLS), IP-in-IP (IPv4
protocol 4, 6in4 41, IPv6-in-IPv6, 4in6) and MPLS label stacks (unicast and
multicast). The TCP segment inside carries the layers it came out of (outer
addresses, VNI/key/TEID/labels), so a handshake can say where it travelled.
Encapsulations wscap recognises but does not read (L2TP, PPTP, Teredo, IPsec
ESP, CAPWAP, PPPoE, GRE/GENEVE payloads of other types) are counted by name in
`stats.unsupported_encapsulation`, never dropped in silence. Only the first IP
header's fragments are reassembled before a tunnel is opened; the fragment
cache is shared, keyed by addresses and id, so inner fragments work too.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from wscap.model.raw import LINKTYPE_ETHERNET, RawFrame
from wscap.wire.ipfrag import FragmentCache
from wscap.wire.pcapio import _fastpath
from wscap.wire.linklayer import ETH_IP4 as _ETH_IP4, ETH_IP6 as _ETH_IP6, ether as _ether, locate

TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_IP6_EXT = (0, 43, 60, 51, 135, 139, 140)   # extension headers that we walk past
_decode_tcp4 = _fastpath.decode_tcp4 if _fastpath is not None else None
_u16 = struct.Struct("!H").unpack_from
_tcp = struct.Struct("!HHIIBBH").unpack_from
_DOCKER_DNS = bytes([127, 0, 0, 11])      # Docker's embedded resolver (random ports behind DNAT)


class Segment(NamedTuple):
    frame: int
    ts_ns: int
    src: bytes          # 4 or 16 address bytes
    sport: int
    dst: bytes
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes      # captured payload bytes
    paylen: int         # payload length on the wire (> len(payload) when cut by the snap length)
    source: int
    window: int = 1     # the sender's advertised receive window (unscaled; only 0 matters)
    tunnel: tuple | None = None   # encapsulations this packet came out of, outermost first (TunnelLayer)


class DecodeStats:
    __slots__ = ("packets", "tcp", "truncated", "tunnelled", "unsupported", "too_deep")

    def __init__(self) -> None:
        self.packets = 0
        self.tcp = 0
        self.truncated = 0
        self.tunnelled = 0                       # TCP segments that came out of at least one tunnel
        self.unsupported: dict[str, int] = {}    # encapsulation name -> packets not read
        self.too_deep = 0                        # packets nested deeper than max_depth


class TunnelLayer(NamedTuple):
    kind: str               # vxlan | vxlan-gpe | geneve | gtp-u | gre | erspan | ipip | 6in4 | 4in6 | ip6ip6 | mpls
    outer_src: bytes | None   # outer IP addresses (None for MPLS: no IP header of its own)
    outer_dst: bytes | None
    info: tuple = ()        # (name, value) pairs: vni, key, teid, labels, session, version, port


def _fmt(ip: bytes | None) -> str | None:
    if ip is None:
        return None
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}"
    import ipaddress
    return str(ipaddress.IPv6Address(ip))


def tunnel_json(layers: tuple, direction: str) -> list[dict]:
    """The handshake JSON's `tunnel` list: outermost layer first (docs/json-contract.md)."""
    out = []
    for t in layers:
        d = {"type": t.kind, "outer_src": _fmt(t.outer_src), "outer_dst": _fmt(t.outer_dst)}
        for k, v in t.info:
            d[k] = list(v) if isinstance(v, tuple) else v
        d["direction"] = direction
        out.append(d)
    return out


# UDP destination ports of the tunnels that are read, and of those only named.
_UDP_TUNNELS = {4789: "vxlan", 8472: "vxlan", 4790: "vxlan-gpe", 6081: "geneve", 2152: "gtp-u"}
_UDP_UNSUPPORTED = {1701: "l2tp", 3544: "teredo", 4500: "ipsec-nat-t", 5246: "capwap", 5247: "capwap"}
_ETH_MPLS = (0x8847, 0x8848)
_ETH_UNSUPPORTED = {0x8863: "pppoe", 0x8864: "pppoe", 0x88E5: "macsec"}
_GRE_TEB, _GRE_ERSPAN2, _GRE_ERSPAN3 = 0x6558, 0x88BE, 0x22EB
MAX_MPLS_LABELS = 16
MAX_UNSUPPORTED_NAMES = 32      # distinct names in stats.unsupported_encapsulation (the rest: "other")


def link_layer(frame: RawFrame) -> tuple[int, int] | None:
    """(ethertype, offset of the network header); ethertype 0 = raw IP (see wire/linklayer.py)."""
    return locate(frame.linktype, frame.data)


class Decoder:
    """Turns frames into TCP segments; owns the (bounded) IP fragment cache."""

    def __init__(self, max_fragments: int = 4096, max_depth: int = 8) -> None:
        self.stats = DecodeStats()
        self.frags = FragmentCache(max_fragments)
        # UDP DNS goes to this callable (wscap.flow.dns.DnsTracker.udp); every other UDP is dropped.
        self.udp_sink = None
        self.max_depth = max_depth

    def decode(self, frame: RawFrame) -> Segment | None:
        if _decode_tcp4 is not None:
            # Untagged Ethernet + IPv4 + TCP, whole: the same Segment and counts, made in C
            # (wire/_fastpath.c decode_tcp4); None for anything else, which is read below.
            seg = _decode_tcp4(frame, self.stats, Segment)
            if seg is not None:
                return seg
        self.stats.packets += 1
        data = frame.data
        if frame.linktype == LINKTYPE_ETHERNET and len(data) >= 34:
            # The common case inline (untagged Ethernet + IPv4/IPv6): this is the per-packet hot path.
            etype = _u16(data, 12)[0]
            if etype == _ETH_IP4 and data[14] >> 4 == 4:
                return self._ipv4(frame, data, 14, ())
            if etype == _ETH_IP6 and data[14] >> 4 == 6:
                return self._ipv6(frame, data, 14, ())
        loc = link_layer(frame)
        if loc is None:
            return None
        etype, off = loc
        return self._net(frame, data, etype, off, len(data), ())

    # -- layers ------------------------------------------------------------------------------
    def _unsupported(self, name: str) -> None:
        u = self.stats.unsupported
        if name not in u and len(u) >= MAX_UNSUPPORTED_NAMES:
            name = "other"           # names come from the packet (GRE types): at most this many kept
        u[name] = u.get(name, 0) + 1

    def _deeper(self, layers: tuple, layer: TunnelLayer) -> tuple | None:
        if len(layers) >= self.max_depth:
            self.stats.too_deep += 1
            return None
        return layers + (layer,)

    def _net(self, frame: RawFrame, data: bytes, etype: int, off: int, end: int, layers: tuple) -> Segment | None:
        """A network-layer payload at `off` of the given ethertype (0: IP, version nibble decides)."""
        if etype in (0, _ETH_IP4, _ETH_IP6):
            if len(data) < off + 1:
                self.stats.truncated += 1
                return None
            ver = data[off] >> 4
            if ver == 4:
                return self._ipv4(frame, data, off, layers)
            if ver == 6:
                return self._ipv6(frame, data, off, layers)
            return None
        if etype in _ETH_MPLS:
            return self._mpls(frame, data, off, end, etype, None, None, layers)
        name = _ETH_UNSUPPORTED.get(etype)
        if name is not None:
            self._unsupported(name)
        return None

    def _ethernet(self, frame: RawFrame, data: bytes, off: int, end: int, layers: tuple) -> Segment | None:
        loc = _ether(data, off)
        if loc is None:
            self.stats.truncated += 1
            return None
        return self._net(frame, data, loc[0], loc[1], end, layers)

    def _ipv4(self, frame: RawFrame, data: bytes, off: int, layers: tuple) -> Segment | None:
        if len(data) < off + 20:
            self.stats.truncated += 1
            return None
        ihl = (data[off] & 0x0F) * 4
        total = _u16(data, off + 2)[0]
        frag = _u16(data, off + 6)[0]
        proto = data[off + 9]
        if ihl < 20 or proto not in _L4:
            return None
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        if total == 0 or total > frame.wirelen - off:
            # TSO/GSO as captured on the sending host: the stack left the length 0 (or the
            # super-packet is larger than the field can say); the frame's own length is the truth
            # (inside a tunnel, what is left of the decapsulated data).
            total = len(data) - off if layers else frame.wirelen - off
        if frag & 0x3FFF:         # MF set or offset != 0: a fragment
            body = data[off + ihl:off + total]
            whole = self.frags.add((src, dst, _u16(data, off + 4)[0], 4), (frag & 0x1FFF) * 8,
                                   bool(frag & 0x2000), body, frame.no, frame.ts_ns)
            if whole is None:
                return None
            return self._l4(frame, proto, whole, 0, len(whole), src, dst, layers)
        if proto == 6:
            return self._tcp(frame, data, off + ihl, off + total, src, dst, layers)
        return self._l4(frame, proto, data, off + ihl, off + total, src, dst, layers)

    def _ipv6(self, frame: RawFrame, data: bytes, off: int, layers: tuple) -> Segment | None:
        if len(data) < off + 40:
            self.stats.truncated += 1
            return None
        plen = _u16(data, off + 4)[0]
        nxt = data[off + 6]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        end = off + 40 + plen if plen else len(data)
        p = off + 40
        while nxt in _IP6_EXT or nxt == 44:
            if len(data) < p + 8:
                self.stats.truncated += 1
                return None
            if nxt == 44:   # Fragment header
                fo = _u16(data, p + 2)[0]
                ident = struct.unpack_from("!I", data, p + 4)[0]
                nxt2 = data[p]
                body = data[p + 8:end]
                if fo & 0xFFF9 == 0:      # offset 0 and M clear: atomic fragment
                    p += 8
                    nxt = nxt2
                    continue
                whole = self.frags.add((src, dst, ident, 6), fo & 0xFFF8, bool(fo & 1), body,
                                       frame.no, frame.ts_ns)
                if whole is None or nxt2 not in _L4:
                    return None
                return self._l4(frame, nxt2, whole, 0, len(whole), src, dst, layers)
            hl = (data[p + 1] + 2) * 4 if nxt == 51 else (data[p + 1] + 1) * 8
            nxt = data[p]
            p += hl
        if nxt not in _L4:
            return None
        return self._l4(frame, nxt, data, p, end, src, dst, layers)

    def _l4(self, frame: RawFrame, proto: int, data: bytes, p: int, end: int, src: bytes, dst: bytes,
            layers: tuple) -> Segment | None:
        if proto == 6:
            return self._tcp(frame, data, p, end, src, dst, layers)
        if proto in (4, 41):      # IPv4 / IPv6 inside IP (RFC 2003, RFC 4213, RFC 2473)
            inner = 4 if proto == 4 else 6
            outer = 4 if len(src) == 4 else 6
            kind = {(4, 4): "ipip", (4, 6): "6in4", (6, 4): "4in6", (6, 6): "ip6ip6"}[(outer, inner)]
            deeper = self._deeper(layers, TunnelLayer(kind, src, dst))
            if deeper is None:
                return None
            if len(data) < p + 1 or data[p] >> 4 != inner:
                return None
            return self._ipv4(frame, data[:end], p, deeper) if inner == 4 else self._ipv6(frame, data[:end], p, deeper)
        if proto == 47:
            return self._gre(frame, data, p, end, src, dst, layers)
        if proto == 17:
            return self._udp(frame, data, p, end, src, dst, layers)
        if proto == 137:          # MPLS in IP (RFC 4023)
            return self._mpls(frame, data, p, end, 0x8847, src, dst, layers)
        self._unsupported(_PROTO_UNSUPPORTED[proto])
        return None

    def _udp(self, frame: RawFrame, data: bytes, p: int, end: int, src: bytes, dst: bytes,
             layers: tuple) -> Segment | None:
        if len(data) < p + 8:
            self.stats.truncated += 1
            return None
        sport, dport = _u16(data, p)[0], _u16(data, p + 2)[0]
        if self.udp_sink is not None and (sport == 53 or dport == 53 or src == _DOCKER_DNS or dst == _DOCKER_DNS):
            # DNS (port 53, or Docker's resolver at 127.0.0.11 on a rewritten port): wscap.flow.dns reads it.
            self.udp_sink(frame.source, frame.no, frame.ts_ns, src, sport, dst, dport, data[p + 8:min(end, len(data))])
            return None
        kind = _UDP_TUNNELS.get(dport)
        if kind is None:
            name = _UDP_UNSUPPORTED.get(dport) or _UDP_UNSUPPORTED.get(sport)
            if name is not None:
                self._unsupported(name)
            return None
        q = p + 8
        end = min(end, len(data))
        if kind == "vxlan":
            # RFC 7348: flags (I = 0x08), 24 reserved bits, VNI, 8 reserved bits; then Ethernet.
            if end < q + 8 or not data[q] & 0x08:
                return None
            vni = int.from_bytes(data[q + 4:q + 7], "big")
            deeper = self._deeper(layers, TunnelLayer("vxlan", src, dst, (("vni", vni), ("port", dport))))
            return None if deeper is None else self._ethernet(frame, data, q + 8, end, deeper)
        if kind == "vxlan-gpe":
            # draft-ietf-nvo3-vxlan-gpe: next protocol in byte 3 (1 IPv4, 2 IPv6, 3 Ethernet, 5 MPLS).
            if end < q + 8:
                self.stats.truncated += 1
                return None
            nxt = data[q + 3]
            vni = int.from_bytes(data[q + 4:q + 7], "big")
            deeper = self._deeper(layers, TunnelLayer("vxlan-gpe", src, dst, (("vni", vni), ("port", dport))))
            if deeper is None:
                return None
            if nxt == 3:
                return self._ethernet(frame, data, q + 8, end, deeper)
            if nxt in (1, 2):
                return self._net(frame, data, 0, q + 8, end, deeper)
            if nxt == 5:
                return self._mpls(frame, data, q + 8, end, 0x8847, None, None, deeper)
            self._unsupported(f"vxlan-gpe-{nxt}")
            return None
        if kind == "geneve":
            # RFC 8926: ver(2) opt len(6, 4-byte words), flags, protocol type, VNI, options.
            if end < q + 8:
                self.stats.truncated += 1
                return None
            optlen = (data[q] & 0x3F) * 4
            ptype = _u16(data, q + 2)[0]
            vni = int.from_bytes(data[q + 4:q + 7], "big")
            deeper = self._deeper(layers, TunnelLayer("geneve", src, dst, (("vni", vni), ("port", dport))))
            if deeper is None:
                return None
            return self._by_proto(frame, data, q + 8 + optlen, end, ptype, "geneve", deeper)
        # GTP-U (3GPP TS 29.281): version 1, PT 1; G-PDU (type 255) carries the user's IP packet.
        if end < q + 8:
            self.stats.truncated += 1
            return None
        flags, mtype = data[q], data[q + 1]
        if flags >> 5 != 1 or not flags & 0x10:
            return None
        teid = struct.unpack_from("!I", data, q + 4)[0]
        if mtype != 0xFF:
            return None                   # echo, error indication, end marker: no user data
        r = q + 8
        if flags & 0x07:                  # E, S or PN: sequence, N-PDU and next-extension fields
            if end < r + 4:
                self.stats.truncated += 1
                return None
            nxt = data[r + 3]
            r += 4
            hops = 0
            while nxt and flags & 0x04:
                if end < r + 1 or hops >= 16:
                    self.stats.truncated += 1
                    return None
                n = data[r] * 4
                if n == 0 or end < r + n:
                    self.stats.truncated += 1
                    return None
                nxt = data[r + n - 1]
                r += n
                hops += 1
        deeper = self._deeper(layers, TunnelLayer("gtp-u", src, dst, (("teid", teid),)))
        return None if deeper is None else self._net(frame, data, 0, r, end, deeper)

    def _by_proto(self, frame: RawFrame, data: bytes, q: int, end: int, ptype: int, via: str,
                  layers: tuple) -> Segment | None:
        """A payload named by an ethertype-style protocol field (GRE, GENEVE)."""
        if ptype == _GRE_TEB:
            return self._ethernet(frame, data, q, end, layers)
        if ptype in (_ETH_IP4, _ETH_IP6):
            return self._net(frame, data, 0, q, end, layers)
        if ptype in _ETH_MPLS:
            return self._mpls(frame, data, q, end, ptype, None, None, layers)
        self._unsupported(f"{via}-0x{ptype:04x}")
        return None

    def _gre(self, frame: RawFrame, data: bytes, p: int, end: int, src: bytes, dst: bytes,
             layers: tuple) -> Segment | None:
        end = min(end, len(data))
        if end < p + 4:
            self.stats.truncated += 1
            return None
        flags, ptype = _u16(data, p)[0], _u16(data, p + 2)[0]
        version = flags & 0x7
        if version == 1:
            self._unsupported("pptp")   # enhanced GRE (RFC 2637) carries PPP
            return None
        if version != 0:
            return None
        q = p + 4
        if flags & 0x8000 or flags & 0x4000:   # checksum (+ reserved1), or routing present
            q += 4
        key = seq = None
        if flags & 0x2000:
            if end < q + 4:
                self.stats.truncated += 1
                return None
            key = struct.unpack_from("!I", data, q)[0]
            q += 4
        if flags & 0x1000:
            seq = q
            q += 4
        if flags & 0x4000:                      # routing (RFC 1701): SREs until a NULL one
            for _ in range(16):
                if end < q + 4:
                    self.stats.truncated += 1
                    return None
                length = data[q + 3]
                q += 4 + length
                if length == 0:
                    break
        if end < q:
            self.stats.truncated += 1
            return None
        if ptype in (_GRE_ERSPAN2, _GRE_ERSPAN3):
            if ptype == _GRE_ERSPAN2 and seq is None:
                # ERSPAN type I: no sequence number and no ERSPAN header; Ethernet follows at once.
                deeper = self._deeper(layers, TunnelLayer("erspan", src, dst, (("version", 1),)))
                return None if deeper is None else self._ethernet(frame, data, q, end, deeper)
            if end < q + 8:
                self.stats.truncated += 1
                return None
            ver = data[q] >> 4
            session = _u16(data, q + 2)[0] & 0x3FF
            if ptype == _GRE_ERSPAN2 and ver == 1:          # type II: 8-byte header
                deeper = self._deeper(layers, TunnelLayer("erspan", src, dst, (("version", 2), ("session", session))))
                return None if deeper is None else self._ethernet(frame, data, q + 8, end, deeper)
            if ptype == _GRE_ERSPAN3 and ver == 2:          # type III: 12 bytes (+ 8 with the O flag)
                if end < q + 12:
                    self.stats.truncated += 1
                    return None
                word3 = _u16(data, q + 10)[0]
                ft = (word3 >> 10) & 0x1F
                r = q + 12 + (8 if word3 & 1 else 0)
                deeper = self._deeper(layers, TunnelLayer("erspan", src, dst, (("version", 3), ("session", session))))
                if deeper is None:
                    return None
                if ft == 0:
                    return self._ethernet(frame, data, r, end, deeper)
                if ft == 2:
                    return self._net(frame, data, 0, r, end, deeper)
                self._unsupported(f"erspan-frame-type-{ft}")
                return None
            self._unsupported(f"erspan-version-{ver}")
            return None
        info = (("key", key),) if key is not None else ()
        deeper = self._deeper(layers, TunnelLayer("gre", src, dst, info + (("protocol", f"0x{ptype:04x}"),)))
        if deeper is None:
            return None
        return self._by_proto(frame, data, q, end, ptype, "gre", deeper)

    def _mpls(self, frame: RawFrame, data: bytes, q: int, end: int, etype: int, src: bytes | None,
              dst: bytes | None, layers: tuple) -> Segment | None:
        """An MPLS label stack (RFC 3032); the payload after the bottom of stack is IPv4/IPv6 by its
        first nibble, or a pseudowire control word (0000) followed by Ethernet (RFC 4448)."""
        end = min(end, len(data))
        labels = []
        while True:
            if end < q + 4:
                self.stats.truncated += 1
                return None
            word = struct.unpack_from("!I", data, q)[0]
            labels.append(word >> 12)
            q += 4
            if word & 0x100:
                break
            if len(labels) >= MAX_MPLS_LABELS:
                self.stats.too_deep += 1
                return None
        deeper = self._deeper(layers, TunnelLayer("mpls", src, dst, (
            ("labels", tuple(labels)), ("multicast", etype == 0x8848))))
        if deeper is None:
            return None
        if end < q + 1:
            self.stats.truncated += 1
            return None
        nib = data[q] >> 4
        if nib in (4, 6):
            return self._net(frame, data, 0, q, end, deeper)
        if nib == 0:
            return self._ethernet(frame, data, q + 4, end, deeper)
        self._unsupported("mpls-payload")
        return None

    def _tcp(self, frame: RawFrame, data: bytes, p: int, end: int, src: bytes, dst: bytes,
             layers: tuple = ()) -> Segment | None:
        if len(data) < p + 20:
            self.stats.truncated += 1
            return None
        sport, dport, seq, ack, offx, flags, window = _tcp(data, p)
        hl = (offx >> 4) * 4
        if hl < 20:
            return None
        self.stats.tcp += 1
        start = p + hl
        paylen = max(0, end - start)
        payload = data[start:end]
        if len(payload) < paylen:
            self.stats.truncated += 1
        if layers:
            self.stats.tunnelled += 1
            return Segment(frame.no, frame.ts_ns, src, sport, dst, dport, seq, ack, flags,
                           payload, paylen, frame.source, window, layers)
        return Segment(frame.no, frame.ts_ns, src, sport, dst, dport, seq, ack, flags,
                       payload, paylen, frame.source, window)


# IP protocols that are followed (TCP and the tunnels) or only named.
_PROTO_UNSUPPORTED = {50: "ipsec-esp", 115: "l2tpv3", 97: "etherip", 94: "ipip-ka9q"}
_L4 = frozenset({6, 4, 41, 47, 17, 137}) | frozenset(_PROTO_UNSUPPORTED)
