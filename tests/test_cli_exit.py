"""The program leaves without tearing the interpreter down (wscap.cli.main.run): what it wrote is
all there, its exit code is the command's, and atexit handlers still run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from builders import Capture, proxied_chain
from wscap.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _captures(tmp_path: Path) -> tuple[str, str]:
    ok = Capture()
    for k in range(40):                  # a document of some size: more than one pipe buffer
        proxied_chain(ok, k)
        ok.wait(1)
    bad = Capture()
    proxied_chain(bad, 0, backend_status=403, origin_rewrite=True)
    return ok.write(tmp_path / "ok.pcap"), bad.write(tmp_path / "bad.pcap")


def _program(*args: str, code: str = "from wscap.cli.main import run; run()") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import sys; sys.argv[0] = 'wscap'; {code}", *args],
                          capture_output=True, cwd=ROOT, timeout=120)


def test_the_output_is_whole_and_the_code_is_the_commands(tmp_path):
    ok, bad = _captures(tmp_path)
    # -j 2: the judging helper's texts are written as the bytes it wrote (a real standard output);
    # in process (CliRunner's output is no standard output) everything goes through text
    for path, want, jobs in ((ok, 0, "1"), (ok, 0, "2"), (bad, 1, "2")):
        in_process = CliRunner().invoke(main, ["analyze", "-j", jobs, "--format", "json", path])
        assert in_process.exit_code == want
        done = _program("analyze", "-j", jobs, "--format", "json", path)
        assert done.returncode == want, done.stderr
        assert done.stdout.decode() == in_process.output        # flushed, every byte
        assert done.stdout.endswith(b"}\n")
    missing = _program("analyze", str(tmp_path / "missing.pcap"))
    assert missing.returncode == 2 and b"no such file" in missing.stderr


def test_python_m_wscap_takes_the_same_way_out(tmp_path):
    ok, _bad = _captures(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wscap", "analyze", "--format", "json", ok], capture_output=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.endswith(b"}\n")


def test_atexit_handlers_still_run(tmp_path):
    ok, _bad = _captures(tmp_path)
    mark = tmp_path / "ran"
    done = _program("analyze", ok, code=(
        "import atexit; from wscap.cli.main import run; "
        f"atexit.register(lambda: open({str(mark)!r}, 'w').write('ran')); run()"))
    assert done.returncode == 0, done.stderr
    assert mark.read_text() == "ran"


def test_with_another_thread_alive_it_leaves_the_usual_way(tmp_path):
    ok, _bad = _captures(tmp_path)
    # a non-daemon thread still running when the command returns: the usual exit waits for it
    mark = tmp_path / "joined"
    done = _program("analyze", ok, code=(
        "import threading, time; from wscap.cli.main import run; "
        f"t = threading.Thread(target=lambda: (time.sleep(0.5), open({str(mark)!r}, 'w').write('joined'))); "
        "t.start(); run()"))
    assert done.returncode == 0, done.stderr
    assert mark.read_text() == "joined"
