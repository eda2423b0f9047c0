"""`wscap live`: the click command and its setup (registered by wscap.cli.main); what it prints
is wscap.cli.live_output, the options it shares with the other commands wscap.cli.options.

`live` captures on an interface (or inside a container's network namespace),
runs every packet through the same streaming `Pipeline` that `wscap analyze`
runs, prints each handshake and chain verdict as soon as it is decided, and
optionally writes every captured packet to a pcap/pcapng file (or ring).

Privileges: the capture is opened first (needs root or CAP_NET_RAW +
CAP_NET_ADMIN; entering a namespace needs CAP_SYS_ADMIN); then, when run via
sudo (SUDO_UID/SUDO_GID) or with `--user`, wscap becomes that user for good —
like `tcpdump -Z` — before it opens the `--write` file, so it never writes
where the invoking user could not.

Exit codes: the one table of every command (wscap.cli.options.exit_code,
docs/json-contract.md): 0 all valid, 1 something broken (a handshake with an
error-severity anomaly counts), 2 usage/capture errors (interface missing, no
permission, bad BPF filter, backend missing) or a partial document
(--max-handshakes).
"""
from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
from typing import Any

import click

from wscap.engine.tshark_locate import tshark_path
from wscap.capture import docker as dockerapi
from wscap.capture import ifaces as ifmod
from wscap.capture import privilege
from wscap.capture.live import (
    DEFAULT_BUFFER_MB, DEFAULT_SNAPLEN, CaptureConfig, CaptureError, LiveLoop, NoPermission, NoSuchInterface,
)
from wscap.capture import evidence
from wscap.capture.sockets import open_backend
from wscap.capture.writer import PcapWriter
from wscap.cli.ifaces import ifaces_command   # tests/netns.py runs wscap.cli.live.<cmd>_command
from wscap.cli.live_output import LiveOutput, Status, decrypted_report, live_exit, nrb_bytes, say_losses
from wscap.cli.options import (
    EXIT_USAGE, bounds_options, color_options, err, limits_from, merged_names, read_names, redact_list_options,
)
from wscap.render.table import Look

SILENT_S = 5   # a capture with no packet after this long says where the containers are
_err = err
__all__ = ["live_command", "ifaces_command", "run_live", "build_filter", "check_filter", "DEFAULT_FILTER"]


# All TCP, DNS (a proxy's lookups of its upstream, see wscap.flow.dns), plus the tunnels the decoder opens (VXLAN 4789/8472, VXLAN-GPE, GENEVE, GTP-U, GRE,
# IP-in-IP, 6in4): on an overlay host's NIC the containers' TCP is only inside those. (MPLS is
# left out: the `mpls` primitive shifts the offsets of what follows it in a filter.)
DEFAULT_FILTER = ("tcp or port 53 or host 127.0.0.11 "   # DNS: wscap.flow.dns.DNS_FILTER
                  "or (udp and (dst port 4789 or dst port 8472 or dst port 4790 or dst port 6081 "
                  "or dst port 2152)) or ip proto 47 or ip proto 4 or ip proto 41 or ip6 proto 47 "
                  "or ip6 proto 4 or ip6 proto 41")


def build_filter(bpf: str | None, ports: tuple[int, ...]) -> str:
    """--filter and --port shortcuts → one BPF expression.

    Default: TCP for the handshakes, DNS (port 53, and Docker's embedded resolver at
    127.0.0.11, whose rewritten queries use a high port) for the proxies' lookups of their
    upstreams, and the tunnels the decoder opens. A --filter of the user's is used as given."""
    from wscap.flow.dns import DNS_FILTER
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
    from wscap.model.raw import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2
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



def _make_pipeline(timeout_s: float, names: dict[str, str], bounds: dict[str, Any] | None = None,
                   fallback: dict[str, str] | None = None) -> Any:
    """The analyze pipeline with live's options: --names over the Docker API's names (the
    precedence of `analyze`, wscap.cli.options.merged_names)."""
    from wscap.engine.core import Options, Pipeline
    return Pipeline(Options(timeout_s=timeout_s, names=tuple(sorted(names.items())),
                            names_fallback=tuple(sorted((fallback or {}).items())), limits=limits_from(bounds)))


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
        if m.name.startswith(("wscap.__main__", "wscap.cli.main")):
            continue
        try:
            importlib.import_module(m.name)
        except Exception:  # noqa: BLE001 - optional modules may fail; that is their business
            pass



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
              help="hosts-format file naming IPs: wins over the Docker API's names, and labels what it "
                   "cannot (captures of other machines, no API).")
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
@bounds_options
@redact_list_options
@color_options
@click.argument("stray", nargs=-1, required=False, metavar="")
def live_command(iface: str | None, container: str | None, project: str | None, netns: str | None,
                 bpf: str | None, ports: tuple[int, ...], duration: float | None, count: int | None, timeout: float,
                 write_path: str | None, ring_files: int | None, ring_size: float | None, backend: str,
                 spool_mb: int, shed_after: float, drain_timeout: float, fmt: str, redact: bool | None,
                 names_file: str | None, no_docker: bool, user: str | None, snaplen: int | None, buffer_mb: int,
                 no_promisc: bool, show_status: bool | None, keylog: str | None, color: str, no_color: bool,
                 stray: tuple[str, ...], **bounds: int) -> None:
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
    from wscap.cli.termui import use_color, width
    kw["look"] = Look(color=use_color("never" if no_color else color), width=width())
    sys.exit(run_live(**kw))


