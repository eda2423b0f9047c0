"""Terminal conventions shared by the commands: colour, width, `-` for stdin/stdout,
output files that fail in one line, and a progress bar by bytes read.

Colour: `--color auto|always|never` (and `--no-color`); `auto` follows NO_COLOR (any
non-empty value: off), then FORCE_COLOR (non-empty and not 0: on), then whether stdout is
a terminal (and TERM is not `dumb`). See https://no-color.org.

Width: COLUMNS when set, else the terminal's; piped output is not wrapped (one sentence per
line for grep), unless COLUMNS is set.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING, Any

import click

from wscap.cli.options import EXIT_INPUT, fail

if TYPE_CHECKING:   # the table renderer is imported only when a table is drawn (startup cost)
    from wscap.render.table import Look

__all__ = ["EXIT_INPUT", "fail"]


def use_color(when: str, stream: IO[Any] | None = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    if when == "always":
        return True
    if when == "never":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    force = os.environ.get("FORCE_COLOR")
    if force and force != "0":
        return True
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and os.environ.get("TERM") != "dumb"


def width() -> int | None:
    """COLUMNS when set, else the terminal's width; None (no wrapping) when stdout is not a
    terminal, so piped output keeps one sentence per line for grep."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return max(40, int(env))
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def look(color: str) -> Look:
    from wscap.render.table import Look
    return Look(color=use_color(color), width=width())


# ---- output files ------------------------------------------------------------------------

