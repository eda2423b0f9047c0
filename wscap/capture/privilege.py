"""Capture privileges: checking them, entering network namespaces, dropping them.

Live capture needs CAP_NET_RAW (packet sockets) and CAP_NET_ADMIN
(promiscuous mode); entering another network namespace needs CAP_SYS_ADMIN.
wscap does those privileged steps first and then, like `tcpdump -Z`, becomes
the invoking user (SUDO_UID/SUDO_GID under sudo, or `--user`) before it opens
any output file, so it never writes where that user could not.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21
CLONE_NEWNET = 0x40000000


def effective_caps() -> int:
    """The effective capability mask of this process (0 when unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def has_cap(cap: int) -> bool:
    return bool(effective_caps() >> cap & 1)


def can_capture() -> bool:
    """True when this process may open packet sockets (CAP_NET_RAW)."""
    # Not "euid == 0": root without CAP_NET_RAW (containers, bounding sets) cannot.
    caps = effective_caps()
    return bool(caps >> CAP_NET_RAW & 1) if caps or os.geteuid() != 0 else True


def _is_python(path: str) -> bool:
    return os.path.basename(os.path.realpath(path)).startswith(("python", "pypy"))


def wscap_command(argv: list[str] | None = None, environ: dict[str, str] | None = None,
                  executable: str | None = None) -> list[str]:
    """argv that runs this very wscap installation from a root shell (sudo resets PATH to
    secure_path and drops PYTHONPATH, so bare `wscap` or `python3 -m wscap` may not work).

    In order: the console script being run (argv[0]); the `wscap` script beside the
    interpreter (a venv's or pipx's bin/, pyenv's versions/X/bin); the interpreter itself by
    absolute path (not resolved: a venv's bin/python is what finds the venv's packages), with
    PYTHONPATH passed through `env` when that is how this wscap was found.
    """
    argv = sys.argv if argv is None else argv
    env = os.environ if environ is None else environ
    exe = executable or sys.executable
    import wscap
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(wscap.__file__)))
    pypath = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    from_pythonpath = pkg_parent in pypath
    a0 = argv[0] if argv else ""
    if not from_pythonpath:
        if os.path.basename(a0) == "wscap":
            found = a0 if os.sep in a0 else shutil.which(a0, path=env.get("PATH"))
            if found and os.access(found, os.X_OK) and "/shims/" not in found:
                return [os.path.abspath(found)]
        beside = os.path.join(os.path.dirname(os.path.abspath(exe)), "wscap")
        if os.access(beside, os.X_OK):
            return [beside]
        found = shutil.which("wscap", path=env.get("PATH"))
        if found and "/shims/" not in found:
            return [os.path.abspath(found)]
    py = os.path.abspath(exe)
    if from_pythonpath:
        return ["env", f"PYTHONPATH={pkg_parent}", py, "-m", "wscap"]
    return [py, "-m", "wscap"]


def capture_helper() -> tuple[str | None, str]:
    """(path of the program that opens the capture, its name), for a capability grant.

    The capture helper `wscap-capture` when this installation has one
    (wscap.capture.capturer.helper_path()), else tcpdump: a small dedicated binary gets
    the capabilities, never the Python interpreter (which would hand raw sockets to every
    script on the machine).
    """
    try:
        from wscap.capture import capturer  # type: ignore[attr-defined]
        p = capturer.helper_path()
        if p and os.path.exists(p):
            return os.path.realpath(p), "wscap-capture"
    except Exception:  # noqa: BLE001 - the helper module is optional
        pass
    t = shutil.which("tcpdump") or next((p for p in ("/usr/bin/tcpdump", "/usr/sbin/tcpdump")
                                         if os.path.exists(p)), None)
    return (os.path.realpath(t) if t else None), "tcpdump"


def permission_help(what: str = "live capture", argv: list[str] | None = None) -> str:
    """The "no permission" message: what is needed and two commands that work as printed.

    1. sudo with the absolute path of this installation's wscap (secure_path hides venvs,
       pipx's ~/.local/bin and pyenv shims);
    2. a capability grant on the capture helper (wscap-capture, else tcpdump), never on python.
    """
    import shlex
    argv = sys.argv if argv is None else argv
    rest = list(argv[1:])
    args = shlex.join(rest) if rest and rest[0] in ("live", "ifaces") else "live ..."
    cmd = shlex.join(wscap_command(argv))
    helper, hname = capture_helper()
    lines = [
        f"{what} needs root or the capabilities CAP_NET_RAW and CAP_NET_ADMIN.",
        f"  run it with sudo:     sudo {cmd} {args}",
    ]
    if helper and not _is_python(helper):
        lines += [
            f"  or grant them once to the capture helper ({hname}), not to Python:",
            f"                        sudo setcap cap_net_raw,cap_net_admin=eip {shlex.quote(helper)}",
            f"                        then: {cmd} {args if hname != 'tcpdump' else _with_backend(rest, args)}",
            "                        (whoever may execute it can then capture; to limit that: sudo groupadd -f pcap "
            f"&& sudo chgrp pcap {shlex.quote(helper)} && sudo chmod 750 {shlex.quote(helper)}, "
            "then add yourself to pcap)",
        ]
    lines.append("wscap drops back to the invoking user (SUDO_UID) after opening the capture.")
    return "\n".join(lines)


