"""`wscap live` and `wscap ifaces`: click commands (registered by wscap.cli).

`live` captures on an interface (or inside a container's network namespace),
runs every packet through the same streaming `Pipeline` that `wscap analyze`
runs, prints each handshake and chain verdict as soon as it is decided, and
optionally writes every captured packet to a pcap/pcapng file (or ring).

Privileges: the capture is opened first (needs root or CAP_NET_RAW +
CAP_NET_ADMIN; entering a namespace needs CAP_SYS_ADMIN); then, when run via
sudo (SUDO_UID/SUDO_GID) or with `--user`, wscap becomes that user for good —
like `tcpdump -Z` — before it opens the `--write` file, so it never writes
where the invoking user could not.

Exit codes follow docs/json-contract.md: 0 all valid, 1 something broken,
2 usage/capture errors (interface missing, no permission, bad BPF filter,
backend missing).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

import click

from wscap.capture import docker as dockerapi
from wscap.capture import ifaces as ifmod
from wscap.capture import privilege
from wscap.capture.live import (
    DEFAULT_BUFFER_MB, DEFAULT_SNAPLEN, CaptureConfig, CaptureError, LiveLoop, NoPermission,
    NoSuchInterface, open_backend,
)
from wscap.capture import evidence
from wscap.capture.writer import PcapWriter
from wscap.render.escape import term

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2
SILENT_S = 5   # a capture with no packet after this long says where the containers are


def _err(msg: str) -> None:
    click.echo(f"wscap: {msg}", err=True)


# All TCP, DNS (a proxy's lookups of its upstream, see wscap.dns), plus the tunnels the decoder opens (VXLAN 4789/8472, VXLAN-GPE, GENEVE, GTP-U, GRE,
# IP-in-IP, 6in4): on an overlay host's NIC the containers' TCP is only inside those. (MPLS is
# left out: the `mpls` primitive shifts the offsets of what follows it in a filter.)
DEFAULT_FILTER = ("tcp or port 53 or host 127.0.0.11 "   # DNS: wscap.dns.DNS_FILTER
                  "or (udp and (dst port 4789 or dst port 8472 or dst port 4790 or dst port 6081 "
                  "or dst port 2152)) or ip proto 47 or ip proto 4 or ip proto 41 or ip6 proto 47 "
                  "or ip6 proto 4 or ip6 proto 41")


def build_filter(bpf: str | None, ports: tuple[int, ...]) -> str:
    """--filter and --port shortcuts → one BPF expression.

    Default: TCP for the handshakes, DNS (port 53, and Docker's embedded resolver at
    127.0.0.11, whose rewritten queries use a high port) for the proxies' lookups of their
    upstreams, and the tunnels the decoder opens. A --filter of the user's is used as given."""
    from wscap.dns import DNS_FILTER
    port_expr = " or ".join(f"port {p}" for p in ports)
    if bpf and port_expr:
        return f"({bpf}) and tcp and ({port_expr})"
    if bpf:
        return bpf
    if port_expr:
        return f"(tcp and ({port_expr})) or {DNS_FILTER}"
    return DEFAULT_FILTER


def check_filter(expr: str, iface: str) -> str | None:
    """Compile the BPF expression without privileges (libpcap via scapy); error text or None.

    Done before opening the capture so a typo is reported as such even when the
    capture itself would fail for lack of permission.
    """
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError:
        return None  # the backend will report it
    from wscap.capture.live import _filter_error, scapy_filter_detail
    from wscap.model import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2
    try:
        bp = compile_filter(expr, linktype=LINKTYPE_LINUX_SLL2 if iface == "any" else LINKTYPE_ETHERNET)
    except Scapy_Exception as e:
        return str(_filter_error(expr, scapy_filter_detail(expr, str(e))))
    except (ImportError, OSError):
        return None
    try:
        from scapy.arch.common import free_filter
        free_filter(bp)
    except Exception:  # noqa: BLE001
        pass
    return None


# ---- rendering (fallbacks until wscap.render.table exists) --------------------------------------

def _fallback_handshake_line(h: dict, names: dict | None = None) -> str:
    req = h.get("request") or {}
    target = req.get("target") or ""
    st = h.get("status")
    anomalies = ", ".join(a.get("code", "?") for a in h.get("anomalies") or [])
    ts = time.strftime("%H:%M:%S", time.localtime(h.get("first_ts") or 0))
    return (f"{ts} hs#{h.get('id')} {h.get('client')} -> {h.get('server')} {req.get('method', '')} "
            f"{target} => {h.get('outcome')}{f' {st}' if st else ''}"
            f"{f'  [{anomalies}]' if anomalies else ''}").replace("  ", " ", 1)


def _fallback_chain_line(c: dict, doc: dict | None = None) -> str:
    v = c.get("verdict") or {}
    mark = "BROKEN" if v.get("broken") else "ok"
    hops = "->".join(f"#{x}" for x in c.get("hops") or [])
    return f"chain#{c.get('id')} [{hops}] {mark} {v.get('cause')}: {v.get('summary', '')}"


