"""Linking typed legs into chains (wscap.judge.chains): legs in, linked chains with final ids out.

Client C talks to proxy P (172.18.0.2:5173); P talks to backend B (172.18.0.3:5000). Each test
builds the legs and says how they are related, so the expected links follow from the input.
"""
from __future__ import annotations

from typed_legs import MS, leg, request, response

from wscap.document.build import link
from wscap.judge.chains import link_chains
from wscap.model.chain import LinkBy
from wscap.model.handshake import Outcome

C, C2, P, B = "172.18.0.1:50000", "172.18.0.9:50001", "172.18.0.2:5173", "172.18.0.3:5000"
P_OUT = "172.18.0.2:40000"
KEY, OTHER_KEY = "dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="


def test_same_key_from_the_proxy_address_links_by_key():
    down = leg(1, C, P, 1, 0, request(4, 0.0), response(20, 5.0))
    up = leg(2, P_OUT, B, 6, 1, request(9, 2.0), response(12, 4.0))
    res = link_chains([down, up], [])
    assert len(res.chains) == 1
    ch = res.chains[0]
    assert ch.legs == (0, 1) and ch.by == (LinkBy.KEY,) and ch.delays_ns == (2 * MS,)
    assert "172.18.0.2" in res.proxies and res.used == ()


def test_regenerated_key_is_inferred_from_address_path_and_time():
    down = leg(1, C, P, 1, 0, request(4, 0.0, target="/ws?room=1"), response(20, 5.0))
    up = leg(2, P_OUT, B, 6, 1, request(9, 3.0, key=OTHER_KEY, target="/api/ws"), response(12, 4.0))
    res = link_chains([down, up], [])
    assert [(c.legs, c.by) for c in res.chains] == [((0, 1), (LinkBy.INFERRED,))]


def test_refused_attempt_from_the_proxy_is_the_missing_hop_and_gets_the_next_id():
    down = leg(1, C, P, 1, 0, request(4, 0.0), response(9, 6.0, status=502, reason="Bad Gateway"))
    attempt = leg(None, P_OUT, B, 5, 1.0, outcome=Outcome.REFUSED, synack=False, end=("rst", "server", 6, 1.5))
    given: list[int] = []

    def next_id(j: int) -> int:
        given.append(j)
        return 7

    linkage, chains, ids = link([down], [attempt], 3.0, next_id)
    assert linkage.used == (1,) and given == [0]
    assert ids == [1, 7]
    assert [(c.id, c.hops, [(x.from_id, x.to_id, x.by) for x in c.links]) for c in chains] == \
        [(1, (1, 7), [(1, 7, LinkBy.ATTEMPT)])]
    assert linkage.proxies.dialled("172.18.0.2")


def test_attempt_after_the_proxy_already_answered_is_not_its_cause():
    # The proxy answered 502 in frame 3, before the attempt's SYN (frame 5): not the missing hop.
    down = leg(1, C, P, 1, 0, request(2, 0.0), response(3, 0.5, status=502, reason="Bad Gateway"))
    attempt = leg(None, P_OUT, B, 5, 1.0, outcome=Outcome.REFUSED, synack=False, end=("rst", "server", 6, 1.5))
    res = link_chains([down], [attempt])
    assert [c.legs for c in res.chains] == [(0,)] and res.used == ()


def test_unrelated_clients_sharing_a_key_never_merge():
    # Two clients with RFC 6455's sample key, both straight to B: no leg leaves from the other's server.
    a = leg(1, C, B, 1, 0, request(2, 0.0), response(3, 1.0))
    b = leg(2, C2, B, 4, 0.5, request(5, 0.5), response(6, 1.5))
    res = link_chains([a, b], [])
    assert sorted(c.legs for c in res.chains) == [(0,), (1,)]
    assert res.proxies.addresses == frozenset()


def test_legs_outside_the_window_are_not_linked():
    down = leg(1, C, P, 1, 0, request(4, 0.0), response(20, 5.0))
    up = leg(2, P_OUT, B, 6, 11_000, request(9, 11_000.0), response(12, 11_001.0))   # 11 s later
    res = link_chains([down, up], [], timeout_s=3.0)
    assert sorted(c.legs for c in res.chains) == [(0,), (1,)]


def test_upstream_leg_must_come_later_in_the_same_capture():
    # Same timestamps, but the "upstream" request is in an earlier frame: causality says no.
    down = leg(1, C, P, 5, 0, request(8, 0.0), response(20, 5.0))
    up = leg(2, P_OUT, B, 1, 0, request(3, 0.0), response(12, 4.0))
    res = link_chains([down, up], [])
    assert sorted(c.legs for c in res.chains) == [(0,), (1,)]
