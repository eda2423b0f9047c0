"""Link layers: where the network header starts, for every link type wscap reads.

The one table of link-layer layouts, used by the decoder (wire/decode.py), the
pipeline's fast path (engine/core.py `record_filter`), live shedding
(capture/follow.py `worth_at`) and `wscap slice`. They once each had their own
copy and drifted (slice knew AF_INET6 = 10, the decoder did not; the decoder
knew VLAN 0x9200, slice did not); this module is the superset.

Everything works on a buffer and an offset (`locate(linktype, buf, base, end)`)
so callers can ask about a record still in the capture reader's buffer without
copying it.
"""
from __future__ import annotations

import struct
from typing import Final

from wscap.model.raw import (DLT_RAW_ALT, DLT_RAW_ALT2, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                             LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL,
                             LINKTYPE_RAW)

ETH_IP4: Final = 0x0800
ETH_IP6: Final = 0x86DD
RAW_IP: Final = 0         # "ethertype" of a raw IP link: the version nibble decides
# 802.1Q, 802.1ad (QinQ outer), and the pre-standard QinQ tags 0x9100 / 0x9200; stacks are walked.
VLAN_TYPES: Final = (0x8100, 0x88A8, 0x9100, 0x9200)
RAW_LINKTYPES: Final = frozenset({LINKTYPE_RAW, DLT_RAW_ALT, DLT_RAW_ALT2, LINKTYPE_IPV4, LINKTYPE_IPV6})
AF_INET: Final = 2
# AF_INET6 differs by OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD/DragonFly 28, macOS/iOS 30.
AF_INET6: Final = frozenset({10, 24, 28, 30})

_u16 = struct.Struct("!H").unpack_from
_le32 = struct.Struct("<I").unpack_from
_be32 = struct.Struct(">I").unpack_from

# Link types whose untagged header has a fixed size: linktype -> (offset of the network header,
# offset of the 2-byte ethertype field). The fast path reads both with one struct at fixed offsets.
FIXED_HEADER: Final[dict[int, tuple[int, int]]] = {
    LINKTYPE_ETHERNET: (14, 12),
    LINKTYPE_LINUX_SLL: (16, 14),    # Linux cooked v1: protocol at 14
    LINKTYPE_LINUX_SLL2: (20, 0),    # Linux cooked v2: protocol first
}


def ether(buf: bytes | bytearray, off: int, end: int | None = None) -> tuple[int, int] | None:
    """An Ethernet header at `off` (VLAN tags skipped) -> (ethertype, offset of its payload)."""
    if end is None:
        end = len(buf)
    if end < off + 14:
        return None
    off += 12
    etype = _u16(buf, off)[0]
    while etype in VLAN_TYPES:          # 802.1Q / 802.1ad, possibly stacked (QinQ); bounded by `end`
        off += 4
        if end < off + 2:
            return None
        etype = _u16(buf, off)[0]
    return etype, off + 2


def null_family(linktype: int, buf: bytes | bytearray, off: int) -> int:
    """The address family of a BSD NULL (host order) / OpenBSD LOOP (network order) header.
    NULL is written in the capturing host's byte order: a value that is no known family in
    little-endian order is read again in network order."""
    fam: int = (_be32 if linktype == LINKTYPE_LOOP else _le32)(buf, off)[0]
    if fam != AF_INET and fam not in AF_INET6:
        fam = _be32(buf, off)[0]
    return fam


def locate(linktype: int, buf: bytes | bytearray, base: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """(ethertype, absolute offset of the network header) of the frame at buf[base:end], or None
    when the link type is unknown or the header is cut. Ethertype `RAW_IP` (0): IP, the version
    nibble decides; NULL/LOOP families come back as ETH_IP4/ETH_IP6. Other ethertypes (MPLS,
    PPPoE, ARP...) are returned as they are: the caller decides."""
    if end is None:
        end = len(buf)
    if linktype == LINKTYPE_ETHERNET:
        return ether(buf, base, end)
    if linktype == LINKTYPE_LINUX_SLL:
        if end < base + 16:
            return None
        return _u16(buf, base + 14)[0], base + 16
    if linktype == LINKTYPE_LINUX_SLL2:
        if end < base + 20:
            return None
        return _u16(buf, base)[0], base + 20
    if linktype in RAW_LINKTYPES:
        return RAW_IP, base
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if end < base + 4:
            return None
        fam = null_family(linktype, buf, base)
        if fam == AF_INET:
            return ETH_IP4, base + 4
        if fam in AF_INET6:
            return ETH_IP6, base + 4
        return None
    return None


def ip_version(etype: int, buf: bytes | bytearray, off: int, end: int | None = None) -> int:
    """4 or 6 when the network header at `off` is IP of the version its ethertype says (raw IP:
    its version nibble), else 0."""
    if end is None:
        end = len(buf)
    if end <= off:
        return 0
    v: int = buf[off] >> 4
    if etype == ETH_IP4:
        return 4 if v == 4 else 0
    if etype == ETH_IP6:
        return 6 if v == 6 else 0
    if etype == RAW_IP and v in (4, 6):
        return v
    return 0
