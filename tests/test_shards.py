"""One capture analysed as two halves of its flows (engine/shards.py) gives one process's bytes.

The reference is the same capture analysed with `judge_processes=1` (one process, the path every
other test holds to the truth). Captures: every one in pcaps/ and pcaps/hostile/, the bench
generator's tiny preset, and hand-built ones whose point is a decision that spans the halves (a
refused upstream attempt whose request is in the other half, ids across halves), with the
expected chains following from how they were built. A half keeps the flows whose ports' sum has
its parity, so the tests choose ports to put legs in the half they need.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import signal
from pathlib import Path

import pytest

from builders import Capture, new_key, ws_request, ws_response
from builders import bench_capture as generated_capture
from wscap.engine import shards
from wscap.engine.analyze import run_pipeline
from wscap.engine.core import Options, Pipeline
from wscap.model.limits import Limits
from wscap.wire import pcapio

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")


def half_of(a: int, b: int) -> int:
    return (a ^ b) & 1


def analysed(path: str, processes: int, limits: Limits | None = None) -> tuple[str, dict]:
    pipe = run_pipeline([path], Options(judge_processes=processes, limits=limits or Limits()))
    out = io.StringIO()
    pipe.write_json(out)
    text = out.getvalue()
    return text, json.loads(text)


@pytest.fixture
def runs(monkeypatch) -> list:
    """What each sharded run did: ("merged", legs of half 0, legs of half 1) or ("alone",)."""
    seen: list = []
    run, merge = shards.run, shards.merge_half

    def spy_merge(pipe, part, spool):
        seen.append(("merged", len(pipe.views) + len(pipe.attempt_views), len(part["views"]) + len(part["attempts"])))
        return merge(pipe, part, spool)

    def spy_run(*a, **k):
        pipe = run(*a, **k)
        if pipe is None:
            seen.append(("alone",))
        return pipe
    monkeypatch.setattr(shards, "merge_half", spy_merge)
    monkeypatch.setattr(shards, "run", spy_run)
    return seen


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory) -> str:
    return generated_capture(str(tmp_path_factory.mktemp("shards")), seed=11)


def test_bench_capture_in_two_halves_gives_one_process_bytes(bench_capture, runs):
    one, doc = analysed(bench_capture, 1)
    assert runs == []                                  # -j 1: never split
    two, _ = analysed(bench_capture, 2)
    assert len(runs) == 1 and runs[0][0] == "merged"
    assert runs[0][1] > 0 and runs[0][2] > 0           # both halves followed handshakes
    assert len(doc["chains"]) >= 10
    assert two == one


def _samples() -> list[Path]:
    return sorted(ROOT.glob("pcaps/*.pcap")) + sorted(ROOT.glob("pcaps/hostile/*.pcap*"))


@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_every_sample_capture_in_two_halves(path, runs):
    one, _ = analysed(str(path), 1)
    two, _ = analysed(str(path), 2)
    assert two == one
    if path.read_bytes()[:2] != b"\x1f\x8b":
        assert len(runs) == 1 and runs[0][0] == "merged"     # no bound came near: really two halves


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "python"])
def test_the_compiled_and_python_loops_split_alike(bench_capture, runs, fast, monkeypatch):
    if fast and pcapio._fastpath is None:
        pytest.skip("wscap.wire._fastpath is not built: only the Python loop exists")
    if not fast:
        monkeypatch.setattr(pcapio, "_fastpath", None)
    one, _ = analysed(bench_capture, 1)
    two, _ = analysed(bench_capture, 2)
    assert runs and runs[0][0] == "merged"
    assert two == one


# -- decisions that span the halves ----------------------------------------------------------
CLIENT, PROXY, BACKEND, OTHER = "172.18.0.1", "172.18.0.2", "172.18.0.3", "172.18.0.9"


def refused_behind_proxy(tmp_path: Path) -> tuple[str, dict]:
    """Browser -> proxy (upgrade, answered 502 after its upstream dial was refused) in one half;
    the proxy's refused dial to the backend in the other; plus an unrelated refused dial from an
    address that never received a request (not a hop: dropped, counted as unlinked)."""
    cap = Capture()
    down_port, up_port, stray_port = 50001, 40003, 40004
    assert half_of(down_port, 5173) != half_of(up_port, 5000)
    down = cap.conn((CLIENT, down_port), (PROXY, 5173)).open()
    down.send(True, ws_request("/ws", key=new_key(1)))
    up = cap.conn((PROXY, up_port), (BACKEND, 5000))
    up._pkt(True, "S")
    up.rst(False)
    stray = cap.conn((OTHER, stray_port), (BACKEND, 5000))
    stray._pkt(True, "S")
    stray.rst(False)
    down.send(False, ws_response(new_key(1), status=502, reason="Bad Gateway"))
    down.fin(False)
    return cap.write(tmp_path / "refused.pcap"), {"down": (CLIENT, down_port), "up": (PROXY, up_port)}


def test_a_refused_hop_whose_request_is_in_the_other_half(tmp_path, runs):
    path, truth = refused_behind_proxy(tmp_path)
    one, doc = analysed(path, 1)
    two, _ = analysed(path, 2)
    assert runs == [("merged", 2, 1)]          # the browser's leg and the stray here, the dial there
    assert two == one
    # the truth, from how the capture was built: one chain, the browser's leg then the refused dial
    assert len(doc["chains"]) == 1
    hops = {h["id"]: h for h in doc["handshakes"]}
    legs = [hops[i] for i in doc["chains"][0]["hops"]]
    assert [leg["client"] for leg in legs] == [f"{CLIENT}:{truth['down'][1]}", f"{PROXY}:{truth['up'][1]}"]
    assert legs[1]["request"] is None
    assert doc["stats"]["unlinked_attempts"] == 1          # the stray dial


def test_ids_follow_the_requests_across_halves(tmp_path, runs):
    """Eight upgrades, their halves alternating, each answered after all were sent (so the
    connections end in the reverse order): ids must still be 1..8 in the order of the requests."""
    cap = Capture()
    conns = []
    for n in range(8):
        port = 50010 + n                   # parity alternates with n
        c = cap.conn((CLIENT, port), (PROXY, 5173)).open()
        c.send(True, ws_request("/ws", key=new_key(100 + n)))
        conns.append((c, port))
    for n, (c, _port) in reversed(list(enumerate(conns))):
        c.send(False, ws_response(new_key(100 + n), status=403, reason="Forbidden"))
        c.fin(False)
        c.fin(True)
    path = cap.write(tmp_path / "ids.pcap")
    one, doc = analysed(path, 1)
    two, _ = analysed(path, 2)
    assert runs and runs[0] == ("merged", 4, 4)
    assert two == one
    by_id = sorted(doc["handshakes"], key=lambda h: h["id"])
    assert [h["client"] for h in by_id] == [f"{CLIENT}:{50010 + n}" for n in range(8)]


# -- bounds counted over both halves: one process instead ------------------------------------
@pytest.mark.parametrize("limits", [Limits(max_flows=6), Limits(max_handshakes=3)], ids=["flows", "handshakes"])
def test_a_bound_over_both_halves_means_one_process(bench_capture, runs, limits):
    one, doc = analysed(bench_capture, 1, limits)
    two, _ = analysed(bench_capture, 2, limits)
    assert runs == [("alone",)]
    assert two == one
    assert doc["stats"]["limits_hit"]                      # the bound was really met


def test_too_many_bare_attempts_means_one_process(tmp_path, runs, monkeypatch):
    path, _ = refused_behind_proxy(tmp_path)
    one, _ = analysed(path, 1)
    monkeypatch.setattr(shards.ShardLog, "MAX_ATTEMPTS", 0)
    two, _ = analysed(path, 2)
    assert runs == [("alone",)]
    assert two == one


# -- failures --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["exception", "sigkill"])
def test_a_failed_child_means_one_process_and_one_line(bench_capture, runs, monkeypatch, capsys, how):
    one, _ = analysed(bench_capture, 1)

    def broken(pipe):
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)      # as the OOM killer would
        raise RuntimeError("the child fails")
    monkeypatch.setattr(shards, "export_half", broken)
    capsys.readouterr()
    two, _ = analysed(bench_capture, 2)
    assert runs == [("alone",)]
    assert two == one
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "analysed again in one process (same result)" in err[0]
    assert ("signal 9" in err[0]) == (how == "sigkill")
    assert ("RuntimeError: the child fails" in err[0]) == (how == "exception")


def test_a_half_out_of_memory_means_one_process_and_no_line(bench_capture, runs, monkeypatch, capsys):
    """Running out of memory is a bound met, like the others: one process analyses the capture, and
    only says something if it runs out of memory too (then its own one line, exit 2)."""
    one, _ = analysed(bench_capture, 1)

    def too_big(pipe):
        raise MemoryError
    monkeypatch.setattr(shards, "export_half", too_big)
    capsys.readouterr()
    two, _ = analysed(bench_capture, 2)
    assert runs == [("alone",)]
    assert two == one
    assert capsys.readouterr().err.strip() == ""


def test_a_failure_here_leaves_no_child(bench_capture, monkeypatch):
    from wscap.document import forking
    children: list = []
    init = forking.Child.__init__

    def spy(self, pid, what):
        children.append(pid)
        init(self, pid, what)
    finish = Pipeline.finish

    def broken(self):
        if self.shard == 0:
            raise RuntimeError("this process fails")
        return finish(self)
    monkeypatch.setattr(forking.Child, "__init__", spy)
    monkeypatch.setattr(Pipeline, "finish", broken)
    with pytest.raises(RuntimeError, match="this process fails"):
        analysed(bench_capture, 2)
    assert len(children) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(children[0], os.WNOHANG)                # reaped: neither running nor a zombie


# -- when it is used -------------------------------------------------------------------------
def test_when_two_halves_are_used(bench_capture, tmp_path):
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(Path(bench_capture).read_bytes()))
    assert shards.wanted([bench_capture], Options(judge_processes=2))
    assert not shards.wanted([bench_capture], Options(judge_processes=1))
    assert not shards.wanted([bench_capture, bench_capture], Options(judge_processes=2))
    assert not shards.wanted([str(gz)], Options(judge_processes=2))      # would be inflated twice
    assert not shards.wanted([bench_capture], Options(judge_processes=2, keylog="/dev/null"))
    # by default only a large capture, with two usable CPUs
    assert os.path.getsize(bench_capture) < shards.MIN_BYTES
    assert not shards.wanted([bench_capture], Options())
    r, w = os.pipe()
    try:
        assert not shards.wanted([f"/dev/fd/{r}"], Options(judge_processes=2))   # cannot be read twice
    finally:
        os.close(r)
        os.close(w)


def test_a_file_still_growing_is_read_to_the_same_length_by_both(tmp_path, bench_capture):
    """tcpdump may still be writing the file: both halves read the length it had when the
    analysis began, so the document is one process's on that much of it."""
    from wscap.engine import analyze
    path = tmp_path / "growing.pcap"
    data = Path(bench_capture).read_bytes()
    path.write_bytes(data)
    one, _ = analysed(str(path), 1)
    more = data[24:]                                         # the same records again, later in the file

    def feed(pipe, p, size, progress, poll):
        if pipe.shard == 0:
            with open(p, "ab") as f:                         # written while the halves read
                f.write(more)
        return analyze._feed_half(pipe, p, size, progress, poll)
    pipe = shards.run(str(path), Options(judge_processes=2), feed, None)
    assert pipe is not None and os.path.getsize(path) == 2 * len(data) - 24
    out = io.StringIO()
    pipe.write_json(out)
    assert out.getvalue() == one


def test_the_progress_bar_thread_does_not_stop_the_halves(bench_capture, runs):
    """On a terminal, wscap's progress bar runs in a thread of its own; it pauses around fork
    (cli/termui.py), so the halves and the judging helper still run. Any other thread: no fork."""
    import threading

    from wscap.cli.termui import Progress
    from wscap.document import split
    one, _ = analysed(bench_capture, 1)
    with Progress([bench_capture], enabled=True) as bar:
        assert bar._thread is not None and bar._thread.is_alive()
        assert split.may_fork()
        two, _ = analysed(bench_capture, 2)
    assert runs and runs[0][0] == "merged"
    assert two == one
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not split.may_fork()
        assert not shards.wanted([bench_capture], Options(judge_processes=2))
    finally:
        stop.set()
        other.join()