def run_live(iface: str | None = None, container: str | None = None, project: str | None = None,
             netns: str | None = None, bpf: str | None = None, ports: tuple[int, ...] = (),
             duration: float | None = None, count: int | None = None, timeout: float = 3.0,
             write_path: str | None = None, ring_files: int | None = None, ring_size: float | None = None,
             backend: str = "auto", spool_mb: int = evidence.DEFAULT_SPOOL_MB, shed_after: float = 2.0,
             drain_timeout: float = 30.0, fmt: str = "text", redact: bool | None = None,
             names_file: str | None = None, no_docker: bool = False, user: str | None = None,
             snaplen: int | None = None, buffer_mb: int = DEFAULT_BUFFER_MB, no_promisc: bool = False,
             show_status: bool | None = None, keylog: str | None = None, bounds: dict[str, Any] | None = None,
             look: Look | None = None) -> int:
    # -- usage checks -------------------------------------------------------------------
    if write_path == "-":
        _err("--write -: live cannot write the capture to stdout (the analysis reads the written file "
             "behind the writer, and stdout carries the verdicts); write a file, or pipe "
             "`tcpdump -w - | wscap analyze -`")
        return EXIT_USAGE
    if write_path:
        from wscap.capture.outpath import refuse_output
        why = refuse_output(write_path)
        if why:
            _err(why.replace("-o ", "--write ", 1))     # a planted symlink would redirect the capture
            return EXIT_USAGE
    if keylog and not write_path:
        _err("--keylog needs --write FILE: TLS is decrypted from the written capture when it ends")
        return EXIT_USAGE
    if keylog and tshark_path() is None:
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
    docker: dict[str, str] = {}
    client: dockerapi.DockerClient | None = None
    no_api: str | None = "--no-docker"
    if not no_docker or container or project:
        client, no_api = dockerapi.engine()
    if not no_docker:
        eng = dockerapi.engine_names(client) if client is not None else None
        if eng is not None:
            docker = dict(eng.names)
        elif no_api:
            _err(no_api + ("" if names_file else "; endpoints are shown as bare IPs (or use --names FILE)"))
    given = read_names(names_file)       # one line and exit 2 when unreadable
    names = merged_names(given, docker)  # --names wins over the Docker API, as in `analyze`

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
    be: Any      # a Backend; FollowBackend (files, errors) when followed
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
                    nrb=nrb_bytes(names), spool_mb=spool_mb, notices=notices)
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
    pipeline = _make_pipeline(timeout, given, bounds, fallback=docker)
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

    def notice(m: str) -> None:
        status.clear()
        _err(m)
    for n in notices:
        _err(n)
    writer = None
    if write_path and not followed:
        try:
            writer = PcapWriter(write_path, be.linktype, snaplen=snaplen,
                                ring_files=ring_files or 0,
                                ring_size=int((ring_size or 0) * 1_000_000),
                                iface_name=iface,
                                on_error=notice)
        except OSError as e:
            be.close()
            _err(f"--write {write_path}: {e.strerror}")
            return EXIT_USAGE

    output = LiveOutput(fmt, redact, names, keylog, look, status)
    said_silent: list[bool] = []

    def on_status(d: dict[str, Any]) -> None:
        status.update(d)
        if silent_hint and not said_silent and not (d.get("packets") or d.get("written")) \
                and d.get("elapsed", 0) >= SILENT_S:
            said_silent.append(True)
            status.clear()
            _err(silent_hint)

    loop = LiveLoop(be, pipeline=pipeline, writer=writer, on_event=output.on_event, on_status=on_status,
                    on_notice=notice, duration=duration, count=count,
                    shed_after_s=shed_after, drain_s=drain_timeout)
    output.on_stdout_closed = lambda: loop.stop("stdout closed")

    def on_signal(signum: int, _frame: Any) -> None:
        loop.stop(signal.Signals(signum).name)

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

    doc: dict[str, Any] = {}
    if loop.pipeline is not None:  # None when analysis was unavailable or failed mid-run
        try:
            doc = loop.pipeline.document()
        except Exception as e:  # noqa: BLE001 - the capture file is already complete
            res.extra["analysis_error"] = f"document: {e!r}"
    live_info: dict[str, Any] = {
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
        output.summary(doc, live_info)
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
    say_losses(res, followed, write_path)
    if res.interface_gone:
        _err(f"capture ended because the interface went away: {res.reason}")
    if res.extra.get("analysis_error"):
        _err(f"analysis failed: {res.extra['analysis_error']}"
             + (f"; the capture is complete in {', '.join(writer.files)}" if writer is not None else ""))
        return EXIT_USAGE
    dropped = ((doc.get("stats") or {}).get("limits_hit") or {}).get("max_handshakes")
    if dropped:
        _err(f"{dropped} upgrade request(s) past --max-handshakes were counted, not kept: the summary is partial")
    decrypted = 0
    if keylog and files:
        decrypted = decrypted_report(files, keylog, timeout, given, docker, output, bounds)
    return live_exit(doc, None, decrypted)
