"""DNS as evidence: the lookups a proxy made (or failed to make) around a failed handshake.

A proxy that cannot resolve its upstream name (`getaddrinfo EAI_AGAIN meetsonar-backend`
when the Compose service is stopped) never opens the upstream leg: on the wire the chain
just stops at the proxy (`no-upstream-connection`, `timeout`, a 502). The DNS exchange is
the evidence, so the pipeline reads DNS over UDP and TCP port 53 — and any traffic to or
from Docker's embedded resolver at 127.0.0.11, which answers on random high ports behind
iptables DNAT inside each container — with `dpkt.dns`, into bounded transactions (a query
and its answer); judge/dns_evidence.py puts the relevant ones into the chain's verdict.

Everything here is attacker-controlled input: every message is parsed inside a try (a
malformed one is counted, never raised), names are cut to 253 characters and shown
escaped, and the number of transactions kept is bounded (`--max-dns`, oldest dropped and
counted in `stats.limits_hit.max_dns`).
"""
from __future__ import annotations

import bisect
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wscap.wire.decode import Segment

DOCKER_RESOLVER = bytes([127, 0, 0, 11])
# The capture filter part that keeps DNS: port 53 both ways, plus Docker's resolver, whose side of a
# container's query is a random high port after iptables DNAT (only the answer has port 53 again).
DNS_FILTER = "port 53 or host 127.0.0.11"
LIVE_FILTER = f"tcp or {DNS_FILTER}"     # `wscap live`'s default capture filter
DUPLICATE_S = 0.1            # the same message again within this long is a copy (another interface), not a retry
MAX_ADDRESSES = 16           # addresses kept per answer
MAX_NAME = 253               # longest DNS name (RFC 1035); longer text is cut
MAX_TCP_STREAMS = 256        # DNS-over-TCP directions reassembled at once
MAX_HOSTS = 4096             # addresses remembered as having sent DNS at all
LOOKUP_TYPES = {1, 28, 5, 255}    # A, AAAA, CNAME, ANY: what getaddrinfo-style lookups ask

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          64: "SVCB", 65: "HTTPS", 255: "ANY"}


def is_dns(src: bytes, sport: int, dst: bytes, dport: int) -> bool:
    return sport == 53 or dport == 53 or src == DOCKER_RESOLVER or dst == DOCKER_RESOLVER


def _ip_text(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(b) == 16 else socket.AF_INET, b)


def _ep(ip: bytes, port: int) -> str:
    t = _ip_text(ip)
    return f"[{t}]:{port}" if len(ip) == 16 else f"{t}:{port}"


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def safe_name(name: str) -> str:
    """A DNS name for a sentence: printable, no backticks, at most 253 characters."""
    out = []
    for ch in name[:MAX_NAME]:
        o = ord(ch)
        if not ch.isprintable():          # controls, bidi overrides, ...: shown, never obeyed
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        elif ch == "`":
            out.append("'")
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(name) > MAX_NAME else "")


def _outcome(rcode: int | None, answers: int) -> str:
    if rcode is None:
        return "no-answer"
    if rcode == 0:
        return "ok" if answers else "nodata"
    return {2: "servfail", 3: "nxdomain", 5: "refused"}.get(rcode, "error")


