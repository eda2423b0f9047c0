"""--keylog: open TLS connections with an SSLKEYLOGFILE, via tshark, for wscap's own core.

An edge module (it runs tshark). Wireshark already implements every TLS
version and cipher suite correctly; wscap does not re-implement TLS. tshark
decrypts with the key log and hands back, per frame, the plaintext of the
application-data records that frame completed (HTTP and HTTP/2 dissectors
turned off, so the plaintext arrives as raw `data`). That becomes an
`Overlay`: for each frame of a decrypted connection, the plaintext and its
sequence number in a plaintext stream. The pipeline swaps each frame's TCP
payload for it, so the *same* reassembly, HTTP, WebSocket, HTTP/2 and chain
code reads the decrypted exchange — with the original frame numbers and
timestamps as evidence.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from wscap.engine.tshark_locate import tshark_path
from wscap.wire.tls import ClientHello

# Dissectors that would claim decrypted bytes before the `data` dissector does: the plaintext is
# wanted raw. (TLS heuristics for protocols a WebSocket path never carries are included so a
# chance match cannot swallow bytes.)
_CLAIMERS = ("http", "http2", "websocket", "mq", "fix", "credssp", "rdp", "5gli", "tds", "mqtt", "imap",
             "pop", "smtp", "ldap", "sip", "dns")
_FIELDS = ("frame.number", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "tcp.flags.syn", "tcp.seq_raw",
           "tls.handshake.type", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
           "tls.handshake.extensions.supported_version", "tls.record.content_type", "data.data",
           "tls.record.length")


@dataclass
class Overlay:
    """Plaintext for the frames of TLS connections the key log opened (one capture file)."""
    frames: dict[int, tuple] = field(default_factory=dict)   # frame -> (seq, plaintext or None, its length)
    stream_of: dict[int, int] = field(default_factory=dict)              # frame -> tshark stream
    hellos: dict[int, ClientHello] = field(default_factory=dict)         # stream -> its ClientHello
    hello_frames: dict[int, int | None] = field(default_factory=dict)           # stream -> the ClientHello's frame
    undecrypted: int = 0              # TLS connections the key log had no secrets for
    records_lost: int = 0             # application-data records of decrypted connections tshark could not open
    withheld: int = 0                 # frames whose plaintext was over the memory budget (become gaps)
    held: int = 0                     # plaintext bytes held
    error: str | None = None

    def hello_of(self, frame: int) -> tuple[ClientHello, int | None] | None:
        """The ClientHello (and its frame) of the decrypted connection `frame` belongs to."""
        s = self.stream_of.get(frame)
        if s is None or s not in self.hellos:
            return None
        return self.hellos[s], self.hello_frames.get(s)


@dataclass
class _Dir:
    base: int | None = None       # plaintext stream starts here (ISN + 1, or first seq seen)
    sent: int = 0                 # plaintext bytes so far


# Plaintext is held in memory until the file is read: beyond this, frames keep their length but not
# their bytes, so the pipeline sees a cut packet (a gap), never a silently shorter stream.
MAX_PLAINTEXT = 256 << 20
PRE_HELLO_FRAMES = 8     # frames of a stream kept before its ClientHello (the handshake, a retransmission)


@dataclass
class _Stream:
    lost: int = 0
    hello: ClientHello | None = None
    hello_frame: int | None = None
    dirs: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)    # (frame, dir key, seq_raw, syn, plaintext)
    plaintext: int = 0


def tshark_available() -> bool:
    return tshark_path() is not None


DSB = 0x0000000A      # pcapng Decryption Secrets Block (editcap --inject-secrets tls,keys.log)


PACKET_BLOCKS = (2, 3, 6)


def has_embedded_secrets(path: str, max_blocks: int = 4096) -> bool:
    """Does this pcapng carry TLS secrets of its own? Walks the block headers before the first packet
    (where editcap and Wireshark put them), so the check costs nothing on a large file.

    Plain pcapng files only: a gzip'd one would have to be inflated to be walked (use --keylog)."""
    import struct
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"\x0a\x0d\x0d\x0a":
                return False
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            f.seek(0)
            for _ in range(max_blocks):
                hdr = f.read(8)
                if len(hdr) < 8:
                    return False
                btype, blen = struct.unpack(order + "II", hdr)
                if btype == DSB:
                    return True
                if btype in PACKET_BLOCKS:
                    return False
                if blen < 12:
                    return False
                f.seek(blen - 8, 1)
    except OSError:
        return False
    return False