def _renderers():
    try:
        from wscap.render.table import chain_line, handshake_line  # type: ignore
        return handshake_line, chain_line
    except ImportError:
        return _fallback_handshake_line, _fallback_chain_line


def _redact_lists(f):
    from wscap.cli import redact_list_options
    return redact_list_options(f)


def _bounds_options(f):
    """The same resource bounds as `analyze` (--max-*): live traffic is as attacker-controlled as
    a capture file, and a long capture meets more of it."""
    from wscap.limits import Limits
    d = Limits()
    for name, default, text in reversed(BOUND_OPTIONS):
        lo = 0 if name in ("max-tunnel-depth", "max-hpack-table", "max-h2-header-bytes", "max-inflate-bytes") else 1
        f = click.option(f"--{name}", name.replace("-", "_"), type=click.IntRange(min=lo),
                         default=getattr(d, default), show_default=True, help=text)(f)
    return f


# (option, Limits field, help) - the option names `analyze` uses (wscap.cli.limits_options)
BOUND_OPTIONS = [
    ("max-head-bytes", "head_bytes", "Bytes of one HTTP header block."),
    ("max-flow-buffer", "flow_buffer", "Out-of-order bytes buffered per TCP direction."),
    ("max-flows", "max_flows", "TCP connections tracked at once, ignored ones included (oldest evicted)."),
    ("max-frames", "frames_per_direction", "WebSocket frame summaries kept per direction."),
    ("max-dns", "max_dns", "DNS transactions kept (oldest dropped first)."),
    ("max-hpack-table", "hpack_table", "HPACK dynamic table per HTTP/2 direction, whatever the peer allows."),
    ("max-handshakes", "max_handshakes", "Handshakes kept for the final summary and --keylog report."),
    ("max-tunnel-depth", "tunnel_depth", "Nested tunnels (VXLAN, GENEVE, GRE, IP-in-IP, MPLS, GTP-U) opened per packet."),
    ("max-inflate-bytes", "inflate_bytes", "Bytes a compressed WebSocket message is inflated to for previews."),
    ("max-h2-header-bytes", "h2_header_bytes", "Decoded HTTP/2 header bytes kept per connection (then cut)."),
]


def _limits(bounds: dict | None):
    from wscap.limits import Limits
    kw = {field: bounds[name.replace("-", "_")] for name, field, _ in BOUND_OPTIONS
          if bounds and bounds.get(name.replace("-", "_")) is not None}
    return Limits(**kw)


def _make_pipeline(timeout_s: float, names: dict[str, str], bounds: dict | None = None):
    """The analyze pipeline, or None (capture only) while it does not exist yet."""
    try:
        from wscap.pipeline import Options, Pipeline  # type: ignore
    except ImportError as e:
        _err(f"analysis core not available ({e}); capturing only")
        return None
    kw: dict[str, Any] = {"timeout_s": timeout_s}
    fields = {f.name for f in dataclasses.fields(Options)}
    if "names" in fields and names:
        kw["names"] = tuple(sorted(names.items()))
    if "live" in fields:
        kw["live"] = True
    kw["limits"] = _limits(bounds)
    return Pipeline(Options(**kw))


