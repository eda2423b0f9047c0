"""Command line (click): parse options, run the pipeline, pick a renderer, map exit codes.

Exit codes (stable, documented in docs/json-contract.md and docs/cli.md), computed from what is
shown (with --chain/--host/--path/--only-broken: the filtered view):
  0  every handshake and chain shown is valid
  1  at least one chain shown is broken or a handshake shown has an error-severity anomaly
  2  usage error, or an input problem (results recovered before it are still printed), a filter
     that names no chain or matches nothing, an output that cannot be written
"""
from __future__ import annotations

import shutil
import sys

import click

from . import __version__
from .analyze import run_pipeline
from .limits import Limits
from .pipeline import Options
from .termui import color_options, fail

EXIT_OK, EXIT_BROKEN, EXIT_INPUT = 0, 1, 2


def is_broken(doc: dict) -> bool:
    s = doc["summary"]
    return bool(s["broken"] or s.get("with_errors"))


def exit_code(doc: dict) -> int:
    if any(s["errors"] for s in doc["source"]):
        return EXIT_INPUT
    if ((doc.get("stats") or {}).get("limits_hit") or {}).get("max_handshakes"):
        return EXIT_INPUT             # the document is partial: said in one line (report_errors)
    return EXIT_BROKEN if is_broken(doc) else EXIT_OK


def limits_options(f):
    """Resource bounds shared by analyze/report/live (documented in the README)."""
    d = Limits()
    for opt in reversed([
        # Ranges, so a bound that would give false verdicts (--max-flows 0 tracks nothing and
        # reports every upgrade as dropped) is refused as a usage error (exit 2).
        click.option("--max-head-bytes", type=click.IntRange(min=256), default=d.head_bytes, show_default=True,
                     help="Bytes of one HTTP header block."),
        click.option("--max-flow-buffer", type=click.IntRange(min=1024), default=d.flow_buffer, show_default=True,
                     help="Out-of-order bytes buffered per TCP direction."),
        click.option("--max-flows", type=click.IntRange(min=1), default=d.max_flows, show_default=True,
                     help="TCP connections tracked at once (oldest evicted)."),
        click.option("--max-frames", type=click.IntRange(min=0), default=d.frames_per_direction, show_default=True,
                     help="WebSocket frame summaries kept per direction."),
        click.option("--max-dns", type=click.IntRange(min=0), default=d.max_dns, show_default=True,
                     help="DNS transactions kept (oldest dropped first)."),
        click.option("--max-tunnel-depth", type=click.IntRange(0, 64), default=d.tunnel_depth, show_default=True,
                     help="Nested tunnels (VXLAN, GENEVE, GRE, IP-in-IP, MPLS, GTP-U) opened per packet."),
        click.option("--max-handshakes", type=click.IntRange(min=1), default=d.max_handshakes, show_default=True,
                     help="Handshakes kept in the document (each keeps a small link view in memory)."),
        click.option("--max-hpack-table", type=click.IntRange(min=0), default=d.hpack_table, show_default=True,
                     help="HPACK dynamic table per HTTP/2 direction, whatever the peer allows."),
        click.option("--max-inflate-bytes", type=click.IntRange(min=0), default=d.inflate_bytes, show_default=True,
                     help="Bytes a compressed WebSocket message is inflated to for previews."),
        click.option("--max-h2-header-bytes", type=click.IntRange(min=0), default=d.h2_header_bytes,
                     show_default=True, help="Decoded HTTP/2 header bytes kept per connection (then cut)."),
        click.option("--max-gzip-records-per-kib", type=click.IntRange(min=1), default=d.gzip_records_per_kib,
                     show_default=True, help="Records a gzip capture may give per KiB of compressed input, "
                     "checked after 1,000,000 (work bound; real captures stay far below)."),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True, max=86400),
                     default=3.0, show_default=True,
                     help="Seconds a leg waits for a response before it is decided."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Analyse several files in parallel processes (results identical to -j 1)."),
    ]):
        f = opt(f)
    return f


