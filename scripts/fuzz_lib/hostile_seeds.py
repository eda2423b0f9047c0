#!/usr/bin/env python3
"""Write the hostile shapes of issue 16 as small fuzz seeds into pcaps/hostile/.

The mutation fuzzer cannot build semantic attacks, but it can mutate them: seeded with a shared
Sec-WebSocket-Key on unrelated clients, one-packet non-HTTP flows, an HPACK table the peer lets
grow, HPACK amplification, permessage-deflate with context takeover, secrets cut by previews and
anomaly quotes, and TSO packets (IPv4 length 0), its mutations start next to each bound.
`scripts/fuzz_lib.corpus.default_paths` finds them (pcaps/**); the tests that glob pcaps/*.pcap
do not. Regenerate with:  python3 scripts/fuzz_lib/hostile_seeds.py
"""
from __future__ import annotations

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import test_hostile as th  # noqa: E402
from builders import Capture  # noqa: E402


def main() -> None:
    out = ROOT / "pcaps" / "hostile"
    out.mkdir(parents=True, exist_ok=True)
    cap = Capture()
    th.direct_clients_sharing_key(cap, 40, reject=17)
    cap.write(out / "same-key-40-clients.pcap")
    th.non_http_flows(str(out / "non-http-flows.pcap"), 300, handshake_at=150)
    cap = Capture()
    th.h2_amplification(cap, 40, 60_000)
    cap.write(out / "hpack-amplification.pcap")
    th.deflate_capture(out, th._msgs())                                   # writes deflate.pcap
    os.replace(out / "deflate.pcap", out / "deflate-context-takeover.pcap")
    path = th.secret_capture(out)
    os.replace(path, out / "secrets-cut.pcap")
    path = th.tso_capture(out, 0)
    os.replace(path, out / "tso-length-0.pcap")
    for p in sorted(out.glob("*.pcap")):
        print(p.relative_to(ROOT), p.stat().st_size)


if __name__ == "__main__":
    main()
