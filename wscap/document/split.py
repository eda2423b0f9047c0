"""Judging a capture's chains in two processes: the later ones in a forked helper.

Writing the JSON document reads every handshake back from the spool, judges every chain and
encodes both: most of `analyze`'s time after the last packet, and all of it on one core. The
chains are independent once linked (their ids, legs and the names are fixed before judging), so
a child forked after linking judges chains[first:] while this process judges chains[:first]. The
child writes each handshake and chain exactly as `encode_item` / `ChainEncoder` would here, into
a file of its own, and its chains' light forms (what endpoints and summary count) after them.
This process then writes those texts in their places. The bytes are the ones one process gives
(scripts/golden and tests/test_document_split.py hold them to it).

By default (`Options.judge_processes` 0) it is used with two usable CPUs and at least MIN_CHAINS
chains; `-j 2` asks for it whenever there are two chains, `-j 1` never. Never while another thread
runs (but cli/termui.py's progress bar, which pauses around fork): fork copies only this one, and
a lock it held would stay held in the child. When the child
fails (killed, out of memory, any exception), this process judges its chains itself: the result
is the same, only later.
"""
from __future__ import annotations

import os
import pickle
import struct
import tempfile
from typing import IO, TYPE_CHECKING, Any

from wscap.document.forking import Child, may_fork, usable_cpus
from wscap.document.spool import Spool

if TYPE_CHECKING:
    from wscap.document.build import Assembly
    from wscap.judge.chains import Linkage
    from wscap.model.chain import HopChain

_TRAILER = struct.Struct("<Q")


class SplitJudging:
    """The forked helper's side of `Assembly.write_json`: start it, take its result, close it."""

    MIN_CHAINS = 64         # below this, the fork costs more than half the judging saves
    INSTEAD = "its chains were judged in the main process instead (same result)"

    def __init__(self, child: Child, out: IO[bytes], first: int) -> None:
        self.child = child
        self.pid = child.pid
        self.first = first          # the helper judges chains[first:]
        self._out = out

    @classmethod
    def start(cls, asm: "Assembly", linkage: "Linkage", chains: list["HopChain"],
              ids: list[int | None]) -> "SplitJudging | None":
        wanted = getattr(asm.options, "judge_processes", 0)
        if wanted == 1 or len(chains) < 2 or not hasattr(os, "fork"):
            return None
        if wanted == 0 and (len(chains) < cls.MIN_CHAINS or usable_cpus() < 2):
            return None             # asked for (-j 2): split whatever the size, as the tests do
        if not may_fork():
            return None
        first = _halfway(linkage)
        for spool in {loc[0] for loc in asm.view_locs + asm.attempt_locs}:
            spool.flush()           # the child reads what was written so far
        out = tempfile.TemporaryFile()

        def work() -> int:
            _judge_rest(asm, linkage, chains, ids, first, out)
            return 0
        child = Child.start("the chain-judging helper process", work)
        if child is None:
            out.close()
            return None
        return cls(child, out, first)

    def result(self) -> "Judged | None":
        """Wait for the helper; its chains' texts and light forms, or None if it failed (said on
        stderr in one line: the document is the same, but a failing helper is a bug to report)."""
        if self.child.wait() != 0:
            self.child.failed(self.INSTEAD)
            return None
        try:
            return Judged.read(self._out)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, struct.error) as e:
            self.child.failed(self.INSTEAD, f"left unreadable output ({e})")
            return None

    def close(self) -> None:
        """Kill the helper if this process stopped before taking its result, and drop its file."""
        self.child.close()
        self._out.close()


# The share of the legs (reads, decodes, encodings) judged here. The helper's legs cost it more
# (every page it writes is copied first) and this process copies its texts once more, so the
# split is not half: measured on the bench captures, both sides finish together at about this.
HERE = 0.52


def _halfway(linkage: "Linkage") -> int:
    """The first chain of the helper's share: HERE of the legs go before it."""
    total = sum(len(c.legs) for c in linkage.chains)
    seen = 0
    for k, c in enumerate(linkage.chains):
        if seen >= HERE * total:
            return k
        seen += len(c.legs)
    return len(linkage.chains)


def _judge_rest(asm: "Assembly", linkage: "Linkage", chains: list["HopChain"], ids: list[int | None],
                first: int, out: IO[bytes]) -> None:
    """In the helper: judge chains[first:], writing each text to `out`, then the index."""
    from wscap.model.chain import HopChain
    from wscap.render.json import ChainEncoder, encode_item
    pos = 0
    handshakes: dict[int, tuple[int, int]] = {}

    def put(text: str) -> tuple[int, int]:
        nonlocal pos
        data = text.encode("utf-8")
        out.write(data)
        loc = (pos, len(data))
        pos += len(data)
        return loc

    def keep(i: int, doc: dict) -> None:
        if i not in handshakes:
            handshakes[i] = put(encode_item(doc))

    encode = ChainEncoder()
    chain_locs, light = [], []
    for c in asm._judged(linkage, chains, ids, asm.names(), keep, first):
        chain_locs.append(put(encode(c)))
        light.append(HopChain(c.id, c.hops, (), None, c.verdict))
    index = pickle.dumps((handshakes, chain_locs, light), pickle.HIGHEST_PROTOCOL)
    out.write(index)
    out.write(_TRAILER.pack(len(index)))
    out.flush()


class Judged:
    """What the helper wrote: handshake texts by leg, chain texts in order, the light chains."""

    def __init__(self, out: IO[bytes], handshakes: dict[int, tuple[int, int]], chain_locs: list[tuple[int, int]],
                 light: list[Any]) -> None:
        self._texts = Spool(out)    # read only: positional reads with its read-ahead window
        self._handshakes = handshakes
        self._chain_locs = chain_locs
        self.light = light

    @classmethod
    def read(cls, out: IO[bytes]) -> "Judged":
        fd = out.fileno()
        size = os.fstat(fd).st_size
        if size < _TRAILER.size:
            raise ValueError("helper output cut short")
        (n,) = _TRAILER.unpack(os.pread(fd, _TRAILER.size, size - _TRAILER.size))
        if n > size - _TRAILER.size:
            raise ValueError("helper index cut short")
        handshakes, chain_locs, light = pickle.loads(os.pread(fd, n, size - _TRAILER.size - n))
        return cls(out, handshakes, chain_locs, light)

    def _text(self, loc: tuple[int, int]) -> bytes:
        return self._texts.read(loc)

    def handshake(self, leg: int) -> bytes | None:
        """Leg `leg`'s text as the helper encoded it (UTF-8), or None (a leg of none of its chains)."""
        loc = self._handshakes.get(leg)
        return None if loc is None else self._text(loc)

    def chains(self) -> Any:
        """Its chains' texts (UTF-8), in order."""
        for loc in self._chain_locs:
            yield self._text(loc)