def build_options(max_head_bytes: int, max_flow_buffer: int, max_flows: int, max_frames: int,
                  timeout_s: float, names: dict[str, str] | None = None, jobs: int = 1,
                  max_tunnel_depth: int = Limits().tunnel_depth,
                  keylog: tuple[str, ...] | str | None = None, engine: str = "wscap",
                  max_dns: int = Limits().max_dns, names_fallback: dict[str, str] | None = None,
                  max_hpack_table: int = Limits().hpack_table, max_h2_header_bytes: int = Limits().h2_header_bytes,
                  max_inflate_bytes: int = Limits().inflate_bytes,
                  max_handshakes: int = Limits().max_handshakes,
                  max_gzip_records_per_kib: int = Limits().gzip_records_per_kib) -> Options:
    lim = Limits(head_bytes=max_head_bytes, flow_buffer=max_flow_buffer, max_flows=max_flows,
                 frames_per_direction=max_frames, max_dns=max_dns, tunnel_depth=max_tunnel_depth, hpack_table=max_hpack_table,
                 h2_header_bytes=max_h2_header_bytes, inflate_bytes=max_inflate_bytes,
                 max_handshakes=max_handshakes, gzip_records_per_kib=max_gzip_records_per_kib)
    return Options(timeout_s=timeout_s, limits=lim, names=tuple(sorted((names or {}).items())),
                   names_fallback=tuple(sorted((names_fallback or {}).items())),
                   keylog=one_keylog(keylog),
                   keylog_sources=tuple(keylog) if isinstance(keylog, tuple) and len(keylog) > 1 else ())


def one_keylog(keylog: tuple[str, ...] | str | None) -> str | None:
    """Several --keylog files (browser, Vite's Node, the backend) -> one file tshark can read."""
    if not keylog or isinstance(keylog, str):
        return keylog or None
    if len(keylog) == 1:
        return keylog[0]
    import atexit
    import os
    import tempfile
    fd, path = tempfile.mkstemp(prefix="wscap-keylog-", suffix=".keys")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    with os.fdopen(fd, "wb") as out:
        for k in keylog:
            with open(k, "rb") as f:
                data = f.read()
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
    return path


def keylog_option(f):
    return click.option("--keylog", type=click.Path(exists=True, dir_okay=False), multiple=True,
                        help="SSLKEYLOGFILE (browsers, Node --tls-keylog; repeatable): decrypt TLS connections with tshark "
                             "and analyse the upgrades inside them.")(f)


def engine_option(f):
    return click.option("--engine", type=click.Choice(["wscap", "tshark"]), default="wscap", show_default=True,
                        help="tshark: build handshakes from Wireshark's dissectors (pyshark) instead of "
                             "wscap's own reassembly: a second opinion.")(f)


def need_tshark(keylog: str | None, engine: str) -> None:
    """--keylog and --engine tshark run tshark: say so at once, before any work, when it is missing."""
    if (keylog or engine == "tshark") and shutil.which("tshark") is None:
        what = "--keylog" if keylog else "--engine tshark"
        click.echo(f"wscap: {what} needs tshark (Debian: apt install tshark)", err=True)
        sys.exit(EXIT_INPUT)


def load_hosts(path: str | None) -> dict[str, str]:
    """hosts-file format: `IP name [aliases...]`; comments with #."""
    names: dict[str, str] = {}
    if not path:
        return names
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2:
                names.setdefault(parts[0], parts[1])
    return names


class _Group(click.Group):
    """Running out of memory is an input problem (a capture too big for the chosen format), said
    in one line with exit 2 - never a traceback, never exit 1 (the "broken" code)."""

    def invoke(self, ctx: click.Context):
        reserve = bytearray(8 << 20)      # given back first, so the one line can still be written
        # Generators dropped while a MemoryError unwinds (the capture reader) may hit another in
        # their own cleanup; Python would print each as "Exception ignored in ...": the one line
        # below is the whole story. Other unraisable errors are printed as usual.
        default_hook = sys.unraisablehook

        def hook(u) -> None:
            if not isinstance(u.exc_value, MemoryError):
                default_hook(u)
        sys.unraisablehook = hook
        try:
            try:
                return super().invoke(ctx)
            except SystemError as e:
                # A failed allocation inside CPython's C code (seen under RLIMIT_AS, in the TCP
                # reassembly's bytes joins) can surface as this instead of MemoryError.
                if "without exception set" not in str(e):
                    raise
                raise MemoryError from None
        except MemoryError:
            del reserve
            import gc
            gc.collect()
            sys.stdout.flush()
            click.echo("wscap: out of memory holding this document; lower --max-handshakes/--max-flows, "
                       "or analyse fewer/smaller captures (see README: Resource bounds)", err=True)
            sys.exit(EXIT_INPUT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="wscap")
def main() -> None:
    """wscap: find which hop broke a WebSocket handshake, from packets.

    Exit codes (every command): 0 every chain shown is valid, 1 a chain shown
    is broken (or a handshake shown has an error anomaly), 2 usage or input
    error: bad option, missing or damaged file, a filter that matches nothing,
    an output that cannot be written.

    \b
    Shell completion (bash; also zsh_source, fish_source):
      eval "$(_WSCAP_COMPLETE=bash_source wscap)"
    """