def check_output(path: str, what: str = "-o") -> None:
    """Before any work: refuse an output the user cannot get (one line, exit 2)."""
    if path == "-":
        return
    d = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        fail(f"{what} {path}: is a directory")
    if not os.path.isdir(d):
        fail(f"{what} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK) and not os.path.exists(path):
        fail(f"{what} {path}: directory {d} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        fail(f"{what} {path}: not writable")


def open_output(path: str, binary: bool, what: str = "-o") -> IO[Any]:
    """`-` is stdout; any OSError is one line and exit 2."""
    if path == "-":
        return click.get_binary_stream("stdout") if binary else click.get_text_stream("stdout")
    from wscap.capture.outpath import open_output as open_nofollow
    try:
        return open_nofollow(path, binary=binary)      # O_NOFOLLOW: a link planted since the check
    except OSError as e:
        fail(f"{what} {path}: {e.strerror or e}")


# ---- `-` and pipes as input ----------------------------------------------------------------

class Inputs:
    """The input paths as given, and the paths to read: `-` (stdin) and other non-seekable
    inputs (/dev/stdin, a FIFO, <(zcat x)) are copied to a temporary spool file first, because
    a capture is opened more than once (the pcapng secrets probe, tshark for --keylog or
    --engine tshark, slice reads it twice). The spool is deleted at the end; `fix` maps it
    back to the name the user gave in the document's sources."""

    def __init__(self, given: tuple[str, ...], need_file: bool):
        self.given = list(given)
        self.paths: list[str] = []
        self.display: dict[str, str] = {}
        self._tmp: list[str] = []
        if sum(1 for g in given if g == "-") > 1:
            fail("- (stdin) can be read only once")
        for g in given:
            if g == "-" or _is_stream(g):
                self.paths.append(self._spool(g))
                self.display[self.paths[-1]] = g
                continue
            self.paths.append(g)

    def _spool(self, g: str) -> str:
        if g == "-" and sys.stdin.isatty():
            fail("- reads a capture from stdin, but stdin is a terminal (pipe one in: "
                 "tcpdump -w - ... | wscap analyze -)")
        fd, tmp = tempfile.mkstemp(prefix="wscap-stdin-", suffix=".pcap")
        self._tmp.append(tmp)
        try:
            src = sys.stdin.buffer if g == "-" else open(g, "rb")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as e:
            self.close()
            fail(f"{g}: cannot read: {e.strerror or e}")
        return tmp

    def fix(self, doc: dict) -> dict:
        for s in doc.get("source") or []:
            if s.get("path") in self.display:
                real = s["path"]
                s["path"] = self.display[real]
                s["errors"] = [e.replace(real, s["path"]) for e in s.get("errors") or []]
        return doc

    def close(self) -> None:
        for t in self._tmp:
            try:
                os.unlink(t)
            except OSError:
                pass
        self._tmp = []


def _is_stream(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


# ---- progress --------------------------------------------------------------------------

# Held while the bar's thread works (reads /proc, writes stderr). analyze forks (engine/shards.py,
# document/split.py) while it runs: the fork waits for the lock, so the thread holds no lock of
# stderr's or of a file's at that instant, and the child (which has no such thread) never waits.
_WORKING = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_WORKING.acquire, after_in_parent=_WORKING.release,
                        after_in_child=_WORKING.release)


class Progress:
    """A bar on stderr by bytes read of the inputs' total size, for long work on a terminal.

    It watches the file offsets of the inputs in /proc — this process's and its children's
    (the -j workers, tshark for --engine tshark) — so every engine shows the same bar without
    reporting to it. It appears after half a second (short runs stay quiet), never when stderr is
    not a terminal, and is erased when the work is done."""

    DELAY = 0.5

    def __init__(self, paths: list[str], enabled: bool):
        self.files: dict[str, int] = {}
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                self.files[os.path.realpath(p)] = st.st_size
        self.total = sum(self.files.values())
        self.enabled = enabled and self.total > 0 and os.path.isdir("/proc/self/fd")
        self._done = {p: 0 for p in self.files}
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None        # click's ProgressBar, once shown
        self._last = 0               # bytes the bar shows
        self._shown_pass = 0

    def __enter__(self) -> "Progress":
        if self.enabled:
            from wscap.document.forking import fork_safe
            self._thread = threading.Thread(target=self._run, name="wscap-progress", daemon=True)
            self._thread.start()
            fork_safe(self._thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._bar is not None:
            click.echo("\r\033[K\033[?25h", err=True, nl=False)   # erase the bar, show the cursor again

    def _pids(self) -> list[str]:
        pids: list[str] = []
        todo = [str(os.getpid())]
        while todo and len(pids) < 256:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += f.read().split()
            except OSError:
                continue
        return pids

    def sample(self) -> int:
        """Bytes read so far. A file opened again from its start (tshark reads a capture in two
        passes for --engine tshark; --keylog decrypts before wscap reads) starts a new pass."""
        cur: dict[str, int] = {}
        for pid in self._pids():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target not in self.files:
                    continue
                try:
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        pos = int(f.readline().split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                cur[target] = max(cur.get(target, 0), min(pos, self.files[target]))
        for target, pos in cur.items():
            if pos < self._done[target] and pos < self.files[target] // 2 and self._done[target] >= self.files[target] * 0.9:
                self.passes += 1                     # read again from the start
                self._done = {t: 0 for t in self._done}
            self._done[target] = max(self._done[target], pos)
        return sum(self._done.values())

    def _run(self) -> None:
        start = time.monotonic()
        self._last, self._shown_pass = 0, 0
        while not self._stop.wait(0.25):
            if time.monotonic() - start < self.DELAY:
                continue
            with _WORKING:
                self._step()

    def _step(self) -> None:
        done = self.sample()
        if self._bar is None or self._shown_pass != self.passes:
            if self._bar is not None:
                click.echo("\r\033[K", err=True, nl=False)
            label = "reading" if not self.passes else f"reading, pass {self.passes + 1}"
            self._bar = click.progressbar(length=self.total, file=sys.stderr, label=label,
                                          show_eta=True, show_percent=True, width=30)
            self._bar.render_progress()
            self._shown_pass, self._last = self.passes, 0
        if done > self._last:
            self._bar.update(done - self._last)
            self._last = done