def build_overlay(path: str, keylog: str | None, tshark: str | None = None) -> Overlay:
    """Run tshark once over `path` with the key log (None: only the secrets embedded in a pcapng);
    never raises for bad input (see .error)."""
    ov = Overlay()
    tshark = tshark or tshark_path()
    if tshark is None or shutil.which(tshark) is None:
        ov.error = "--keylog needs tshark (Debian: apt install tshark); TLS connections stay encrypted"
        return ov
    # Out-of-order reassembly: tshark 4.0 otherwise drops TLS records whose segments arrive reordered.
    cmd = [tshark, "-n", "-r", path, *(["-o", f"tls.keylog_file:{keylog}"] if keylog else []),
           "-o", "tcp.reassemble_out_of_order:TRUE", "-T", "fields",
           "-E", "occurrence=a", "-E", "separator=\t", "-E", "aggregator=,"]
    for p in _CLAIMERS:
        cmd += ["--disable-protocol", p]
    for f in _FIELDS:
        cmd += ["-e", f]
    streams: dict[int, _Stream] = {}
    import tempfile
    with tempfile.TemporaryFile(mode="w+", encoding="latin-1", errors="replace") as errf:
        # stderr to a file, not a pipe: a chatty tshark must not block while stdout is read.
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True,
                                    encoding="latin-1", errors="replace")
        except OSError as e:
            ov.error = f"--keylog: cannot run tshark: {e}"
            return ov
        assert proc.stdout is not None
        for line in proc.stdout:
            _take(line.rstrip("\n").split("\t"), streams)
        rc = proc.wait()
        errf.seek(0)
        err = errf.read(4096)
    for sid, st in streams.items():
        if st.hello is None:
            continue
        if not st.plaintext:
            ov.undecrypted += 1
            continue
        st.hello.decrypted = True
        ov.hellos[sid] = st.hello
        ov.hello_frames[sid] = st.hello_frame
        ov.records_lost += st.lost
        _place(st, sid, ov)
    if rc != 0:
        msg = " ".join(l for l in err.splitlines() if "dangerous" not in l)[:300]
        ov.error = f"--keylog: tshark stopped ({msg or f'exit {rc}'}); decrypted what it read before that"
    return ov


def _take(cols: list[str], streams: dict[int, _Stream]) -> None:
    if len(cols) < len(_FIELDS) or not cols[1]:
        return
    try:
        frame, sid = int(cols[0]), int(cols[1])
        seq = int(cols[6]) if cols[6] else None
    except ValueError:
        return
    st = streams.get(sid)
    if st is None:
        st = streams[sid] = _Stream()
    src = (cols[2] or cols[3], cols[4])
    syn = cols[5] in ("1", "True")
    types = cols[7].split(",") if cols[7] else []
    if st.hello is None and "1" not in types:
        # Not (yet) a TLS connection: remember only its first frames (SYN, SYN-ACK, ACK), so memory
        # does not follow the capture's packet count; they join the stream if a ClientHello comes.
        if len(st.frames) < PRE_HELLO_FRAMES:
            st.frames.append((frame, src, seq, syn, b""))
        return
    if "1" in types and st.hello is None:
        st.hello_frame = frame
        st.hello = ClientHello(sni=cols[8].split(",")[0] or None,
                               alpn=[a for a in cols[9].split(",") if a],
                               versions=_versions(cols[10]))
    plain = b""
    # A TLS 1.3 record shows its inner content type only once it is decrypted, so a record without
    # a content type did not open; a TLS 1.2 application-data record that did not open has no data.
    records = len(cols[13].split(",")) if cols[13] else 0
    content = cols[11].split(",") if cols[11] else []
    lost = max(0, records - len(content))
    if "23" in content:
        try:
            plain = b"".join(bytes.fromhex(h) for h in cols[12].split(",")) if cols[12] else b""
        except ValueError:
            plain = b""
        lost += not plain
    if lost and st.hello is not None:
        st.lost += lost
        if not plain:
            st.frames.append((frame, src, seq, syn, None))     # a hole in the plaintext stream
            return
    st.plaintext += len(plain)
    st.frames.append((frame, src, seq, syn, plain))


def _place(st: _Stream, sid: int, ov: Overlay) -> None:
    """Give every frame of a decrypted stream its plaintext and plaintext sequence number."""
    for frame, src, seq, syn, plain in st.frames:
        ov.stream_of[frame] = sid
        d = st.dirs.get(src)
        if d is None:
            d = st.dirs[src] = _Dir()
        if syn:
            if seq is not None:
                d.base = (seq + 1) & 0xFFFFFFFF
            continue                   # the SYN itself keeps its sequence number (the ISN)
        if d.base is None:
            d.base = seq if seq is not None else 0
        if plain is None:
            # Its length is unknown: one missing byte is enough for reassembly to declare a gap
            # (the stream is then not parsed past it) instead of splicing the neighbours together.
            ov.frames[frame] = ((d.base + d.sent) & 0xFFFFFFFF, None, 1)
            d.sent += 1
            continue
        if ov.held + len(plain) > MAX_PLAINTEXT:
            ov.frames[frame] = ((d.base + d.sent) & 0xFFFFFFFF, None, len(plain))
            ov.withheld += 1
        else:
            ov.frames[frame] = ((d.base + d.sent) & 0xFFFFFFFF, plain, len(plain))
            ov.held += len(plain)
        d.sent += len(plain)


def _versions(s: str) -> list[str]:
    names = {"0x0304": "TLS 1.3", "0x0303": "TLS 1.2", "0x0302": "TLS 1.1", "0x0301": "TLS 1.0"}
    out = []
    for v in s.split(","):
        v = v.strip().lower()
        try:
            grease = (int(v, 16) & 0x0F0F) == 0x0A0A       # RFC 8701 placeholders, not versions
        except ValueError:
            continue
        if not grease:
            out.append(names.get(v, v))
    return out