FORMATS = ["table", "json", "markdown", "html", "csv", "har"]


def filter_options(f):
    for opt in reversed([
        click.option("--only-broken", is_flag=True, help="Only broken chains (and their handshakes)."),
        click.option("--chain", "chain_id", type=click.IntRange(min=1), help="Only this chain id."),
        click.option("--host", help="Only chains whose Host header, endpoint IP or name matches (glob)."),
        click.option("--path", "path_glob", help="Only chains whose request path matches (glob)."),
    ]):
        f = opt(f)
    return f


def refuse_output_or_exit(output: str, inputs) -> None:
    from .outpath import refuse_output
    why = refuse_output(output, inputs)
    if why:
        click.echo(f"wscap: {why}", err=True)
        sys.exit(EXIT_INPUT)


def redact_option(f):
    f = redact_list_options(f)
    return click.option("--redact/--no-redact", default=None,
                        help="Replace cookies, tokens and credentials by short stable hashes. Default: on for "
                             "the terminal table, markdown/html/csv/report; off for json/har.")(f)


def redact_list_options(f):
    """--redact-header NAME / --redact-query KEY (repeatable): secrets beside the built-in ones.
    They configure the redactor for this process (one command, one configuration)."""
    def headers(ctx, param, value):
        from .render.redact import configure
        configure(headers=value)

    def queries(ctx, param, value):
        from .render.redact import configure
        configure(query_keys=value)
    f = click.option("--redact-query", "redact_query", metavar="KEY", multiple=True, expose_value=False,
                     callback=queries, help="Also redact this query key's values (repeatable).")(f)
    return click.option("--redact-header", "redact_header", metavar="NAME", multiple=True, expose_value=False,
                        callback=headers, help="Also redact this header's values (repeatable).")(f)


def names_option(f):
    return click.option("--names", "names_file", type=click.Path(exists=True, dir_okay=False),
                        help="hosts-file mapping IPs to names (labels endpoints).")(f)


def read_option(f):
    return click.option("-r", "--read", "reads", multiple=True, metavar="FILE",
                        help="A capture to read, as in tcpdump (repeatable; same as a FILE argument; - is stdin).")(f)


def input_files(files: tuple[str, ...], reads: tuple[str, ...]) -> tuple[str, ...]:
    allf = tuple(reads) + tuple(files)
    if not allf:
        raise click.UsageError("no capture given (FILE arguments, -r FILE, or - for stdin)")
    return allf


def run_analysis(files: tuple[str, ...], names_file: str | None, lim: dict, stream_json=None,
                 need_file: bool = False, lazy: bool = False) -> dict:
    """Analyse; with `stream_json` (a text stream) the JSON document is streamed there in bounded
    memory and only its summary (and sources) come back. `lazy`: the document's handshakes and
    chains stay in the spool (SpooledList), read back as the renderer walks them."""
    # A missing file is an input error of its own (one line, exit 2 at the end); the files that
    # exist are still analysed, so one typo does not hide everything else.
    # Labels by precedence: --names, then the capture's own Name Resolution Blocks (pcapng, as
    # `live --write` records them), then the Docker API of this machine (which may not be the one
    # that captured).
    from .termui import Inputs, Progress
    names = load_hosts(names_file)
    docker: dict[str, str] = {}
    try:
        from .capture.docker import docker_names
        docker = docker_names()
    except Exception:  # noqa: BLE001 - the Docker API is optional; names are a convenience
        pass
    options = build_options(names=names, names_fallback=docker, **lim)
    need_tshark(options.keylog, lim.get("engine", "wscap"))
    tshark = lim.get("engine") == "tshark"
    inputs = Inputs(files, need_file or tshark or bool(options.keylog) or lim.get("jobs", 1) > 1)
    try:
        with Progress(inputs.paths, sys.stderr.isatty()):
            if tshark:
                from .engine_tshark import analyze_paths as tshark_analyze
                doc = inputs.fix(tshark_analyze(inputs.paths, options, keylog=options.keylog))
                if stream_json is not None:
                    from .render.json import write_document
                    write_document(doc, stream_json)
                return doc
            pipe = run_pipeline(inputs.paths, options, None, jobs=lim.get("jobs", 1),
                                notify=lambda line: click.echo(f"wscap: {line}", err=True))
            pipe.sources = inputs.fix({"source": pipe.sources})["source"]
        if stream_json is not None:
            return {"source": pipe.sources, "summary": pipe.write_json(stream_json), "stats": pipe.stats}
        return pipe.lazy_document() if lazy else pipe.document()
    finally:
        inputs.close()


