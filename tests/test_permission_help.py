"""The "no permission" message gives commands that work for the way wscap was installed (issue 15).

sudo resets PATH to its secure_path and drops PYTHONPATH, so `sudo wscap` misses a venv
and `sudo python3 -m wscap` misses both a venv and a checkout. The message must name
this installation's own executable by absolute path, and the capability grant must go
to the capture helper (wscap-capture or tcpdump), never to the Python interpreter.

The commands printed are run for real (as root, with sudo's environment: secure_path,
no PYTHONPATH, cwd /): from this checkout, and from a real venv with wscap installed
into it (pip's layout: package in site-packages, bin/wscap with the venv's python).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from netns import wscap_env  # noqa: E402

from wscap.capture import privilege  # noqa: E402

ROOT = os.geteuid() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # Debian's sudo default


def _drop_capture_caps() -> None:
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (12, 13):  # CAP_NET_ADMIN, CAP_NET_RAW out of the bounding set
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


def _sudo_line(msg: str) -> list[str]:
    line = next(ln for ln in msg.splitlines() if "run it with sudo:" in ln)
    argv = shlex.split(line.split("run it with sudo:", 1)[1])
    assert argv[0] == "sudo"
    return argv[1:]


def _setcap_target(msg: str) -> str:
    line = next(ln for ln in msg.splitlines() if "setcap cap_net_raw,cap_net_admin=eip" in ln)
    return shlex.split(line)[-1]


def _exe(argv: list[str]) -> str:
    """The program a printed command runs (past `env VAR=...`)."""
    i = 0
    if argv[0] == "env":
        i = 1
        while "=" in argv[i]:
            i += 1
    return argv[i]


def _as_sudo_would(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": SECURE_PATH, "HOME": "/root", "LANG": "C.UTF-8"})


def test_message_commands_resolve_and_never_setcap_python():
    msg = privilege.permission_help(argv=["/x/wscap/__main__.py", "live", "--iface", "lo"])
    argv = _sudo_line(msg)
    exe = _exe(argv)
    assert os.path.isabs(exe) and os.access(exe, os.X_OK), exe
    assert argv[-2:] == ["--iface", "lo"] and "live" in argv
    target = _setcap_target(msg)
    assert os.path.isabs(target) and os.path.isfile(target) and os.access(target, os.X_OK)
    assert not os.path.basename(os.path.realpath(target)).startswith("python")
    helper, name = privilege.capture_helper()
    assert target == helper
    if name == "tcpdump":
        assert target == os.path.realpath(shutil.which("tcpdump"))
        assert "--backend tcpdump" in msg      # the grant only helps the backend that runs tcpdump
    assert "python" not in msg.split("setcap", 1)[1].splitlines()[0]


def test_command_for_checkout_passes_pythonpath():
    # This test process imports wscap through PYTHONPATH (tests run from the checkout).
    cmd = privilege.wscap_command(["/x/wscap/__main__.py"], environ={"PYTHONPATH": REPO},
                                  executable=sys.executable)
    assert cmd == ["env", f"PYTHONPATH={REPO}", os.path.abspath(sys.executable), "-m", "wscap"]
    # A console script that was run by its path is named by that path.
    beside = os.path.join(os.path.dirname(sys.executable), "wscap")
    if os.access(beside, os.X_OK):
        assert privilege.wscap_command([beside], environ={}) == [beside]


def test_pipx_style_link_is_named_as_run(tmp_path):
    """pipx puts a symlink ~/.local/bin/wscap → ~/.local/pipx/venvs/wscap/bin/wscap: the message names the
    link that was run (its absolute path), and it resolves to an executable."""
    venv_bin = tmp_path / "pipx" / "venvs" / "wscap" / "bin"
    venv_bin.mkdir(parents=True)
    real = venv_bin / "wscap"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    local_bin = tmp_path / ".local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "wscap").symlink_to(real)
    got = privilege.wscap_command([str(local_bin / "wscap"), "live"], environ={"PATH": str(local_bin)},
                                  executable=str(venv_bin / "python"))
    assert got == [str(local_bin / "wscap")] and os.access(got[0], os.X_OK)
    # run by name through PATH (argv[0] without a slash): found in PATH, by absolute path
    got = privilege.wscap_command(["wscap", "live"], environ={"PATH": str(local_bin)},
                                  executable=str(venv_bin / "python"))
    assert got == [str(local_bin / "wscap")]


@pytest.mark.skipif(not ROOT, reason="needs root to capture with the printed command")
def test_printed_command_from_checkout_works_under_sudo_env():
    r = subprocess.run([sys.executable, "-m", "wscap", "live", "--iface", "lo", "--duration", "1", "--no-docker"],
                       capture_output=True, text=True, timeout=120, env=wscap_env(), cwd=REPO,
                       preexec_fn=_drop_capture_caps)
    assert r.returncode == 2 and "run it with sudo:" in r.stderr, r.stderr
    argv = _sudo_line(r.stderr.replace("wscap: ", "", 1))
    assert argv[-6:] == ["live", "--iface", "lo", "--duration", "1", "--no-docker"]
    ok = _as_sudo_would(argv)
    assert ok.returncode == 0, ok.stderr
    assert "capturing on lo" in ok.stderr


@pytest.mark.skipif(not ROOT, reason="needs root to capture with the printed command")
def test_printed_command_from_a_venv_works_under_sudo_env(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"cannot make a venv here: {r.stderr.strip()[-200:]}")
    # pip's layout: the package in the venv's site-packages and a console script whose shebang is
    # the venv's python. pip itself needs the `wheel` package to build wscap, which this
    # machine may lack (offline), so the layout is made as pip would make it.
    site = next((venv / "lib").glob("python3*/site-packages"))
    shutil.copytree(os.path.join(REPO, "wscap"), site / "wscap", ignore=shutil.ignore_patterns("__pycache__"))
    script = venv / "bin" / "wscap"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom wscap.cli.main import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    script = venv / "bin" / "wscap"
    assert script.exists()
    env = {k: v for k, v in wscap_env().items() if k != "PYTHONPATH"}
    r = subprocess.run([str(script), "live", "--iface", "lo", "--duration", "1", "--no-docker"], capture_output=True,
                       text=True, timeout=120, env=env, cwd=str(tmp_path), preexec_fn=_drop_capture_caps)
    assert r.returncode == 2 and "run it with sudo:" in r.stderr, r.stderr
    argv = _sudo_line(r.stderr.replace("wscap: ", "", 1))
    assert argv[0] == str(script)                     # the venv's own script, by absolute path
    ok = _as_sudo_would(argv)
    assert ok.returncode == 0, ok.stderr
    assert "capturing on lo" in ok.stderr
    # and the interpreter route the old message suggested does not find this install
    bad = _as_sudo_would(["python3", "-c", "import wscap; print(wscap.__file__)"])
    assert bad.returncode != 0 or not bad.stdout.startswith(str(venv))
