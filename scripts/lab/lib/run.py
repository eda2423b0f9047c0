#!/usr/bin/env python3
"""scripts/lab/run [--out DIR] [--list] [--keep-going] [SCENARIO...]

Builds the incident's topology in network namespaces, runs each scenario with
a real Chromium, the real Vite dev-server proxy and real backends, records
the bridge with tcpdump into OUT/NAME.pcap and writes OUT/NAME.expected.json.
A recording is only written to OUT after it passed the scenario's own checks
(browser outcome, statuses per leg read from the capture without wscap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAB = HERE.parent
REPO = LAB.parent.parent
sys.path.insert(0, str(HERE))

import netlab
import pcapcheck
from scenarios import BY_NAME, SCENARIOS, Scenario

NODE_MODULES = LAB / "node_modules"
# Two Bun versions side by side (npm alias bun-1.4); node_modules/.bin/bun
# points at whichever npm linked last, so always use the package paths.
BUNS = {
    "bun": NODE_MODULES / "bun" / "bin" / "bun.exe",  # 1.3.x, the incident's
    "bun14": NODE_MODULES / "bun-1.4" / "bin" / "bun.exe",  # current 1.4.x
}
BUN = BUNS["bun"]
VITE_JS = NODE_MODULES / "vite" / "bin" / "vite.js"
ALLOWED_ORIGINS = "http://localhost:5173"
BACKEND_TLS_PORT = 5443  # the ws backend over https/wss (tls-origin-rewrite)
H2_PORTS = {"h2": 8443, "h2c": 5080}  # the h2 backend (RFC 8441) over TLS / cleartext


def log(msg):
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pkg_version(name):
    try:
        return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
    except OSError:
        return None


def cmd_version(argv):
    try:
        r = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=20,
            check=False,
        )
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def chromium_version():
    try:
        r = subprocess.run(
            ["chromium", "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in r.stdout.splitlines():
        if line.startswith("Chromium"):
            return line.strip()
    return None


def tshark_version():
    try:
        r = subprocess.run(
            ["tshark", "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    return first.split(" (Git")[0] or None


def versions(sc: Scenario):
    v = {}
    if sc.backend != "h2":
        v["vite"] = pkg_version("vite")
    v["node"] = cmd_version(["node", "--version"])
    if sc.client == "browser":
        v["chromium"] = chromium_version()
        v["playwright-core"] = pkg_version("playwright-core")
    if sc.transport in ("tls", "h2"):
        v["openssl"] = cmd_version(["openssl", "version"])  # made the certificate
    if sc.transport:
        v["tshark"] = tshark_version()  # checked the decrypted legs
    if sc.backend == "h2":
        v["h2-backend"] = "scripts/lab/backends/h2-backend.mjs (node:http2)"
    if sc.backend == "ws" or sc.backend == "none":
        v["ws"] = pkg_version("ws")
    if sc.backend == "bun" or sc.vite == "bun":
        v["bun"] = cmd_version([str(BUN), "--version"])
    if sc.vite == "bun14":
        v["bun"] = cmd_version([str(BUNS["bun14"]), "--version"])
    if sc.backend.startswith("raw:"):
        v["raw-backend"] = (
            "scripts/lab/backends/raw_backend.py (python "
            + sys.version.split()[0]
            + ")"
        )
    if sc.nginx:
        v["nginx"] = (cmd_version(["nginx", "-v"]) or "").replace("nginx version: ", "")
    return v


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
    access_log {work}/logs/nginx-access.log;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 80;
        server_name _;
        location / {{
            proxy_pass http://vite:5173;
{upgrade}        }}
    }}
}}
"""
NGINX_UPGRADE = """\
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
"""
NGINX_NO_UPGRADE = """\
            proxy_set_header Host $host;
"""


def make_cert(work: Path):
    """A throwaway self-signed certificate for localhost and the lab's service
    names, made at run time in the work dir (never committed)."""
    cert, key = work / "tls-cert.pem", work / "tls-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,DNS:vite,DNS:meetsonar-backend,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o644)  # read by the processes in the namespaces (all root here)
    return str(cert), str(key)