def _with_backend(rest: list[str], args: str) -> str:
    if rest and rest[0] == "live" and "--backend" not in rest:
        import shlex
        return shlex.join(["live", "--backend", "tcpdump", *rest[1:]])
    return args if "--backend" in args else args.replace("live", "live --backend tcpdump", 1)


@dataclass(frozen=True)
class Target:
    """The unprivileged identity to become after opening the capture."""

    uid: int
    gid: int
    name: str
    groups: tuple[int, ...]


def drop_target(user: str | None = None, environ: dict[str, str] | None = None) -> Target | None:
    """Whom to become: --user NAME|UID, else SUDO_UID/SUDO_GID; None to stay as we are.

    Only meaningful when running as root; a non-root process cannot change
    identity and is already "the invoking user".
    """
    env = os.environ if environ is None else environ
    if os.geteuid() != 0:
        return None
    if user:
        try:
            pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, ValueError) as e:
            raise ValueError(f"--user {user}: no such user") from e
        uid, gid, name = pw.pw_uid, pw.pw_gid, pw.pw_name
    elif env.get("SUDO_UID", "").isdigit():
        uid = int(env["SUDO_UID"])
        gid = int(env["SUDO_GID"]) if env.get("SUDO_GID", "").isdigit() else uid
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = env.get("SUDO_USER") or str(uid)
    else:
        return None
    if uid == 0:
        return None
    try:
        groups = tuple(sorted({gid, *(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)}))
    except OSError:
        groups = (gid,)
    return Target(uid=uid, gid=gid, name=name, groups=groups)


def drop_privileges(target: Target | None) -> None:
    """Become `target` for good (groups, then gid, then uid: the order that works)."""
    if target is None:
        return
    os.setgroups(list(target.groups))
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)
    if os.geteuid() == 0 or os.getuid() == 0:  # paranoia: never keep root silently
        raise OSError("failed to drop root privileges")
    # Like tcpdump -Z, also fix HOME etc. so nothing later writes into root's home.
    try:
        os.environ["HOME"] = pwd.getpwuid(target.uid).pw_dir
    except KeyError:
        pass
    os.environ["USER"] = os.environ["LOGNAME"] = target.name


def check_writable_as(path: str, target: Target | None) -> str | None:
    """Error text when `target` (or we, when None) could not create/write `path`."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    uid = target.uid if target else os.geteuid()
    gids = set(target.groups) if target else {os.getegid(), *os.getgroups()}
    if uid == 0:
        return None

    def ok(p: str, bit: int) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if st.st_uid == uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in gids:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    if os.path.exists(path):
        if not ok(path, 2):
            return f"{path}: not writable by {target.name if target else 'this user'}"
    elif not (ok(d, 2) and ok(d, 1)):
        return f"{d}: {target.name if target else 'this user'} cannot create files here"
    return None


# ---- network namespaces ---------------------------------------------------------------------

def _libc_setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if hasattr(os, "setns"):           # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)    # type: ignore[attr-defined]
    else:
        _libc_setns(fd, CLONE_NEWNET)


def netns_path(spec: str) -> str:
    """--netns PATH|PID|NAME → a namespace file (/proc/PID/ns/net, /run/netns/NAME, or PATH)."""
    if spec.isdigit():
        return f"/proc/{spec}/ns/net"
    if "/" not in spec and os.path.exists(f"/run/netns/{spec}"):
        return f"/run/netns/{spec}"
    return spec


@contextmanager
def in_netns(path: str | None) -> Iterator[None]:
    """Run the body inside the network namespace at `path`, then come back.

    Sockets and child processes created inside stay in that namespace. Only the
    calling thread moves, so call this from the thread that opens the capture.
    """
    if not path:
        yield
        return
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"network namespace {path}: does not exist") from e
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)
