"""Fuzz worker: a long-lived subprocess that derives cases and analyses them.

Protocol (one JSON object per line):
  stdin   {"i": index}                        analyse case `index` of the run
  stdout  {"i": index, "ok": true, "ms": t, "rss_kb": peak}
          {"i": index, "ok": false, "exc": "Type: msg", "where": "file:line", "tb": "..."}

What a case must survive is exactly what `wscap analyze` does with a file:
analyse it, serialise the JSON document, render the table, compute the exit
code. Any exception escaping that is a crash. The parent kills the worker when
a case exceeds its time bound (a hang) and starts a new one.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz_lib.corpus import load  # noqa: E402
from fuzz_lib.mutate import case_files, make_case  # noqa: E402


def analyse_file(path: str, render: str = "analyze", extra: tuple[str, ...] = ()) -> None:
    """Everything `wscap analyze FILE` does after reading the options.

    render="formats" also renders every other output format (Markdown, HTML,
    CSV, HAR; redacted and not) from the same document; "slice" slices the
    first chains out of the capture (`wscap slice`, which has its own reader);
    "all" does both. `extra` files are analysed after `path` into the same document.
    """
    from wscap.engine.analyze import analyze_paths
    from wscap.cli.main import exit_code
    from wscap.render.table import render_table
    doc = analyze_paths([path, *extra])
    json.dumps(doc, indent=2, ensure_ascii=False)
    render_table(doc, verbose=True)
    exit_code(doc)
    if render in ("all", "formats"):
        from wscap.render.redact import redact_document
        from wscap.render.report import render_format
        for fmt in ("markdown", "html", "csv", "har"):
            render_format(doc, fmt, redact=None)
        render_table(redact_document(doc), verbose=True)
    if render in ("all", "slice"):
        # `wscap slice` re-reads the capture with its own reader: the first chains' legs.
        from wscap.capture.slice import slice_capture
        by_id = {h["id"]: h for h in doc["handshakes"]}
        import tempfile
        with tempfile.TemporaryDirectory(prefix="wscap-fuzz-slice-") as d:
            for c in doc["chains"][:2]:
                legs = [(by_id[i]["client"], by_id[i]["server"]) for i in c["hops"] if i in by_id]
                slice_capture(path, os.path.join(d, "slice.pcap"), legs)


def where(tb) -> str:
    frames = traceback.extract_tb(tb)
    for f in reversed(frames):
        if "/wscap/" in f.filename:
            return f"{os.path.relpath(f.filename, os.path.dirname(os.path.dirname(f.filename)))}:{f.lineno}"
    f = frames[-1] if frames else None
    return f"{os.path.basename(f.filename)}:{f.lineno}" if f else "?"


def peak_rss_kb() -> int:
    """VmHWM of this process. Not ru_maxrss: Linux carries the pre-exec high-water mark over
    exec, so a worker spawned from a bigger parent would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main() -> None:
    run_seed = int(sys.argv[1])
    tmpdir = sys.argv[2]
    paths = json.loads(sys.argv[3])
    mem_mb = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    render = sys.argv[5] if len(sys.argv) > 5 else "analyze"
    files = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    if mem_mb:
        # A runaway allocation becomes a MemoryError (reported as a crash), not a dead box.
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
    seeds = load(paths)
    import wscap.engine.analyze  # noqa: F401  (import cost outside the first case's time)
    import wscap.render.table  # noqa: F401
    case_path = os.path.join(tmpdir, f"case-{os.getpid()}.pcap")
    out = sys.stdout
    for line in sys.stdin:
        i = json.loads(line)["i"]
        try:
            data, _seed, _ops = make_case(seeds, run_seed, i)
            # --files 2: a second mutated capture in the same document (sources, ids, chains across files).
            more = case_files(seeds, run_seed, i, files)[1:] if files > 1 else []
        except Exception as e:  # a bug in the fuzzer itself, not in wscap
            out.write(json.dumps({"i": i, "ok": False, "exc": f"FuzzerBug {type(e).__name__}: {e}",
                                  "where": where(e.__traceback__), "tb": traceback.format_exc()[-4000:],
                                  "ms": 0, "rss_kb": 0}) + "\n")
            out.flush()
            continue
        with open(case_path, "wb") as f:
            f.write(data)
        del data
        extra = []
        for k, blob in enumerate(more):
            extra.append(f"{case_path}.{k + 2}")
            with open(extra[-1], "wb") as f:
                f.write(blob)
        del more
        reset_peak_rss()           # measure the analysis, not the fuzzer building a 60 MB case
        t = time.perf_counter()
        try:
            analyse_file(case_path, render, tuple(extra))
            msg = {"i": i, "ok": True}
        except BaseException as e:  # noqa: BLE001 - everything that escapes is the finding
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = {"i": i, "ok": False, "exc": f"{type(e).__name__}: {str(e)[:200]}",
                   "where": where(e.__traceback__), "tb": traceback.format_exc()[-4000:]}
        msg["ms"] = round((time.perf_counter() - t) * 1000, 2)
        msg["rss_kb"] = peak_rss_kb()
        out.write(json.dumps(msg) + "\n")
        out.flush()
    try:
        os.unlink(case_path)
    except OSError:
        pass


if __name__ == "__main__":
    main()