def _preimport() -> None:
    """Import now what the analysis may import lazily later, while we can still read it."""
    import importlib
    import pkgutil

    import wscap
    for mod in ("ipaddress", "datetime", "encodings.idna", "encodings.latin_1"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    for m in pkgutil.walk_packages(wscap.__path__, "wscap."):
        if m.name.startswith(("wscap.__main__", "wscap.cli")):
            continue
        try:
            importlib.import_module(m.name)
        except Exception:  # noqa: BLE001 - optional modules may fail; that is their business
            pass


# ---- status line -----------------------------------------------------------------------------

class Status:
    """A one-line status on stderr, rewritten in place on a terminal."""

    def __init__(self, enabled: bool, tty: bool):
        self.enabled = enabled
        self.tty = tty
        self._shown = False
        self._last = 0.0

    @staticmethod
    def text(d: dict) -> str:
        if "lag_s" in d:
            # The C writer writes, the analysis reads behind it: say both, and how far behind.
            s = (f"{d.get('written', 0)} packets written, {d['dropped']} dropped by kernel; analysis: "
                 f"{d['packets']} read, {d['decided']} decided, "
                 f"{d['flows'] if d.get('flows') is not None else '-'} flows, {d['lag_s']:.1f} s behind")
            if d.get("shed"):
                s += f", {d['shed']} shed"
            return s
        s = (f"{d['packets']} packets, {d['dropped']} dropped by kernel, "
             f"{d['flows'] if d.get('flows') is not None else '-'} flows, {d['decided']} decided")
        if "written" in d:
            s += f", {d['written']} written" + (" (write stopped: see above)" if d.get("write_error") else "")
        return s

    def update(self, d: dict) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[K" + self.text(d))
            sys.stderr.flush()
            self._shown = True
        elif time.monotonic() - self._last >= 5:
            # Not a terminal (logs, CI): a plain line every few seconds.
            self._last = time.monotonic()
            sys.stderr.write("status: " + self.text(d) + "\n")
            sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False


# ---- live ------------------------------------------------------------------------------------

LIVE_EPILOG = """\b
Privileges: capturing needs root or CAP_NET_RAW + CAP_NET_ADMIN (run wscap
with sudo by its full path, or give tcpdump the capabilities and use
--backend tcpdump: sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/tcpdump;
never setcap the Python interpreter), and --container/--netns need CAP_SYS_ADMIN. wscap opens the capture (and enters
the namespace) first, then becomes the invoking user for good - SUDO_UID/SUDO_GID
under sudo, or --user - like tcpdump -Z; tcpdump itself runs with -Z as that
user. The --write file is opened only after that, so it is created by, and only
where, the invoking user could write.

\b
Without --iface: every Docker bridge that has containers (docker0, br-<id>),
or only the networks of --project NAME; docker0 when the Engine API is
unreachable. The Engine API is found through WSCAP_DOCKER_SOCK, DOCKER_HOST
(+ DOCKER_TLS_VERIFY/DOCKER_CERT_PATH), the current docker context, then
/var/run/docker.sock and Podman's sockets.

\b
Backends: wscap-capture (default; a small libpcap program built on first use)
or tcpdump writes every packet to --write (or a temporary spool) and the
analysis reads the file behind it, so the file is complete whatever the
analysis does; scapy (a packet socket in-process) is not lossless under load.
Exit codes: 0 all valid, 1 something broken, 2 usage or capture error.
"""


@click.command("live", epilog=LIVE_EPILOG)
@click.option("--iface", "-i", metavar="IFACE",
              help="Interface(s) to capture on, comma-separated (default: the Docker bridges that have "
                   "containers; `any` inside --container/--netns).")
@click.option("--container", metavar="NAME",
              help="Capture inside this container's network namespace: a name, an id prefix or a Compose service.")
@click.option("--project", metavar="NAME",
              help="Compose project: capture on its networks' bridges; narrows --container to its services.")
@click.option("--netns", metavar="PATH|PID|NAME", help="Capture inside this network namespace.")
@click.option("--filter", "bpf", metavar="BPF", help="Capture filter (pcap-filter syntax). Default: TCP, DNS "
              "(port 53, Docker's 127.0.0.11) and tunnels (VXLAN, GENEVE, GTP-U, GRE, IP-in-IP).")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Only TCP traffic on this port (repeatable). (-p is --no-promisc, as in tcpdump.)")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after this long.")
@click.option("--count", "-c", type=click.IntRange(min=1), metavar="N", help="Stop after N packets.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=86400), default=3.0, show_default=True,
              metavar="SECONDS",
              help="How long a leg may wait for its response before its chain is decided.")
@click.option("--write", "-w", "write_path", metavar="FILE",
              help="Write every captured packet here (.pcapng → pcapng, else pcap). Not - (stdout): the "
                   "analysis reads the file behind the writer; use tcpdump -w - for a pipe.")
@click.option("--ring-files", type=click.IntRange(min=1), help="Ring buffer: keep this many files.")
@click.option("--ring-size", type=click.FloatRange(min=0, min_open=True), metavar="MB", help="Ring buffer: start a new file after this many MB.")
@click.option("--backend", type=click.Choice(("auto",) + evidence.WRITERS + ("scapy",)), default="auto",
              show_default=True,
              help="Who captures and writes the evidence (auto: wscap-capture, else tcpdump; scapy captures "
                   "in-process and is not lossless under load).")
@click.option("--spool-mb", type=click.IntRange(min=8), default=evidence.DEFAULT_SPOOL_MB, show_default=True,
              help="Without --write: the capture is spooled to a temporary ring of this size, read by the "
                   "analysis and deleted at the end.")
@click.option("--shed-after", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="SECONDS",
              help="When the analysis is this far behind the capture, it reads only what can hold a "
                   "handshake (SYN/FIN/RST, HTTP heads, TLS hellos) until it has caught up; 0: never shed. "
                   "The file always gets everything.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="At the end, how long the analysis may take to read what is already captured "
                   "(a second Ctrl-C cuts it short); what it did not read is counted.")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown")), default="text",
              show_default=True,
              help="json: one JSON object per line (handshakes, chains, then a summary); markdown: one table "
                   "row per event, ready to paste.")
@click.option("--redact/--no-redact", default=None,
              help="Replace cookies, tokens and credentials by stable hashes (default: on for text and "
                   "markdown, off for json).")
@click.option("--names", "names_file", type=click.Path(exists=True, dir_okay=False),
              help="hosts-format file naming IPs (fallback when the Docker API is unreachable).")
@click.option("--no-docker", is_flag=True, help="Do not ask the Docker Engine API for container names.")
@click.option("--user", "-Z", "user", metavar="USER",
              help="Become USER after opening the capture (default under sudo: the invoking user).")
@click.option("--snaplen", "-s", type=click.IntRange(min=64), default=None,
              help="Bytes kept per packet (default: the largest frame the interface delivers, from its MTU "
                   "and GRO/GSO sizes, so offloaded super-frames are kept whole).")