class DnsTracker:
    """Bounded DNS transactions of one pipeline (all its sources)."""

    def __init__(self, max_lookups: int = 20_000) -> None:
        self.max_lookups = max(1, max_lookups)
        self.lookups: deque[dict] = deque()
        self.pending: dict[tuple, dict] = {}
        self.messages = 0
        self.malformed = 0
        self.dropped = 0                 # transactions dropped by the bound (oldest first)
        self.unmatched = 0               # answers without their query in the capture
        self.hosts: dict[tuple[int, str], int] = {}   # (source, client ip) -> queries sent
        self._tcp: dict[tuple, list] = {}              # direction -> [next seq, buffer]
        # (version, {ip: (lookup times, lookups)}), rebuilt when the lookups change
        self._index: tuple[int, dict[str, tuple[list[float], list[dict]]]] | None = None
        self._version = 0
        self.docker_loopback = False     # a query on a loopback to Docker's resolver (captured in a container)
        self.duplicates = 0              # copies of one message (captured on a veth and its bridge)
        self._answered: dict[tuple, dict] = {}          # recent answered transactions, for copies

    # -- input ----------------------------------------------------------------------------
    def udp(self, source: int, frame: int, ts_ns: int, src: bytes, sport: int, dst: bytes, dport: int,
            payload: bytes) -> None:
        self._message(source, frame, ts_ns, src, sport, dst, dport, payload, "udp")

    def tcp(self, seg: Segment) -> None:
        """A segment of a DNS-over-TCP connection: 2-byte length-prefixed messages (RFC 1035 4.2.2).
        In-order bytes only; anything else restarts that direction (DNS over TCP is short-lived)."""
        key = (seg.source, seg.src, seg.sport, seg.dst, seg.dport)
        st = self._tcp.get(key)
        if seg.flags & 0x02:             # SYN: the data starts at seq + 1
            if st is None and len(self._tcp) >= MAX_TCP_STREAMS:
                self._tcp.pop(next(iter(self._tcp)))
            self._tcp[key] = [(seg.seq + 1) & 0xFFFFFFFF, bytearray()]
            return
        if seg.flags & 0x05:             # FIN/RST: done with this direction
            self._tcp.pop(key, None)
        if not seg.paylen or len(seg.payload) < seg.paylen:
            return
        if st is None:
            if len(self._tcp) >= MAX_TCP_STREAMS:
                self._tcp.pop(next(iter(self._tcp)))
            st = self._tcp[key] = [seg.seq, bytearray()]
        if seg.seq != st[0]:
            if ((seg.seq - st[0]) & 0xFFFFFFFF) > 0x7FFFFFFF:
                return                   # a retransmission of bytes already read
            st[1] = bytearray()          # a gap: drop what was buffered, resync on this segment
        st[1] += seg.payload
        st[0] = (seg.seq + seg.paylen) & 0xFFFFFFFF
        buf = st[1]
        while len(buf) >= 2:
            n = struct.unpack_from("!H", buf)[0]
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2:2 + n])
            del buf[:2 + n]
            self._message(seg.source, seg.frame, seg.ts_ns, seg.src, seg.sport, seg.dst, seg.dport, msg, "tcp")

    def _message(self, source: int, frame: int, ts_ns: int, src: bytes, sport: int, dst: bytes, dport: int,
                 data: bytes, transport: str) -> None:
        parsed = _parse(data)
        if parsed is None:
            self.messages += 1
            self.malformed += 1
            return
        txid, is_answer, rcode, qname, qtype, addrs, answers, ok = parsed
        if not ok:
            self.malformed += 1          # the header was readable (matched below), the rest was not
        self.record(source, frame, ts_ns, src, sport, dst, dport, transport, txid, is_answer, rcode, qname,
                    qtype, addrs, answers)

    def record(self, source: int, frame: int, ts_ns: int, src: bytes, sport: int, dst: bytes, dport: int,
               transport: str, txid: int, is_answer: bool, rcode: int, qname: str, qtype: str,
               addrs: list[str], answers: int) -> None:
        """One DNS message, already parsed (by dpkt here, by tshark in the tshark engine)."""
        self.messages += 1
        ts = ts_ns / 1e9
        if not is_answer:
            key = (source, src, sport, txid)
            old = self.pending.get(key)
            if old is not None and old["name"] == qname and ts - old["query_ts"] < DUPLICATE_S:
                self.duplicates += 1     # the same packet seen on a second interface
                return
            old = self.pending.pop(key, None)
            if old is not None:
                old["_key"] = None       # a retry with the same id: the earlier try got no answer
            query: dict = {"source": source, "client": _ep(src, sport), "server": _ep(dst, dport),
                     "transport": transport, "txid": txid, "name": qname, "type": qtype,
                     "query_frame": frame, "query_ts": round(ts_ns / 1e9, 6), "answer_frame": None,
                     "answer_ts": None, "rcode": None, "addresses": [], "outcome": "no-answer", "_key": key}
            self._add(query)
            self.pending[key] = query
            if dst == DOCKER_RESOLVER and src[0] == 127:
                self.docker_loopback = True
            hk = (source, _ip_text(src))
            if hk in self.hosts or len(self.hosts) < MAX_HOSTS:
                self.hosts[hk] = self.hosts.get(hk, 0) + 1
            return
        key = (source, dst, dport, txid)
        entry = self.pending.pop(key, None)
        if entry is None:
            prev = self._answered.get(key)
            if prev is not None and prev["answer_ts"] is not None and abs(ts - prev["answer_ts"]) < DUPLICATE_S:
                self.duplicates += 1
                return
            # An answer whose query the capture does not hold (it began later, or the query went
            # out on a port the DNAT rewrote): still evidence of what the resolver said.
            self.unmatched += 1
            entry = {"source": source, "client": _ep(dst, dport), "server": _ep(src, sport),
                     "transport": transport, "txid": txid, "name": qname, "type": qtype,
                     "query_frame": None, "query_ts": None, "answer_frame": None, "answer_ts": None,
                     "rcode": None, "addresses": [], "outcome": "no-answer", "_key": None}
            self._add(entry)
        entry["_key"] = None
        entry["answer_frame"] = frame
        entry["answer_ts"] = round(ts_ns / 1e9, 6)
        entry["rcode"] = RCODES.get(rcode, str(rcode))
        entry["addresses"] = addrs
        entry["outcome"] = _outcome(rcode, answers)
        if not entry["name"] and qname:
            entry["name"] = qname
        self._answered[key] = entry
        if len(self._answered) > MAX_TCP_STREAMS * 16:
            self._answered.pop(next(iter(self._answered)))

    def _add(self, entry: dict) -> None:
        if len(self.lookups) >= self.max_lookups:
            old = self.lookups.popleft()
            self.dropped += 1
            if old.get("_key") is not None and self.pending.get(old["_key"]) is old:
                del self.pending[old["_key"]]
        self.lookups.append(entry)
        self._version += 1

    # -- parallel analysis (-j): a worker's file merged in, as if fed here ---------------------
    def export(self) -> dict:
        return {"lookups": [{k: v for k, v in e.items() if k != "_key"} for e in self.lookups],
                "messages": self.messages, "malformed": self.malformed, "dropped": self.dropped,
                "unmatched": self.unmatched, "duplicates": self.duplicates, "hosts": list(self.hosts.items()),
                "docker_loopback": self.docker_loopback}

    def absorb(self, part: dict) -> None:
        for e in part["lookups"]:
            self._add({**e, "_key": None})
        self.messages += part["messages"]
        self.malformed += part["malformed"]
        self.dropped += part["dropped"]
        self.unmatched += part["unmatched"]
        self.duplicates += part["duplicates"]
        for hk, n in part["hosts"]:
            hk = tuple(hk)
            if hk in self.hosts or len(self.hosts) < MAX_HOSTS:
                self.hosts[hk] = self.hosts.get(hk, 0) + n
        self.docker_loopback = self.docker_loopback or part["docker_loopback"]

    # -- output ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = []
        for i, e in enumerate(self.lookups, start=1):
            d = {k: v for k, v in e.items() if k != "_key"}
            out.append({"id": i, **d})
        by_name: dict[str, dict] = {}
        for e in out:
            n = by_name.setdefault(e["name"], {"name": e["name"], "queries": 0, "answers": {}, "no_answer": 0,
                                               "addresses": []})
            n["queries"] += e["query_frame"] is not None
            if e["rcode"] is None:
                n["no_answer"] += 1
            else:
                n["answers"][e["rcode"]] = n["answers"].get(e["rcode"], 0) + 1
            for a in e["addresses"]:
                if a not in n["addresses"] and len(n["addresses"]) < MAX_ADDRESSES:
                    n["addresses"].append(a)
        return {"lookups": out, "names": sorted(by_name.values(), key=lambda n: n["name"]),
                "messages": self.messages, "malformed": self.malformed, "unmatched_answers": self.unmatched,
                "duplicates": self.duplicates, "dropped": self.dropped}

    # -- evidence for a verdict -------------------------------------------------------------
    def _by_client(self) -> dict[str, tuple[list[float], list[dict]]]:
        if self._index is not None and self._index[0] == self._version:
            return self._index[1]
        idx: dict[str, tuple[list[float], list[dict]]] = {}
        for e in sorted(self.lookups, key=lambda e: e["query_ts"] if e["query_ts"] is not None else e["answer_ts"]):
            ip = e["client"].rpartition(":")[0].strip("[]")
            ts, lst = idx.setdefault(ip, ([], []))
            ts.append(e["query_ts"] if e["query_ts"] is not None else e["answer_ts"])
            lst.append(e)
        self._index = (self._version, idx)
        return idx

    def sent_any(self, ip: str) -> bool:
        return self.docker_loopback or any(h == ip for (_s, h) in self.hosts)

    def near(self, ip: str, lo: float, hi: float) -> list[dict]:
        """Lookups sent by `ip` (or on a container's loopback to Docker's resolver: the capture
        was made inside that container) whose query falls in [lo, hi]."""
        idx = self._by_client()
        out: list[dict] = []
        cands = [ip] + [c for c in idx if _is_loopback(c) and c != ip]
        local = _is_loopback(ip)         # a proxy on this host's loopback: its lookups are local too
        for c in cands:
            ts, lst = idx.get(c, ((), ()))
            i = bisect.bisect_left(ts, lo)  # type: ignore[arg-type]
            j = bisect.bisect_right(ts, hi)  # type: ignore[arg-type]
            for e in lst[i:j]:  # type: ignore[index]
                if c != ip and not local and not e["server"].startswith("127.0.0.11:"):
                    continue     # the capture host's own loopback resolver, not the container's
                if e["type"] in _LOOKUP_NAMES:
                    out.append(e)
        return out


