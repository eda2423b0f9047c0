"""The snap length that keeps every frame of the capture interfaces whole: GRO/GSO superframes
on veth and bridges exceed the MTU, so ask each interface (netlink, else sysfs) for its largest."""
from __future__ import annotations

import os
import socket
import struct
from typing import Iterable

MIN_SNAPLEN = 1600
MAX_SNAPLEN = 262144
LINK_HEADER_MAX = 20          # SLL2, the largest link header we capture
DEFAULT_FRAME = 65536         # GSO/GRO default when an interface cannot be asked

_IFLA_IFNAME, _IFLA_MTU, _IFLA_GSO_MAX_SIZE, _IFLA_GRO_MAX_SIZE = 3, 4, 41, 58
_IFLA_GSO_IPV4_MAX_SIZE, _IFLA_GRO_IPV4_MAX_SIZE = 63, 64


def _links_netlink() -> dict[str, int] | None:
    """{ifname: largest of mtu/gso/gro sizes} of this thread's network namespace (RTM_GETLINK).

    Netlink rather than /sys/class/net: sysfs shows the namespace it was mounted in,
    while a socket belongs to the namespace of the thread that opens it.
    """
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)   # NETLINK_ROUTE
    except OSError:
        return None
    out: dict[str, int] = {}
    try:
        s.settimeout(2)
        s.bind((0, 0))
        # nlmsghdr(len, type=RTM_GETLINK 18, flags=REQUEST|DUMP 0x301, seq, pid) + ifinfomsg
        req = struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + struct.pack("=BxHiII", 0, 0, 0, 0, 0)
        s.send(req)
        done = False
        while not done:
            data = s.recv(1 << 16)
            if not data:
                break
            off = 0
            while off + 16 <= len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if ln < 16:
                    done = True
                    break
                if typ == 3:           # NLMSG_DONE
                    done = True
                    break
                if typ == 2:           # NLMSG_ERROR
                    return None
                if typ == 16:          # RTM_NEWLINK
                    a = off + 16 + 16
                    name, best = None, 0
                    while a + 4 <= off + ln:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        val = data[a + 4:a + alen]
                        atype &= 0x3FFF
                        if atype == _IFLA_IFNAME:
                            name = val.split(b"\0", 1)[0].decode("utf-8", "replace")
                        elif atype in (_IFLA_MTU, _IFLA_GSO_MAX_SIZE, _IFLA_GRO_MAX_SIZE,
                                       _IFLA_GSO_IPV4_MAX_SIZE, _IFLA_GRO_IPV4_MAX_SIZE) and len(val) >= 4:
                            best = max(best, struct.unpack_from("=I", val)[0])
                        a += (alen + 3) & ~3
                    if name:
                        out[name] = best
                off += (ln + 3) & ~3
    except OSError:
        return None
    finally:
        s.close()
    return out


def _links_sysfs(names: Iterable[str]) -> dict[str, int]:
    out = {}
    for n in names:
        best = 0
        for f in ("mtu", "gso_max_size", "gro_max_size", "gso_ipv4_max_size", "gro_ipv4_max_size"):
            try:
                with open(f"/sys/class/net/{n}/{f}") as fh:
                    best = max(best, int(fh.read().strip()))
            except (OSError, ValueError):
                pass
        if best:
            out[n] = best
    return out


def snaplen_for(ifaces: Iterable[str]) -> int:
    """Snap length that captures every frame of these interfaces whole.

    The largest of each interface's MTU, gso_max_size and gro_max_size (GRO/TSO
    superframes on veth/docker0 exceed the MTU), plus the largest link header (SLL2, 20
    bytes); at least 1600, at most 262144 (libpcap's maximum). An interface we cannot
    ask counts as 64 KiB (the kernel's default GSO size); "any" means every interface.
    """
    names = list(ifaces) or ["any"]
    links = _links_netlink()
    if links is None:
        try:
            all_names = os.listdir("/sys/class/net")
        except OSError:
            all_names = []
        links = _links_sysfs(set(all_names) | {n for n in names if n != "any"})
    best = 0
    for n in names:
        if n == "any":
            best = max([best, *links.values()] if links else [best, DEFAULT_FRAME])
        else:
            best = max(best, links.get(n) or DEFAULT_FRAME)
    return max(MIN_SNAPLEN, min(MAX_SNAPLEN, best + LINK_HEADER_MAX))
