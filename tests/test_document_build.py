"""The one document assembly (wscap.document.build): handshake documents in, the document out.

Legs are built as typed values, encoded by the codec (as an engine would hand them over), and
assembled: ids follow request order, a used attempt gets the next id, the chain lists final ids,
endpoints get their roles from the chain, the summary counts what was built.
"""
from __future__ import annotations

from typed_legs import leg, request, response

from wscap.document.build import document
from wscap.document.codec import encode_handshake
from wscap.model.handshake import Outcome

C, P, B, P_OUT = "172.18.0.1:50000", "172.18.0.2:5173", "172.18.0.3:5000", "172.18.0.2:40000"
STATS = {"packets": 0, "tcp_packets": 0, "truncated_packets": 0, "flows": 0, "flows_tracked": 0,
         "evicted_flows": 0, "ip_fragments_dropped": 0, "limits_hit": {}}


def test_refused_backend_chain_with_ids_endpoints_and_summary():
    down = encode_handshake(leg(None, C, P, 1, 0, request(4, 0.0), response(9, 6.0, 502, "Bad Gateway")))
    attempt = encode_handshake(leg(None, P_OUT, B, 5, 1.0, outcome=Outcome.REFUSED, synack=False,
                                   end=("rst", "server", 6, 1.5)))
    stray = encode_handshake(leg(None, "10.9.9.9:1234", B, 20, 30_000.0, outcome=Outcome.UNANSWERED))
    doc = document([down], [attempt, stray], [], STATS)
    assert [h["id"] for h in doc["handshakes"]] == [1, 2]          # the request first, then the attempt
    assert doc["stats"]["unlinked_attempts"] == 1                  # the stray SYN served no request
    [chain] = doc["chains"]
    assert (chain["id"], chain["hops"], chain["links"][0]["from"], chain["links"][0]["to"]) == (1, [1, 2], 1, 2)
    assert chain["links"][0]["by"] == "attempt" and chain["links"][0]["delay"] == 0.001
    assert (chain["verdict"]["cause"], chain["verdict"]["hop"]) == ("upstream-refused", 1)
    assert [e["hop_id"] for e in chain["verdict"]["evidence"]] == [1, 2, 2]
    roles = {e["ip"]: (e["role"], e["ports"]) for e in doc["endpoints"]}
    assert roles == {"172.18.0.1": ("client", []), "172.18.0.2": ("proxy", [5173]),
                     "172.18.0.3": ("backend", [5000])}
    s = doc["summary"]
    assert (s["handshakes"], s["chains"], s["broken"], s["by_cause"]) == (1, 1, 1, {"upstream-refused": 1})
