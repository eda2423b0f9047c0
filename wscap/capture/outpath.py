"""Output files named with -o: never through a symlink, never over an input.

`report capture.pcap -o capture.pcap` would destroy the evidence, and a symlink planted where a
report is expected (a shared /tmp, a CI workspace) would redirect the write anywhere the user
can write. Both are refused in one line (exit 2); the file is then opened with O_NOFOLLOW so a
link created between the check and the open is refused too.
"""
from __future__ import annotations

import os
from typing import IO, Any, Iterable


def refuse_output(path: str, inputs: Iterable[str] = ()) -> str | None:
    """Why `path` must not be written (None: it may)."""
    if os.path.islink(path):
        return f"-o {path}: is a symbolic link; refusing to follow it (remove it or choose another name)"
    if os.path.exists(path):
        for i in inputs:
            try:
                if os.path.exists(i) and os.path.samefile(path, i):
                    return f"-o {path}: is the input {i}; refusing to overwrite it"
            except OSError:
                continue
    return None


def open_output(path: str, binary: bool = False) -> IO[Any]:
    """Open for writing (truncate/create) without following a final symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    if binary:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")
