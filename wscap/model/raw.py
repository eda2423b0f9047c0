"""Plain value types shared by every stage of the pipeline.

Capture readers (files and live) produce `RawFrame`s; everything downstream is
sans-IO and only ever sees these values. Wire data stays `bytes`; timestamps are
integer nanoseconds so that pcap (µs) and pcapng/nanosecond captures never mix
float and Decimal the way dpkt's readers do.
"""
from __future__ import annotations

from typing import NamedTuple

# Link types (pcap LINKTYPE_* values) that wscap decodes.
LINKTYPE_NULL = 0          # BSD loopback: 4-byte host-order address family
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101         # raw IPv4/IPv6
LINKTYPE_LOOP = 108        # OpenBSD loopback: 4-byte network-order family
LINKTYPE_LINUX_SLL = 113   # tcpdump -i any (old)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # tcpdump -i any (libpcap >= 1.10)
DLT_RAW_ALT = 12           # some BSDs write DLT_RAW as 12/14
DLT_RAW_ALT2 = 14


class RawFrame(NamedTuple):
    """One captured record, exactly as the capture holds it.

    A NamedTuple rather than a frozen dataclass: one is built per packet, and
    tuple construction is several times cheaper on the hot path.
    """

    no: int          # frame number, from 1 per capture file (Wireshark's numbering)
    ts_ns: int       # capture timestamp, ns since the epoch
    linktype: int    # LINKTYPE_* of the interface that captured it
    data: bytes      # captured bytes (may be cut by the snap length)
    wirelen: int     # original length on the wire
    iface: int = 0   # pcapng interface id (0 for pcap)
    source: int = 0  # index of the input file / live source
