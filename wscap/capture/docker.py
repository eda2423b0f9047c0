"""Container names, Compose services, Docker bridges and the host's side of them.

The Engine API is reached as Docker users reach it (engine_api.py: DOCKER_HOST,
docker contexts, Podman, WSCAP_DOCKER_SOCK, /var/run/docker.sock), over plain HTTP
with the standard library. Every lookup is best-effort: when no engine answers,
callers get empty answers plus one line saying why, and wscap labels endpoints
with bare IPs.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from wscap.capture.engine_api import DockerClient, DockerError, Endpoint, connect

__all__ = ["DockerClient", "DockerError", "Endpoint", "connect", "engine", "docker_names", "engine_names",
           "EngineNames", "Published", "Proxy", "bridge_networks", "veth_containers", "container_netns",
           "resolve_container", "AmbiguousContainer", "NoSuchContainer", "default_capture_ifaces", "where_are_containers",
           "docker_proxies", "load_names"]

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
MAX_PROXIES = 4096           # docker-proxy processes read from /proc (bounded)


def engine(client: DockerClient | None = None) -> tuple[DockerClient | None, str | None]:
    """(client, None) when an Engine API answers, else (None, why names are unavailable)."""
    if client is not None:
        try:
            client.version()
            return client, None
        except DockerError as e:
            return None, f"container names unavailable: {e}"
    return connect()


def _cname(c: dict) -> str:
    names = c.get("Names") or []
    if names and isinstance(names[0], str):
        return names[0].lstrip("/")
    return str(c.get("Name") or c.get("Id", "")[:12]).lstrip("/")


def _labels(c: dict) -> dict:
    lab = c.get("Labels") or (c.get("Config") or {}).get("Labels") or {}
    return lab if isinstance(lab, dict) else {}


def _running(client: DockerClient | None) -> list[dict]:
    """The running containers, or [] when the Engine API is not reachable (names are optional)."""
    if client is None:
        return []
    try:
        return client.containers()
    except DockerError:
        return []


def _nets_of(c: dict) -> dict:
    nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
    return nets if isinstance(nets, dict) else {}


# ---- names ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Published:
    """A port the engine publishes on the host: host_ip:host_port → container:container_port."""

    host_ip: str
    host_port: int
    container: str
    container_port: int
    proto: str = "tcp"
    service: str | None = None
    container_ip: str | None = None

    @property
    def label(self) -> str:
        """"host:5173 → vite:5173" (the Compose service when there is one)."""
        return f"host:{self.host_port} → {self.service or self.container}:{self.container_port}"

    def to_json(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port, "container": self.container,
                "container_port": self.container_port, "proto": self.proto, "service": self.service,
                "container_ip": self.container_ip, "label": self.label}


@dataclass(frozen=True)
class Proxy:
    """A docker-proxy process: listens on host_ip:host_port, connects to container_ip:container_port."""

    pid: int
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    container: str | None = None

    def label(self, client_side: str | None = None) -> str:
        """"[::1]:5173 → docker-proxy → 172.18.0.3:5173 (vite)"."""
        to = f"{_hostport(self.container_ip, self.container_port)}"
        if self.container:
            to += f" ({self.container})"
        src = client_side or _hostport(self.host_ip, self.host_port)
        return f"{src} → docker-proxy → {to}"

    def to_json(self) -> dict:
        return {"pid": self.pid, "proto": self.proto, "host_ip": self.host_ip, "host_port": self.host_port,
                "container_ip": self.container_ip, "container_port": self.container_port,
                "container": self.container}


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class EngineNames:
    """What the engine (and /proc) tell about the addresses a capture shows."""

    names: dict[str, str] = field(default_factory=dict)     # ip -> container name / "host (gateway of N)"
    published: list[Published] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    gateways: dict[str, str] = field(default_factory=dict)  # gateway ip -> network name
    reason_unavailable: str | None = None                   # one line when the Engine API did not answer
    endpoint: str | None = None                             # which API answered


def _gateway_of(net: dict) -> list[str]:
    """A network's gateway IPs: IPAM Gateway, else the first host of each subnet (Docker's default)."""
    res = []
    for cfg in ((net.get("IPAM") or {}).get("Config") or []):
        if not isinstance(cfg, dict):
            continue
        gw = cfg.get("Gateway")
        if not gw and cfg.get("Subnet"):
            try:
                gw = str(next(ipaddress.ip_network(cfg["Subnet"], strict=False).hosts()))
            except (ValueError, StopIteration):
                gw = None
        if gw:
            res.append(str(gw).split("/")[0])
    return res


def engine_names(client: DockerClient | None = None, proc: str = "/proc") -> EngineNames:
    """Container names per IP, each network's gateway as the host, published ports, docker-proxies.

    With client=None the Engine API is looked for (engine_api.connect()); when none answers,
    `reason_unavailable` says why and only the docker-proxy processes (from /proc) are known.
    """
    res = EngineNames()
    client, why = engine(client)
    if client is None:
        res.reason_unavailable = why
        res.proxies = docker_proxies({}, proc)
        return res
    res.endpoint = client.display
    cs = _running(client)
    for c in cs:
        name = _cname(c)
        for net in _nets_of(c).values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                ip = (net or {}).get(key)
                if ip:
                    res.names.setdefault(ip, name)
    for c in cs:
        for nname, net in _nets_of(c).items():
            for key in ("Gateway", "IPv6Gateway"):
                gw = (net or {}).get(key)
                if gw:
                    res.gateways.setdefault(gw, nname)
    try:
        nets = client.networks()
    except DockerError:
        nets = []
    for n in nets:
        if isinstance(n, dict) and n.get("Driver") == "bridge":
            for gw in _gateway_of(n):
                res.gateways.setdefault(gw, str(n.get("Name")))
    for gw, nname in res.gateways.items():
        res.names.setdefault(gw, f"host (gateway of {nname})")
    for c in cs:
        name = _cname(c)
        svc = _labels(c).get(COMPOSE_SERVICE)
        ips = [((net or {}).get("IPAddress") or None) for net in _nets_of(c).values()]
        for p in c.get("Ports") or []:
            if not isinstance(p, dict) or not p.get("PublicPort"):
                continue
            try:
                res.published.append(Published(
                    host_ip=str(p.get("IP") or "0.0.0.0"), host_port=int(p["PublicPort"]), container=name,
                    container_port=int(p.get("PrivatePort") or 0), proto=str(p.get("Type") or "tcp"),
                    service=svc, container_ip=next((i for i in ips if i), None)))
            except (TypeError, ValueError):
                continue
    res.proxies = docker_proxies(res.names, proc)
    return res


def docker_proxies(names: dict[str, str] | None = None, proc: str = "/proc") -> list[Proxy]:
    """docker-proxy processes (Docker's userland proxy for published ports), from /proc/*/cmdline.

    Each one listens on -host-ip:-host-port and connects to -container-ip:-container-port, so the
    browser's `localhost:5173` connection and the bridge's gateway → container connection are
    two legs of one path.
    """
    names = names or {}
    res: list[Proxy] = []
    try:
        pids = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return res
    for pid in sorted(pids, key=int):
        try:
            with open(f"{proc}/{pid}/cmdline", "rb") as f:
                argv = f.read(4096).split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"docker-proxy":
            continue
        opts: dict[str, str] = {}
        for k, v in zip(argv[1:], argv[2:]):
            if k.startswith(b"-"):
                opts[k.lstrip(b"-").decode("ascii", "replace")] = v.decode("ascii", "replace")
        try:
            cip = opts["container-ip"]
            res.append(Proxy(pid=int(pid), proto=opts.get("proto", "tcp"), host_ip=opts.get("host-ip", "0.0.0.0"),
                             host_port=int(opts["host-port"]), container_ip=cip,
                             container_port=int(opts["container-port"]), container=names.get(cip)))
        except (KeyError, ValueError):
            continue
        if len(res) >= MAX_PROXIES:
            break
    return res


def docker_names(client: DockerClient | None = None) -> dict[str, str]:
    """{ip: name} for every running container's addresses and each network's gateway ("host (gateway
    of NET)"); {} when no Engine API answers (engine_names() says why)."""
    return engine_names(client).names


# ---- networks and bridges -------------------------------------------------------------------

def _bridge_name(n: dict, podman: dict[str, str] | None = None) -> str:
    opts = n.get("Options") or {}
    return (opts.get("com.docker.network.bridge.name") or (podman or {}).get(str(n.get("Id")))
            or ("br-" + str(n.get("Id", ""))[:12]))


def _podman_bridges(client: DockerClient) -> dict[str, str]:
    """{network id: interface} from Podman's own API (its compat /networks omits the bridge name)."""
    if not client.is_podman():
        return {}
    try:
        nets = client.get("/v4.0.0/libpod/networks/json")
    except DockerError:
        return {}
    return {str(n.get("id")): str(n["network_interface"]) for n in nets if isinstance(n, dict)
            and n.get("network_interface")} if isinstance(nets, list) else {}


def bridge_networks(client: DockerClient | None = None) -> dict[str, dict]:
    """{bridge interface name: {"network", "id", "internal", "compose_project", "containers": [names]}}."""
    if client is None:
        client, _ = connect()
        if client is None:
            return {}
    try:
        nets = client.networks()
    except DockerError:
        return {}
    res: dict[str, dict] = {}
    podman = _podman_bridges(client)
    for n in nets:
        if not isinstance(n, dict) or n.get("Driver") != "bridge":
            continue
        containers = n.get("Containers")
        if not containers:
            # /networks (list) omits members; inspect the network for them.
            try:
                containers = client.get(f"/networks/{n['Id']}").get("Containers") or {}
            except (DockerError, KeyError, AttributeError):
                containers = {}
        labels = n.get("Labels") or {}
        res[_bridge_name(n, podman)] = {
            "network": n.get("Name"), "id": n.get("Id"),
            "internal": bool(n.get("Internal")),
            "compose_project": labels.get(COMPOSE_PROJECT),
            "containers": sorted((v or {}).get("Name", k[:12]) for k, v in containers.items()),
        }
    return res


def _services_by_name(client: DockerClient) -> dict[str, tuple[str | None, str | None]]:
    """{container name: (compose project, compose service)}."""
    res = {}
    for c in _running(client):
        lab = _labels(c)
        res[_cname(c)] = (lab.get(COMPOSE_PROJECT), lab.get(COMPOSE_SERVICE))
    return res


def _who(members: list[str], svc: dict[str, tuple[str | None, str | None]]) -> str:
    return ", ".join(svc.get(m, (None, None))[1] or m for m in members)


def default_capture_ifaces(client: DockerClient | None, project: str | None = None,
                           exists: Callable[[str], bool] | None = None) -> tuple[list[str], str]:
    """The interfaces `wscap live` captures on when no --iface is given, and why, in words.

    With the Engine API: every Docker bridge (docker0, br-<id>) that has containers, or with
    `project` only that Compose project's networks. Without it: the Docker-named bridges
    that have veths attached (sysfs), else docker0 if it exists. ([], reason) when nothing fits.
    """
    from wscap.capture import ifaces as ifmod
    exists = exists or ifmod.iface_exists
    if client is None:
        if project:
            return [], f"--project {project} needs the Docker Engine API to find the project's networks"
        attached = [b for b, ports in _attached_bridges().items() if ports and ifmod.is_docker_bridge(b)]
        if attached:
            return attached, (", ".join(attached) + " (Docker-named bridges with containers attached; "
                              "the Engine API did not answer, so without network names)")
        if exists("docker0"):
            return ["docker0"], "docker0 (Docker's default bridge; the Engine API did not answer)"
        return [], "docker0 does not exist and the Docker Engine API did not answer"
    bridges = bridge_networks(client)
    svc = _services_by_name(client)
    chosen: list[tuple[str, dict]] = []
    for br, info in bridges.items():
        if project is not None and info.get("compose_project") != project:
            continue
        if not info["containers"]:
            continue
        chosen.append((br, info))
    if project is not None and not chosen:
        projects = sorted({i["compose_project"] for i in bridges.values() if i.get("compose_project")})
        return [], (f"no Docker network with containers belongs to Compose project {project!r}"
                    + (f" (projects here: {', '.join(projects)})" if projects else " (no Compose project here)"))
    # docker0 last: Compose projects live on their own br-<id> networks.
    chosen.sort(key=lambda x: (x[0] == "docker0", x[0]))
    here = [(b, i) for b, i in chosen if exists(b)]
    if not here:
        if chosen:
            away = ifmod.daemons_elsewhere(having=chosen[0][0])
            where = (f"`--netns {away[0][0]}` ({away[0][1]}'s namespace)" if away else "--netns PID-OF-DOCKERD")
            return [], ("the Docker bridges with containers (" + ", ".join(b for b, _ in chosen)
                        + f") are not in this network namespace: the engine runs in another one; use {where} "
                        "or --container NAME")
        if exists("docker0"):
            return ["docker0"], "docker0 (no container is attached to any Docker network yet)"
        return [], "no Docker bridge with containers exists"
    desc = []
    for b, i in here:
        proj = f", project {i['compose_project']}" if i.get("compose_project") else ""
        desc.append(f"{b} (network {i['network']}{proj}: {_who(i['containers'], svc)})")
    return [b for b, _ in here], "; ".join(desc)


def _attached_bridges(sysfs: str = "/sys/class/net") -> dict[str, list[str]]:
    """{bridge: [attached ports]} from /sys/class/net/*/brif."""
    res: dict[str, list[str]] = {}
    try:
        names = os.listdir(sysfs)
    except OSError:
        return res
    for n in sorted(names):
        try:
            res[n] = sorted(os.listdir(os.path.join(sysfs, n, "brif")))
        except OSError:
            continue
    return res


def where_are_containers(client: DockerClient | None, iface: str | None = None,
                         seconds: float | None = None, sysfs: str = "/sys/class/net") -> str:
    """One line for a capture that stays silent: where the containers are and what to try.

    e.g. "no packets on docker0 for 5 s; containers are on br-1a2b3c4d5e6f (project meetsonar:
    vite, backend) — try --iface br-1a2b3c4d5e6f or --project meetsonar". "" when there is
    nothing better to suggest.
    """
    if iface and seconds is not None:
        head = f"no packets on {iface} for {seconds:.0f} s; "
    else:
        head = f"no packets on {iface}; " if iface else ""
    current = set((iface or "").split(","))
    if client is not None:
        bridges = bridge_networks(client)
        svc = _services_by_name(client)
        parts, tries, projects = [], [], []
        for br, info in sorted(bridges.items(), key=lambda x: (x[0] == "docker0", x[0])):
            if not info["containers"]:
                continue
            proj = info.get("compose_project")
            who = _who(info["containers"], svc)
            parts.append(f"{br} ({'project ' + proj + ': ' if proj else 'network ' + str(info['network']) + ': '}{who})")
            if br not in current:
                tries.append(f"--iface {br}")
            if proj and proj not in projects:
                projects.append(proj)
        if not parts:
            return head + "no container is attached to any Docker network (is the stack up?)"
        if current and not tries:
            return (head + "every bridge with containers is captured (" + ", ".join(parts) + "); no traffic "
                    "yet? A browser on the host reaches published ports through docker-proxy on the "
                    "host's loopback, which `--iface any` also sees")
        hint = " or ".join(tries[:3] + [f"--project {p}" for p in projects[:2]])
        note = ""
        if current and all(b not in current for b in bridges) and not any(os.path.isdir(f"{sysfs}/{b}")
                                                                           for b in bridges):
            note = " (not in this network namespace: add --netns PID-OF-DOCKERD)"
        return head + "containers are on " + ", ".join(parts) + note + (f" — try {hint}" if hint else "")
    attached = {b: p for b, p in _attached_bridges(sysfs).items() if p}
    if not attached:
        return head + "no bridge here has anything attached (containers in another network namespace? " \
                      "try --container NAME or --netns PID)"
    parts = [f"{b} ({len(p)} attached: {', '.join(p[:4])}{'…' if len(p) > 4 else ''})"
             for b, p in attached.items()]
    tries = [f"--iface {b}" for b in attached if b not in current]
    return (head + "bridges with attached interfaces: " + ", ".join(parts)
            + (f" — try {' or '.join(tries[:3])}" if tries else ""))


# ---- containers -----------------------------------------------------------------------------

class AmbiguousContainer(DockerError):
    """Several containers match a --container value; `candidates` lists (name, project, service)."""

    def __init__(self, spec: str, candidates: list[tuple[str, str | None, str | None]]):
        self.candidates = candidates
        rows = "\n".join(f"  {n}  (project {p or '-'}, service {s or '-'})" for n, p, s in candidates)
        super().__init__(f"--container {spec!r} matches {len(candidates)} containers; name one "
                         f"(or narrow with --project):\n{rows}")


class NoSuchContainer(DockerError):
    """No container matches a --container value."""


_HEX = re.compile(r"^[0-9a-f]{4,64}$")


def resolve_container(spec: str, client: DockerClient, project: str | None = None) -> dict:
    """The container (an /containers/json entry) that --container SPEC means.

    SPEC is a container name, an id prefix (>= 4 hex digits, unique), or a Compose service
    (labels com.docker.compose.service/project; Compose v1 names PROJECT_SERVICE_N and v2
    names PROJECT-SERVICE-N for containers without labels). `project` narrows the choice.
    Raises AmbiguousContainer when several match, DockerError when none does.
    """
    cs = client.containers(all=True)

    def proj_of(c: dict) -> str | None:
        return _labels(c).get(COMPOSE_PROJECT)

    def in_project(c: dict) -> bool:
        if project is None:
            return True
        if proj_of(c) is not None:
            return proj_of(c) == project
        n = _cname(c)
        return n.startswith((project + "_", project + "-"))

    exact = [c for c in cs if _cname(c) == spec and in_project(c)]
    if len(exact) == 1:
        return exact[0]
    matches: list[dict] = []
    if _HEX.match(spec):
        matches += [c for c in cs if str(c.get("Id", "")).startswith(spec) and in_project(c)]
    matches += [c for c in cs if _labels(c).get(COMPOSE_SERVICE) == spec and in_project(c)]
    pat = re.compile(rf"^(?P<proj>.+)[_-]{re.escape(spec)}[_-](?P<n>\d+)$")
    for c in cs:
        m = pat.match(_cname(c))
        if m and not _labels(c).get(COMPOSE_SERVICE) and in_project(c):
            matches.append(c)
    uniq = list({c.get("Id"): c for c in matches}.values())
    if len(uniq) > 1:
        running = [c for c in uniq if c.get("State") in (None, "running")]
        if len(running) == 1:
            return running[0]
    if len(uniq) == 1:
        return uniq[0]
    if uniq:
        raise AmbiguousContainer(spec, sorted(
            (_cname(c), proj_of(c), _labels(c).get(COMPOSE_SERVICE)) for c in uniq))
    have = sorted(_cname(c) for c in cs if c.get("State") in (None, "running"))[:12]
    where = f" in project {project!r}" if project else ""
    raise NoSuchContainer(f"no container named {spec!r}{where}, no id starting with it and no Compose service "
                      f"of that name; running: {', '.join(have) if have else 'none'}")


def veth_containers(client: DockerClient | None = None) -> dict[int, str]:
    """{ifindex of a host-side veth: name of the container on its other end}.

    A container's eth0 has the host-side peer's ifindex as its `iflink`; Docker
    mounts the container's own sysfs, so /proc/PID/root/sys/class/net shows it
    without entering the namespace (root only; {} otherwise).
    """
    if client is None:
        client, _ = connect()
    cs = _running(client)
    res: dict[int, str] = {}
    for c in cs:
        try:
            pid = (client.inspect(c["Id"]).get("State") or {}).get("Pid") or 0  # type: ignore[union-attr]
        except (DockerError, KeyError):
            continue
        base = f"/proc/{pid}/root/sys/class/net"
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for n in names:
            try:
                with open(f"{base}/{n}/iflink") as f:
                    iflink = int(f.read())
                with open(f"{base}/{n}/ifindex") as f:
                    ifindex = int(f.read())
            except (OSError, ValueError):
                continue
            if iflink != ifindex:
                res.setdefault(iflink, _cname(c))
    return res


def container_netns(name: str, client: DockerClient | None = None, project: str | None = None) -> str:
    """Path of the network namespace of a running container (/proc/PID/ns/net).

    `name` is anything resolve_container() takes (name, id prefix, Compose service).
    """
    client, why = engine(client)
    if client is None:
        raise DockerError(f"cannot look up container {name!r}: {why} (`--netns PID` works without it)")
    try:
        c = resolve_container(name, client, project)
    except (AmbiguousContainer, NoSuchContainer):
        raise
    except DockerError:
        # The listing failed (an engine without ?all=1?): fall back to the direct lookup.
        c = {"Id": name}
    info = client.inspect(str(c.get("Id") or name))
    state = info.get("State") or {}
    pid = state.get("Pid") or 0
    shown = _cname(c) if c.get("Names") else name
    if not state.get("Running") or not pid:
        raise DockerError(f"container {shown!r} is not running")
    return f"/proc/{pid}/ns/net"


def load_names(path: str) -> dict[str, str]:
    """Read a hosts-format file ("IP name [aliases...]", # comments) into {ip: name}.

    The first name on a line wins, and the first line for an IP wins, as in
    /etc/hosts lookups.
    """
    res: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            ip = parts[0]
            if ip.startswith("[") and ip.endswith("]"):
                ip = ip[1:-1]
            res.setdefault(ip, parts[1])
    return res
