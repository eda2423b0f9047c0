"""Network interfaces as Linux shows them in /sys/class/net.

Used by `wscap ifaces`, by the default-interface choice of `wscap live`
(`docker0` when it exists) and by the "interface missing" error, which lists
what does exist and points at the Docker bridges. Reads sysfs only, so it works
unprivileged and inside any network namespace (sysfs shows the namespace of
whoever mounted it; /proc/self/net is used as a cross-check for the current
one).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

SYS_NET = "/sys/class/net"

# Docker's default bridge and Compose/user networks' bridges (br-<first 12 hex of the network id>);
# Podman's (netavark: podman0, podman1, ...; CNI: cni-podman0, ...).
_DOCKER_BRIDGE_RE = re.compile(r"^(docker0|br-[0-9a-f]{12}|(cni-)?podman\d+)$")

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772


@dataclass
class Iface:
    """One interface and how it is wired to bridges."""

    name: str
    index: int
    kind: str                 # "loopback" | "bridge" | "veth" | "device" | "virtual"
    up: bool
    operstate: str
    mac: str | None
    mtu: int | None
    master: str | None = None            # bridge this interface is a port of
    ports: list[str] = field(default_factory=list)  # for bridges: attached interfaces
    docker: bool = False                 # named like a Docker bridge
    addresses: list[str] = field(default_factory=list)
    # Filled from the Docker Engine API when reachable.
    network: str | None = None
    containers: list[str] = field(default_factory=list)
    container: str | None = None         # for a veth: the container on its other end

    def to_json(self) -> dict:
        return {
            "name": self.name, "index": self.index, "kind": self.kind, "up": self.up,
            "operstate": self.operstate, "mac": self.mac, "mtu": self.mtu,
            "master": self.master, "ports": list(self.ports), "docker": self.docker,
            "addresses": list(self.addresses), "network": self.network,
            "containers": list(self.containers), "container": self.container,
        }


def is_docker_bridge(name: str) -> bool:
    """True for names container engines give their bridges: docker0, br-<12 hex>, podmanN."""
    return bool(_DOCKER_BRIDGE_RE.match(name))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    s = _read(path)
    try:
        return int(s, 0) if s is not None else None
    except ValueError:
        return None


def interface_names(sysfs: str = SYS_NET) -> list[str]:
    """Names of the interfaces of the current network namespace, sorted by index."""
    names: list[tuple[int, str]] = []
    try:
        entries = os.listdir(sysfs)
    except OSError:
        entries = []
    for n in entries:
        names.append((_read_int(os.path.join(sysfs, n, "ifindex")) or 0, n))
    if not names:
        # sysfs missing (some containers): fall back to the kernel's own list.
        import socket
        try:
            for idx, n in socket.if_nameindex():
                names.append((idx, n))
        except OSError:
            pass
    return [n for _, n in sorted(names)]


def iface_exists(name: str, sysfs: str = SYS_NET) -> bool:
    """Does `name` exist in the current namespace? (`any` always does.)"""
    if name == "any":
        return True
    if sysfs != SYS_NET and os.path.exists(os.path.join(sysfs, name)):
        return True
    try:
        import socket
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def _addresses() -> dict[str, list[str]]:
    """Addresses per interface via `ip -j addr` when iproute2 is there (else empty)."""
    import json
    import shutil
    import subprocess
    if not shutil.which("ip"):
        return {}
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=5,
                             check=True).stdout
        data = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    res: dict[str, list[str]] = {}
    for link in data:
        res[link.get("ifname", "")] = [
            f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if "local" in a]
    return res


def _kernel_names() -> set[str]:
    """Interface names of the calling thread's namespace (netlink/ioctl, not sysfs)."""
    import socket
    try:
        return {n for _, n in socket.if_nameindex()}
    except OSError:
        return set()


def sysfs_is_current(sysfs: str = SYS_NET) -> bool:
    """Does sysfs describe our namespace? Not after setns() into another one."""
    kern = _kernel_names()
    try:
        return not kern or set(os.listdir(sysfs)) == kern
    except OSError:
        return False


def _list_via_ip() -> list[Iface]:
    """`ip -j -d link` view, for namespaces entered with setns (sysfs shows another)."""
    import json
    import subprocess
    try:
        out = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True,
                             timeout=5, check=True).stdout
        links = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    addrs = _addresses()
    res: list[Iface] = []
    for ln in links:
        name = ln.get("ifname", "")
        info = (ln.get("linkinfo") or {}).get("info_kind")
        kind = ("loopback" if ln.get("link_type") == "loopback" else
                "bridge" if info == "bridge" else "veth" if info == "veth" else
                "virtual" if info else "device")
        res.append(Iface(name=name, index=ln.get("ifindex", 0), kind=kind,
                         up="UP" in (ln.get("flags") or []), operstate=str(ln.get("operstate", "unknown")).lower(),
                         mac=ln.get("address"), mtu=ln.get("mtu"), master=ln.get("master"),
                         docker=(kind == "bridge" and is_docker_bridge(name)),
                         addresses=addrs.get(name, [])))
    for i in res:
        if i.kind == "bridge":
            i.ports = sorted(j.name for j in res if j.master == i.name)
    return res


