"""Fuzz run driver: N worker subprocesses, a per-case time bound, crash/hang reproducers, peak RSS."""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .corpus import default_paths, load
from .mutate import case_files, make_case

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEEP_PER_SIGNATURE = 5


class Worker:
    def __init__(self, run_seed: int, tmpdir: str, paths: list[str], mem_mb: int, render: str = "analyze",
                 files: int = 1) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONHASHSEED", "0")
        self.p = subprocess.Popen(
            [sys.executable, WORKER, str(run_seed), tmpdir, json.dumps(paths), str(mem_mb), render, str(files)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        self.buf = b""
        self.done = 0                    # cases answered by this worker

    def send(self, i: int) -> None:
        self.p.stdin.write(json.dumps({"i": i}).encode() + b"\n")
        self.p.stdin.flush()

    def recv(self, timeout: float) -> dict | str:
        """The worker's answer, "timeout", or "died:<returncode>"."""
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.p.wait()
                return f"died:{rc}"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def hwm_kb(self) -> int:
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def kill(self) -> None:
        try:
            self.p.kill()
        except ProcessLookupError:
            pass
        self.p.wait()

    def close(self) -> None:
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.kill()


@dataclass
class Stats:
    cases: int = 0
    ok: int = 0
    crashes: int = 0
    hangs: int = 0
    died: int = 0
    peak_rss_kb: int = 0
    peak_case: int | None = None
    slowest_ms: float = 0.0
    slowest_case: int | None = None
    worker_starts: int = 0
    signatures: dict = field(default_factory=dict)    # signature -> {"count", "example", "files"}


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:60]


def run(cases: int, run_seed: int, workers: int = 2, timeout: float = 5.0, out: str | None = None,
        paths: list[str] | None = None, mem_mb: int = 2048, start: int = 0,
        progress: bool = False, render: str = "analyze", files: int = 1) -> dict:
    paths = paths if paths is not None else default_paths()
    seeds = load(paths)
    if not seeds:
        raise SystemExit("fuzz: no seed captures found")
    st = Stats()
    lock = threading.Lock()
    it = iter(range(start, start + cases))
    t0 = time.monotonic()
    tmpdir = tempfile.mkdtemp(prefix="wscap-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)

    def record(kind: str, sig: str, i: int, info: dict) -> None:
        entry = st.signatures.setdefault(sig, {"kind": kind, "count": 0, "example": i, "files": []})
        entry["count"] += 1
        if out is None or len(entry["files"]) >= KEEP_PER_SIGNATURE:
            return
        try:
            data, seed_name, ops = make_case(seeds, run_seed, i)
            if files > 1:
                ops = ops + [f"(+{files - 1} more file(s): case-{i}.2.pcap ..., analysed after this one)"]
        except Exception as e:  # noqa: BLE001 - a fuzzer bug; keep the run going
            data, seed_name, ops = b"", "?", [f"case generation failed: {e!r}"]
        d = os.path.join(out, kind, _slug(sig) + "-" + hashlib.sha1(sig.encode()).hexdigest()[:8])
        os.makedirs(d, exist_ok=True)
        fn = os.path.join(d, f"case-{i}.pcap")
        with open(fn, "wb") as f:
            f.write(data)
        for k, blob in enumerate(case_files(seeds, run_seed, i, files)[1:] if files > 1 else []):
            with open(f"{fn[:-5]}.{k + 2}.pcap", "wb") as f:
                f.write(blob)
        with open(fn[:-5] + ".json", "w") as f:
            json.dump({"run_seed": run_seed, "index": i, "seed_capture": seed_name, "mutations": ops,
                       "signature": sig, **info}, f, indent=2)
        entry["files"].append(os.path.relpath(fn, out))

    def drive() -> None:
        w = Worker(run_seed, tmpdir, paths, mem_mb, render, files)
        with lock:
            st.worker_starts += 1
        try:
            while True:
                with lock:
                    i = next(it, None)
                if i is None:
                    return
                w.send(i)
                # The first case of a fresh worker also pays its start-up (imports, seeds).
                budget = timeout + (30.0 if w.done == 0 else 0.0)
                res = w.recv(budget)
                w.done += 1
                with lock:
                    st.cases += 1
                    if isinstance(res, dict):
                        if res["rss_kb"] > st.peak_rss_kb:
                            st.peak_rss_kb, st.peak_case = res["rss_kb"], i
                        if res["ms"] > st.slowest_ms:
                            st.slowest_ms, st.slowest_case = res["ms"], i
                        if res["ok"]:
                            st.ok += 1
                        else:
                            st.crashes += 1
                            sig = f"{res['exc'].split(':')[0]} at {res['where']}"
                            record("crashes", sig, i, {"exception": res["exc"], "traceback": res["tb"]})
                    elif res == "timeout":
                        st.hangs += 1
                        hwm = w.hwm_kb()
                        if hwm > st.peak_rss_kb:
                            st.peak_rss_kb, st.peak_case = hwm, i
                        record("hangs", "hang", i, {"timeout_s": timeout, "rss_kb_at_kill": hwm})
                    else:
                        st.died += 1
                        record("crashes", f"worker {res}", i, {"hwm_kb": w.hwm_kb()})
                    if progress and st.cases % 1000 == 0:
                        el = time.monotonic() - t0
                        print(f"fuzz: {st.cases:,}/{cases:,} cases, {st.cases / el:.0f}/s, crashes {st.crashes}, "
                              f"hangs {st.hangs}, died {st.died}, peak RSS {st.peak_rss_kb / 1024:.0f} MiB",
                              file=sys.stderr, flush=True)
                if not isinstance(res, dict):
                    w.kill()
                    w = Worker(run_seed, tmpdir, paths, mem_mb, render, files)
                    with lock:
                        st.worker_starts += 1
        finally:
            w.close()

    old = signal.getsignal(signal.SIGINT)
    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        signal.signal(signal.SIGINT, old)
        for fn in os.listdir(tmpdir):
            try:
                os.unlink(os.path.join(tmpdir, fn))
            except OSError:
                pass
        os.rmdir(tmpdir)
    dur = time.monotonic() - t0
    summary = {
        "run_seed": run_seed, "first_case": start, "cases": st.cases, "ok": st.ok,
        "crashes": st.crashes + st.died, "uncaught_exceptions": st.crashes, "workers_died": st.died,
        "hangs": st.hangs, "timeout_per_case_s": timeout, "workers": workers,
        # Peak RSS of a worker while analysing one case (VmHWM reset after the case is built).
        "peak_rss_kb": st.peak_rss_kb, "peak_rss_mib": round(st.peak_rss_kb / 1024, 1),
        "peak_rss_first_seen_case": st.peak_case,
        "slowest_case_ms": st.slowest_ms, "slowest_case": st.slowest_case,
        "duration_s": round(dur, 1), "cases_per_s": round(st.cases / dur, 1) if dur else None,
        "worker_starts": st.worker_starts, "seed_captures": len(paths), "seed_variants": len(seeds),
        "memory_limit_mib": mem_mb, "render": render, "files_per_case": files, "signatures": st.signatures,
    }
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
