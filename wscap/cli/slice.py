"""`wscap slice`: the packets of one chain (every leg) into a capture for Wireshark."""
from __future__ import annotations

import sys
from typing import Any, BinaryIO, cast

import click

from wscap.cli.analysis import id_ranges, nothing_read, report_errors, run_analysis
from wscap.cli.options import (
    EXIT_INPUT, EXIT_OK, err, fail, input_files, keylog_option, limits_options, read_option,
    refuse_output_or_exit,
)


@click.command("slice")
@click.argument("capture", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@read_option
@click.option("--chain", "chain_id", type=click.IntRange(min=1), required=True,
              help="Chain id (from `wscap analyze`).")
@click.option("-o", "-w", "--output", required=True, type=click.Path(allow_dash=True),
              help="Output capture (- is stdout). .pcapng writes pcapng, .pcap/.cap classic pcap; "
                   "any other name keeps the input's format.")
@keylog_option
@limits_options
def slice_cmd(capture: str | None, reads: tuple[str, ...], chain_id: int, output: str, **lim: Any) -> None:
    """Write just the packets of one chain (every leg) to a capture for Wireshark.

    Packets are copied as captured: TLS legs stay encrypted (open the slice in Wireshark with the
    same key log); `--keylog` is only needed to find chains inside TLS."""
    from wscap.capture.slice import output_format, slice_capture
    from wscap.cli.termui import Inputs, check_output, open_output
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
            res = slice_capture(path, cast(BinaryIO, out), legs, fmt=fmt)
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
    errors = getattr(res, "errors", [])
    for line in errors:
        err(line)
    sys.exit(EXIT_INPUT if errors else EXIT_OK)
