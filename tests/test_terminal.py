"""The terminal experience, as a user runs `wscap` in a shell: answer first, fits 80 columns,
colour rules, one-line errors with exit 2, filters that explain themselves, `-` for stdin and
stdout, tcpdump's short flags, slice formats, redaction on screen, progress by bytes.

Captures are built with tests/builders.py (so the expected chains, causes and secrets are known
from how they were built) or are the bundled pcaps/ (the three-hop nginx → Vite → backend one).
Commands run as subprocesses: a real stdout/stderr that is not a terminal, as in a pipe.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import Capture, proxied_chain, ws_request, ws_response
from wscap.capture.files import ReadResult, read_frames
from wscap.judge.verdict import ADVICE

ROOT = Path(__file__).resolve().parents[1]
THREE_HOP = ROOT / "pcaps" / "nginx-vite-backend.pcap"
SAMPLE = ROOT / "pcaps" / "sample-proxy.pcap"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def wscap(*args, stdin: bytes | None = None, env: dict | None = None, cols: int | None = 80):
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    e["PYTHONPATH"] = str(ROOT)
    if cols:
        e["COLUMNS"] = str(cols)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "wscap", *map(str, args)], input=stdin, capture_output=True,
                       env=e, timeout=300)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    """ok.pcap: one healthy two-hop chain. bad.pcap: chain 1 healthy, chain 2 origin-rejected at hop 1."""
    d = tmp_path_factory.mktemp("caps")
    ok = Capture()
    proxied_chain(ok, 0)
    bad = Capture()
    proxied_chain(bad, 0)
    bad.wait(2)
    proxied_chain(bad, 1, backend_status=403, origin_rewrite=True)
    return ok.write(d / "ok.pcap"), bad.write(d / "bad.pcap")


def squash(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


# ---- the answer first, in 80 columns ---------------------------------------------------------

@pytest.mark.parametrize("verbose", [[], ["-v"]])
@pytest.mark.parametrize("cap", [THREE_HOP, SAMPLE])
def test_fits_80_columns(cap, verbose):
    rc, out, err = wscap("analyze", *verbose, cap)
    assert rc in (0, 1) and out
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert wide == []


def test_verdict_and_advice_come_before_the_table(caps):
    rc, out, _ = wscap("analyze", caps[1])
    assert rc == 1
    lines = out.splitlines()
    broken = next(i for i, line in enumerate(lines) if "BROKEN origin-rejected at hop 1" in line)
    table = next(i for i, line in enumerate(lines) if line.split()[:2] == ["id", "client"])
    assert broken < table
    # The fix, on screen: "next:" and the cause's advice (wrapped, so compared without line breaks).
    block = squash("\n".join(lines[broken:table]))
    assert "next: " + " ".join(ADVICE["origin-rejected"].split()) in block
    assert not any(re.search(r"\[\d+\] ok\s+ok\b", line) for line in lines)   # no doubled label


def test_breaking_row_first_expected_folded(caps):
    _, out, _ = wscap("analyze", caps[1])
    # builders.proxied_chain: the proxy rewrites Origin (breaking) and adds x-forwarded-* (expected).
    assert re.search(r"breaking\s+origin\s+http://localhost:5173 → http://meetsonar-backend:5000", out)
    # Expected, by construction: Host rewritten, 4 names lower-cased by http-proxy (Connection, Upgrade,
    # Sec-WebSocket-Key/-Version), 3 x-forwarded-* added = 8; Origin rewritten = the 1 breaking row.
    assert "x-forwarded-for" not in out and "1 breaking, 8 expected (expected ones: -v)" in out
    _, vout, _ = wscap("analyze", "-v", caps[1])
    rows = [line.split()[:2] for line in vout.splitlines() if line.strip().startswith(("breaking", "expected"))]
    assert ["breaking", "origin"] == rows[0] and ["expected", "x-forwarded-for"] in rows


def test_advice_once_per_cause(tmp_path):
    cap = Capture()
    proxied_chain(cap, 0, backend_status=403, origin_rewrite=True)
    cap.wait(2)
    proxied_chain(cap, 1, backend_status=403, origin_rewrite=True)
    rc, out, _ = wscap("analyze", cap.write(tmp_path / "two.pcap"), cols=None)
    assert rc == 1 and out.count("BROKEN origin-rejected at hop 1") == 2
    assert out.count(ADVICE["origin-rejected"]) == 1 and "next: as for chain 1 above." in out
    assert "chains: 2, 2 broken: origin-rejected 2" in out


def test_colour_rules(caps):
    bad = caps[1]
    _, plain, _ = wscap("analyze", bad)                       # not a terminal: no colour
    assert "\x1b[" not in plain
    _, forced, _ = wscap("analyze", bad, env={"FORCE_COLOR": "1"})
    broken_line = next(line for line in forced.splitlines() if "BROKEN" in line)
    assert "\x1b[31m" in broken_line                          # BROKEN in red
    origin_row = next(line for line in forced.splitlines() if "breaking" in line and "origin" in line)
    assert origin_row.startswith("\x1b[31m")                  # the breaking diff row stands out
    assert ANSI.sub("", forced) == plain                      # colour adds nothing but escapes
    _, nc, _ = wscap("analyze", bad, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in nc                                  # NO_COLOR wins over FORCE_COLOR
    _, flag, _ = wscap("analyze", "--no-color", bad, env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in flag
    _, always, _ = wscap("analyze", "--color", "always", bad, env={"NO_COLOR": "1"})
    assert "\x1b[31m" in always                               # an explicit --color always wins


def test_piped_output_is_not_wrapped_without_columns(caps):
    """Without COLUMNS and without a terminal, each sentence stays on one line (grep-able)."""
    _, out, _ = wscap("analyze", caps[1], cols=None)
    assert any(line.strip().startswith("next: " + ADVICE["origin-rejected"][:60]) and
               line.rstrip().endswith(ADVICE["origin-rejected"][-30:]) for line in out.splitlines())


# ---- one-line errors, exit 2 -----------------------------------------------------------------

def one_line_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_output_paths_fail_in_one_line(caps, tmp_path):
    bad = caps[1]
    e = one_line_error(*wscap("report", bad, "-o", tmp_path / "missing" / "r.md"))
    assert "does not exist" in e
    e = one_line_error(*wscap("slice", bad, "--chain", "2", "-o", tmp_path / "missing" / "s.pcap"))
    assert "does not exist" in e
    one_line_error(*wscap("report", bad, "-o", tmp_path))                       # a directory
    # Fails only when written (procfs refuses the write even to root): caught at write time.
    e = one_line_error(*wscap("report", bad, "-o", "/proc/version"))
    assert "/proc/version" in e
    assert not (tmp_path / "missing").exists()


def test_missing_file_is_one_line(tmp_path):
    rc, out, err = wscap("analyze", tmp_path / "nope.pcap")
    assert one_line_error(rc, out, err) == f"wscap: {tmp_path / 'nope.pcap'}: no such file"
    assert out == ""


@pytest.mark.parametrize("args", [["--max-flows", "0"], ["--max-flows", "-5"], ["--timeout", "-1"],
                                  ["--timeout", "0"], ["--max-dns", "-1"], ["--max-head-bytes", "0"],
                                  ["--chain", "0"]])
def test_bounds_refused(caps, args):
    rc, out, err = wscap("analyze", *args, caps[0])
    assert rc == 2 and "Traceback" not in err and "Invalid value" in err and out == ""


@pytest.mark.parametrize("args", [["--timeout", "-1"], ["--duration", "0"], ["--ring-size", "-1"],
                                  ["--port", "0"], ["--port", "70000"]])
def test_live_bounds_refused(args):
    rc, out, err = wscap("live", *args)
    assert rc == 2 and "Traceback" not in err and "Invalid value" in err


# ---- filters and exit codes from the filtered view --------------------------------------------

def test_filters_explain_themselves(caps):
    ok, bad = caps
    e = one_line_error(*wscap("analyze", "--chain", "99", bad))
    assert e == "wscap: no chain 99; chains: 1–2"
    rc, out, _ = wscap("analyze", "--chain", "1", bad)              # the healthy chain of a broken capture
    assert rc == 0 and "BROKEN" not in out
    rc, out, _ = wscap("analyze", "--chain", "2", bad)
    assert rc == 1 and "BROKEN origin-rejected" in out
    e = one_line_error(*wscap("analyze", "--host", "nomatch", bad))
    assert "--host 'nomatch'" in e and "localhost:5173" in e and "meetsonar-backend:5000" in e
    rc, out, _ = wscap("analyze", "--host", "localhost*", bad)
    assert rc == 1
    rc, out, _ = wscap("analyze", "--only-broken", ok)             # nothing broken is an answer
    assert rc == 0
    rc, out, _ = wscap("analyze", "--format", "json", "--chain", "1", bad)
    assert rc == 0 and [c["id"] for c in json.loads(out)["chains"]] == [1]
    e = one_line_error(*wscap("slice", bad, "--chain", "7", "-o", "-"))
    assert e.endswith("chains: 1–2")


# ---- - for stdin and stdout; tcpdump's short flags --------------------------------------------

def causes(doc_text: str) -> list[str]:
    return [c["verdict"]["cause"] for c in json.loads(doc_text)["chains"]]


def test_stdin_and_stdout(caps, tmp_path):
    bad = caps[1]
    data = Path(bad).read_bytes()
    rc, out, _ = wscap("analyze", "--format", "json", "-", stdin=data)
    assert rc == 1 and causes(out) == ["ok", "origin-rejected"]
    assert json.loads(out)["source"][0]["path"] == "-"
    rc, out, _ = wscap("analyze", "--format", "json", "/dev/stdin", stdin=data)   # a pipe: not seekable
    assert rc == 1 and causes(out) == ["ok", "origin-rejected"]
    rc, out, _ = wscap("analyze", "--format", "json", "-r", bad)
    assert rc == 1 and causes(out) == ["ok", "origin-rejected"]
    # report -o -: the Markdown on stdout; slice - -o -: a pcap on stdout, read back through stdin.
    rc, out, err = wscap("report", bad, "-o", "-")
    assert rc == 1 and out.startswith("# ") and "origin-rejected" in out and "wrote stdout" in err
    r = subprocess.run([sys.executable, "-m", "wscap", "slice", "-", "--chain", "2", "-o", "-"], input=data,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0 and r.stdout[:4] == struct.pack("<I", 0xA1B2C3D4)
    rc, out, _ = wscap("analyze", "--format", "json", "-", stdin=r.stdout)
    assert causes(out) == ["origin-rejected"]
    assert not Path("-").exists()


def test_live_short_flags_keep_tcpdump_meanings():
    e = one_line_error(*wscap("live", "-p", "8080"))
    assert "--no-promisc" in e and "--port 8080" in e
    e = one_line_error(*wscap("live", "-w", "-"))
    assert "--write -" in e
    _, out, _ = wscap("live", "--help", cols=200)
    for short in ("-p, --no-promisc", "-w, --write", "-i, --iface", "-c, --count", "-s, --snaplen", "-Z, --user"):
        assert short in out, short
    assert not re.search(r"-p, --port", out)


# ---- slice formats ---------------------------------------------------------------------------

def frames(path) -> list[tuple[int, bytes]]:
    return [(f.ts_ns, f.data) for f in read_frames(str(path), ReadResult(path=str(path)))]


def test_slice_follows_extension_or_keeps_input_format(caps, tmp_path):
    bad = caps[1]
    assert wscap("slice", bad, "--chain", "2", "-o", tmp_path / "a.pcap")[0] == 0
    assert wscap("slice", bad, "--chain", "2", "-o", tmp_path / "a.pcapng")[0] == 0
    assert (tmp_path / "a.pcap").read_bytes()[:4] == struct.pack("<I", 0xA1B2C3D4)
    assert (tmp_path / "a.pcapng").read_bytes()[:4] == struct.pack("<I", 0x0A0D0D0A)
    want = frames(tmp_path / "a.pcap")
    assert want and frames(tmp_path / "a.pcapng") == want
    # A pcapng input and a name without a known extension: the input's format is kept.
    assert wscap("slice", tmp_path / "a.pcapng", "--chain", "1", "-o", tmp_path / "again.cut")[0] == 0
    assert (tmp_path / "again.cut").read_bytes()[:4] == struct.pack("<I", 0x0A0D0D0A)
    assert frames(tmp_path / "again.cut") == want


# ---- redaction on screen ---------------------------------------------------------------------

def test_terminal_output_is_redacted_by_default(tmp_path):
    cap = Capture()
    down = cap.conn(("172.18.0.1", 50000), ("172.18.0.2", 5173)).open()
    secret_token, secret_cookie = "tok3nSECRETvalue42", "c00kieSECRETvalue42"
    down.send(True, ws_request(f"/?token={secret_token}", extra=[("Cookie", f"sid={secret_cookie}")]))
    down.send(False, ws_response())
    path = cap.write(tmp_path / "secret.pcap")
    rc, out, _ = wscap("analyze", path)
    assert rc == 0 and "/?token=" in out and secret_token not in out
    rc, out, _ = wscap("analyze", "-v", path)
    assert secret_token not in out and secret_cookie not in out
    assert "Cookie: sid=[redacted sha256:" in out
    _, out, _ = wscap("analyze", "-v", "--no-redact", path)
    assert secret_token in out and secret_cookie in out


# ---- progress ----------------------------------------------------------------------------------

def test_progress_reads_offsets_of_children(tmp_path):
    """The bar's source: the input's file offset in /proc, here held by a child process."""
    from wscap.cli.termui import Progress
    f = tmp_path / "big.pcap"
    f.write_bytes(b"\0" * 100_000)
    child = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1],'rb'); f.read(40000); "
                              "print('ready', flush=True); time.sleep(60)", str(f)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        p = Progress([str(f)], enabled=True)
        assert p.total == 100_000
        # Buffered reads may read ahead: at least what was asked, at most the file.
        assert 40_000 <= p.sample() <= 100_000
    finally:
        child.kill()
        child.wait()


def test_no_progress_when_stderr_is_not_a_terminal(caps):
    rc, out, err = wscap("analyze", caps[0])
    assert rc == 0 and err == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture on lo needs root (CAP_NET_RAW)")
def test_live_text_is_redacted_by_default(tmp_path):
    """`wscap live` on loopback: Vite's HMR `?token=` must not be printed unless --no-redact."""
    import signal
    import socket
    import threading
    secret = "hmrSECRETtoken123"

    def serve(srv):
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
            conn.sendall(ws_response())
            time.sleep(0.5)

    outs = {}
    for mode in ("default", "--no-redact"):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        args = [sys.executable, "-m", "wscap", "live", "-i", "lo", "--port", str(port), "--no-docker",
                "--timeout", "1", "--duration", "60"] + ([mode] if mode != "default" else [])
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            line = p.stderr.readline()
            if "capturing on" not in line:
                p.kill()
                pytest.skip(f"live capture unavailable here: {line.strip()}")
            time.sleep(1.0)                       # the writer's first poll (generous on a loaded machine)
            t = threading.Thread(target=serve, args=(srv,), daemon=True)
            t.start()
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(ws_request(f"/?token={secret}", host=f"127.0.0.1:{port}"))
            c.recv(4096)
            time.sleep(0.3)
            c.close()
            t.join(5)
            time.sleep(4.0)                       # decided after --timeout 1, printed on the next tick
        finally:
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=60)
            srv.close()
        outs[mode] = out
    assert "/?token=" in outs["default"] and secret not in outs["default"]
    assert f"/?token={secret}" in outs["--no-redact"]


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_listing_formats_carry_the_advice(caps, fmt):
    _, out, _ = wscap("analyze", "--format", fmt, caps[1])
    # A phrase of ADVICE["origin-rejected"] with nothing Markdown or HTML would escape.
    assert "What to check next" in out and "Add the client's origin to the backend" in out.replace("&#x27;", "'")


