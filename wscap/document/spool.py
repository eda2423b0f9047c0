"""Finished handshake documents wait on disk, not in memory.

A busy bridge yields thousands of handshakes; their full documents (heads,
frames, parser opinions) are what made memory grow with the capture. Once a
connection is over, its handshakes are serialised (compact JSON, one line each)
into an anonymous temporary file and only a small link view stays in memory.
Chains are judged one at a time by reading their legs back; the JSON writer
streams handshakes out of the spool in document order.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import IO, Any


class Spool:
    def __init__(self, f: IO[bytes] | None = None) -> None:
        self._f: IO[bytes] = f if f is not None else tempfile.TemporaryFile()   # unlinked at once: nothing left behind
        self._end = 0
        self.count = 0

    def persist(self) -> str:
        """Copy to a named file another process can open (for -j); the caller's `open` deletes it."""
        fd, path = tempfile.mkstemp(prefix="wscap-spool-")
        with os.fdopen(fd, "wb") as out:
            self._f.seek(0)
            shutil.copyfileobj(self._f, out)
        return path

    @classmethod
    def open(cls, path: str) -> "Spool":
        f = open(path, "rb")
        os.unlink(path)                        # still readable through `f`; gone when it is closed
        return cls(f)

    def put(self, doc: dict[str, Any]) -> tuple[int, int]:
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._f.seek(self._end)
        self._f.write(data)
        loc = (self._end, len(data))
        self._end += len(data)
        self.count += 1
        return loc

    def get(self, loc: tuple[int, int]) -> dict[str, Any]:
        self._f.seek(loc[0])
        return json.loads(self._f.read(loc[1]))

    def close(self) -> None:
        self._f.close()
