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


def permission_help(what: str = "live capture") -> str:
    """The "no permission" message: what is needed and how to grant it."""
    py = os.path.realpath(sys.executable)
    return (
        f"{what} needs root or the capabilities CAP_NET_RAW and CAP_NET_ADMIN.\n"
        f"  run it with sudo:     sudo {os.path.basename(py)} -m wscap live ...\n"
        f"  or grant them once:   sudo setcap cap_net_raw,cap_net_admin=eip {py}\n"
        "                        (the tcpdump backend needs the same on $(readlink -f $(which tcpdump)))\n"
        "wscap drops back to the invoking user (SUDO_UID) after opening the capture."
    )


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