def list_ifaces(sysfs: str = SYS_NET, with_addresses: bool = True) -> list[Iface]:
    """Every interface of the current namespace with bridge/veth wiring."""
    if sysfs == SYS_NET and not sysfs_is_current(sysfs):
        via_ip = _list_via_ip()
        if via_ip:
            return via_ip
    res: list[Iface] = []
    addrs = _addresses() if with_addresses else {}
    for name in interface_names(sysfs):
        base = os.path.join(sysfs, name)
        index = _read_int(os.path.join(base, "ifindex")) or 0
        iflink = _read_int(os.path.join(base, "iflink"))
        arptype = _read_int(os.path.join(base, "type"))
        operstate = _read(os.path.join(base, "operstate")) or "unknown"
        flags = _read_int(os.path.join(base, "flags")) or 0
        if arptype == ARPHRD_LOOPBACK:
            kind = "loopback"
        elif os.path.isdir(os.path.join(base, "brif")) or os.path.isdir(os.path.join(base, "bridge")):
            kind = "bridge"
        elif os.path.exists(os.path.join(base, "device")):
            kind = "device"
        elif iflink is not None and iflink != index and arptype == ARPHRD_ETHER:
            # A veth's iflink is its peer's index (which may live in another namespace).
            kind = "veth"
        else:
            kind = "virtual"
        master = None
        mlink = os.path.join(base, "master")
        if os.path.islink(mlink):
            master = os.path.basename(os.readlink(mlink))
        ports: list[str] = []
        if kind == "bridge":
            try:
                ports = sorted(os.listdir(os.path.join(base, "brif")))
            except OSError:
                ports = []
        res.append(Iface(
            name=name, index=index, kind=kind, up=bool(flags & 1), operstate=operstate,
            mac=_read(os.path.join(base, "address")), mtu=_read_int(os.path.join(base, "mtu")),
            master=master, ports=ports, docker=(kind == "bridge" and is_docker_bridge(name)),
            addresses=addrs.get(name, []),
        ))
    return res


def docker_bridges(ifaces: list[Iface] | None = None) -> list[str]:
    """Names of the Docker-looking bridges (docker0 first)."""
    ifaces = list_ifaces(with_addresses=False) if ifaces is None else ifaces
    names = [i.name for i in ifaces if i.docker]
    return sorted(names, key=lambda n: (n != "docker0", n))


def default_iface(sysfs: str = SYS_NET) -> str | None:
    """`docker0` when it exists, else None (the caller asks the user to choose)."""
    return "docker0" if iface_exists("docker0", sysfs) else None


def _netns_has(pid: int, iface: str, proc: str = "/proc") -> bool:
    """Does process `pid`'s network namespace have `iface`? (/proc/PID/net/dev lists its devices.)"""
    try:
        with open(f"{proc}/{pid}/net/dev", encoding="ascii", errors="replace") as f:
            return any(ln.split(":", 1)[0].strip() == iface for ln in f if ":" in ln)
    except OSError:
        return False


def daemons_elsewhere(names: tuple[str, ...] = ("dockerd", "podman"), proc: str = "/proc",
                      limit: int = 5, having: str | None = None) -> list[tuple[int, str]]:
    """[(pid, name)] of container daemons running in another network namespace than ours
    (with `having`: only those whose namespace has that interface).

    Their bridges are not visible here; `--netns PID` captures where they are.
    """
    try:
        mine = os.readlink(f"{proc}/self/ns/net")
    except OSError:
        return []
    res: list[tuple[int, str]] = []
    try:
        pids = sorted((e for e in os.listdir(proc) if e.isdigit()), key=int)
    except OSError:
        return []
    for pid in pids:
        comm = _read(f"{proc}/{pid}/comm")
        if comm not in names:
            continue
        try:
            ns = os.readlink(f"{proc}/{pid}/ns/net")
        except OSError:
            continue
        if ns != mine and (having is None or _netns_has(int(pid), having, proc)):
            res.append((int(pid), comm))
            if len(res) >= limit:
                break
    return res


def describe_missing(name: str, ifaces: list[Iface] | None = None,
                     elsewhere: list[tuple[int, str]] | None = None) -> str:
    """Error text for an interface that does not exist: what does, the Docker bridges, and,
    when the bridge lives in another network namespace, both ways to get there."""
    ifaces = list_ifaces(with_addresses=False) if ifaces is None else ifaces
    lines = [f"interface {name!r} does not exist in this network namespace."]
    if ifaces:
        lines.append("available interfaces: " + ", ".join(i.name for i in ifaces) + ", any")
    bridges = docker_bridges(ifaces)
    if bridges:
        lines.append("Docker bridges: " + ", ".join(bridges)
                     + "  (run `wscap ifaces` to see their networks and containers)")
    else:
        lines.append("no Docker bridge (docker0 or br-<12 hex>) found; is Docker running here?")
    if elsewhere is None:
        elsewhere = daemons_elsewhere(having=name) or daemons_elsewhere()
    if elsewhere:
        lines.append("the container engine runs in another network namespace ("
                     + ", ".join(f"{n} pid {p}" for p, n in elsewhere) + "): capture there with "
                     + f"`--netns {elsewhere[0][0]} --iface {name}`, or inside one container with "
                     + "`--container NAME`")
    elif not bridges or is_docker_bridge(name):
        lines.append("if the bridge is in another network namespace: `--netns PID|PATH` captures there; "
                     "`--container NAME` captures inside a container")
    return "\n".join(lines)


def enrich_with_docker(ifaces: list[Iface], bridges: dict[str, dict],
                       veths: dict[int, str] | None = None) -> None:
    """Attach Docker network/container names (docker.bridge_networks()) to bridges and
    container names (docker.veth_containers()) to the veths that lead to them."""
    for i in ifaces:
        info = bridges.get(i.name)
        if info:
            i.network = info.get("network")
            i.containers = list(info.get("containers", []))
        if veths and i.kind == "veth":
            i.container = veths.get(i.index)
