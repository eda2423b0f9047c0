"""Forked helper processes: when wscap may fork, and a child started, waited for, killed, reported.

Two parts of `analyze` fork a helper on a second CPU: the later chains judged
(document/split.py) and half of a capture's flows (engine/shards.py). Both run the child's work
and leave with `os._exit` (no atexit handlers, no flush of the parent's buffers), never leave a
zombie, and say in one stderr line when the child failed and this process did its work instead.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import weakref
from typing import Callable

_FORK_SAFE: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()   # (by object: idents are reused)


def fork_safe(thread: threading.Thread) -> None:
    """`thread` takes no lock a forked child could need, or pauses around fork
    (`os.register_at_fork`): cli/termui.py's progress bar."""
    _FORK_SAFE.add(thread)


def may_fork() -> bool:
    """fork copies only the calling thread: a lock another thread held stays held in the child.
    So only with no other thread, or only threads that said they are safe to leave behind."""
    me = threading.current_thread()
    return all(t is me or t in _FORK_SAFE for t in threading.enumerate())


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Child:
    """A forked child running `work()`, whose return value is its exit status (an exception: 1)."""

    def __init__(self, pid: int, what: str) -> None:
        self.pid = pid
        self.what = what                      # "the chain-judging helper process", for its line
        self.status: int | None = None        # its exit status once reaped; -N if signal N ended it

    @classmethod
    def start(cls, what: str, work: Callable[[], int]) -> "Child | None":
        """None if the fork failed (the caller does the work itself)."""
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:                          # the child: never returns into the caller's code
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = work()
            finally:
                os._exit(code)
        return cls(pid, what)

    def _set(self, st: int) -> int:
        self.status = os.waitstatus_to_exitcode(st)
        return self.status

    def poll(self) -> int | None:
        """Its exit status if it has ended (reaped now), else None."""
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._set(st)
        return self.status

    def wait(self) -> int:
        while self.status is None:
            try:
                self._set(os.waitpid(self.pid, 0)[1])
            except InterruptedError:
                continue
        return self.status

    def failed(self, then: str, how: str | None = None) -> None:
        """One stderr line: how the child failed (its status unless `how`), and what was done instead."""
        st = self.status or 0
        how = how or (f"was killed by signal {-st}" if st < 0 else f"exited with status {st}")
        sys.stderr.write(f"wscap: {self.what} {how}; {then}\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Kill it if it has not been reaped (this process stopped before taking its result)."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()
