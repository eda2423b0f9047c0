"""`wscap report`: a self-contained incident report (Markdown with Mermaid, or one HTML file)."""
from __future__ import annotations

import sys
from typing import Any

import click

from wscap.cli.analysis import apply_filters, nothing_read, report_errors, run_analysis
from wscap.cli.options import (
    EXIT_INPUT, engine_option, exit_code, fail, filter_options, input_files, keylog_option, limits_options,
    names_option, read_option, redact_option, redacts, refuse_output_or_exit,
)


@click.command()
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
           names_file: str | None, **lim: Any) -> None:
    """Write a self-contained incident report (Markdown or HTML) for captures."""
    from wscap.render.redact import redact_document
    from wscap.render.report import iter_report_html, iter_report_markdown
    from wscap.cli.termui import check_output, open_output
    files = input_files(files, reads)
    check_output(output)
    if output != "-":
        refuse_output_or_exit(output, files)     # never through a symlink, never over an input
    full = run_analysis(files, names_file, lim, lazy=True)
    if nothing_read(full):
        report_errors(full)
        sys.exit(EXIT_INPUT)
    doc = apply_filters(full, only_broken, chain_id, host, path_glob)
    if redacts(redact, "report"):
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