@pytest.mark.skipif(__import__("shutil").which("tshark") is None, reason="tshark not installed")
def test_progress_bar_on_a_terminal(tmp_path):
    """stderr a pseudo-terminal, --engine tshark on a 15 MB capture (several seconds): the bar is
    drawn by bytes read and erased at the end; stdout (not a terminal) gets the plain table."""
    import pty
    gen = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "gen.py"), "--preset", "small",
                          "--seed", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    [cap] = list(tmp_path.glob("*.pcap"))
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "wscap", "analyze", "--engine", "tshark", str(cap)],
                         stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    out = p.stdout.read().decode()
    p.wait(timeout=300)
    os.close(master)
    text = err.decode("utf-8", "replace")
    assert re.search(r"reading\s+\[[#-]+\]\s+\d+%", text), text[-500:]
    assert text.rstrip().endswith("\x1b[K\x1b[?25h")          # erased, cursor shown again
    assert "chains: 150" in out and "\x1b[" not in out


def test_shell_completion_as_documented():
    """docs/cli.md: eval "$(_WSCAP_COMPLETE=bash_source wscap)"; click answers completions."""
    rc, out, _ = wscap(env={"_WSCAP_COMPLETE": "bash_source"})
    assert rc == 0 and "_wscap_completion()" in out and "complete " in out
    rc, out, _ = wscap(env={"_WSCAP_COMPLETE": "bash_complete", "COMP_WORDS": "wscap analyze --color ",
                            "COMP_CWORD": "3"})
    assert rc == 0 and out.split() == ["plain,auto", "plain,always", "plain,never"]
    rc, out, _ = wscap(env={"_WSCAP_COMPLETE": "bash_complete", "COMP_WORDS": "wscap sl", "COMP_CWORD": "1"})
    assert out.split() == ["plain,slice"]


