"""JSON output: the document, written element by element.

`json.dumps(doc, indent=2)` goes through the pure-Python encoder and holds the
whole text (and many small pieces of it) in memory at once: on a capture with
thousands of handshakes that was more memory than the analysis itself. Here
each handshake, chain and endpoint is encoded by the C encoder on its own line
inside an otherwise indented document, so output memory stays bounded by one
element and the result is still one valid JSON object.

`encode_item` is the one encoding of a list element. The pipeline writes through
`StreamedDocument`: each handshake as soon as it has been read back for judging
and every handshake before it has been written (document/build.py), each chain as
`ChainEncoder` made it when judged. `ChainEncoder` writes a chain's bytes as the
plain encoding would, remembering the text of each header diff: proxies relay
the same headers the same way, so a capture's thousands of chains hold a few
dozen distinct diffs, and they were most of the chains' cost.
"""
from __future__ import annotations

import codecs
import json
import os
import sys
from typing import IO, Any, Iterable

from wscap.document.codec import encode_chain, encode_diff
from wscap.document.spool import SpooledList
from wscap.model.chain import HeaderDiff, HopChain

_LISTS = ("handshakes", "chains", "tls", "endpoints", "source")
# check_circular only adds a check: documents are trees (dicts of lists of dicts, built by to_json),
# and the same bytes come out without it, a little sooner.
_ENC = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), check_circular=False)
encode_item = _ENC.encode          # one handshake/chain/endpoint, as it stands on its own line


class ChainEncoder:
    """A judged chain as `encode_item(encode_chain(c))` writes it, byte for byte (a dict is
    written as its keys' and values' texts joined by ", ", a list as its items' texts)."""

    MAX_DIFFS = 4096            # distinct diff texts remembered; past that, new ones are encoded each time

    def __init__(self) -> None:
        self._diffs: dict[HeaderDiff, str] = {}

    def __call__(self, chain: HopChain) -> str:
        enc = _ENC.encode
        doc = encode_chain(chain, self._diff)
        return "{" + ", ".join(enc(k) + ": " + ("[" + ", ".join(v) + "]" if k == "diffs" else enc(v))
                               for k, v in doc.items()) + "}"

    def _diff(self, d: HeaderDiff) -> str:
        text = self._diffs.get(d)
        if text is None:
            text = _ENC.encode(encode_diff(d))
            if len(self._diffs) < self.MAX_DIFFS:
                self._diffs[d] = text
        return text


def write_document(doc: dict, fp: IO[str]) -> None:
    enc = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
    keys = list(doc)
    fp.write("{\n")
    for i, key in enumerate(keys):
        sep = "," if i < len(keys) - 1 else ""
        value = doc[key]
        if key in _LISTS and isinstance(value, (list, SpooledList)):
            if not value:
                fp.write(f'  "{key}": []{sep}\n')
                continue
            fp.write(f'  "{key}": [\n')
            for j, item in enumerate(value):
                fp.write("    " + enc.encode(item) + (",\n" if j < len(value) - 1 else "\n"))
            fp.write(f"  ]{sep}\n")
        else:
            fp.write(f"  {json.dumps(key)}: {enc.encode(value)}{sep}\n")
    fp.write("}\n")


def write_document_streamed(fp: IO[str], head: dict, handshakes: Iterable[dict], chains: Iterable[dict],
                            tail: dict) -> None:
    """The same layout as `write_document`, with handshakes and chains taken from iterators."""
    write_document_encoded(fp, head, map(encode_item, handshakes), map(encode_item, chains), tail)


def write_document_encoded(fp: IO[str], head: dict, handshakes: Iterable[str], chains: Iterable[str],
                           tail: dict) -> None:
    """As `write_document_streamed`, with handshakes and chains already encoded by `encode_item`."""
    out = StreamedDocument(fp, head)
    for text in handshakes:
        out.item(text)
    out.chains()
    for text in chains:
        out.item(text)
    out.finish(tail)


class StreamedDocument:
    """`write_document`'s layout written a piece at a time: the head's fields, then each handshake
    (encoded) as it comes, `chains()`, each chain, then `finish(tail)`."""

    def __init__(self, fp: IO[str], head: dict) -> None:
        self._fp: Any = fp
        self._bin: Any = None           # the byte stream written to directly, after to_bytes()
        fp.write("{\n")
        for key, value in head.items():
            _field(fp, _ENC, key, value)
        self._open("handshakes")

    def to_bytes(self) -> bool:
        """From here on, write UTF-8 straight to the standard output's byte stream (flushed first),
        so items given already encoded (`item(bytes)`: what a spool or the judging helper holds)
        are not decoded and encoded again. Only for the process's own standard output as Python
        opened it on POSIX (UTF-8, strict, no newline translation); False and nothing changed else."""
        if self._fp is not sys.stdout or sys.stdout is not sys.__stdout__ or os.linesep != "\n":
            return False
        fp: Any = self._fp
        try:
            ok = codecs.lookup(fp.encoding).name == "utf-8" and fp.errors == "strict"
            buf = fp.buffer
        except (AttributeError, LookupError, TypeError, ValueError):
            return False
        if not ok:
            return False
        fp.flush()
        self._bin = buf
        self._fp = _Utf8(buf)
        return True

    def _open(self, key: str) -> None:
        self._fp.write(f'  "{key}": [')
        self._sep = "\n    "

    def _close(self) -> None:
        self._fp.write("],\n" if self._sep == "\n    " else "\n  ],\n")

    def item(self, text: str | bytes) -> None:
        """One element, encoded by `encode_item` (as str, or as its UTF-8 bytes)."""
        if self._bin is not None:
            self._bin.write(self._sep.encode())
            self._bin.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        else:
            self._fp.write(self._sep + (text if isinstance(text, str) else text.decode("utf-8")))
        self._sep = ",\n    "

    def chains(self) -> None:
        self._close()
        self._open("chains")

    def finish(self, tail: dict) -> None:
        self._close()
        keys = list(tail)
        for i, key in enumerate(keys):
            _field(self._fp, _ENC, key, tail[key], last=i == len(keys) - 1)
        self._fp.write("}\n")


class _Utf8:
    """str writes as UTF-8 to a byte stream (the rest of a document after `to_bytes`)."""

    def __init__(self, buf: IO[bytes]) -> None:
        self._buf = buf

    def write(self, text: str) -> None:
        self._buf.write(text.encode("utf-8"))


def _field(fp: IO[str], enc: json.JSONEncoder, key: str, value: Any, last: bool = False) -> None:
    sep = "" if last else ","
    if key in _LISTS and isinstance(value, list) and value:
        fp.write(f'  "{key}": [\n' + ",\n".join("    " + enc.encode(v) for v in value) + f"\n  ]{sep}\n")
    else:
        fp.write(f"  {json.dumps(key)}: {enc.encode(value)}{sep}\n")
