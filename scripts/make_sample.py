#!/usr/bin/env python3
"""Write pcaps/sample-proxy.pcap: a synthetic Docker-bridge capture built with scapy.

Browser (bridge gateway 172.18.0.1) -> Vite dev server (172.18.0.2:5173, node
http-proxy re-serialising headers) -> backend (172.18.0.3:5000). Chain 1 is
healthy; chain 2 has its Origin rewritten by a proxy hook and the backend
answers 403; chain 3's backend port is closed (RST to SYN). The lab's real
recordings sit beside it; this one exists so the README's first command works
on a clone without root or a browser.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from builders import Capture, proxied_chain, ws_request, ws_response, new_key  # noqa: E402

cap = Capture()
proxied_chain(cap, 0)
cap.wait(1.0)
proxied_chain(cap, 1, backend_status=403, origin_rewrite=True)
cap.wait(1.0)
down = cap.conn(("172.18.0.1", 50002), ("172.18.0.2", 5173)).open()
down.send(True, ws_request("/ws", key=new_key(2)))
up = cap.conn(("172.18.0.2", 40002), ("172.18.0.3", 5000))
up._pkt(True, "S")
up._pkt(False, "RA", seq=0)
down.send(False, ws_response(new_key(2), status=502, reason="Bad Gateway"))
down.fin(False)
out = os.path.join(os.path.dirname(__file__), "..", "pcaps", "sample-proxy.pcap")
cap.write(out)
print(out)
