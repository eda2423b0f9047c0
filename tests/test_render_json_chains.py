"""ChainEncoder writes every judged chain byte for byte as the plain encoder does."""
from __future__ import annotations

import glob
import os

from wscap.document.codec import encode_chain
from wscap.engine.analyze import run_pipeline
from wscap.render.json import ChainEncoder, encode_item

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _judged_chains():
    for path in sorted(glob.glob(os.path.join(REPO, "pcaps", "*.pcap"))
                       + glob.glob(os.path.join(REPO, "pcaps", "hostile", "*.pcap*"))):
        pipe = run_pipeline([path])
        linkage, chains, ids = pipe._linked()
        yield from pipe._judged(linkage, chains, ids, pipe.names())


def test_chain_texts_equal_the_plain_encoding_with_and_without_remembered_diffs():
    remembering, forgetting = ChainEncoder(), ChainEncoder()
    forgetting.MAX_DIFFS = 0
    n = with_diffs = 0
    for c in _judged_chains():
        want = encode_item(encode_chain(c))
        assert remembering(c) == want
        assert remembering(c) == want            # the second time from the remembered diff texts
        assert forgetting(c) == want
        n += 1
        with_diffs += bool(c.diffs)
    assert n > 50 and with_diffs > 10            # the captures gave chains, many with diffs
    assert 0 < len(remembering._diffs) <= ChainEncoder.MAX_DIFFS and not forgetting._diffs


def test_a_chain_without_diffs_or_verdict_is_written_as_its_dict():
    from wscap.model.chain import HopChain
    c = HopChain(7, (1, 2), (), None, None, has_encrypted_before=False)
    assert ChainEncoder()(c) == encode_item(encode_chain(c)) == '{"id": 7, "hops": [1, 2], "links": []}'
    e = HopChain(8, (3,), (), (), None, {"sni": "é"})
    assert ChainEncoder()(e) == encode_item(encode_chain(e)) == \
        '{"id": 8, "hops": [3], "links": [], "diffs": [], "encrypted_before": {"sni": "é"}}'
