"""Command line (click): parse options, run the pipeline, pick a renderer, map exit codes.

Exit codes (stable, documented in the README):
  0  every handshake and chain is valid
  1  at least one chain is broken or a handshake has an error-severity anomaly
  2  usage error, or an input problem (results recovered before it are still printed)
"""
from __future__ import annotations

import json
import os
import sys

import click

from . import __version__
from .analyze import analyze_paths
from .limits import Limits
from .pipeline import Options

EXIT_OK, EXIT_BROKEN, EXIT_INPUT = 0, 1, 2


def is_broken(doc: dict) -> bool:
    if any(c["verdict"]["broken"] for c in doc.get("chains", [])):
        return True
    return any(a["severity"] == "error" for h in doc["handshakes"] for a in h["anomalies"]
               if a["code"] != "not-websocket-upgrade")


def exit_code(doc: dict) -> int:
    if any(s["errors"] for s in doc["source"]):
        return EXIT_INPUT
    return EXIT_BROKEN if is_broken(doc) else EXIT_OK


def limits_options(f):
    """Resource bounds shared by analyze/report/live (documented in the README)."""
    d = Limits()
    for opt in reversed([
        click.option("--max-head-bytes", type=int, default=d.head_bytes, show_default=True,
                     help="Bytes of one HTTP header block."),
        click.option("--max-flow-buffer", type=int, default=d.flow_buffer, show_default=True,
                     help="Out-of-order bytes buffered per TCP direction."),
        click.option("--max-flows", type=int, default=d.max_flows, show_default=True,
                     help="TCP connections tracked at once (oldest evicted)."),
        click.option("--max-frames", type=int, default=d.frames_per_direction, show_default=True,
                     help="WebSocket frame summaries kept per direction."),
        click.option("--timeout", "timeout_s", type=float, default=3.0, show_default=True,
                     help="Seconds a leg waits for a response before it is decided."),
    ]):
        f = opt(f)
    return f


def build_options(max_head_bytes: int, max_flow_buffer: int, max_flows: int, max_frames: int,
                  timeout_s: float, names: dict[str, str] | None = None) -> Options:
    lim = Limits(head_bytes=max_head_bytes, flow_buffer=max_flow_buffer, max_flows=max_flows,
                 frames_per_direction=max_frames)
    return Options(timeout_s=timeout_s, limits=lim, names=tuple(sorted((names or {}).items())))


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wscap")
def main() -> None:
    """wscap: find which hop broke a WebSocket handshake, from packets."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Show full heads, anomalies and frames.")
@click.option("--names", "names_file", type=click.Path(exists=True, dir_okay=False),
              help="hosts-file mapping IPs to names (labels endpoints).")
@limits_options
def analyze(files: tuple[str, ...], fmt: str, verbose: bool, names_file: str | None, **lim) -> None:
    """Analyse saved captures (pcap, pcapng, .gz)."""
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        for m in missing:
            click.echo(f"wscap: {m}: no such file", err=True)
        sys.exit(EXIT_INPUT)
    options = build_options(names=load_hosts(names_file), **lim)
    progress = _progress() if sys.stderr.isatty() else None
    doc = analyze_paths(list(files), options, progress)
    if progress is not None:
        click.echo("\r\033[K", err=True, nl=False)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        from .render.table import render_table
        click.echo(render_table(doc, verbose=verbose))
    for s in doc["source"]:
        for e in s["errors"]:
            click.echo(f"wscap: {e}", err=True)
    sys.exit(exit_code(doc))


def _progress():
    def show(source: int, n: int) -> None:
        click.echo(f"\rfile {source + 1}: {n:,} frames…", err=True, nl=False)
    return show


if __name__ == "__main__":  # pragma: no cover
    main()
