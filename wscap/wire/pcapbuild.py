"""pcap / pcapng record builders: what every writer of wscap writes (capture/writer.py for
`live --write`, capture/slice.py, the tests' capture builders).

Built with struct rather than dpkt.pcap.Writer / dpkt.pcapng.Writer: those take float-second
timestamps (nanoseconds are lost) and write caplen as the original length (a packet cut by the
snap length would claim to be whole); `wscap slice` must keep both exactly. Reading is
wire/pcapio.py's.
"""
from __future__ import annotations

import ipaddress
import struct

# Little-endian records.

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
DEFAULT_SNAPLEN = 262144
NRB_MAX_BLOCK = 64 * 1024    # bytes per Name Resolution Block (readers bound block sizes)
_pcap_rec = struct.Struct("<IIII").pack
_epb_head = struct.Struct("<IIIIIII").pack


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + pad4(value)


def block(kind: int, body: bytes) -> bytes:
    ln = 12 + len(body)
    return struct.pack("<II", kind, ln) + body + struct.pack("<I", ln)


def pcap_header(linktype: int, snaplen: int = DEFAULT_SNAPLEN, nano: bool = False) -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC_NS if nano else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(sec: int, frac: int, data: bytes, wirelen: int) -> bytes:
    """One record: `frac` in the file's unit (µs, or ns for a nanosecond file)."""
    return _pcap_rec(sec, frac, len(data), wirelen) + data


def pcapng_shb(app: str) -> bytes:
    """Section Header Block, little-endian, section length unknown, shb_userappl = `app`."""
    return block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + option(4, app.encode()) + option(0, b""))


def pcapng_idb(linktype: int, snaplen: int, name: str | None = None, tsresol: int | None = None) -> bytes:
    """Interface Description Block; `tsresol` is if_tsresol (9: nanoseconds; None: the default, µs)."""
    opts = option(2, name.encode()) if name else b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]))
    return block(1, struct.pack("<HHI", linktype, 0, snaplen) + opts + option(0, b""))


def pcapng_epb(iface_id: int, ts: int, data: bytes, wirelen: int) -> bytes:
    """Enhanced Packet Block; `ts` in the interface's units."""
    pad = -len(data) % 4
    ln = 32 + len(data) + pad
    return (_epb_head(6, ln, iface_id, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen)
            + data + b"\0" * pad + struct.pack("<I", ln))


def pcapng_nrb(names: dict[str, str] | dict[str, list[str]]) -> bytes:
    """Name Resolution Block(s) for `names` (ip -> name; a value may hold several names separated
    by whitespace or be a list), to write right after the IDBs: the names then travel with the
    capture (Wireshark shows them with `-N n`, `wscap analyze` labels endpoints with them); with
    several names for one address, both show the last one, so put the preferred label last.
    IPv4 records are type 1, IPv6 type 2; each name is UTF-8, NUL-terminated, record padded to 4
    bytes, then an end record. Large tables are split over several blocks. b"" when empty."""
    records: list[bytes] = []
    for ip, value in names.items():
        try:
            addr = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            continue
        items = value if isinstance(value, (list, tuple)) else str(value).split()
        parts = [n.encode("utf-8")[:255] for n in items if n]
        parts = [p for p in parts if b"\0" not in p]
        if not parts:
            continue
        val = addr.packed + b"".join(p + b"\0" for p in parts)
        if len(val) > 0xFFFF:
            continue
        records.append(struct.pack("<HH", 1 if addr.version == 4 else 2, len(val)) + pad4(val))
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for r in records:
        if chunk and size + len(r) > NRB_MAX_BLOCK:
            out.append(block(4, b"".join(chunk) + struct.pack("<HH", 0, 0)))
            chunk, size = [], 0
        chunk.append(r)
        size += len(r)
    if chunk:
        out.append(block(4, b"".join(chunk) + struct.pack("<HH", 0, 0)))
    return b"".join(out)
