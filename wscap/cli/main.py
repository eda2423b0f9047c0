"""Command line (click): the `wscap` group; each command lives in its own module.

Exit codes (stable, documented in docs/json-contract.md and docs/cli.md; one table for every
command: wscap.cli.options.EXIT_CODES), computed from what is shown (with
--chain/--host/--path/--only-broken: the filtered view):
  0  every handshake and chain shown is valid
  1  at least one chain shown is broken or a handshake shown has an error-severity anomaly
  2  usage error, or an input problem (results recovered before it are still printed), a filter
     that names no chain or matches nothing, an output that cannot be written, a partial document
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from wscap import __version__
from wscap.cli.options import EXIT_BROKEN, EXIT_INPUT, EXIT_OK, err, exit_code, is_broken, tune_gc

__all__ = ["main", "analyze", "report", "slice_cmd", "exit_code", "is_broken", "FORMATS",
           "EXIT_OK", "EXIT_BROKEN", "EXIT_INPUT"]

# Each command's module is imported when that command runs (or --help lists them), not for every
# run: `wscap analyze` does not compile the live-capture stack (docker, sockets, ifaces, tcpdump),
# which was most of a small capture's fixed cost (issue #18: "not slower").
_COMMANDS = {
    "analyze": ("wscap.cli.analyze", "analyze"),
    "report": ("wscap.cli.report", "report"),
    "slice": ("wscap.cli.slice", "slice_cmd"),
    "live": ("wscap.cli.live", "live_command"),
    "ifaces": ("wscap.cli.ifaces", "ifaces_command"),
}
_ATTRS = {attr: mod for mod, attr in _COMMANDS.values()} | {"FORMATS": "wscap.cli.analyze"}


def __getattr__(name: str) -> Any:
    """`from wscap.cli.main import analyze` (tests, scripts) still works, importing on demand."""
    if name in _ATTRS:
        return getattr(importlib.import_module(_ATTRS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Commands(dict[str, click.Command]):
    """The group's `commands`: a command is imported when first looked up by name."""

    def __missing__(self, name: str) -> click.Command:
        if name not in _COMMANDS:
            raise KeyError(name)
        mod, attr = _COMMANDS[name]
        cmd = getattr(importlib.import_module(mod), attr)
        assert isinstance(cmd, click.Command)
        self[name] = cmd
        return cmd


class _Group(click.Group):
    """Running out of memory is an input problem (a capture too big for the chosen format), said
    in one line with exit 2 - never a traceback, never exit 1 (the "broken" code).

    Commands are loaded by name on first use (see _COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands[cmd_name] if cmd_name in _COMMANDS else None

    def invoke(self, ctx: click.Context) -> Any:
        reserve: list[bytearray] = []     # given back first, so the one line can still be written
        try:
            reserve.append(bytearray(8 << 20))
        except MemoryError:               # already at the limit: the line may still fit
            pass
        import gc
        old_threshold = gc.get_threshold()
        tune_gc()                         # interpreter-wide state: the command line's, not the library's
        # Generators dropped while a MemoryError unwinds (the capture reader) may hit another in
        # their own cleanup; Python would print each as "Exception ignored in ...": the one line
        # below is the whole story. Other unraisable errors are printed as usual.
        default_hook = sys.unraisablehook

        def hook(u: Any) -> None:
            if not isinstance(u.exc_value, MemoryError):
                default_hook(u)
        sys.unraisablehook = hook
        try:
            return self._invoke(ctx, reserve)
        finally:
            # A command run in-process (tests, an embedding program) leaves the interpreter as it was.
            sys.unraisablehook = default_hook
            gc.set_threshold(*old_threshold)
            gc.unfreeze()                 # `live` freezes what it built before its loop

    def _invoke(self, ctx: click.Context, reserve: list[bytearray]) -> Any:
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
            reserve.clear()
            import gc
            gc.collect()
            sys.stdout.flush()
            err("out of memory holding this document; lower --max-handshakes/--max-flows, "
                "or analyse fewer/smaller captures (see README: Resource bounds)")
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


main.commands = _Commands()   # (the decorator made a plain dict; nothing was added to it)


def run() -> None:
    """The `wscap` program (console script and `python -m wscap`): `main`, then leave at once.

    Tearing the interpreter down frees every object one at a time: after a large capture (every
    leg's link view, the flow table) that was ~50 ms of a 1.8 s analysis, after the last byte was
    written. So once the command has returned its exit code, with no other thread left, output
    is flushed, the atexit handlers run (temporary files, live captures still running) and the
    process exits without the teardown. Anything else (an exception, a thread still running, an
    output that cannot be flushed) leaves the usual way."""
    import atexit
    import os
    import threading
    try:
        main(prog_name="wscap")
        code: Any = 0
    except SystemExit as e:
        code = 0 if e.code is None else e.code
        if not isinstance(code, int) or threading.active_count() > 1:
            raise
    if threading.active_count() > 1:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:             # noqa: BLE001 - e.g. a closed pipe: Python's own exit reports it
        sys.exit(code)
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
