"""Resource bounds, passed down explicitly (no globals, no environment).

Every buffer wscap keeps is bounded by one of these; hitting a bound produces an
anomaly on the affected value and increments `stats.limits_hit[name]`.
"""
from __future__ import annotations

from dataclasses import dataclass

from wscap.model.value import pickled_by_fields


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Limits:
    head_bytes: int = 64 * 1024          # bytes of one HTTP header block
    flow_buffer: int = 256 * 1024        # out-of-order bytes buffered per direction
    max_flows: int = 50_000              # TCP connections tracked at once (oldest evicted); ~2.5 KB each
    frames_per_direction: int = 16       # WebSocket frame summaries kept per direction
    preview_bytes: int = 64              # payload preview kept per frame
    inflate_bytes: int = 1 << 20         # bytes a compressed message is inflated to (context takeover lost past it)
    max_handshakes: int = 1_000_000      # handshakes kept for the final document
    fragments: int = 4096                # IP datagrams under reassembly at once
    max_dns: int = 20_000                # DNS transactions kept (oldest dropped first)
    hpack_table: int = 64 * 1024         # HPACK dynamic table per direction, whatever the peer's SETTINGS say
    h2_header_bytes: int = 1 << 20       # decoded HTTP/2 header bytes kept per connection (HPACK amplification)
    tunnel_depth: int = 8                # nested encapsulations opened per packet (VXLAN in GRE in ...)
    gzip_records_per_kib: int = 1024     # records per KiB of compressed input a gzip capture may give (work bound)