def merge_keylogs(sources, dest: Path, pcap: Path):
    """Merge SSLKEYLOGFILE-format key logs (Chromium's, Node's), keeping only
    the secrets of TLS connections in the capture (the page-load connections
    made before the capture started are left out), without duplicates
    (browser->Vite secrets are logged by both ends)."""
    randoms = set(pcapcheck.tls_client_randoms(pcap))
    lines, seen = [], set()
    for src in sources:
        if not Path(src).exists():
            continue
        for line in Path(src).read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 3 or line.startswith("#"):
                continue
            if parts[1].lower() not in randoms or line in seen:
                continue
            seen.add(line)
            lines.append(line)
    dest.write_text("".join(x + "\n" for x in lines))
    return dest


def summarize_browser(b: dict, sc: Scenario):
    page = b.get("page") or {}
    evs = [e["what"] for e in page.get("events", [])]
    seen = []
    for e in evs:
        if e not in seen:
            seen.append(e)
    console = None
    for c in b.get("console", []):
        if "WebSocket" in c.get("text", ""):
            console = c["text"]
            break
    close = page.get("close") or {}
    ws_err = None
    for w in b.get("ws", []):
        if w["url"].endswith(sc.path) and w.get("error"):
            ws_err = w["error"]
    out = {
        "event": "+".join(seen) if seen else None,
        "close_code": close.get("code"),
        "console": console,
    }
    if close.get("reason"):
        out["close_reason"] = close["reason"]
    if page.get("received") is not None:
        out["received"] = page["received"]
    if ws_err:
        out["ws_error"] = ws_err
    if b.get("lab_closed_after_s"):
        out["lab_gave_up_after_s"] = b["lab_closed_after_s"]
    return out


def check_recording(sc: Scenario, pcap: Path, browser: dict, keys: Path | None = None):
    """Check the fresh recording against how the scenario was built."""
    problems = []
    page = browser.get("page") or {}
    evs = [e["what"] for e in page.get("events", [])]
    if browser.get("error"):
        problems.append(f"browser driver error: {browser['error'][:300]}")
    opened = "open" in evs
    if opened != sc.expect_open:
        problems.append(f"browser open={opened}, scenario expects {sc.expect_open}")
    echoed = bool(page.get("received"))
    if echoed != sc.expect_echo:
        problems.append(f"browser echo={echoed}, scenario expects {sc.expect_echo}")
    if "close" not in evs:
        problems.append("browser never reported close")
    if sc.transport:
        return problems + check_transport(sc, pcap, keys)
    for ch in sc.chains:
        if ch["path"] == "/":
            legs = pcapcheck.hmr_legs(pcap)
        else:
            legs = pcapcheck.legs(pcap, ch["path"])
        statuses = [pcapcheck.leg_status(c) for c in legs]
        if len(legs) != ch["hops"] or statuses != ch["statuses"]:
            desc = [
                f"{c.client[0]}:{c.client[1]}->{c.server[0]}:{c.server[1]} {s}"
                for c, s in zip(legs, statuses)
            ]
            problems.append(
                f"chain {ch['path']}: capture shows {len(legs)} legs {statuses} ({desc}), "
                f"scenario expects {ch['hops']} {ch['statuses']}"
            )
    return problems


def check_transport(sc: Scenario, pcap: Path, keys: Path | None):
    """TLS / h2 / h2c recordings: the legs seen without decrypting (TLS
    connections, h2c frames), then the statuses after decrypting with the key
    log (tshark), which must cover every TLS connection in the capture."""
    problems = []
    for ch in sc.chains:
        problems += pcapcheck.structural_problems(
            pcap, ch, sc.transport, sc.encrypted_legs()
        )
        dec = pcapcheck.decrypted_problems(pcap, ch, sc.transport, keys)
        if dec is None:
            problems.append("tshark not available: cannot check the decrypted legs")
        else:
            problems += dec
    return problems


def bun_ver(which):
    return cmd_version([str(BUNS[which]), "--version"])


