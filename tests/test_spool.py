"""The spool: documents read back exactly as written, whatever the record format.

The spool keeps records as `marshal` data (cheaper than JSON both ways). Marshal
keeps what JSON would lose — tuples, int keys — so a document read back from it
equals the JSON round trip only while documents are JSON-shaped; the sample
captures' documents are held to that here, type by type.
"""
from __future__ import annotations

import enum
import glob
import json
import os

import pytest

from wscap.document.spool import Spool
from wscap.engine.analyze import run_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _same(a: object, b: object, where: str = "$") -> None:
    """Equal, and of exactly the same types all the way down (1 == 1.0 == True are not enough)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"   # order too
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _json_round_trip(d: dict) -> dict:
    return json.loads(json.dumps(d, ensure_ascii=False))


def _captures() -> list[str]:
    return sorted(glob.glob(os.path.join(REPO, "pcaps", "*.pcap"))
                  + glob.glob(os.path.join(REPO, "pcaps", "hostile", "*.pcap*")))


def test_every_sample_captures_spooled_documents_read_back_as_json_would():
    paths = _captures()
    assert len(paths) > 40
    seen = {"handshakes": 0, "chains": 0}
    for path in paths:
        doc = run_pipeline([path]).lazy_document()
        for key in ("handshakes", "chains"):
            for item in doc[key]:
                _same(item, _json_round_trip(item), f"{os.path.basename(path)}:{key}")
                seen[key] += 1
    assert seen["handshakes"] > 100 and seen["chains"] > 50     # the captures did produce documents


class _Kind(str, enum.Enum):
    A = "a"


def test_a_record_marshal_cannot_hold_is_kept_as_json():
    sp = Spool()
    try:
        plain = {"id": 3, "x": [1, 2.5, None, True], "s": "é\u2028"}
        odd = {"id": 4, "kind": _Kind.A, "n": [_Kind.A]}
        la, lb = sp.put(plain), sp.put(odd)
        _same(sp.get(lb), {"id": 4, "kind": "a", "n": ["a"]})
        _same(sp.get(la), plain)
        _same(sp.get(la), plain)               # any order, any number of times
        assert sp.count == 2
    finally:
        sp.close()


def test_a_persisted_spool_reads_back_in_another_handle():
    """The -j path: a worker's spool is copied to a named file the parent opens (and unlinks)."""
    sp = Spool()
    docs = [{"id": i, "v": "x" * i, "l": [i, {"k": i}]} for i in range(50)]
    locs = [sp.put(d) for d in docs]
    path = sp.persist()
    sp.close()
    other = Spool.open(path)
    try:
        assert not os.path.exists(path)
        for d, loc in reversed(list(zip(docs, locs))):
            _same(other.get(loc), d)
    finally:
        other.close()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_floats_survive_as_json_would_write_them(bad):
    sp = Spool()
    try:
        got = sp.get(sp.put({"v": bad}))["v"]
        assert json.dumps(got) == json.dumps(bad)
    finally:
        sp.close()
