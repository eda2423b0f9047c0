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


def versions(sc: Scenario):
    v = {
        "vite": pkg_version("vite"),
        "node": cmd_version(["node", "--version"]),
        "chromium": chromium_version(),
        "playwright-core": pkg_version("playwright-core"),
    }
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


def check_recording(sc: Scenario, pcap: Path, browser: dict):
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


def bun_ver(which):
    return cmd_version([str(BUNS[which]), "--version"])


def topology(sc: Scenario):
    t = {
        "client": f"{netlab.HOST_IP} (browser, host side; docker-proxy relays localhost:5173)"
    }
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
    else:
        t["backend"] = f"{be_ip}:5000 {kind}"
    return t


def names(sc: Scenario):
    n = {netlab.HOST_IP: "host"}
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
        if sc.backend == "ws":
            p = lab.spawn(
                "backend",
                be_ns,
                ["node", str(LAB / "backends" / "ws-backend.mjs")],
                env=env,
                cwd=LAB,
            )
            lab.wait_listening(be_ns, 5000, p, name="backend")
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
        capture_page_load = sc.hmr
        url = (
            f"http://localhost:5173/?path={sc.path}"
            + ("" if capture_page_load else "&defer=1")
            + (f"&protocols={sc.protocols}" if sc.protocols else "")
        )
        cap = lab.start_capture(pcap) if capture_page_load else None
        log(f"{sc.name}: browser -> {url}")
        berr = open(lab.logdir / "browser.stderr.log", "w")  # noqa: SIM115 - the child writes to it
        bp = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netlab.HOST_NS,
                "node",
                str(HERE / "browser.mjs"),
                url,
                str(sc.wait),
                str(udd),
            ],
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
        time.sleep(0.5)  # let FIN/RST and close frames reach the capture
        lab.stop_capture(cap)
        lab.stop_all()
    try:
        browser = json.loads(br.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        browser = {
            "error": f"browser driver printed no JSON (rc={br.returncode}): {br.stderr[-500:]}"
        }
    (work / "browser.json").write_text(json.dumps(browser, indent=2))
    problems = check_recording(sc, pcap, browser)
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
