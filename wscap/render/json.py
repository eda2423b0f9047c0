"""JSON output: the document, written element by element.

`json.dumps(doc, indent=2)` goes through the pure-Python encoder and holds the
whole text (and many small pieces of it) in memory at once: on a capture with
thousands of handshakes that was more memory than the analysis itself. Here
each handshake, chain and endpoint is encoded by the C encoder on its own line
inside an otherwise indented document, so output memory stays bounded by one
element and the result is still one valid JSON object.

`encode_item` is the one encoding of a list element: the pipeline encodes each
handshake when it reads it back for judging (and each chain when judged), so the
final write only copies text (`write_document_encoded`) instead of reading every
handshake back a second time and encoding it then.
"""
from __future__ import annotations

import json
from typing import IO, Any, Iterable

from wscap.document.codec import encode_chain, encode_diff
from wscap.document.spool import SpooledList
from wscap.model.chain import HeaderDiff, HopChain

_LISTS = ("handshakes", "chains", "tls", "endpoints", "source")
_ENC = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
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
    enc = _ENC
    fp.write("{\n")
    for key, value in head.items():
        _field(fp, enc, key, value)
    for key, items in (("handshakes", handshakes), ("chains", chains)):
        fp.write(f'  "{key}": [')
        sep = "\n    "
        for text in items:
            fp.write(sep + text)
            sep = ",\n    "
        fp.write("\n  ],\n" if sep != "\n    " else "],\n")
    keys = list(tail)
    for i, key in enumerate(keys):
        _field(fp, enc, key, tail[key], last=i == len(keys) - 1)
    fp.write("}\n")


def _field(fp: IO[str], enc: json.JSONEncoder, key: str, value: Any, last: bool = False) -> None:
    sep = "" if last else ","
    if key in _LISTS and isinstance(value, list) and value:
        fp.write(f'  "{key}": [\n' + ",\n".join("    " + enc.encode(v) for v in value) + f"\n  ]{sep}\n")
    else:
        fp.write(f"  {json.dumps(key)}: {enc.encode(value)}{sep}\n")