def report_errors(doc: dict) -> None:
    for s in doc["source"]:
        for e in s["errors"]:
            click.echo(f"wscap: {e}", err=True)
        kl = s.get("keylog")
        if kl and kl.get("error"):
            click.echo(f"wscap: {s['path']}: {kl['error']}", err=True)
    line = unsupported_line(doc.get("stats") or {})
    if line:
        click.echo(f"wscap: {line}", err=True)
    dropped = ((doc.get("stats") or {}).get("limits_hit") or {}).get("max_handshakes")
    if dropped:
        click.echo(f"wscap: {dropped} upgrade request(s) past --max-handshakes were counted, not kept: "
                   "the document is partial", err=True)


def unsupported_line(stats: dict) -> str:
    """One line naming the encapsulations wscap saw but does not read (never a silent 0)."""
    from .render.escape import term
    u = stats.get("unsupported_encapsulation") or {}
    if not u:
        return ""
    top = sorted(u.items(), key=lambda x: (-x[1], x[0]))
    return (f"{sum(u.values())} packet(s) in encapsulations wscap does not read: "
            + ", ".join(f"{term(k)} {n}" for k, n in top[:8]) + (f", {len(top) - 8} more kinds" if len(top) > 8 else "")
            + "; TCP inside them is not analysed")


def nothing_read(doc: dict) -> bool:
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


def apply_filters(full: dict, only_broken: bool, chain_id: int | None, host: str | None,
                  path_glob: str | None) -> dict:
    """The filtered view, or one line and exit 2 when a filter names what is not there.

    `--chain N` must exist; `--host`/`--path` must match some chain or handshake. An empty
    `--only-broken` view is an answer (nothing broken: exit 0), not an error."""
    if not (only_broken or chain_id is not None or host or path_glob):
        return full
    from .render.escape import term
    from .render.report import filter_document
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


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@read_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Table: every chain, every handshake, every diff row, full heads, anomalies, frames.")
@filter_options
@redact_option
@names_option
@keylog_option
@engine_option
@limits_options
@color_options
def analyze(files: tuple[str, ...], reads: tuple[str, ...], fmt: str, verbose: bool, only_broken: bool,
            chain_id: int | None, host: str | None, path_glob: str | None, redact: bool | None,
            names_file: str | None, color: str, no_color: bool, **lim) -> None:
    """Analyse saved captures (pcap, pcapng, .gz; - reads stdin).

    The exit code describes what is shown: with a filter, only the chains it keeps count."""
    files = input_files(files, reads)
    filtered = only_broken or chain_id is not None or host or path_glob
    if fmt == "json" and not filtered and not redact:
        # The scripting path: streamed, memory independent of the number of handshakes.
        light = run_analysis(files, names_file, lim, stream_json=click.get_text_stream("stdout"))
        report_errors(light)
        sys.exit(exit_code(light))
    full = run_analysis(files, names_file, lim, lazy=True)    # every format renders from the spool
    if fmt == "table" and nothing_read(full):
        report_errors(full)          # a missing file is one line, not a table of nothing
        sys.exit(EXIT_INPUT)
    doc = apply_filters(full, only_broken, chain_id, host, path_glob)
    if fmt in ("json", "table"):
        if redact or (redact is None and fmt == "table"):
            from .render.redact import redact_document
            doc = redact_document(doc)
        if fmt == "json":
            from .render.json import write_document
            write_document(doc, click.get_text_stream("stdout"))
        else:
            from .render.table import render_table
            from .termui import look
            lk = look("never" if no_color else color)
            click.echo(render_table(doc, verbose=verbose, look=lk), color=lk.color)
    else:
        from .render.report import write_format
        out = click.get_text_stream("stdout")
        write_format(doc, fmt, out, redact=redact)    # piece by piece: nothing grows with the handshakes
        out.flush()
    report_errors(full)
    sys.exit(exit_code(doc))


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@read_option
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True),
              help="report.md (Markdown with Mermaid) or report.html (one self-contained file); - is stdout.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "html"]), default=None,
              help="Default: from the -o name (.html/.htm: html), markdown for -.")
