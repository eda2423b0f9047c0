"""What every command shares: the exit-code table, the resource bounds (--max-* -> Limits),
names (--names and the Docker API, one precedence), redaction, colour, inputs and outputs.

One definition each, so `analyze`, `report`, `slice` and `live` cannot drift apart again (they
had opposite help for --names, different ranges for the bounds, their own exit-code rule).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn, TypeVar

import click

from wscap.model.limits import Limits

F = TypeVar("F", bound=Callable[..., Any])

# ---- exit codes (docs/json-contract.md "Exit codes", docs/cli.md) ---------------------------

EXIT_OK, EXIT_BROKEN, EXIT_INPUT = 0, 1, 2
EXIT_USAGE = EXIT_INPUT          # usage and input problems share code 2
EXIT_CODES = {
    EXIT_OK: "every chain (and handshake) shown is valid",
    EXIT_BROKEN: "a chain shown is broken, or a handshake shown has an error-severity anomaly",
    EXIT_INPUT: "usage error, unreadable or damaged input (what was recovered is still printed), a filter "
                "that names nothing there, an output that cannot be written, a partial document",
}


def is_broken(doc: dict[str, Any]) -> bool:
    s = doc.get("summary") or {}
    return bool(s.get("broken") or s.get("with_errors"))


def exit_code(doc: dict[str, Any]) -> int:
    """The one rule for every command, computed from the document shown."""
    if any(s.get("errors") for s in doc.get("source") or []):
        return EXIT_INPUT
    if ((doc.get("stats") or {}).get("limits_hit") or {}).get("max_handshakes"):
        return EXIT_INPUT             # the document is partial: said in one line (report_errors)
    return EXIT_BROKEN if is_broken(doc) else EXIT_OK


def err(msg: str) -> None:
    click.echo(f"wscap: {msg}", err=True)


def fail(msg: str) -> NoReturn:
    err(msg)
    sys.exit(EXIT_INPUT)


# ---- resource bounds ------------------------------------------------------------------------

# (option, Limits field, smallest value, help). Ranges, so a bound that would give false verdicts
# (--max-flows 0 tracks nothing and reports every upgrade as dropped) is refused as a usage error.
BOUNDS: list[tuple[str, str, int, str]] = [
    ("max-head-bytes", "head_bytes", 256, "Bytes of one HTTP header block."),
    ("max-flow-buffer", "flow_buffer", 1024, "Out-of-order bytes buffered per TCP direction."),
    ("max-flows", "max_flows", 1, "TCP connections tracked at once, ignored ones included (oldest evicted)."),
    ("max-frames", "frames_per_direction", 0, "WebSocket frame summaries kept per direction."),
    ("max-dns", "max_dns", 0, "DNS transactions kept (oldest dropped first)."),
    ("max-tunnel-depth", "tunnel_depth", 0,
     "Nested tunnels (VXLAN, GENEVE, GRE, IP-in-IP, MPLS, GTP-U) opened per packet."),
    ("max-handshakes", "max_handshakes", 1,
     "Handshakes kept in the document (each keeps a small link view in memory; live: the final "
     "summary and --keylog report)."),
    ("max-hpack-table", "hpack_table", 0, "HPACK dynamic table per HTTP/2 direction, whatever the peer allows."),
    ("max-inflate-bytes", "inflate_bytes", 0, "Bytes a compressed WebSocket message is inflated to for previews."),
    ("max-h2-header-bytes", "h2_header_bytes", 0, "Decoded HTTP/2 header bytes kept per connection (then cut)."),
]
# Bounds of reading capture files (analyze, report, slice; live reads no gzip).
FILE_BOUNDS: list[tuple[str, str, int, str]] = [
    ("max-gzip-records-per-kib", "gzip_records_per_kib", 1,
     "Records a gzip capture may give per KiB of compressed input, checked after 1,000,000 "
     "(work bound; real captures stay far below)."),
]
MAX_TUNNEL_DEPTH = 64


def bounds_options(f: F, table: list[tuple[str, str, int, str]] = BOUNDS) -> F:
    """--max-* (documented in the README, "Resource bounds"): live traffic is as attacker-controlled
    as a capture file, so every command that analyses has all of them."""
    d = Limits()
    for name, field, lo, text in reversed(table):
        kind = click.IntRange(lo, MAX_TUNNEL_DEPTH) if field == "tunnel_depth" else click.IntRange(min=lo)
        f = click.option(f"--{name}", name.replace("-", "_"), type=kind, default=getattr(d, field),
                         show_default=True, help=text)(f)
    return f


def limits_from(bounds: dict[str, Any] | None) -> Limits:
    """The --max-* values (keyword names, e.g. max_head_bytes) -> Limits; absent ones keep defaults."""
    kw = {field: bounds[name.replace("-", "_")] for name, field, _, _ in BOUNDS + FILE_BOUNDS
          if bounds and bounds.get(name.replace("-", "_")) is not None}
    return Limits(**kw)


TIMEOUT_HELP = "Seconds a leg waits for a response before it is decided."


def limits_options(f: F) -> F:
    """The bounds plus --timeout and -j, as analyze/report/slice take them."""
    f = click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
                     help="Processes to use: several files are analysed in parallel; one capture's flows "
                          "are split across two, and with JSON output its chains are judged in two. Default: "
                          "files one at a time, a capture of 8 MiB or more and its chains in two processes "
                          "when two CPUs are usable. Results are identical to -j 1.")(f)
    f = click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True, max=86400),
                     default=3.0, show_default=True, help=TIMEOUT_HELP)(f)
    return bounds_options(bounds_options(f, FILE_BOUNDS))


# ---- names ----------------------------------------------------------------------------------

def names_option(f: F) -> F:
    return click.option("--names", "names_file", type=click.Path(exists=True, dir_okay=False),
                        help="hosts-file mapping IPs to names (labels endpoints; wins over the capture's own "
                             "names and the Docker API).")(f)


def read_names(names_file: str | None) -> dict[str, str]:
    """--names FILE -> {ip: name}; an unreadable file is one line and exit 2."""
    if not names_file:
        return {}
    from wscap.capture.docker import load_names
    try:
        return load_names(names_file)
    except OSError as e:
        fail(f"--names {names_file}: {e.strerror or e}")


def merged_names(names: dict[str, str], fallback: dict[str, str]) -> dict[str, str]:
    """The one precedence (docs/json-contract.md "endpoints"): --names over the capture's own
    Name Resolution Blocks (merged by the pipeline) over the Docker API."""
    return {**fallback, **names}


# ---- redaction ------------------------------------------------------------------------------

def redacts(redact: bool | None, fmt: str) -> bool:
    """--redact/--no-redact, else the default: on for what people paste (table, text, markdown,
    html, csv, report), off for the machine formats (json, har)."""
    return redact if redact is not None else fmt not in ("json", "har")


def redact_list_options(f: F) -> F:
    """--redact-header NAME / --redact-query KEY (repeatable): secrets beside the built-in ones.
    They configure the redactor for this process (one command, one configuration)."""
    # configure() only adds, so an option not given changes nothing: the redactor is not even
    # imported then (a json run does not need it).
    def headers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            from wscap.render.redact import configure
            configure(headers=value)

    def queries(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            from wscap.render.redact import configure
            configure(query_keys=value)
    f = click.option("--redact-query", "redact_query", metavar="KEY", multiple=True, expose_value=False,
                     callback=queries, help="Also redact this query key's values (repeatable).")(f)
    return click.option("--redact-header", "redact_header", metavar="NAME", multiple=True, expose_value=False,
                        callback=headers, help="Also redact this header's values (repeatable).")(f)


def redact_option(f: F, default_help: str = "on for the terminal table, markdown/html/csv/report; off for "
                                             "json/har") -> F:
    f = redact_list_options(f)
    return click.option("--redact/--no-redact", default=None,
                        help="Replace cookies, tokens and credentials by short stable hashes. Default: "
                             f"{default_help}.")(f)


# ---- colour -----------------------------------------------------------------------------------

def color_options(f: F) -> F:
    f = click.option("--no-color", "no_color", is_flag=True, help="Same as --color never.")(f)
    return click.option("--color", "color", type=click.Choice(["auto", "always", "never"]), default="auto",
                        show_default=True,
                        help="Colour on screen (auto: on a terminal, unless NO_COLOR is set; FORCE_COLOR "
                             "forces it).")(f)


# ---- inputs and outputs -----------------------------------------------------------------------

def read_option(f: F) -> F:
    return click.option("-r", "--read", "reads", multiple=True, metavar="FILE",
                        help="A capture to read, as in tcpdump (repeatable; same as a FILE argument; - is stdin).")(f)


def input_files(files: tuple[str, ...], reads: tuple[str, ...]) -> tuple[str, ...]:
    allf = tuple(reads) + tuple(files)
    if not allf:
        raise click.UsageError("no capture given (FILE arguments, -r FILE, or - for stdin)")
    return allf


def refuse_output_or_exit(output: str, inputs: tuple[str, ...] | list[str] = ()) -> None:
    """Never write through a symlink, never over an input: one line and exit 2."""
    from wscap.capture.outpath import refuse_output
    why = refuse_output(output, inputs)
    if why:
        fail(why)


def keylog_option(f: F) -> F:
    return click.option("--keylog", type=click.Path(exists=True, dir_okay=False), multiple=True,
                        help="SSLKEYLOGFILE (browsers, Node --tls-keylog; repeatable): decrypt TLS connections with tshark "
                             "and analyse the upgrades inside them.")(f)


def engine_option(f: F) -> F:
    return click.option("--engine", type=click.Choice(["wscap", "tshark"]), default="wscap", show_default=True,
                        help="tshark: build handshakes from Wireshark's dissectors (tshark, found through pyshark) instead of "
                             "wscap's own reassembly: a second opinion.")(f)


def filter_options(f: F) -> F:
    for opt in reversed([
        click.option("--only-broken", is_flag=True, help="Only broken chains (and their handshakes)."),
        click.option("--chain", "chain_id", type=click.IntRange(min=1), help="Only this chain id."),
        click.option("--host", help="Only chains whose Host header, endpoint IP or name matches (glob)."),
        click.option("--path", "path_glob", help="Only chains whose request path matches (glob)."),
    ]):
        f = opt(f)
    return f


def tune_gc() -> None:
    """The cyclic GC's default gen-0 threshold (700 allocations) makes it re-scan every tracked
    connection over and over when many are alive (a SYN flood: 3x the time). wscap breaks its own
    cycles when a connection ends, so the command line collects far less often. Set here, at the
    edge: the library (wscap.engine) leaves interpreter-wide state alone."""
    import gc
    gc.set_threshold(50_000, 20, 100)
