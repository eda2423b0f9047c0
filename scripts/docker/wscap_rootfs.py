#!/usr/bin/env python3
"""Write the rootfs tarball of the `wscap-base` image from this machine's own files.

No registry is reachable where wscap is built and tested, so the image cannot start
FROM python:3.x-slim. Instead this collects what wscap needs at run time from the
host and `docker import`s it (scripts/docker/build-image):

* the running Python interpreter (at its own path, so it finds its prefix) and its
  standard library without tests, tkinter, idlelib, ensurepip, lib2to3 and the
  static libpython;
* the installed distributions wscap imports at run time (click, h11, hpack,
  httptools, scapy, tabulate: files from their RECORDs);
* tcpdump (the capture backend) and libpcap; the capture helper `wscap-capture`
  (as /usr/local/bin/wscap-capture) when this wscap has one;
* every shared library those ELF files need (`ldd`, transitively), the dynamic
  loader, an ld.so.cache (`ldconfig -r`, so ctypes.util.find_library finds
  libpcap for scapy), and /etc/passwd, /etc/group with root, nobody and tcpdump
  (Debian's tcpdump switches to that user and will not start without it).

usage: wscap_rootfs.py OUT.tar   (prints the interpreter path used, for the Dockerfile)
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile

DISTS = ("click", "h11", "hpack", "httptools", "scapy", "tabulate")
SKIP_STDLIB = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__",
               "site-packages", "dist-packages", "unittest/test", "sqlite3/test", "ctypes/test", "distutils/tests"}
EXTRA_BINS = ("tcpdump",)
ELF_MAGIC = b"\x7fELF"


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def _ldd(path: str) -> list[str]:
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    libs = []
    for ln in r.stdout.splitlines():
        m = re.search(r"=>\s+(/\S+)", ln) or re.match(r"\s*(/\S+)\s+\(", ln)
        if m:
            libs.append(m.group(1))
    return libs


class Root:
    def __init__(self, root: str):
        self.root = root
        self.elves: list[str] = []

    def add(self, src: str, dest: str | None = None) -> None:
        """Copy src (symlinks resolved) to the same path (or dest) inside the root."""
        dest = dest or src
        out = os.path.join(self.root, dest.lstrip("/"))
        if os.path.lexists(out):
            return
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(os.path.realpath(src), out)
        if _is_elf(out):
            self.elves.append(src)

    def link(self, target: str, name: str) -> None:
        out = os.path.join(self.root, name.lstrip("/"))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not os.path.lexists(out):
            os.symlink(target, out)

    def libs(self) -> None:
        """Every library the collected ELF files need, transitively."""
        seen: set[str] = set()
        todo = list(self.elves)
        while todo:
            f = todo.pop()
            for lib in _ldd(f):
                if lib in seen:
                    continue
                seen.add(lib)
                self.add(lib)
                todo.append(lib)


def stdlib_files(stdlib: str):
    for dirpath, dirs, files in os.walk(stdlib):
        rel = os.path.relpath(dirpath, stdlib)
        dirs[:] = [d for d in dirs if d not in SKIP_STDLIB and os.path.normpath(os.path.join(rel, d)) not in SKIP_STDLIB
                   and not d.startswith("config-")]
        for f in files:
            if not f.endswith((".pyc", ".a", ".exe")):
                yield os.path.join(dirpath, f)


def build(out_tar: str) -> str:
    tmp = tempfile.mkdtemp(prefix="wscap-rootfs-")
    try:
        r = Root(tmp)
        exe = os.path.realpath(sys.executable)
        r.add(exe)
        for d in ("/usr/local/bin", "/usr/bin"):
            r.link(exe, f"{d}/python3")
        stdlib = sysconfig.get_paths()["stdlib"]
        for f in stdlib_files(stdlib):
            r.add(f)
        for name in DISTS:
            dist = md.distribution(name)
            for p in dist.files or []:
                src = str(p.locate())
                if "__pycache__" in src or src.endswith(".pyc") or not os.path.isfile(src):
                    continue
                if os.path.isabs(str(p)) or str(p).startswith(".."):
                    continue  # console scripts etc. outside site-packages
                r.add(src)
        helper = _capture_helper()
        if helper:
            # The dedicated capture helper (when this wscap has one) goes into PATH.
            r.add(helper, "/usr/local/bin/wscap-capture")
        for b in EXTRA_BINS:
            path = shutil.which(b) or next((p for p in (f"/usr/bin/{b}", f"/usr/sbin/{b}") if os.path.exists(p)), None)
            if path is None:
                raise SystemExit(f"{b} is not installed here (apt-get install {b})")
            r.add(path, f"/usr/bin/{b}")
        r.libs()
        etc = os.path.join(tmp, "etc")
        os.makedirs(etc, exist_ok=True)
        # Debian's tcpdump drops to user "tcpdump" after opening the capture and refuses to
        # run without it ("Couldn't find user 'tcpdump'"): keep the host's entry.
        users = ["root:x:0:0:root:/root:/bin/false", "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]
        groups = ["root:x:0:", "nogroup:x:65534:"]
        users += [ln for ln in _lines("/etc/passwd") if ln.startswith("tcpdump:")] or \
            ["tcpdump:x:102:105::/nonexistent:/bin/false"]
        gid = users[-1].split(":")[3]
        groups += [ln for ln in _lines("/etc/group") if ln.startswith("tcpdump:")] or [f"tcpdump:x:{gid}:"]
        with open(os.path.join(etc, "passwd"), "w") as f:
            f.write("\n".join(users) + "\n")
        with open(os.path.join(etc, "group"), "w") as f:
            f.write("\n".join(groups) + "\n")
        with open(os.path.join(etc, "ld.so.conf"), "w") as f:
            f.write("/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n/lib64\n/usr/local/lib\n")
        for d in ("tmp", "captures", "proc", "sys", "dev", "run", "var/run"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        os.chmod(os.path.join(tmp, "tmp"), 0o1777)
        os.chmod(os.path.join(tmp, "captures"), 0o1777)
        ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
        if os.path.exists(ldconfig):
            subprocess.run([ldconfig, "-r", tmp], capture_output=True)
        for dirpath, dirs, _files in os.walk(tmp):
            for d in dirs:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p) and d not in ("tmp", "captures"):
                    os.chmod(p, 0o755)   # e.g. /root is 0700 on the host; the image's paths must be readable
        with tarfile.open(out_tar, "w") as t:
            t.add(tmp, arcname=".", filter=_reset_owner)
        return exe
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _capture_helper() -> str | None:
    """wscap.capture.capturer.helper_path() when that module exists and the file is there."""
    try:
        from wscap.capture import capturer  # type: ignore[attr-defined]
        p = capturer.helper_path()
    except Exception:  # noqa: BLE001 - optional
        return None
    return p if p and os.path.isfile(p) else None


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ln.rstrip("\n") for ln in f]
    except OSError:
        return []


def _reset_owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if ti.isfile() and not ti.mode & stat.S_IXUSR:
        ti.mode = 0o644
    return ti


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    print(build(sys.argv[1]))
