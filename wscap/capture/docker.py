"""Container names from the Docker Engine API, or from a hosts file.

The Engine API is plain HTTP over the unix socket /var/run/docker.sock, so the
standard library's http.client is enough (no docker SDK dependency). Every
call is best-effort: when the socket is missing or refuses us, callers get
empty answers and wscap labels endpoints with bare IPs.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

DOCKER_SOCK = os.environ.get("WSCAP_DOCKER_SOCK", "/var/run/docker.sock")


class DockerError(Exception):
    """The Engine API could not be reached or answered an error."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class DockerClient:
    """Minimal read-only Engine API client."""

    def __init__(self, sock_path: str | None = None, timeout: float = 3.0):
        self.sock_path = sock_path or DOCKER_SOCK
        self.timeout = timeout

    def get(self, path: str) -> Any:
        conn = _UnixHTTPConnection(self.sock_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            raise DockerError(f"{self.sock_path}: {e}") from e
        except http.client.HTTPException as e:
            raise DockerError(f"{self.sock_path}: bad HTTP answer: {e}") from e
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                msg = json.loads(body).get("message", "")
            except ValueError:
                msg = body[:200].decode("latin-1")
            raise DockerError(f"GET {path}: {resp.status} {msg}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise DockerError(f"GET {path}: not JSON") from e

    def available(self) -> bool:
        if not os.path.exists(self.sock_path):
            return False
        try:
            self.get("/version")
            return True
        except DockerError:
            return False

    def containers(self) -> list[dict]:
        return self.get("/containers/json")

    def networks(self) -> list[dict]:
        return self.get("/networks")

    def inspect(self, name: str) -> dict:
        return self.get(f"/containers/{quote(name, safe='')}/json")


def _cname(c: dict) -> str:
    names = c.get("Names") or []
    if names:
        return names[0].lstrip("/")
    return (c.get("Name") or c.get("Id", "")[:12]).lstrip("/")


def _running(client: DockerClient) -> list[dict]:
    """The running containers, or [] when the Engine API is not reachable (names are optional)."""
    if not os.path.exists(client.sock_path):
        return []
    try:
        return client.containers()
    except DockerError:
        return []


def docker_names(client: DockerClient | None = None) -> dict[str, str]:
    """{ip: container name} for every running container's addresses; {} when unreachable."""
    client = client or DockerClient()
    cs = _running(client)
    res: dict[str, str] = {}
    for c in cs:
        name = _cname(c)
        nets = ((c.get("NetworkSettings") or {}).get("Networks") or {})
        for net in nets.values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                ip = (net or {}).get(key)
                if ip:
                    res.setdefault(ip, name)
    return res


def bridge_networks(client: DockerClient | None = None) -> dict[str, dict]:
    """{bridge interface name: {"network": name, "id": id, "containers": [names]}}."""
    client = client or DockerClient()
    if not os.path.exists(client.sock_path):
        return {}
    try:
        nets = client.networks()
    except DockerError:
        return {}
    res: dict[str, dict] = {}
    for n in nets:
        if n.get("Driver") != "bridge":
            continue
        opts = n.get("Options") or {}
        br = opts.get("com.docker.network.bridge.name") or ("br-" + n.get("Id", "")[:12])
        containers = n.get("Containers")
        if not containers:
            # /networks (list) omits members; inspect the network for them.
            try:
                containers = client.get(f"/networks/{n['Id']}").get("Containers") or {}
            except (DockerError, KeyError):
                containers = {}
        labels = n.get("Labels") or {}
        res[br] = {
            "network": n.get("Name"), "id": n.get("Id"),
            "internal": bool(n.get("Internal")),
            "compose_project": labels.get("com.docker.compose.project"),
            "containers": sorted((v or {}).get("Name", k[:12]) for k, v in containers.items()),
        }
    return res


def veth_containers(client: DockerClient | None = None) -> dict[int, str]:
    """{ifindex of a host-side veth: name of the container on its other end}.

    A container's eth0 has the host-side peer's ifindex as its `iflink`; Docker
    mounts the container's own sysfs, so /proc/PID/root/sys/class/net shows it
    without entering the namespace (root only; {} otherwise).
    """
    client = client or DockerClient()
    cs = _running(client)
    res: dict[int, str] = {}
    for c in cs:
        try:
            pid = (client.inspect(c["Id"]).get("State") or {}).get("Pid") or 0
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


def container_netns(name: str, client: DockerClient | None = None) -> str:
    """Path of the network namespace of a running container (/proc/PID/ns/net)."""
    client = client or DockerClient()
    if not os.path.exists(client.sock_path):
        raise DockerError(f"cannot look up container {name!r}: {client.sock_path} does not exist "
                          "(is dockerd running? `--netns PID` works without it)")
    info = client.inspect(name)
    state = info.get("State") or {}
    pid = state.get("Pid") or 0
    if not state.get("Running") or not pid:
        raise DockerError(f"container {name!r} is not running")
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
