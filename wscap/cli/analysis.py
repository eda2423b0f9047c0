"""Offline analysis for the commands that read captures (analyze, report, slice): build the
pipeline's Options from the shared options, run it, say input problems in one line each, and
apply the --chain/--host/--path/--only-broken view."""
from __future__ import annotations

import sys
from typing import IO, Any

import click


from wscap.engine.tshark_locate import tshark_path
from wscap.cli.options import EXIT_INPUT, err, fail, limits_from, read_names
from wscap.engine.analyze import run_pipeline
from wscap.engine.core import Options
from wscap.model.limits import Limits


def build_options(max_head_bytes: int, max_flow_buffer: int, max_flows: int, max_frames: int,
                  timeout_s: float, names: dict[str, str] | None = None, jobs: int | None = None,
                  max_tunnel_depth: int = Limits().tunnel_depth,
                  keylog: tuple[str, ...] | str | None = None, engine: str = "wscap",
                  max_dns: int = Limits().max_dns, names_fallback: dict[str, str] | None = None,
                  max_hpack_table: int = Limits().hpack_table, max_h2_header_bytes: int = Limits().h2_header_bytes,
                  max_inflate_bytes: int = Limits().inflate_bytes,
                  max_handshakes: int = Limits().max_handshakes,
                  max_gzip_records_per_kib: int = Limits().gzip_records_per_kib) -> Options:
    lim = limits_from(dict(max_head_bytes=max_head_bytes, max_flow_buffer=max_flow_buffer, max_flows=max_flows,
                           max_frames=max_frames, max_dns=max_dns, max_tunnel_depth=max_tunnel_depth,
                           max_hpack_table=max_hpack_table, max_h2_header_bytes=max_h2_header_bytes,
                           max_inflate_bytes=max_inflate_bytes, max_handshakes=max_handshakes,
                           max_gzip_records_per_kib=max_gzip_records_per_kib))
    return Options(timeout_s=timeout_s, limits=lim, names=tuple(sorted((names or {}).items())),
                   names_fallback=tuple(sorted((names_fallback or {}).items())),
                   keylog=one_keylog(keylog),
                   keylog_sources=tuple(keylog) if isinstance(keylog, tuple) and len(keylog) > 1 else (),
                   judge_processes=0 if jobs is None else min(jobs, 2))


def one_keylog(keylog: tuple[str, ...] | str | None) -> str | None:
    """Several --keylog files (browser, Vite's Node, the backend) -> one file tshark can read."""
    if isinstance(keylog, str):
        return keylog or None
    if not keylog:
        return None
    if len(keylog) == 1:
        return keylog[0]
    import atexit
    import os
    import tempfile
    fd, path = tempfile.mkstemp(prefix="wscap-keylog-", suffix=".keys")
    def remove() -> None:
        if os.path.exists(path):
            os.unlink(path)
    atexit.register(remove)
    with os.fdopen(fd, "wb") as out:
        for k in keylog:
            with open(k, "rb") as f:
                data = f.read()
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
    return path


def need_tshark(keylog: str | None, engine: str) -> None:
    """--keylog and --engine tshark run tshark: say so at once, before any work, when it is missing."""
    if (keylog or engine == "tshark") and tshark_path() is None:
        what = "--keylog" if keylog else "--engine tshark"
        err(f"{what} needs tshark (Debian: apt install tshark)")
        sys.exit(EXIT_INPUT)


def docker_names() -> dict[str, str]:
    """Names from this machine's Docker API: the lowest precedence (it may not be the machine
    that captured); {} when it does not answer."""
    try:
        # Found first, with only the client module: with no engine there are no names, and the
        # rest of the Docker module (and its scan of /proc for docker-proxy) is not needed.
        from wscap.capture.engine_api import connect
        client, _why = connect()
        if client is None:
            return {}
        from wscap.capture.docker import docker_names as ask
        return ask(client)
    except Exception:  # noqa: BLE001 - the Docker API is optional; names are a convenience
        return {}