@filter_options
@redact_option
@names_option
@keylog_option
@engine_option
@limits_options
def report(files: tuple[str, ...], reads: tuple[str, ...], output: str, fmt: str | None, only_broken: bool,
           chain_id: int | None, host: str | None, path_glob: str | None, redact: bool | None,
           names_file: str | None, **lim) -> None:
    """Write a self-contained incident report (Markdown or HTML) for captures."""
    from .render.redact import redact_document
    from .render.report import iter_report_html, iter_report_markdown
    from .termui import check_output, open_output
    files = input_files(files, reads)
    check_output(output)
    if output != "-":
        refuse_output_or_exit(output, files)     # never through a symlink, never over an input
    full = run_analysis(files, names_file, lim, lazy=True)
    if nothing_read(full):
        report_errors(full)
        sys.exit(EXIT_INPUT)
    doc = apply_filters(full, only_broken, chain_id, host, path_glob)
    if redact is not False:
        doc = redact_document(doc)
    if fmt is None:
        fmt = "html" if output.lower().endswith((".html", ".htm")) else "markdown"
    # Made before the file is opened (a failure leaves no half file), written piece by piece.
    pieces = iter_report_html(doc) if fmt == "html" else iter_report_markdown(doc)
    first = next(pieces)
    out = open_output(output, binary=False)
    try:
        out.write(first)
        for piece in pieces:
            out.write(piece)
        out.flush()
        if output != "-":
            out.close()
    except OSError as e:
        fail(f"-o {output}: {e.strerror or e}")
    s = doc["summary"]
    click.echo(f"wrote {'stdout' if output == '-' else output} ({fmt}): {s['chains']} chain(s), "
               f"{s['broken']} broken", err=True)
    report_errors(full)
    sys.exit(exit_code(doc))


@main.command("slice")
@click.argument("capture", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@read_option
@click.option("--chain", "chain_id", type=click.IntRange(min=1), required=True,
              help="Chain id (from `wscap analyze`).")
@click.option("-o", "-w", "--output", required=True, type=click.Path(allow_dash=True),
              help="Output capture (- is stdout). .pcapng writes pcapng, .pcap/.cap classic pcap; "
                   "any other name keeps the input's format.")
@keylog_option
@limits_options
def slice_cmd(capture: str | None, reads: tuple[str, ...], chain_id: int, output: str, **lim) -> None:
    """Write just the packets of one chain (every leg) to a capture for Wireshark.

    Packets are copied as captured: TLS legs stay encrypted (open the slice in Wireshark with the
    same key log); `--keylog` is only needed to find chains inside TLS."""
    from .slice import output_format, slice_capture
    from .termui import Inputs, check_output, open_output
    given = input_files((capture,) if capture else (), reads)
    if len(given) != 1:
        raise click.UsageError("slice reads one capture")
    if output == "-" and sys.stdout.isatty():
        fail("-o -: refusing to write a capture to the terminal; redirect or pipe stdout "
             "(… -o - | wireshark -k -i -)")
    check_output(output)
    if output != "-":
        refuse_output_or_exit(output, given)
    inputs = Inputs(given, need_file=True)       # read twice: analysed, then cut
    try:
        path = inputs.paths[0]
        doc = inputs.fix(run_analysis((path,), None, lim))
        if nothing_read(doc):
            report_errors(doc)
            sys.exit(EXIT_INPUT)
        chains = {c["id"]: c for c in doc["chains"]}
        if chain_id not in chains:
            fail(f"no chain {chain_id} in {given[0]}; chains: {id_ranges(list(chains)) or 'none'}")
        by_id = {h["id"]: h for h in doc["handshakes"]}
        legs = [(by_id[i]["client"], by_id[i]["server"]) for i in chains[chain_id]["hops"] if i in by_id]
        enc = chains[chain_id].get("encrypted_before")
        if enc:
            legs.insert(0, (enc["client"], enc["server"]))     # the client-side leg, still encrypted
        fmt = output_format(output, doc["source"][0].get("format") or "pcap")
        out = open_output(output, binary=True)
        try:
            res = slice_capture(path, out, legs, fmt=fmt)
            out.flush()
        except ValueError as e:          # legs on interfaces of different link types
            fail(str(e))
        except OSError as e:
            fail(f"-o {output}: {e.strerror or e}")
        finally:
            if output != "-":
                out.close()
    finally:
        inputs.close()
    click.echo(f"wrote {'stdout' if output == '-' else output} ({fmt}): {res.packets_written} packets "
               f"of {len(legs)} leg(s)", err=True)
    for e in getattr(res, "errors", []):
        click.echo(f"wscap: {e}", err=True)
    sys.exit(EXIT_INPUT if getattr(res, "errors", []) else EXIT_OK)


def _register_live() -> None:
    try:
        from .live_cli import ifaces_command, live_command
    except ImportError:  # pragma: no cover - live capture modules are part of the package
        return
    main.add_command(live_command)
    main.add_command(ifaces_command)


_register_live()


if __name__ == "__main__":  # pragma: no cover
    main()