def topology(sc: Scenario):
    who = "browser" if sc.client == "browser" else "node http2 client"
    t = {
        "client": f"{netlab.HOST_IP} ({who}, host side; docker-proxy relays localhost:5173)"
    }
    be_ip = netlab.CONTAINERS["meetsonar-backend"][1]
    if sc.backend == "h2":
        kind = "h2 (TLS, ALPN h2)" if sc.transport == "h2" else "h2c (prior knowledge)"
        t["backend"] = (
            f"{be_ip}:{H2_PORTS[sc.transport]} node http2 {kind}, enableConnectProtocol"
        )
        return t
    if sc.nginx:
        t["proxy"] = f"{netlab.CONTAINERS['nginx'][1]}:80 nginx"
        t["proxy2"] = f"{netlab.CONTAINERS['vite'][1]}:5173 vite" + (
            f" (bun {bun_ver(sc.vite)} --bun)" if sc.vite in BUNS else ""
        )
    else:
        t["proxy"] = f"{netlab.CONTAINERS['vite'][1]}:5173 vite" + (
            f" (bun {bun_ver(sc.vite)} --bun)" if sc.vite in BUNS else ""
        )
    be_ip = netlab.CONTAINERS["meetsonar-backend"][1]
    kind = {"ws": "ws", "bun": "Bun.serve", "none": "nothing listening"}.get(
        sc.backend, sc.backend
    )
    if sc.backend_name == "dead":
        t["backend"] = f"{netlab.DEAD_IP}:5000 (no host answers)"
    elif sc.backend_name == "missing":
        t["backend"] = "meetsonar-backend does not resolve"
    elif sc.backend_tls:
        t["backend"] = f"{be_ip}:{BACKEND_TLS_PORT} {kind} (https/wss)"
    else:
        t["backend"] = f"{be_ip}:5000 {kind}"
    if sc.transport == "tls":
        t["proxy"] += " (server.https)"
    return t


def names(sc: Scenario):
    n = {netlab.HOST_IP: "host"}
    if sc.backend != "h2":
        n[netlab.CONTAINERS["vite"][1]] = "vite"
    if sc.nginx:
        n[netlab.CONTAINERS["nginx"][1]] = "nginx"
    if sc.backend_name == "dead":
        n[netlab.DEAD_IP] = "meetsonar-backend"
    elif sc.backend_name == "ok":
        n[netlab.CONTAINERS["meetsonar-backend"][1]] = "meetsonar-backend"
    return n


