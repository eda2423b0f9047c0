"""`wscap analyze`: saved captures -> a table, JSON, Markdown, HTML, CSV or HAR on stdout."""
from __future__ import annotations

import sys
from typing import Any

import click

from wscap.cli.analysis import apply_filters, nothing_read, report_errors, run_analysis
from wscap.cli.options import (
    EXIT_INPUT, color_options, engine_option, exit_code, filter_options, input_files, keylog_option,
    limits_options, names_option, read_option, redact_option, redacts,
)

FORMATS = ["table", "json", "markdown", "html", "csv", "har"]


@click.command()
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
            names_file: str | None, color: str, no_color: bool, **lim: Any) -> None:
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
        if redacts(redact, fmt):
            from wscap.render.redact import redact_document
            doc = redact_document(doc)
        if fmt == "json":
            from wscap.render.json import write_document
            write_document(doc, click.get_text_stream("stdout"))
        else:
            from wscap.render.table import render_table
            from wscap.cli.termui import look
            lk = look("never" if no_color else color)
            click.echo(render_table(doc, verbose=verbose, look=lk), color=lk.color)
    else:
        from wscap.render.formats import write_format
        out = click.get_text_stream("stdout")
        write_format(doc, fmt, out, redact=redact)    # piece by piece: nothing grows with the handshakes
        out.flush()
    report_errors(full)
    sys.exit(exit_code(doc))