@click.option("--buffer-mb", type=click.IntRange(min=1), default=DEFAULT_BUFFER_MB, show_default=True,
              help="Kernel capture buffer (tcpdump -B / socket receive buffer).")
@click.option("--no-promisc", "-p", is_flag=True,
              help="Do not put the interface into promiscuous mode (tcpdump's -p).")
@click.option("--status/--no-status", "show_status", default=None,
              help="Status line on stderr (default: on; rewritten in place on a terminal).")
@click.option("--keylog", type=click.Path(dir_okay=False), default=None,
              help="SSLKEYLOGFILE the browser/Node writes during the capture: when the capture ends, the --write "
                   "file is decrypted with it (tshark) and its TLS upgrades are analysed and printed.")
@_bounds_options
@_redact_lists
@click.option("--color", "color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour in text output (auto: on a terminal, unless NO_COLOR is set).")
@click.option("--no-color", "no_color", is_flag=True, help="Same as --color never.")
@click.argument("stray", nargs=-1, required=False, metavar="")
def live_command(iface, container, project, netns, bpf, ports, duration, count, timeout, write_path, ring_files,
                 ring_size, backend, spool_mb, shed_after, drain_timeout, fmt, redact, names_file, no_docker, user,
                 snaplen, buffer_mb, no_promisc, show_status, keylog, color, no_color, stray, **bounds):
    """Capture live and print WebSocket handshakes and chain verdicts as they are decided."""
    kw = dict(locals())
    for k in ("color", "no_color", "stray"):
        kw.pop(k)
    if stray:
        # tcpdump users type `-p 8080` meaning a port; -p is --no-promisc here, as in tcpdump.
        hint = (f"; -p is --no-promisc (as in tcpdump): for a port use --port {stray[0]}"
                if no_promisc and stray[0].isdigit() else
                "; a capture filter goes in --filter 'EXPR'")
        _err(f"unexpected argument {' '.join(stray)!r}{hint}")
        sys.exit(EXIT_USAGE)
    from wscap.termui import use_color, width
    from wscap.render.table import Look
    kw["look"] = Look(color=use_color("never" if no_color else color), width=width())
    sys.exit(run_live(**kw))