def run_scenario(sc: Scenario, out: Path, keep: bool = False) -> dict:
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix=f"wscaplab-{sc.name}-"))
    os.chmod(work, 0o755)
    pcap = work / f"{sc.name}.pcap"
    result = {
        "scenario": sc.name,
        "ok": False,
        "problems": [],
        "seconds": None,
        "work": str(work),
    }
    overrides = {}
    if sc.backend_name == "dead":
        overrides["meetsonar-backend"] = netlab.DEAD_IP
    elif sc.backend_name == "missing":
        overrides["meetsonar-backend"] = None
    with netlab.Lab(work, log=log) as lab:
        lab.setup_network(
            overrides, dead_host_for="vite" if sc.backend_name == "dead" else None
        )
        be_ns = netlab.CONTAINERS["meetsonar-backend"][0]
        vite_ns = netlab.CONTAINERS["vite"][0]
        env = {"ALLOWED_ORIGINS": ALLOWED_ORIGINS, "PORT": "5000", **sc.backend_env}
        tls_files = make_cert(work) if sc.transport in ("tls", "h2") else None
        if sc.backend == "ws":
            be_port = 5000
            if sc.backend_tls:
                be_port = BACKEND_TLS_PORT
                env.update(
                    PORT=str(be_port), TLS_CERT=tls_files[0], TLS_KEY=tls_files[1]
                )
            p = lab.spawn(
                "backend",
                be_ns,
                ["node", str(LAB / "backends" / "ws-backend.mjs")],
                env=env,
                cwd=LAB,
            )
            lab.wait_listening(be_ns, be_port, p, name="backend")
        elif sc.backend == "h2":
            be_port = H2_PORTS[sc.transport]
            env.update(PORT=str(be_port), STATIC_DIR=str(LAB / "app"))
            if sc.transport == "h2":
                env.update(TLS_CERT=tls_files[0], TLS_KEY=tls_files[1])
            p = lab.spawn(
                "backend",
                be_ns,
                ["node", str(LAB / "backends" / "h2-backend.mjs")],
                env=env,
                cwd=LAB,
            )
            lab.wait_listening(be_ns, be_port, p, name="backend")
        elif sc.backend == "bun":
            p = lab.spawn(
                "backend",
                be_ns,
                [str(BUN), str(LAB / "backends" / "bun-backend.ts")],
                env=env,
                cwd=LAB,
            )
            lab.wait_listening(be_ns, 5000, p, name="backend")
        elif sc.backend.startswith("raw:"):
            mode = sc.backend.split(":", 1)[1]
            p = lab.spawn(
                "backend",
                be_ns,
                [
                    sys.executable,
                    "-u",
                    str(LAB / "backends" / "raw_backend.py"),
                    "--mode",
                    mode,
                ],
                cwd=LAB,
            )
            lab.wait_listening(be_ns, 5000, p, name="backend")
        venv = {
            "LAB_PROXY_HOOK": sc.hook,
            "LAB_HMR": "1" if sc.hmr else "0",
            "LAB_VITE_CACHE": str(work / "vite-cache"),
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            "BROWSER": "none",
        }
        if sc.transport == "tls":
            venv.update(LAB_TLS_CERT=tls_files[0], LAB_TLS_KEY=tls_files[1])
            # Node writes the secrets of every TLS connection it makes or
            # accepts (browser->Vite and, with a TLS backend, Vite->backend).
            venv["NODE_OPTIONS"] = f"--tls-keylog={work / 'node.keys'}"
        if sc.backend_tls:
            venv["LAB_BACKEND_TARGET"] = f"https://meetsonar-backend:{BACKEND_TLS_PORT}"
        if sc.vite in BUNS:
            argv = [
                str(BUNS[sc.vite]),
                "--bun",
                str(VITE_JS),
                "--config",
                str(LAB / "vite.config.js"),
            ]
        else:
            argv = ["node", str(VITE_JS), "--config", str(LAB / "vite.config.js")]
        if sc.backend == "h2":
            # No Vite: the client talks to the h2 backend through the published port.
            entry = (netlab.CONTAINERS["meetsonar-backend"][1], be_port)
        else:
            p = lab.spawn("vite", vite_ns, argv, env=venv, cwd=LAB)
            lab.wait_listening(vite_ns, 5173, p, name="vite")
            entry = (netlab.CONTAINERS["vite"][1], 5173)
        if sc.nginx:
            (work / "nginx-tmp").mkdir()
            block = {
                "upgrade": NGINX_UPGRADE,
                "no-upgrade": NGINX_NO_UPGRADE,
                "upgrade-timeout3": NGINX_UPGRADE.replace(
                    "proxy_read_timeout 60s", "proxy_read_timeout 3s"
                ),
            }
            conf = NGINX_CONF.format(work=work, upgrade=block[sc.nginx])
            (work / "nginx.conf").write_text(conf)
            ngx_ns = netlab.CONTAINERS["nginx"][0]
            p = lab.spawn(
                "nginx",
                ngx_ns,
                ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)],
            )
            lab.wait_listening(ngx_ns, 80, p, name="nginx")
            entry = (netlab.CONTAINERS["nginx"][1], 80)
        p = lab.spawn(
            "docker-proxy",
            netlab.HOST_NS,
            [
                sys.executable,
                "-u",
                str(HERE / "docker_proxy.py"),
                "5173",
                entry[0],
                str(entry[1]),
            ],
        )
        lab.wait_listening(netlab.HOST_NS, 5173, p, name="docker-proxy")
        udd = work / "chromium-profile"
        # Without HMR the page (and Vite's ~200 kB client) is loaded before the
        # capture starts, so only the WebSocket connections are recorded.
        # h2: the WebSocket rides on the page's own h2 connection, whose TLS
        # handshake must be in the capture to decrypt it.
        capture_page_load = sc.hmr or sc.transport == "h2"
        scheme = "https" if sc.transport in ("tls", "h2") else "http"
        url = (
            f"{scheme}://localhost:5173/?path={sc.path}"
            + ("" if capture_page_load else "&defer=1")
            + (f"&protocols={sc.protocols}" if sc.protocols else "")
        )
        client_argv = ["node", str(HERE / "browser.mjs"), url, str(sc.wait), str(udd)]
        benv = dict(os.environ)
        if sc.transport in ("tls", "h2"):
            benv["LAB_SSLKEYLOG"] = str(work / "chromium.keys")
        if sc.client == "h2client":
            # The capture must hold the whole h2 connection: h2client.mjs
            # prints READY before it connects.
            url = f"{scheme}://localhost:5173{sc.path}"
            client_argv = ["node", str(HERE / "h2client.mjs"), url, str(sc.wait)]
            if scheme == "https":
                client_argv.append(str(work / "client.keys"))
            capture_page_load = False
        cap = lab.start_capture(pcap) if capture_page_load else None
        cap_t0 = time.time()
        log(f"{sc.name}: {sc.client} -> {url}")
        berr = open(lab.logdir / "browser.stderr.log", "w")  # noqa: SIM115 - the child writes to it
        bp = subprocess.Popen(
            ["ip", "netns", "exec", netlab.HOST_NS, *client_argv],
            env=benv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=berr,
            text=True,
            cwd=LAB,
            start_new_session=True,
        )
        lab.procs.append(("browser", bp))
        first = bp.stdout.readline()
        if first.strip() == "READY" and cap is None:
            cap = lab.start_capture(pcap)
            cap_t0 = time.time()
            time.sleep(0.2)
        try:
            rest, _ = bp.communicate("GO\n", timeout=sc.wait + 60)
        except subprocess.TimeoutExpired:
            lab.stop(bp)
            rest = ""
        berr.close()
        br = subprocess.CompletedProcess(
            bp.args,
            bp.returncode,
            first + (rest or ""),
            (lab.logdir / "browser.stderr.log").read_text(),
        )
        if cap is None:
            cap = lab.start_capture(pcap)
            cap_t0 = time.time()
        time.sleep(0.5)  # let FIN/RST and close frames reach the capture
        # tcpdump hands packets over in blocks (1 s buffer timeout without
        # --immediate-mode): a very short exchange (h2c-websocket is over in
        # 0.3 s) is lost when tcpdump is stopped before the first block is
        # retired. Keep every capture running for at least 2 s.
        time.sleep(max(0.0, 2.0 - (time.time() - cap_t0)))
        lab.stop_capture(cap)
        lab.stop_all()
    try:
        browser = json.loads(br.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        browser = {
            "error": f"browser driver printed no JSON (rc={br.returncode}): {br.stderr[-500:]}"
        }
    (work / "browser.json").write_text(json.dumps(browser, indent=2))
    keys = None
    if sc.transport in ("tls", "h2"):
        keys = work / f"{sc.name}.keys"
        merge_keylogs(
            [work / "chromium.keys", work / "client.keys", work / "node.keys"],
            keys,
            pcap,
        )
    problems = check_recording(sc, pcap, browser, keys)
    expected = {
        "scenario": sc.name,
        "description": sc.description,
        "topology": topology(sc),
        "names": names(sc),
        "browser": summarize_browser(browser, sc),
        "chains": sc.chains,
        "versions": versions(sc),
        "recorded_with": "scripts/lab/run " + sc.name,
    }
    if sc.transport:
        expected["transport"] = sc.transport
        expected["encrypted_legs"] = sc.encrypted_legs()
        # What tshark read on each leg after decrypting with the key log
        # (HTTP version, h2 stream and :protocol of the extended CONNECT).
        try:
            seen = pcapcheck.decrypted_legs(
                pcap, sc.chains[0]["path"], sc.transport, keys
            )
        except RuntimeError as e:
            seen = None
            problems.append(str(e))
        if seen is not None:
            expected["legs_seen"] = [
                {k: v for k, v in d.items() if k != "leg"} for d in seen
            ]
    if keys is not None:
        expected["keylog"] = keys.name
    if sc.twin:
        expected["twin"] = sc.twin
    if sc.client != "browser":
        expected["client"] = browser.get("client") or sc.client
    proxy_errors = []
    vlog = work / "logs" / "vite.log"
    if vlog.exists():
        for line in vlog.read_text(errors="replace").splitlines():
            if line.startswith("[wscap-lab] proxy error "):
                proxy_errors.append(line[len("[wscap-lab] proxy error ") :])
    if proxy_errors:
        expected["proxy_log"] = proxy_errors[:5]
    if sc.notes:
        expected["notes"] = sc.notes
    (work / f"{sc.name}.expected.json").write_text(
        json.dumps(expected, indent=2) + "\n"
    )
    result["browser"] = expected["browser"]
    result["problems"] = problems
    result["seconds"] = round(time.time() - t0, 1)
    if not problems:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pcap, out / f"{sc.name}.pcap")
        if keys is not None:
            shutil.copyfile(keys, out / keys.name)
        (out / f"{sc.name}.expected.json").write_text(
            json.dumps(expected, indent=2) + "\n"
        )
        result["ok"] = True
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
            result["work"] = None
    return result


