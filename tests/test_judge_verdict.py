"""The verdict (wscap.judge.verdict): a typed chain in, the cause and the hop to blame out.

One test per rule. Each chain is built to break in one known way (C -> proxy P -> backend B),
so the expected cause and hop are what the construction says, not what wscap printed once.
"""
from __future__ import annotations

from typed_legs import anomaly, frame, leg, request, response

from wscap.judge.diff import diff_boundary
from wscap.judge.verdict import decide
from wscap.model.chain import Cause, Proxies
from wscap.model.handshake import Outcome

C, P, B, P_OUT = "172.18.0.1:50000", "172.18.0.2:5173", "172.18.0.3:5000", "172.18.0.2:40000"
PROXY = Proxies(frozenset({"172.18.0.2"}), frozenset({"172.18.0.2"}))


def judge(*hops, proxies=PROXY, timeout_s=3.0):
    diffs = [d for i in range(len(hops) - 1) for d in diff_boundary(i, hops[i], hops[i + 1])]
    v = decide(list(hops), diffs, proxies, timeout_s)
    return v.cause, v.hop, v


def client_leg(resp=None, **kw):
    return leg(1, C, P, 1, 0, request(4, 0.0), resp, **kw)


def test_refused_upstream_attempt():
    down = client_leg(response(9, 6.0, 502, "Bad Gateway"))
    att = leg(2, P_OUT, B, 5, 1, outcome=Outcome.REFUSED, synack=False, end=("rst", "server", 6, 1.5))
    cause, hop, v = judge(down, att)
    assert (cause, hop) == (Cause.UPSTREAM_REFUSED, 1)
    assert v.broken and [e.frame for e in v.evidence] == [4, 5, 6]


def test_unanswered_upstream_attempt():
    att = leg(2, P_OUT, B, 5, 1, outcome=Outcome.UNANSWERED, synack=False)
    assert judge(client_leg(response(9, 6.0, 504, "Gateway Timeout")), att)[:2] == (Cause.UPSTREAM_UNREACHABLE, 1)


def test_upgrade_header_stripped_by_the_proxy():
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0, upgrade="h2c"), response(8, 2.0, 400, "Bad Request"))
    assert judge(client_leg(response(9, 3.0, 502, "Bad Gateway")), up)[:2] == (Cause.UPGRADE_HEADER_STRIPPED, 1)


def test_origin_rewritten_then_refused():
    down = leg(1, C, P, 1, 0, request(4, 0.0, origin="http://localhost:5173"), response(9, 3.0, 403, "Forbidden"))
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0, origin="http://backend:5000"), response(8, 2.0, 403, "Forbidden"))
    assert judge(down, up)[:2] == (Cause.ORIGIN_REJECTED, 1)


def test_backend_403_to_an_origin():
    down = leg(1, C, B, 1, 0, request(4, 0.0, origin="http://evil"), response(5, 1.0, 403, "Forbidden"))
    assert judge(down, proxies=Proxies())[:2] == (Cause.ORIGIN_REJECTED, 0)


def test_proxy_answers_with_a_bare_status_line():
    down = client_leg(response(5, 1.0, 404, "Not Found", headers=()))
    assert judge(down)[:2] == (Cause.PROXY_REJECTED, 0)


def test_no_answer_within_the_timeout_is_a_timeout():
    down = leg(1, C, B, 1, 0, request(4, 0.0), waited_ms=5000)
    assert judge(down, proxies=Proxies())[:2] == (Cause.TIMEOUT, 0)


def test_capture_ended_before_the_timeout():
    down = leg(1, C, B, 1, 0, request(4, 0.0), waited_ms=1000)
    cause, hop, v = judge(down, proxies=Proxies())
    assert (cause, hop, v.broken) == (Cause.UNANSWERED_AT_CAPTURE_END, 0, False)


def test_proxy_that_never_went_upstream():
    down = leg(1, C, P, 1, 0, request(4, 0.0), waited_ms=5000)
    assert judge(down)[:2] == (Cause.NO_UPSTREAM_CONNECTION, 0)


