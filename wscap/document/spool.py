"""Finished handshake documents wait on disk, not in memory.

A busy bridge yields thousands of handshakes; their full documents (heads,
frames, parser opinions) are what made memory grow with the capture. Once a
connection is over, its handshakes are serialised into an anonymous temporary
file and only a small link view stays in memory. Chains are judged one at a
time by reading their legs back; the JSON writer prints each handshake as it
is read for judging (document/build.py, InOrder), the other renderers walk the
spool in document order (SpooledList).

The records are `marshal` data, not JSON: about 3x cheaper to write and 2x to
read, and the file is private to this interpreter (unlinked at once; `persist`
hands it only to -j workers running the same Python). A document marshal cannot
hold (a str/int subclass such as an Enum) is written as JSON instead; the first
byte of each record says which. Documents are JSON-shaped (dicts with str keys,
lists, no tuples): tests/test_spool.py holds every sample capture's documents to
reading back exactly as a JSON round trip would give them.
"""
from __future__ import annotations

import json
import marshal
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import IO, Any, Callable, Iterable, Iterator


class Spool:
    BUFFER = 1 << 20
    WINDOW = 256 << 10              # bytes read ahead by `read`

    def __init__(self, f: IO[bytes] | None = None) -> None:
        # unlinked at once: nothing left behind. A large buffer: a document is a few kB, and the
        # default 8 kB buffer made most puts a write() of their own.
        self._f: IO[bytes] = f if f is not None else tempfile.TemporaryFile(buffering=self.BUFFER)
        self._end = 0
        self._at_end = f is None    # the file's position is _end: a write needs no seek (which flushes)
        self.count = 0
        self._win = b""             # the last bytes read ahead, from _win_at
        self._win_at = 0
        # Reads are positional (pread): they move no shared file offset, so a forked judging
        # process (document/split.py) reads the same file beside this one. Writes are buffered;
        # the first read after one flushes them.
        self._dirty = False
        try:
            self._fd: int | None = self._f.fileno()
        except (AttributeError, OSError, ValueError):     # an in-memory stream: seek and read
            self._fd = None

    def persist(self) -> str:
        """Copy to a named file another process can open (for -j); the caller's `open` deletes it."""
        fd, path = tempfile.mkstemp(prefix="wscap-spool-")
        with os.fdopen(fd, "wb") as out:
            self._f.seek(0)
            self._at_end = False
            shutil.copyfileobj(self._f, out)
        return path

    @classmethod
    def open(cls, path: str) -> "Spool":
        f = open(path, "rb")
        os.unlink(path)                        # still readable through `f`; gone when it is closed
        return cls(f)

    def put(self, doc: dict[str, Any]) -> tuple[int, int]:
        try:
            data = b"M" + marshal.dumps(doc)
        except ValueError:          # a subclass of str/int/float (an Enum): JSON writes its value
            data = b"J" + json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        loc = self._write(data)
        self.count += 1
        return loc

    def _write(self, data: bytes) -> tuple[int, int]:
        if not self._at_end:
            self._f.seek(self._end)
            self._at_end = True
        self._f.write(data)
        self._dirty = True
        loc = (self._end, len(data))
        self._end += len(data)
        return loc

    def read(self, loc: tuple[int, int]) -> bytes:
        """The bytes at `loc`, as written."""
        if self._fd is None:
            self._f.seek(loc[0])
            self._at_end = False
            return self._f.read(loc[1])
        start, n = loc
        off = start - self._win_at
        if 0 <= off and off + n <= len(self._win):
            return self._win[off:off + n]
        if self._dirty:
            self._f.flush()
            self._dirty = False
        if n >= self.WINDOW:
            return os.pread(self._fd, n, start)
        # Records are read back about in the order they were written (a chain's legs, the chains
        # in order): one read of the next WINDOW bytes serves the next ones. The file only grows,
        # so bytes once read stay what they are.
        self._win, self._win_at = os.pread(self._fd, self.WINDOW, start), start
        return self._win[:n]

    def flush(self) -> None:
        """Written records reach the file (before another process reads it)."""
        self._f.flush()
        self._dirty = False

    def get(self, loc: tuple[int, int]) -> dict[str, Any]:
        data = self.read(loc)
        if data[:1] == b"M":
            return marshal.loads(memoryview(data)[1:])
        return json.loads(data[1:])

    def put_text(self, text: str) -> tuple[int, int]:
        """Text kept as it is (UTF-8): an element of the JSON output, already encoded."""
        return self._write(text.encode("utf-8"))

    def close(self) -> None:
        self._f.close()