def _term(signum, frame):
    raise KeyboardInterrupt(
        f"signal {signum}"
    )  # unwinds through Lab.__exit__: cleanup runs


def main(argv=None):
    import signal

    signal.signal(signal.SIGTERM, _term)
    ap = argparse.ArgumentParser(
        prog="scripts/lab/run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    ap.add_argument(
        "--out",
        default=str(REPO / "pcaps"),
        help="where NAME.pcap/NAME.expected.json go",
    )
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work dir (logs, browser.json) of passing runs",
    )
    a = ap.parse_args(argv)
    if a.list:
        for s in SCENARIOS:
            print(f"{s.name:28} {s.description}")
        return 0
    if os.geteuid() != 0:
        print(
            "scripts/lab/run needs root (network namespaces, tcpdump)", file=sys.stderr
        )
        return 2
    if not VITE_JS.exists():
        print("node_modules missing: run scripts/lab/install first", file=sys.stderr)
        return 2
    names_ = a.scenarios or [s.name for s in SCENARIOS]
    unknown = [n for n in names_ if n not in BY_NAME]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    out = Path(a.out)
    results = []
    t_all = time.time()
    for n in names_:
        sc = BY_NAME[n]
        need = [BUNS[k] for k in ("bun", "bun14") if sc.vite == k] + (
            [BUN] if sc.backend == "bun" else []
        )
        if any(cmd_version([str(b), "--version"]) is None for b in need):
            log(f"{n}: SKIP (bun binary missing or not working in node_modules)")
            results.append(
                {"scenario": n, "ok": None, "problems": ["bun missing"], "seconds": 0}
            )
            continue
        log(f"{n}: start")
        try:
            r = run_scenario(sc, out, keep=a.keep)
        except KeyboardInterrupt:
            log(f"{n}: interrupted; namespaces and processes cleaned up")
            return 130
        except Exception as e:  # noqa: BLE001 - report it and keep going with the next scenario
            r = {
                "scenario": n,
                "ok": False,
                "problems": [f"{type(e).__name__}: {e}"],
                "seconds": None,
            }
        results.append(r)
        status = "ok" if r["ok"] else "FAIL"
        log(f"{n}: {status} in {r['seconds']}s browser={json.dumps(r.get('browser'))}")
        for p in r["problems"]:
            log(f"{n}:   problem: {p}")
        if r.get("work"):
            log(f"{n}:   work dir kept: {r['work']}")
    total = round(time.time() - t_all, 1)
    print()
    print(f"{'scenario':28} {'result':6} {'secs':>6}")
    for r in results:
        res = "ok" if r["ok"] else ("skip" if r["ok"] is None else "FAIL")
        print(
            f"{r['scenario']:28} {res:6} {r['seconds'] if r['seconds'] is not None else '-':>6}"
        )
    print(f"total {total}s")
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