_LOOKUP_NAMES = {QTYPES.get(t, str(t)) for t in LOOKUP_TYPES}


def _parse(data: bytes) -> tuple[int, bool, int, str, str, list[str], int, bool] | None:
    """-> (txid, is_answer, rcode, name, type, addresses, answer count, fully parsed) or None."""
    if len(data) < 12:
        return None
    txid, flags = struct.unpack_from("!HH", data)
    is_answer = bool(flags & 0x8000)
    rcode = flags & 0x0F
    try:
        import dpkt.dns
        m = dpkt.dns.DNS(data)
        q = m.qd[0] if m.qd else None
        name = safe_name(q.name) if q is not None else ""
        qtype = QTYPES.get(q.type, str(q.type)) if q is not None else ""
        addrs: list[str] = []
        for rr in m.an:
            if len(addrs) >= MAX_ADDRESSES:
                break
            if rr.type == 1 and len(getattr(rr, "ip", b"")) == 4:
                addrs.append(_ip_text(rr.ip))
            elif rr.type == 28 and len(getattr(rr, "ip6", b"")) == 16:
                addrs.append(_ip_text(rr.ip6))
        return txid, is_answer, rcode, name, qtype, addrs, len(m.an), True
    except Exception:  # noqa: BLE001 - any byte soup: dpkt raises several exception types
        pass
    # dpkt refused it; the header alone still says who answered what (matched by id).
    name, qtype = "", ""
    try:
        qd = struct.unpack_from("!H", data, 4)[0]
        if qd:
            name, off = _qname(data, 12)
            if off + 4 <= len(data):
                t = struct.unpack_from("!H", data, off)[0]
                qtype = QTYPES.get(t, str(t))
    except (ValueError, struct.error, IndexError):
        pass
    return txid, is_answer, rcode, name, qtype, [], 0, False


def _qname(data: bytes, off: int) -> tuple[str, int]:
    """The first question's name, uncompressed labels only (a question never needs pointers)."""
    labels: list[str] = []
    total = 0
    while True:
        n = data[off]
        if n == 0:
            return safe_name(".".join(labels)), off + 1
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(data[off + 1:off + 1 + n].decode("latin-1"))
        total += n + 1
        if total > 255:
            raise ValueError("name too long")
        off += 1 + n