def test_narrow_table_keeps_addresses_whole(tmp_path):
    """A long target is cut (…) before an address is: the addresses match the ladders above."""
    cap = Capture()
    down = cap.conn(("172.18.0.1", 50000), ("172.18.0.2", 5173)).open()
    target = "/socket.io/?EIO=4&transport=websocket&room=" + "r" * 60
    down.send(True, ws_request(target))
    down.send(False, ws_response())
    rc, out, _ = wscap("analyze", cap.write(tmp_path / "long.pcap"))
    row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert "172.18.0.1:50000" in row and "172.18.0.2:5173" in row and "/socket.io/" in row and "…" in row
    assert len(row) <= 80 and target not in out


def test_colour_cannot_be_driven_by_the_wire():
    """Hostile header values (ESC sequences, CR, C1 controls) stay escaped when wscap adds its
    own colour: the only escape sequences in the output are SGR codes, and none is left after
    removing them."""
    from test_render_hostile import DOC
    from wscap.render.redact import redact_document
    from wscap.render.table import Look, render_table
    for doc in (DOC, redact_document(DOC)):
        text = render_table(doc, verbose=True, look=Look(color=True, width=80))
        assert "\x1b[31m" in text or "\x1b[33m" in text or "\x1b[1m" in text
        assert "\x1b" not in ANSI.sub("", text) and "\r" not in text and "\x9b" not in text


def test_dash_refuses_a_terminal():
    """`analyze -` with stdin a terminal would wait forever; `slice -o -` to a terminal would
    print a binary capture: both are one line and exit 2."""
    import pty
    master, slave = pty.openpty()
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, "-m", "wscap", "analyze", "-"], stdin=slave, capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 2 and "stdin is a terminal" in r.stderr
        r = subprocess.run([sys.executable, "-m", "wscap", "slice", str(SAMPLE), "--chain", "2", "-o", "-"],
                           stdout=slave, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        assert r.returncode == 2 and "refusing to write a capture to the terminal" in r.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_many_captures_are_counted_not_listed(caps, tmp_path):
    files = [caps[0]] * 6 + [str(tmp_path / "gone.pcap")]
    rc, out, err = wscap("analyze", *files, cols=None)
    n = len(frames(caps[0]))
    lines = out.splitlines()
    assert lines[0] == f"7 captures, {6 * n} packets (-v lists them)"
    assert lines[1].startswith(str(tmp_path / "gone.pcap")) and "no such file" in lines[2]
    assert rc == 2 and sum(str(caps[0]) in line for line in lines) == 0