class SpooledList(Sequence):
    """A list of documents that wait on disk: only a handle per item is held in memory.

    The renderers take the document as a dict whose "handshakes" and "chains" may be one of
    these instead of a list (`Pipeline.document(lazy=True)`): iterating reads the items back one
    at a time, so memory stays flat however many handshakes there are; `index_by(key)` maps a key
    (the id) to items read on demand. Every read gives a fresh object (a mutation is not seen
    by the next read); `map(fn)` applies `fn` to each item as it is read (redaction).
    """

    CACHE = 16                  # items kept after a lookup by position (a chain's hops, read twice)

    def __init__(self, handles: list, load: Callable[[Any], dict],
                 raw: Callable[[Any], dict] | None = None) -> None:
        self._handles = handles
        self._load = load
        self._raw = raw or load         # the items before any map(): for ids and hops, which map keeps
        self._cache: OrderedDict = OrderedDict()
        self._indexes: dict[str, "SpooledIndex"] = {}

    def __len__(self) -> int:
        return len(self._handles)

    def __bool__(self) -> bool:
        return bool(self._handles)

    def __iter__(self) -> Iterator[dict]:
        load = self._load
        for h in self._handles:
            yield load(h)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return SpooledList(self._handles[i], self._load, self._raw)
        if i < 0:
            i += len(self._handles)
        cache = self._cache
        hit = cache.get(i)
        if hit is not None:
            cache.move_to_end(i)
            return hit
        doc = self._load(self._handles[i])
        cache[i] = doc
        if len(cache) > self.CACHE:
            cache.popitem(last=False)
        return doc

    def __add__(self, other: "SpooledList") -> "SpooledList":
        if not isinstance(other, SpooledList) or other._load is not self._load:
            return NotImplemented
        return SpooledList(self._handles + other._handles, self._load, self._raw)

    def __repr__(self) -> str:
        return f"<SpooledList of {len(self._handles)}>"

    def map(self, fn: Callable[[dict], dict]) -> "SpooledList":
        """Items as `fn` makes them from each one read; `fn` must keep ids and chain hops (the
        indexes are built from the items as read, before `fn`: redaction is costly)."""
        load = self._load
        return SpooledList(self._handles, lambda h: fn(load(h)), self._raw)

    def raw_iter(self) -> Iterator[dict]:
        """The items before any map() (for keys that map() keeps)."""
        raw = self._raw
        for h in self._handles:
            yield raw(h)

    def subset(self, positions: Iterable[int]) -> "SpooledList":
        return SpooledList([self._handles[i] for i in positions], self._load, self._raw)

    def select(self, pred: Callable[[dict], bool]) -> "SpooledList":
        """The items `pred` keeps, in order (one pass; only their handles are kept)."""
        return self.subset([i for i, d in enumerate(self) if pred(d)])

    def index_by(self, key: str = "id") -> "SpooledIndex":
        """key value -> item (the first with that value), read on demand; built in one pass."""
        ix = self._indexes.get(key)
        if ix is None:
            pos: dict = {}
            for i, d in enumerate(self.raw_iter()):
                if isinstance(d, dict):
                    pos.setdefault(d.get(key), i)
            ix = self._indexes[key] = SpooledIndex(self, pos)
        return ix


class SpooledIndex(Mapping):
    """Read-only mapping key -> item of a SpooledList (see `SpooledList.index_by`)."""

    def __init__(self, items: SpooledList, pos: dict) -> None:
        self._items = items
        self._pos = pos

    def __getitem__(self, k: Any) -> Any:
        return self._items[self._pos[k]]

    def __contains__(self, k: object) -> bool:
        return k in self._pos

    def __iter__(self) -> Iterator[Any]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)

    def position(self, k: Any) -> int | None:
        return self._pos.get(k)