def run_live(iface=None, container=None, project=None, netns=None, bpf=None, ports=(), duration=None, count=None,
             timeout=3.0, write_path=None, ring_files=None, ring_size=None, backend="auto",
             spool_mb=evidence.DEFAULT_SPOOL_MB, shed_after=2.0, drain_timeout=30.0, fmt="text",
             redact=None, names_file=None, no_docker=False, user=None, snaplen=None, buffer_mb=DEFAULT_BUFFER_MB,
             no_promisc=False,
             show_status=None, keylog=None, bounds=None, look=None) -> int:
    # -- usage checks -------------------------------------------------------------------
    if write_path == "-":
        _err("--write -: live cannot write the capture to stdout (the analysis reads the written file "
             "behind the writer, and stdout carries the verdicts); write a file, or pipe "
             "`tcpdump -w - | wscap analyze -`")
        return EXIT_USAGE
    if write_path:
        from .outpath import refuse_output
        why = refuse_output(write_path)
        if why:
            _err(why.replace("-o ", "--write ", 1))     # a planted symlink would redirect the capture
            return EXIT_USAGE
    if keylog and not write_path:
        _err("--keylog needs --write FILE: TLS is decrypted from the written capture when it ends")
        return EXIT_USAGE
    if keylog and shutil.which("tshark") is None:
        _err("--keylog needs tshark (Debian: apt install tshark)")
        return EXIT_USAGE
    if container and netns:
        _err("--container and --netns are exclusive")
        return EXIT_USAGE
    if (ring_files or ring_size) and not write_path:
        _err("--ring-files/--ring-size need --write FILE")
        return EXIT_USAGE
    if bool(ring_files) != bool(ring_size):
        _err("a ring buffer needs both --ring-files N and --ring-size MB")
        return EXIT_USAGE
    expr = build_filter(bpf, tuple(ports))

    # -- names (before entering any namespace: the Docker socket is a host path) ------------
    names: dict[str, str] = {}
    client, no_api = None, "--no-docker"
    if not no_docker or container or project:
        client, no_api = dockerapi.engine()
    if not no_docker:
        eng = dockerapi.engine_names(client) if client is not None else None
        if eng is not None:
            names.update(eng.names)
        elif no_api:
            _err(no_api + ("" if names_file else "; endpoints are shown as bare IPs (or use --names FILE)"))
    if names_file:
        try:
            for ip, n in dockerapi.load_names(names_file).items():
                names[ip] = n     # --names wins over the Docker API, as in `analyze`
        except OSError as e:
            _err(f"--names {names_file}: {e.strerror}")
            return EXIT_USAGE

    ns_path = None
    if container:
        if client is None:
            _err(f"cannot look up container {container!r}: {no_api} (`--netns PID` works without it)")
            return EXIT_USAGE
        try:
            ns_path = dockerapi.container_netns(container, client, project)
        except dockerapi.DockerError as e:
            _err(str(e))
            return EXIT_USAGE
    elif netns:
        ns_path = privilege.netns_path(netns)
        if not os.path.exists(ns_path):
            _err(f"--netns {netns}: {ns_path} does not exist")
            return EXIT_USAGE

    iface_why = ""
    if not iface:
        if container:
            iface = "any"
        elif ns_path:
            # --netns of the engine's namespace (e.g. dockerd's PID): its bridges, like on the host;
            # any other namespace: all of its interfaces.
            iface = "any"
            try:
                with privilege.in_netns(ns_path):
                    chosen, iface_why = dockerapi.default_capture_ifaces(client, project) if client else ([], "")
                if chosen:
                    iface = ",".join(chosen)
                else:
                    iface_why = ""
            except OSError:
                iface_why = ""
        else:
            # The Compose user's bridge is br-<id>, not docker0: every bridge with containers
            # (or --project's), as one comma-separated list for the capture engine.
            chosen, iface_why = dockerapi.default_capture_ifaces(client, project)
            if not chosen:
                _err(f"no --iface given and {iface_why}.\n"
                     + ifmod.describe_missing("docker0").split("\n", 1)[1])
                return EXIT_USAGE
            iface = ",".join(chosen)
    # Said once if the capture stays silent: where the containers are (computed now, while
    # the Engine API socket is still reachable with our privileges).
    silent_hint = "" if ns_path else dockerapi.where_are_containers(client, iface, SILENT_S)

    try:
        target = privilege.drop_target(user)
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    if write_path:
        why = privilege.check_writable_as(write_path, target)
        if why:
            _err(why)
            return EXIT_USAGE

    why = check_filter(expr, iface)
    if why:
        _err(why)
        return EXIT_USAGE

    # -- who writes the evidence ------------------------------------------------------------
    notices: list[str] = []
    if backend == "auto":
        helper, why = evidence.helper_available()
        if helper:
            backend = "wscap-capture"
        elif shutil.which("tcpdump"):
            backend = "tcpdump"
            notices.append(f"{why}; tcpdump writes the capture instead (a packet can take ~1 s to "
                           "reach the analysis)")
        else:
            backend = "scapy"
            notices.append(f"{why}, and tcpdump is not installed: capturing in-process with scapy, which "
                           "is not lossless under load (apt install tcpdump, or gcc + libpcap-dev)")
    elif backend == "wscap-capture":
        helper, why = evidence.helper_available()
        if not helper:
            _err(f"--backend wscap-capture: {why}")
            return EXIT_USAGE
    followed = backend in evidence.WRITERS
    if len([i for i in iface.split(",") if i]) > 1 and write_path and not followed:
        _err(f"--backend {backend} captures one interface; {iface} needs wscap-capture")
        return EXIT_USAGE
    if followed and write_path and "," in iface and not write_path.endswith(".pcapng") \
            and write_path.endswith((".pcap", ".cap")):
        _err(f"--write {write_path}: several interfaces need pcapng (one interface block each): "
             "use a .pcapng name")
        return EXIT_USAGE
    if snaplen is None:
        if followed:
            try:
                from wscap.capture.capturer import snaplen_for
                snaplen = snaplen_for([i for i in iface.split(",") if i])
            except Exception:  # noqa: BLE001 - sysfs unreadable: keep everything
                snaplen = 262144
        else:
            snaplen = DEFAULT_SNAPLEN
    cfg = CaptureConfig(iface=iface, bpf=expr, snaplen=snaplen, promisc=not no_promisc,
                        buffer_mb=buffer_mb, run_as=target.name if target else None)

    # -- open the capture (privileged part) -----------------------------------------------
    try:
        with privilege.in_netns(ns_path):
            for one in iface.split(","):
                if one and not ifmod.iface_exists(one):
                    raise NoSuchInterface(ifmod.describe_missing(one))
            if backend == "scapy" and not privilege.can_capture():
                raise NoPermission(privilege.permission_help())
            if followed:
                be = evidence.open_followed(
                    backend, cfg, write_path=write_path, ring_files=ring_files or 0,
                    ring_bytes=int((ring_size or 0) * 1_000_000), count=count,
                    run_as=(target.uid, target.gid) if target else None,
                    nrb=_nrb_bytes(names), spool_mb=spool_mb, notices=notices)
            else:
                be = open_backend(backend, cfg)
    except CaptureError as e:
        _err(str(e))
        return e.exit_code
    except PermissionError as e:
        _err(f"entering network namespace {ns_path}: {e.strerror}\n" + privilege.permission_help())
        return EXIT_USAGE
    except FileNotFoundError as e:
        _err(str(e))
        return EXIT_USAGE

    # Build everything that imports code before dropping: after the drop the
    # interpreter's own directory (e.g. under /root) may no longer be readable.
    pipeline = _make_pipeline(timeout, names, bounds)
    hs_line, ch_line = _renderers()
    if target is not None:
        _preimport()

    # -- from here on: unprivileged --------------------------------------------------------
    try:
        privilege.drop_privileges(target)
    except OSError as e:
        be.close()
        _err(f"could not become {target.name if target else '?'}: {e}")
        return EXIT_USAGE

    status = Status(enabled=show_status is not False, tty=sys.stderr.isatty())
    for n in notices:
        _err(n)
    writer = None
    if write_path and not followed:
        try:
            writer = PcapWriter(write_path, be.linktype, snaplen=snaplen,
                                ring_files=ring_files or 0,
                                ring_size=int((ring_size or 0) * 1_000_000),
                                iface_name=iface,
                                on_error=lambda m: (status.clear(), _err(m)))
        except OSError as e:
            be.close()
            _err(f"--write {write_path}: {e.strerror}")
            return EXIT_USAGE

    out = sys.stdout
    loop: LiveLoop

    def emit(obj: dict | str) -> None:
        try:
            out.write((json.dumps(obj, separators=(",", ":")) if isinstance(obj, dict) else obj) + "\n")
            out.flush()
        except BrokenPipeError:
            # `wscap live | head`: stop capturing, still close the file properly; point
            # stdout at /dev/null so the interpreter's final flush stays quiet.
            loop.stop("stdout closed")
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    seen: dict[int, dict] = {}   # handshakes printed so far, for the chains' ladders
    # Only text lines (ladders, redaction) and redacted JSON read it (markdown keeps its own): kept
    # for nothing, 10,000 documents are a million objects every full garbage collection walks,
    # in the middle of a burst, with every line waiting behind it.
    keep_seen = fmt == "text" or (fmt == "json" and bool(redact))
    raw_seen = seen               # the unredacted handshakes: a chain's secrets are found through them
    from .render.markdown import LiveMarkdown
    from .render.redact import redact_live_event
    markdown = LiveMarkdown(redact=redact is not False)

    def emit_raw(text: str) -> None:
        if text:
            emit(text[:-1] if text.endswith("\n") else text)
    name_eps = [{"ip": ip, "name": n} for ip, n in names.items()]
    text_redact = redact is not False
    from .render.table import Look

    def text_line(kind: str, doc: dict) -> str:
        if kind == "tls":
            from .render.table import label as ep_label
            return (f"TLS {term(ep_label(doc['client'], names))} → {term(ep_label(doc['server'], names))} "
                    f"SNI {term(doc['sni'] or '(none)')} "
                    f"ALPN {term(','.join(doc['alpn']) or 'none')}: encrypted, an upgrade inside is invisible"
                    + ("" if keylog else " (--write F --keylog K decrypts it when the capture ends)"))
        if text_redact:
            # What people paste into tickets: Vite's `?token=`, cookies, bearer subprotocols.
            doc = redact_live_event({"type": kind, kind: doc}, raw_seen)[kind]
        try:
            if kind == "handshake":
                return hs_line(doc, names, look=look or Look())
            return ch_line(doc, {"handshakes": list(seen.values()), "endpoints": name_eps}, look=look or Look())
        except TypeError:  # a renderer without the optional argument
            return hs_line(doc) if kind == "handshake" else ch_line(doc)

    def on_event(ev: Any) -> None:
        status.clear()
        kind, doc = getattr(ev, "kind", None), getattr(ev, "json", None)
        if kind == "handshake" and keep_seen:
            seen[doc["id"]] = doc
            if len(seen) > 10000:  # bounded: old handshakes are long decided
                seen.pop(next(iter(seen)))
        obj = {"type": kind, kind: doc}
        if fmt == "markdown":
            emit_raw(markdown.event(obj))
        elif fmt == "json":
            emit(redact_live_event(obj, raw_seen) if redact else obj)
        else:
            emit(text_line(kind, doc))

    said_silent: list[bool] = []

    def on_status(d: dict) -> None:
        status.update(d)
        if silent_hint and not said_silent and not (d.get("packets") or d.get("written")) \
                and d.get("elapsed", 0) >= SILENT_S:
            said_silent.append(True)
            status.clear()
            _err(silent_hint)

    loop = LiveLoop(be, pipeline=pipeline, writer=writer, on_event=on_event, on_status=on_status,
                    on_notice=lambda m: (status.clear(), _err(m)), duration=duration, count=count,
                    shed_after_s=shed_after, drain_s=drain_timeout)
    caught: list[str] = []

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        caught.append(name)
        loop.stop(name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    if status.enabled:
        where = f" in {container or netns}" if ns_path else ""
        _err(f"capturing on {iface}{where} with {be.name} (filter: {expr}); Ctrl-C to stop")
        if iface_why:
            _err(f"  chosen: {iface_why}")
    # What is built by now (modules, the pipeline, the capture) lives as long as the process: out
    # of the collector's sight, a full collection during a burst walks only what the analysis holds.
    gc.freeze()
    try:
        res = loop.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    status.clear()

    doc: dict = {}
    if loop.pipeline is not None:  # None when analysis was unavailable or failed mid-run
        try:
            doc = loop.pipeline.document()
        except Exception as e:  # noqa: BLE001 - the capture file is already complete
            res.extra["analysis_error"] = f"document: {e!r}"
    live_info = {
        "iface": iface, "netns": ns_path, "container": container, "project": project,
        "names_unavailable": None if client is not None or no_docker else no_api,
        "backend": be.name, "filter": expr,
        "packets": res.packets, "received": res.received, "dropped": res.dropped,
        "ended": res.reason, "interface_gone": res.interface_gone, "elapsed": round(res.elapsed, 3),
        "write": None, "analysis_error": res.extra.get("analysis_error"),
    }
    files: list[str] = []
    if writer is not None:
        files = list(writer.files)
        live_info["write"] = {"path": write_path, "files": writer.files, "packets": writer.packets,
                              "bytes": writer.bytes, "error": writer.error, "skipped": writer.skipped}
    elif followed:
        files = [f for f in be.files if os.path.exists(f)] if write_path else []
        write_err = "; ".join(e for e in be.errors if "write" in e.lower()) or None
        if write_path:
            live_info["write"] = {"path": write_path, "files": files, "packets": res.written,
                                  "bytes": sum(os.path.getsize(f) for f in files), "error": write_err,
                                  "skipped": 0}
        live_info["packets"] = res.written
    # Where every packet went (docs/json-contract.md, "live.loss"): nothing is lost silently.
    live_info["loss"] = {
        "kernel_dropped": res.dropped,
        "analysis_shed": res.shed,
        "not_analysed": res.unanalysed,
        "lag_s": round(res.lag_s, 3),
        "lag_max_s": round(res.lag_max_s, 3),
        "drain_cut": res.extra.get("drain_cut"),
        "spool_overwritten_files": len(res.extra.get("skipped_files") or []),
    }
    live_info["analysed"] = res.analysed
    live_info["read"] = res.packets
    summary = doc.get("summary") or {}
    if fmt in ("json", "markdown"):
        obj = {"type": "summary"}
        obj.update({k: v for k, v in doc.items() if k not in ("handshakes", "chains")})
        obj["live"] = live_info
        if fmt == "json":
            emit(obj)
        else:
            emit_raw(markdown.event(obj))
    else:
        parts = [f"{res.written if followed else res.packets} packets captured",
                 f"{res.dropped} dropped by kernel"]
        if summary:
            parts.append(f"{summary.get('handshakes', 0)} handshakes, {summary.get('chains', 0)} chains, "
                         f"{summary.get('broken', 0)} broken")
        _err("; ".join(parts) + f" — ended: {res.reason}")
        if writer is not None:
            _err(f"wrote {writer.packets} packets to {', '.join(writer.files)}"
                 + (f" (writing stopped: {writer.error})" if writer.error else ""))
        elif followed and write_path:
            _err(f"wrote {res.written} packets to {', '.join(files) or write_path}"
                 + (f" (writing stopped: {live_info['write']['error']})" if live_info["write"]["error"] else ""))
    _say_losses(res, followed, write_path)
    if res.interface_gone:
        _err(f"capture ended because the interface went away: {res.reason}")
    if res.extra.get("analysis_error"):
        _err(f"analysis failed: {res.extra['analysis_error']}"
             + (f"; the capture is complete in {', '.join(writer.files)}" if writer is not None else ""))
        return EXIT_USAGE
    broken = summary.get("broken", 0)
    if keylog and files:
        broken += _decrypted_report(files, keylog, timeout, names, fmt, redact, emit, emit_raw, bounds)
    return EXIT_BROKEN if broken else EXIT_OK


def _say_losses(res, followed: bool, write_path: str | None) -> None:
    """One stderr line per kind of loss that is not zero (the JSON summary has them all)."""
    keep = f"; {write_path} holds every packet" if write_path and followed else ""
    if res.dropped:
        _err(f"{res.dropped} packets dropped by the kernel before capture (a bigger --buffer-mb helps)")
    if res.shed:
        _err(f"analysis shed {res.shed} packets while it was more than its --shed-after behind "
             f"(worst lag {res.lag_max_s:.1f} s){keep}: re-run `wscap analyze` on the file for all verdicts")
    if res.unanalysed:
        why = res.extra.get("drain_cut") or "not read"
        _err(f"{res.unanalysed} captured packets were not analysed ({why}){keep}")
    skipped = res.extra.get("skipped_files") or []
    if skipped:
        _err(f"{len(skipped)} spool/ring file(s) were overwritten before the analysis read them "
             "(a bigger --spool-mb/--ring-files helps)")


def _nrb_bytes(names: dict[str, str]) -> bytes:
    """Names as a pcapng Name Resolution Block for the written file (when this install has it)."""
    if not names:
        return b""
    try:
        from wscap.capture.writer import pcapng_nrb  # type: ignore[attr-defined]
    except ImportError:
        return b""
    try:
        # One name per address, kept whole: a label like "host (gateway of net)" has spaces,
        # which a plain string would have split into several names.
        return pcapng_nrb({ip: [n] for ip, n in names.items()})
    except Exception:  # noqa: BLE001 - names are a convenience; the capture must start
        return b""


def _decrypted_report(files: list[str], keylog: str, timeout: float, names: dict, fmt: str, redact,
                      emit, emit_raw, bounds: dict | None = None) -> int:
    """After the capture: decrypt the written file(s) with the key log and report what TLS hid.

    Key logs are written while the browser runs, so the natural point to decrypt is when the
    capture is complete; the same offline pipeline reads the plaintext. -> broken chains found.
    """
    from .analyze import analyze_paths
    from .pipeline import Options
    if not os.path.exists(keylog):
        _err(f"--keylog {keylog}: no such file after the capture; nothing decrypted")
        return 0
    doc = analyze_paths(files, Options(timeout_s=timeout, names=tuple(sorted(names.items())), keylog=keylog,
                                       limits=_limits(bounds)))
    opened = [t for t in doc.get("tls", []) if t["decrypted"]]
    for s_ in doc["source"]:
        kl = s_.get("keylog") or {}
        if kl.get("error"):
            _err(f"{s_['path']}: {kl['error']}")
    if redact or (redact is None and fmt in ("markdown", "text")):
        from .render.redact import redact_document
        doc = redact_document(doc)
    if fmt == "json":
        emit({"type": "decrypted", "keylog": keylog, "document": doc})
    elif fmt == "markdown":
        from .render.markdown import render_markdown
        emit_raw(render_markdown(doc))
    else:
        from .render.table import render_table
        emit_raw(f"\n── decrypted with {keylog}: {len(opened)} TLS connection(s) opened ──\n" + render_table(doc))
    return doc["summary"]["broken"] if opened else 0


# ---- ifaces ----------------------------------------------------------------------------------

@click.command("ifaces")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("--netns", metavar="PATH|PID|NAME", help="List the interfaces of this network namespace.")
@click.option("--container", metavar="NAME",
              help="List the interfaces inside this container (a name, an id prefix or a Compose service).")
@click.option("--project", metavar="NAME", help="Compose project narrowing --container.")
@click.option("--no-docker", is_flag=True, help="Do not ask the Docker Engine API for network names.")
def ifaces_command(fmt, netns, container, project, no_docker):
    """List interfaces, bridges and their veths; mark Docker bridges."""
    client, no_api = (None, None) if no_docker and not container else dockerapi.engine()
    bridges = dockerapi.bridge_networks(client) if client is not None and not no_docker else {}
    veths = dockerapi.veth_containers(client) if bridges else {}
    ns_path = privilege.netns_path(netns) if netns else None
    if container:
        if client is None:
            _err(f"cannot look up container {container!r}: {no_api} (`--netns PID` works without it)")
            sys.exit(EXIT_USAGE)
        try:
            ns_path = dockerapi.container_netns(container, client, project)
        except dockerapi.DockerError as e:
            _err(str(e))
            sys.exit(EXIT_USAGE)
    try:
        with privilege.in_netns(ns_path):
            lst = ifmod.list_ifaces()
    except (OSError, PermissionError) as e:
        _err(f"{'--container ' + container if container else '--netns ' + str(netns)}: {e}")
        sys.exit(EXIT_USAGE)
    ifmod.enrich_with_docker(lst, bridges, veths)
    if fmt == "json":
        click.echo(json.dumps({"interfaces": [i.to_json() for i in lst],
                               "docker_api": bool(bridges),
                               "docker_api_unavailable": no_api if not no_docker else None}, indent=2))
        return
    click.echo(format_ifaces(lst))
    if no_api and not no_docker:
        from wscap.termui import width
        import textwrap
        w = width()
        click.echo("\n".join(textwrap.wrap(no_api, w, subsequent_indent="  ", break_long_words=False,
                                           break_on_hyphens=False)) if w else no_api)
    elif client is not None and not no_docker:
        click.echo(f"names from the Engine API at {client.display} ({client.endpoint.source})")


def format_ifaces(lst: list[ifmod.Iface]) -> str:
    lines = []
    w = max([len(i.name) for i in lst] + [4])
    for i in lst:
        if i.master:  # shown under their bridge
            continue
        flags = "up" if i.up else "down"
        tag = "  [docker]" if i.docker else ""
        addrs = " ".join(i.addresses)
        lines.append(f"{i.name:<{w}}  {i.kind:<8} {flags:<4} {addrs}{tag}")
        if i.network or i.containers:
            lines.append(f"{'':<{w}}    network: {i.network or '?'}"
                         + (f"; containers: {', '.join(i.containers)}" if i.containers else ""))
        for p in i.ports:
            port = next((x for x in lst if x.name == p), None)
            to = f" → container {port.container}" if port and port.container else ""
            lines.append(f"{'':<{w}}    └─ {p} ({port.kind if port else '?'}){to}")
    bridges = [i.name for i in lst if i.docker]
    lines.append("")
    lines.append(("Docker bridges: " + ", ".join(bridges)) if bridges else "no Docker bridge here")
    return "\n".join(lines)
