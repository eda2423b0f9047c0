"""Chains judged in a forked helper (document/split.py) give the bytes one process gives.

The reference is the same capture written with the helper off (`judge_processes=1`), the path
every other test holds to the truth; the capture is the bench generator's tiny preset (40 chains
of one to three legs, bulk and HTTP around them)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from builders import bench_capture

from wscap.document import build, split
from wscap.engine.analyze import run_pipeline
from wscap.engine.core import Options

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    return bench_capture(str(tmp_path_factory.mktemp("split")), seed=7)


def written(path: str, processes: int) -> tuple[str, dict]:
    pipe = run_pipeline([path], Options(judge_processes=processes))
    out = io.StringIO()
    summary = pipe.write_json(out)
    return out.getvalue(), summary


@pytest.fixture(scope="module")
def serial(capture) -> tuple[str, dict]:
    return written(capture, 1)


@pytest.fixture
def helpers(monkeypatch) -> list:
    """Every helper started, as `SplitJudging.start` returned it."""
    seen: list = []
    start = split.SplitJudging.start.__func__

    def spy(cls, *a, **k):
        h = start(cls, *a, **k)
        seen.append(h)
        return h
    monkeypatch.setattr(split.SplitJudging, "start", classmethod(spy))
    return seen


def test_the_helper_judges_the_later_chains_and_the_bytes_do_not_change(capture, serial, helpers):
    text, summary = written(capture, 2)
    assert len(helpers) == 1 and helpers[0] is not None
    n_chains = serial[1]["chains"]
    assert n_chains >= 10
    assert 0 < helpers[0].first < n_chains           # both processes judged some
    assert text == serial[0]
    assert summary == serial[1]


def test_a_failed_helper_is_replaced_by_judging_here(capture, serial, helpers, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("helper fails")
    monkeypatch.setattr(split, "_judge_rest", broken)
    results = []
    result = split.SplitJudging.result

    def spy(self):
        r = result(self)
        results.append(r)
        return r
    monkeypatch.setattr(split.SplitJudging, "result", spy)
    text, summary = written(capture, 2)
    assert helpers[0] is not None and results == [None]       # it ran, failed, and was not used
    assert text == serial[0] and summary == serial[1]
    # not silent: one line says so (the helper exits 1 after the exception)
    err = capsys.readouterr().err
    assert "chain-judging helper process exited with status 1" in err and err.count("\n") == 1


def test_a_killed_helper_is_replaced_by_judging_here(capture, serial, helpers, monkeypatch, capsys):
    # as the kernel's OOM killer would end it: no exception, no output, a signal
    monkeypatch.setattr(split, "_judge_rest", lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
    text, summary = written(capture, 2)
    assert helpers[0] is not None
    assert text == serial[0] and summary == serial[1]
    assert f"killed by signal {int(signal.SIGKILL)}" in capsys.readouterr().err


def test_the_helper_does_not_outlive_a_failure_here(capture, helpers, monkeypatch):
    judge_range = build.Assembly._judge_range

    def fails_here(self, *a, **k):
        if helpers and helpers[0] is not None:
            raise RuntimeError("judging here failed")
        return judge_range(self, *a, **k)
    monkeypatch.setattr(build.Assembly, "_judge_range", fails_here)
    with pytest.raises(RuntimeError, match="judging here failed"):
        written(capture, 2)
    pid = helpers[0].pid
    with pytest.raises(ChildProcessError):          # killed and reaped: no zombie left behind
        os.waitpid(pid, os.WNOHANG)


def test_by_default_small_documents_stay_in_one_process(capture, serial, helpers):
    # 40 chains, below MIN_CHAINS: the fork would cost more than it saves
    assert serial[1]["chains"] < split.SplitJudging.MIN_CHAINS
    text, _ = written(capture, 0)
    assert helpers == [None] and text == serial[0]


def test_by_default_large_documents_use_a_second_cpu(capture, serial, helpers, monkeypatch):
    if split.usable_cpus() < 2:
        pytest.skip("one usable CPU: the default never forks")
    monkeypatch.setattr(split.SplitJudging, "MIN_CHAINS", 8)
    text, _ = written(capture, 0)
    assert helpers[0] is not None and text == serial[0]


def test_cli_j1_and_j2_write_the_same_bytes(capture):
    def run(*args: str) -> bytes:
        p = subprocess.run([sys.executable, "-m", "wscap", "analyze", "--format", "json", *args, capture],
                           capture_output=True, timeout=120)
        assert p.returncode in (0, 1), p.stderr
        return p.stdout
    one = run("-j", "1")
    assert one and run("-j", "2") == one and run() == one