def run_analysis(files: tuple[str, ...], names_file: str | None, lim: dict[str, Any],
                 stream_json: IO[str] | None = None, need_file: bool = False,
                 lazy: bool = False) -> dict[str, Any]:
    """Analyse; with `stream_json` (a text stream) the JSON document is streamed there in bounded
    memory and only its summary (and sources) come back. `lazy`: the document's handshakes and
    chains stay in the spool (SpooledList), read back as the renderer walks them."""
    # A missing file is an input error of its own (one line, exit 2 at the end); the files that
    # exist are still analysed, so one typo does not hide everything else.
    # Labels by precedence (options.merged_names): --names, then the capture's own Name
    # Resolution Blocks (the pipeline merges those), then the Docker API of this machine.
    from wscap.cli.termui import Inputs, Progress
    names = read_names(names_file)
    options = build_options(names=names, names_fallback=docker_names(), **lim)
    need_tshark(options.keylog, lim.get("engine", "wscap"))
    tshark = lim.get("engine") == "tshark"
    inputs = Inputs(files, need_file or tshark or bool(options.keylog) or (lim.get("jobs") or 1) > 1)
    try:
        with Progress(inputs.paths, sys.stderr.isatty()):
            if tshark:
                from wscap.engine.tshark import analyze_paths as tshark_analyze
                doc: dict[str, Any] = inputs.fix(tshark_analyze(inputs.paths, options, keylog=options.keylog))
                if stream_json is not None:
                    from wscap.render.json import write_document
                    write_document(doc, stream_json)
                return doc
            pipe = run_pipeline(inputs.paths, options, None, jobs=lim.get("jobs") or 1,
                                notify=lambda line: click.echo(f"wscap: {line}", err=True))
            pipe.sources = inputs.fix({"source": pipe.sources})["source"]
        if stream_json is not None:
            return {"source": pipe.sources, "summary": pipe.write_json(stream_json), "stats": pipe.stats}
        return pipe.lazy_document() if lazy else pipe.document()
    finally:
        inputs.close()


def report_errors(doc: dict[str, Any]) -> None:
    for s in doc.get("source") or []:
        for e in s["errors"]:
            err(e)
        kl = s.get("keylog")
        if kl and kl.get("error"):
            err(f"{s['path']}: {kl['error']}")
    line = unsupported_line(doc.get("stats") or {})
    if line:
        err(line)
    dropped = ((doc.get("stats") or {}).get("limits_hit") or {}).get("max_handshakes")
    if dropped:
        err(f"{dropped} upgrade request(s) past --max-handshakes were counted, not kept: the document is partial")


def unsupported_line(stats: dict[str, Any]) -> str:
    """One line naming the encapsulations wscap saw but does not read (never a silent 0)."""
    from wscap.render.escape import term
    u = stats.get("unsupported_encapsulation") or {}
    if not u:
        return ""
    top = sorted(u.items(), key=lambda x: (-x[1], x[0]))
    return (f"{sum(u.values())} packet(s) in encapsulations wscap does not read: "
            + ", ".join(f"{term(k)} {n}" for k, n in top[:8]) + (f", {len(top) - 8} more kinds" if len(top) > 8 else "")
            + "; TCP inside them is not analysed")


def nothing_read(doc: dict[str, Any]) -> bool:
    """Every input failed before a single packet (missing, empty, not a capture)."""
    return all(s["errors"] and not s["packets"] for s in doc["source"])


def id_ranges(ids: list[int]) -> str:
    """[1, 2, 3, 5] -> '1–3, 5'."""
    out: list[str] = []
    ids = sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}–{ids[j]}")
        i = j + 1
    return ", ".join(out)


def apply_filters(full: dict[str, Any], only_broken: bool, chain_id: int | None, host: str | None,
                  path_glob: str | None) -> dict[str, Any]:
    """The filtered view, or one line and exit 2 when a filter names what is not there.

    `--chain N` must exist; `--host`/`--path` must match some chain or handshake. An empty
    `--only-broken` view is an answer (nothing broken: exit 0), not an error."""
    if not (only_broken or chain_id is not None or host or path_glob):
        return full
    from wscap.render.escape import term
    from wscap.render.query import filter_document
    ids = [c["id"] for c in full.get("chains") or []]
    if chain_id is not None and chain_id not in ids:
        report_errors(full)
        fail(f"no chain {chain_id}; chains: {id_ranges(ids)}" if ids else
             f"no chain {chain_id}: no chains in this capture")
    if host or path_glob:
        probe = filter_document(full, host=host, path=path_glob)
        if not probe["chains"] and not probe["handshakes"]:
            hosts = sorted({v for h in full["handshakes"] for n, v in ((h.get("request") or {}).get("headers") or [])
                            if n.lower() == "host"})
            paths = sorted({(h.get("request") or {}).get("target", "").split("?")[0] for h in full["handshakes"]
                            if h.get("request")})
            what = " and ".join(x for x in (f"--host {host!r}" if host else "",
                                            f"--path {path_glob!r}" if path_glob else "") if x)
            here = (f"; hosts here: {', '.join(map(term, hosts[:8]))}" if host else
                    f"; paths here: {', '.join(map(term, paths[:8]))}")
            report_errors(full)
            fail(f"no chain or handshake matches {what}" + (here if full["handshakes"] else
                                                             ": no handshakes in this capture"))
    return filter_document(full, only_broken=only_broken, chain=chain_id, host=host, path=path_glob)
