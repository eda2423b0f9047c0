"""Build `wscap-capture` (csrc/wscap_capture.c) on first use, into a cache directory keyed by
the source's sha256 so an upgraded wscap never runs a stale binary; say what is missing when it
cannot be built (compiler, libpcap headers). `python -m wscap.capture.capturer --build` runs it."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "wscap_capture.c")

_reason = ""                  # why helper_path() returned None, for unavailable_reason()


def _source_digest() -> str:
    with open(SOURCE, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _safe_dir(path: str) -> bool:
    """A directory we may run a binary from: ours, and nobody else can write to it.

    Matters when wscap runs as root (sudo keeps $HOME or $XDG_CACHE_HOME pointing at a
    user's directory): a binary another user can replace would run as root.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def cache_dirs() -> list[str]:
    """Where the binary is built, in order of preference."""
    out = []
    if os.environ.get("WSCAP_HELPER_DIR"):
        out.append(os.environ["WSCAP_HELPER_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    out.append(os.path.join(xdg, "wscap") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "wscap"))
    out.append(os.path.join(tempfile.gettempdir(), f"wscap-helper-{os.geteuid()}"))
    return out


def _usable_binary(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and os.access(path, os.X_OK))


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _explain_build_failure(out: str) -> str:
    low = out.lower()
    if "pcap.h" in low and ("no such file" in low or "not found" in low or "no include path" in low):
        return "libpcap headers missing (apt install libpcap-dev)"
    if "-lpcap" in low:
        return "libpcap missing (apt install libpcap-dev)"
    first = next((ln.strip() for ln in out.splitlines() if "error" in ln.lower()), out.strip()[:200])
    return f"building wscap-capture failed: {first}"


def _find_built() -> str | None:
    if not os.path.exists(SOURCE):
        return None
    name = f"wscap-capture-{_source_digest()}"
    for d in cache_dirs():
        p = os.path.join(d, name)
        if _usable_binary(p):
            return p
    return None


def helper_path(build: bool = True) -> str | None:
    """Path of a wscap-capture binary built from this wscap's source, or None.

    With build=True a missing binary is compiled (once; concurrent callers wait on a lock
    and the result is renamed into place atomically). None means unavailable; see
    unavailable_reason().
    """
    global _reason
    if not os.path.exists(SOURCE):
        _reason = f"the C source is missing from this installation ({SOURCE})"
        return None
    found = _find_built()
    if found:
        _reason = ""
        return found
    # An installed copy (e.g. /usr/local/bin in wscap's container image, where no compiler is).
    installed = shutil.which("wscap-capture")
    if installed and _usable_binary(installed):
        _reason = ""
        return installed
    if not build:
        return None
    name = f"wscap-capture-{_source_digest()}"
    dirs = cache_dirs()
    cc = _compiler()
    if not cc:
        _reason = "no C compiler (apt install gcc)"
        return None
    last = "no writable cache directory for the helper (set WSCAP_HELPER_DIR)"
    for d in dirs:
        if not _safe_dir(d):
            continue
        target = os.path.join(d, name)
        try:
            lock = os.open(os.path.join(d, ".build.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _usable_binary(target):       # built by someone else while we waited
                _reason = ""
                return target
            tmp = f"{target}.tmp{os.getpid()}"
            try:
                r = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, SOURCE, "-lpcap"],
                                   capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                r = None
                _reason = f"building wscap-capture failed: {e}"
            if r is None or r.returncode != 0:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if r is None:
                    return None
                _reason = _explain_build_failure(r.stderr + r.stdout)
                return None
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
            _reason = ""
            return target
        finally:
            os.close(lock)
    _reason = last
    return None


def unavailable_reason() -> str:
    """Why helper_path() gives None ("" when the helper is available)."""
    if _find_built():
        return ""
    if _reason:                      # the last build attempt's own words
        return _reason
    if not _compiler():
        return "no C compiler (apt install gcc)"
    if not any(os.path.exists(os.path.join(p, "pcap", "pcap.h")) for p in ("/usr/include", "/usr/local/include")):
        return "libpcap headers missing (apt install libpcap-dev)"
    return "not built yet (python -m wscap.capture.capturer --build)"
