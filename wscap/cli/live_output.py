"""What `wscap live` prints: events as they are decided (text, one JSON object per line, or
Markdown rows), the status line, the final summary with every loss counted, and the report of
what a key log decrypted once the capture ended."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Callable, cast

from wscap.cli.options import EXIT_BROKEN, EXIT_INPUT, EXIT_OK, err, exit_code, is_broken, limits_from, redacts
from wscap.render.escape import term
from wscap.render.table import Look, chain_line, handshake_line

SEEN_MAX = 10_000   # handshakes remembered for the chains' ladders (old ones are long decided)


class Status:
    """A one-line status on stderr, rewritten in place on a terminal."""

    def __init__(self, enabled: bool, tty: bool):
        self.enabled = enabled
        self.tty = tty
        self._shown = False
        self._last = 0.0

    @staticmethod
    def text(d: dict[str, Any]) -> str:
        if "lag_s" in d:
            # The C writer writes, the analysis reads behind it: say both, and how far behind.
            s = (f"{d.get('written', 0)} packets written, {d['dropped']} dropped by kernel; analysis: "
                 f"{d['packets']} read, {d['decided']} decided, "
                 f"{d['flows'] if d.get('flows') is not None else '-'} flows, {d['lag_s']:.1f} s behind")
            if d.get("shed"):
                s += f", {d['shed']} shed"
            return s
        s = (f"{d['packets']} packets, {d['dropped']} dropped by kernel, "
             f"{d['flows'] if d.get('flows') is not None else '-'} flows, {d['decided']} decided")
        if "written" in d:
            s += f", {d['written']} written" + (" (write stopped: see above)" if d.get("write_error") else "")
        return s

    def update(self, d: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[K" + self.text(d))
            sys.stderr.flush()
            self._shown = True
        elif time.monotonic() - self._last >= 5:
            # Not a terminal (logs, CI): a plain line every few seconds.
            self._last = time.monotonic()
            sys.stderr.write("status: " + self.text(d) + "\n")
            sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False


class LiveOutput:
    """The event printer: one line (or JSON object, or Markdown row) per decided handshake/chain."""

    def __init__(self, fmt: str, redact: bool | None, names: dict[str, str], keylog: str | None,
                 look: Look | None, status: Status, out: IO[str] | None = None) -> None:
        from wscap.render.markdown import LiveMarkdown
        self.fmt = fmt
        self.redact = redact
        self.names = names
        self.keylog = keylog
        self.look = look or Look()
        self.status = status
        self.out = out if out is not None else sys.stdout
        self.on_stdout_closed: Callable[[], None] = lambda: None
        self.seen: dict[int, dict[str, Any]] = {}   # handshakes printed so far, for the chains' ladders
        # Only text lines (ladders, redaction) and redacted JSON read it (markdown keeps its own): kept
        # for nothing, 10,000 documents are a million objects every full garbage collection walks,
        # in the middle of a burst, with every line waiting behind it.
        self.keep_seen = fmt == "text" or (fmt == "json" and redacts(redact, "json"))
        self.markdown = LiveMarkdown(redact=redacts(redact, "markdown"))
        self.text_redact = redacts(redact, "text")
        self.name_eps = [{"ip": ip, "name": n} for ip, n in names.items()]

    def emit(self, obj: dict[str, Any] | str) -> None:
        try:
            self.out.write((json.dumps(obj, separators=(",", ":")) if isinstance(obj, dict) else obj) + "\n")
            self.out.flush()
        except BrokenPipeError:
            # `wscap live | head`: stop capturing, still close the file properly; point
            # stdout at /dev/null so the interpreter's final flush stays quiet.
            self.on_stdout_closed()
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.out.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def emit_raw(self, text: str) -> None:
        if text:
            self.emit(text[:-1] if text.endswith("\n") else text)

    def text_line(self, kind: str, doc: dict[str, Any]) -> str:
        from wscap.render.redact import redact_live_event
        if kind == "tls":
            from wscap.render.table import label as ep_label
            return (f"TLS {term(ep_label(doc['client'], self.names))} → {term(ep_label(doc['server'], self.names))} "
                    f"SNI {term(doc['sni'] or '(none)')} "
                    f"ALPN {term(','.join(doc['alpn']) or 'none')}: encrypted, an upgrade inside is invisible"
                    + ("" if self.keylog else " (--write F --keylog K decrypts it when the capture ends)"))
        if self.text_redact:
            # What people paste into tickets: Vite's `?token=`, cookies, bearer subprotocols.
            doc = redact_live_event({"type": kind, kind: doc}, self.seen)[kind]
        if kind == "handshake":
            return handshake_line(doc, self.names, look=self.look)
        return chain_line(doc, {"handshakes": list(self.seen.values()), "endpoints": self.name_eps}, look=self.look)

    def on_event(self, ev: Any) -> None:
        from wscap.render.redact import redact_live_event
        self.status.clear()
        kind: str = getattr(ev, "kind", "")
        doc: dict[str, Any] = getattr(ev, "json", None) or {}
        if kind == "handshake" and self.keep_seen:
            self.seen[doc["id"]] = doc     # unredacted: a chain's secrets are found through them
            if len(self.seen) > SEEN_MAX:
                self.seen.pop(next(iter(self.seen)))
        obj: dict[str, Any] = {"type": kind, kind: doc}
        if self.fmt == "markdown":
            self.emit_raw(self.markdown.event(obj))
        elif self.fmt == "json":
            self.emit(redact_live_event(obj, self.seen) if redacts(self.redact, "json") else obj)
        else:
            self.emit(self.text_line(kind, doc))

    def summary(self, doc: dict[str, Any], live_info: dict[str, Any]) -> None:
        """The last JSON line / Markdown block (text: one stderr line, said by the caller)."""
        obj: dict[str, Any] = {"type": "summary"}
        obj.update({k: v for k, v in doc.items() if k not in ("handshakes", "chains")})
        obj["live"] = live_info
        if self.fmt == "json":
            self.emit(obj)
        else:
            self.emit_raw(self.markdown.event(obj))


def say_losses(res: Any, followed: bool, write_path: str | None) -> None:
    """One stderr line per kind of loss that is not zero (the JSON summary has them all)."""
    keep = f"; {write_path} holds every packet" if write_path and followed else ""
    if res.dropped:
        err(f"{res.dropped} packets dropped by the kernel before capture (a bigger --buffer-mb helps)")
    if res.shed:
        err(f"analysis shed {res.shed} packets while it was more than its --shed-after behind "
            f"(worst lag {res.lag_max_s:.1f} s){keep}: re-run `wscap analyze` on the file for all verdicts")
    if res.unanalysed:
        why = res.extra.get("drain_cut") or "not read"
        err(f"{res.unanalysed} captured packets were not analysed ({why}){keep}")
    skipped = res.extra.get("skipped_files") or []
    if skipped:
        err(f"{len(skipped)} spool/ring file(s) were overwritten before the analysis read them "
            "(a bigger --spool-mb/--ring-files helps)")


def nrb_bytes(names: dict[str, str]) -> bytes:
    """Names as a pcapng Name Resolution Block for the written file."""
    if not names:
        return b""
    from wscap.capture.writer import pcapng_nrb
    try:
        # One name per address, kept whole: a label like "host (gateway of net)" has spaces,
        # which a plain string would have split into several names.
        return pcapng_nrb(cast("dict[str, str]", {ip: [n] for ip, n in names.items()}))   # lists are read too
    except Exception:  # noqa: BLE001 - names are a convenience; the capture must start
        return b""


def decrypted_report(files: list[str], keylog: str, timeout: float, names: dict[str, str],
                     fallback: dict[str, str], output: LiveOutput, bounds: dict[str, Any] | None = None) -> int:
    """After the capture: decrypt the written file(s) with the key log and report what TLS hid.

    Key logs are written while the browser runs, so the natural point to decrypt is when the
    capture is complete; the same offline pipeline reads the plaintext. -> 1 when what it
    decrypted is broken, else 0."""
    from wscap.engine.analyze import analyze_paths
    from wscap.engine.core import Options
    if not os.path.exists(keylog):
        err(f"--keylog {keylog}: no such file after the capture; nothing decrypted")
        return 0
    doc = analyze_paths(files, Options(timeout_s=timeout, names=tuple(sorted(names.items())),
                                       names_fallback=tuple(sorted(fallback.items())), keylog=keylog,
                                       limits=limits_from(bounds)))
    opened = [t for t in doc.get("tls", []) if t["decrypted"]]
    for s_ in doc["source"]:
        kl = s_.get("keylog") or {}
        if kl.get("error"):
            err(f"{s_['path']}: {kl['error']}")
    if redacts(output.redact, output.fmt):
        from wscap.render.redact import redact_document
        doc = redact_document(doc)
    if output.fmt == "json":
        output.emit({"type": "decrypted", "keylog": keylog, "document": doc})
    elif output.fmt == "markdown":
        from wscap.render.markdown import render_markdown
        output.emit_raw(render_markdown(doc))
    else:
        from wscap.render.table import render_table
        output.emit_raw(f"\n── decrypted with {keylog}: {len(opened)} TLS connection(s) opened ──\n"
                        + render_table(doc))
    return EXIT_BROKEN if opened and is_broken(doc) else EXIT_OK


def live_exit(doc: dict[str, Any], analysis_error: str | None, decrypted: int) -> int:
    """The exit-code table every command uses (wscap.cli.options.exit_code) over the live document,
    worst of it and of the decrypted report; a failed analysis is 2 (the capture file is complete)."""
    if analysis_error:
        return EXIT_INPUT
    return max(exit_code(doc) if doc else 0, decrypted)
