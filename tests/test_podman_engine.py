"""Podman's Docker-compatible API (issue 15): names, Compose services and bridges through it.

Root only, where Podman is installed (Debian: apt-get install podman; skipped
otherwise). `podman system service` runs in network namespace `wscappod` with private
storage, run and tmp directories and its own socket /tmp/wscap-compose-podman.sock;
containers are created through that socket with the docker CLI, as a Docker user
pointed at Podman would. What Podman does differently and wscap must follow: its
compat /networks has no bridge-name option (the bridge is podmanN, found through
Podman's own /libpod/networks API) and /version names the "Podman Engine".

Podman's default run directories (/run/containers, /var/lib/containers/cache) are
removed at the end when this test created them.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import compose_engine as ce  # noqa: E402

from wscap.capture import docker as dockerapi  # noqa: E402
from wscap.capture import engine_api  # noqa: E402
from wscap.capture import ifaces as ifmod  # noqa: E402
from wscap.capture import privilege  # noqa: E402

PODMAN = shutil.which("podman")
NS = "wscappod"
BASE = "/tmp/wscap-compose-podman"
SOCK = "/tmp/wscap-compose-podman.sock"
HOST_DIRS = ("/run/containers", "/var/lib/containers", "/run/libpod")


def _skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run a rootful podman service"
    if not PODMAN:
        return "podman not installed (apt-get install podman)"
    if not ce.DOCKER or not ce.BUSYBOX:
        return "needs the docker CLI and busybox-static to create the test containers"
    return None


_why = _skip()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.slow, pytest.mark.live]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]   # podman raises them past what runc may here


class Podman(ce.EngineProcess):
    cli_timeout = 120

    def __init__(self):
        super().__init__(NS, SOCK)
        self.made = [d for d in HOST_DIRS if not os.path.exists(d)]

    def start(self) -> str | None:
        shutil.rmtree(BASE, ignore_errors=True)
        os.makedirs(f"{BASE}/net")
        with open(f"{BASE}/containers.conf", "w") as f:
            f.write(f'[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    f'tmp_dir = "{BASE}/tmp"\n[network]\nnetwork_config_dir = "{BASE}/net"\n')
        env = {**os.environ, "CONTAINERS_CONF": f"{BASE}/containers.conf"}
        return self.new_netns() or self.launch(
            [PODMAN, "--root", f"{BASE}/root", "--runroot", f"{BASE}/run", "--storage-driver", "vfs",
             "system", "service", "--time=0", f"unix://{SOCK}"], f"{BASE}/service.log", 40, "podman service", env)

    def stop(self) -> None:
        self.stop_process(networks=("pp_default",))
        ce.unmount_under(BASE)
        shutil.rmtree(BASE, ignore_errors=True)
        for d in self.made:
            shutil.rmtree(d, ignore_errors=True)
        try:
            os.unlink(SOCK)
        except OSError:
            pass


@pytest.fixture(scope="module")
def pod():
    p = Podman()
    try:
        why = p.start()
        if why:
            pytest.skip(why)
        p.ok("import", "-", "wscmp-busybox:test", input=ce.busybox_tar())
        p.ok("network", "create", "--label", "com.docker.compose.project=pp", "--subnet", "10.77.20.0/24",
             "pp_default")
        p.ok("run", "-d", *ULIMITS, "--name", "pp_vite_1", "--network", "pp_default", "-p", "5174:5173",
             "--label", "com.docker.compose.project=pp", "--label", "com.docker.compose.service=vite",
             "wscmp-busybox:test", "httpd", "-f", "-p", "5173", "-h", "/www")
        p.ok("run", "-d", *ULIMITS, "--name", "qq-vite-1", "--network", "pp_default",
             "--label", "com.docker.compose.project=qq", "--label", "com.docker.compose.service=vite",
             "wscmp-busybox:test", "sleep", "600")
        yield p
    finally:
        p.stop()


def _inspect(p: Podman, name: str) -> dict:
    return json.loads(p.ok("inspect", name))[0]


def test_podman_names_services_and_bridge(pod):
    c, why = engine_api.connect({"DOCKER_HOST": f"unix://{SOCK}", "HOME": "/nonexistent"})
    assert why is None and c.is_podman()
    names = dockerapi.engine_names(c)
    for n in ("pp_vite_1", "qq-vite-1"):
        ip = next(iter(_inspect(pod, n)["NetworkSettings"]["Networks"].values()))["IPAddress"]
        assert names.names[ip] == n
    assert names.names["10.77.20.1"] == "host (gateway of pp_default)"
    assert [(x.host_port, x.container_port, x.service) for x in names.published] == [(5174, 5173, "vite")]
    # the bridge is the one Podman made in its namespace (podmanN), with its members
    with privilege.in_netns(f"/run/netns/{NS}"):
        here = [i.name for i in ifmod.list_ifaces(with_addresses=False) if i.kind == "bridge"]
        chosen, why = dockerapi.default_capture_ifaces(c, "pp")
    bridges = dockerapi.bridge_networks(c)
    br = next(b for b, info in bridges.items() if info["network"] == "pp_default")
    assert br in here and br.startswith("podman") and ifmod.is_docker_bridge(br)
    assert bridges[br]["containers"] == ["pp_vite_1", "qq-vite-1"]
    assert chosen == [br] and "project pp" in why
    with pytest.raises(dockerapi.AmbiguousContainer) as ei:
        dockerapi.resolve_container("vite", c)
    assert ei.value.candidates == [("pp_vite_1", "pp", "vite"), ("qq-vite-1", "qq", "vite")]
    pid = _inspect(pod, "qq-vite-1")["State"]["Pid"]
    assert dockerapi.container_netns("vite", c, project="qq") == f"/proc/{pid}/ns/net"