def test_server_closed_without_answering_is_no_upstream_connection_for_a_single_leg():
    # The one branch left of a conditional whose two arms were the same (issue 18).
    down = leg(1, C, B, 1, 0, request(4, 0.0), outcome=Outcome.CLOSED, end=("fin", "server", 5, 1.0))
    assert judge(down, proxies=Proxies())[:2] == (Cause.NO_UPSTREAM_CONNECTION, 0)


def test_backend_101_not_relayed_as_upgrade():
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0))
    assert judge(client_leg(response(9, 3.0, 502, "Bad Gateway")), up)[:2] == (Cause.PROXY_DROPPED_UPGRADE, 0)


def test_backend_answer_never_reached_the_client():
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0, 500, "Internal Server Error"))
    down = client_leg(outcome=Outcome.CLOSED, end=("fin", "server", 9, 3.0))
    assert judge(down, up)[:2] == (Cause.PROXY_DROPPED_RESPONSE, 0)


def test_frames_that_came_with_the_101_lost_at_the_proxy():
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0), anomalies=(anomaly("data-with-101", 7),),
             frames=(frame("server", 7, 2.0),))
    down = client_leg(response(9, 3.0))
    assert judge(down, up)[:2] == (Cause.FRAMES_LOST_AT_PROXY, 0)


def test_client_http_after_101_read_from_the_side_field():
    # The message says nothing about the side: the verdict must read `side`.
    a = anomaly("http-after-101", 12, message="'GET /x HTTP/1.1'", side="client")
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0), anomalies=(a,))
    assert judge(down, proxies=Proxies())[:2] == (Cause.CLIENT_HTTP_AFTER_101, 0)
    s = anomaly("http-after-101", 12, message="'GET /x HTTP/1.1'", side="server")
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0), anomalies=(s,))
    assert judge(down, proxies=Proxies())[:2] == (Cause.MALFORMED_RESPONSE, 0)


def test_rsv1_from_the_server_blames_the_deepest_leg():
    a = anomaly("rsv1-without-extension", 10, side="server")
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0), anomalies=(a,))
    down = client_leg(response(9, 3.0), anomalies=(a,))
    assert judge(down, up)[:2] == (Cause.EXTENSION_MISMATCH, 1)
    c = anomaly("rsv1-without-extension", 10, side="client")
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0), anomalies=(c,))
    down = client_leg(response(9, 3.0), anomalies=(c,))
    assert judge(down, up)[:2] == (Cause.EXTENSION_MISMATCH, 0)


def test_response_rejected_by_llhttp_read_from_the_head_field():
    a = anomaly("llhttp-rejects", None, head="response")
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0), anomalies=(a,))
    assert judge(down, proxies=Proxies())[:2] == (Cause.MALFORMED_RESPONSE, 0)
    r = anomaly("llhttp-rejects", None, head="request")     # about the request: the 101 is fine
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0), anomalies=(r,))
    assert judge(down, proxies=Proxies())[0] is Cause.OK


def test_error_close_code_after_upgrade():
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0),
               frames=(frame("client", 6, 2.0), frame("server", 7, 3.0, opcode=8, close_code=1011)))
    assert judge(down, proxies=Proxies())[:2] == (Cause.CLOSED_AFTER_UPGRADE, 0)


def test_idle_timeout_pattern():
    down = leg(1, C, B, 1, 0, request(4, 0.0), response(5, 1.0), frames=(frame("client", 6, 2.0),),
               end=("fin", "server", 9, 60_002.0))
    cause, hop, v = judge(down, proxies=Proxies())
    assert (cause, hop) == (Cause.CLOSED_AFTER_UPGRADE, 0) and "(60 s)" in v.summary


def test_healthy_two_hops():
    up = leg(2, P_OUT, B, 5, 1, request(6, 1.0), response(7, 2.0))
    cause, hop, v = judge(client_leg(response(9, 3.0)), up)
    assert (cause, hop, v.broken, v.benign) == (Cause.OK, None, False, False)
    assert [e.hop_id for e in v.evidence] == [1, 2]
