"""write_json reads each handshake once and still writes them in document order (InOrder)."""
from __future__ import annotations

import io
import os

import pytest

from wscap.document.build import InOrder
from wscap.engine.analyze import run_pipeline
from wscap.render.json import write_document

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_handshakes_come_out_in_document_order_whatever_order_they_are_read_in(monkeypatch):
    monkeypatch.setattr(InOrder, "LIMIT", 1)
    shown = [5, 2, 9, 7, 1]                       # legs in document order
    written: list[str] = []
    order = InOrder(shown, lambda d: f"<{d['leg']}>", written.append)
    for leg in (9, 7, 5, 2, 1, 42):              # as chains were judged; 42 is in no list shown
        order.offer(leg, {"leg": leg})
        order.flush()
    # 9 waits (room for one), 7 finds no room, 5 and 2 are next in turn and take 9 with them,
    # 1 waits; at the end 7 is read at its turn.
    assert written == ["<5>", "<2>", "<9>"]
    order.finish(lambda leg: f"[{leg}]")
    assert written == ["<5>", "<2>", "<9>", "[7]", "<1>"]
    assert order.late == 1 and order.next == len(shown)


def _json(path: str) -> str:
    buf = io.StringIO()
    run_pipeline([path]).write_json(buf)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["nginx-vite-backend", "backend-down-refused", "hmr-beside-app", "h2-websocket"])
def test_the_streamed_document_is_the_same_with_no_room_to_wait(name, monkeypatch):
    path = os.path.join(REPO, "pcaps", name + ".pcap")
    roomy = _json(path)
    monkeypatch.setattr(InOrder, "LIMIT", 0)      # only the next handshake in turn is kept
    assert _json(path) == roomy
    buf = io.StringIO()
    write_document(run_pipeline([path]).document(), buf)   # and the same as the in-memory document
    assert buf.getvalue() == roomy


def _bench_gen():
    import importlib.util
    import sys
    path = os.path.join(REPO, "scripts", "bench", "gen.py")
    spec = importlib.util.spec_from_file_location("wscap_bench_gen_order", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_each_handshake_is_read_once_though_chains_interleave(tmp_path, monkeypatch):
    """The bench generator's tiny capture has concurrent chains (legs of one chain between those of
    another): handshakes arrive out of turn, wait, and each is read from the spool exactly once;
    with no room to wait, some are read twice and the bytes are the same."""
    from wscap.document.spool import Spool
    path = _bench_gen().generate("tiny", str(tmp_path), seed=7)["pcap_path"]
    reads = {"n": 0}
    late: list[int] = []
    get, finish = Spool.get, InOrder.finish

    def counting_get(self, loc):
        reads["n"] += 1
        return get(self, loc)

    def noting_finish(self, read):
        finish(self, read)
        late.append(self.late)
    monkeypatch.setattr(Spool, "get", counting_get)
    monkeypatch.setattr(InOrder, "finish", noting_finish)
    pipe = run_pipeline([path])
    buf = io.StringIO()
    reads["n"] = 0
    summary = pipe.write_json(buf)
    roomy = buf.getvalue()
    assert reads["n"] == summary["handshakes"] + _used_attempts(roomy) and late == [0]

    monkeypatch.setattr(InOrder, "LIMIT", 0)
    pipe = run_pipeline([path])
    buf = io.StringIO()
    reads["n"] = 0
    pipe.write_json(buf)
    assert late[1] > 0 and reads["n"] > summary["handshakes"]
    assert buf.getvalue() == roomy


def _used_attempts(text: str) -> int:
    """Bare attempts shown as a chain's hop: handshakes listed without a request."""
    import json
    return sum(1 for h in json.loads(text)["handshakes"] if h["request"] is None)
