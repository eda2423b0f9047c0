"""``analyze --format markdown|html|csv|har``: pick the renderer, apply the format's redaction
default."""
from __future__ import annotations

from typing import Any

__all__ = ["REDACT_BY_DEFAULT", "render_format"]


REDACT_BY_DEFAULT = {"markdown": True, "html": True, "csv": True, "report": True, "har": False, "json": False}


def render_format(doc: dict[str, Any], fmt: str, redact: bool | None = None) -> str:
    """``analyze --format markdown|html|csv|har`` output for ``doc`` (already filtered).

    ``redact=None`` applies the format's default (:data:`REDACT_BY_DEFAULT`);
    True/False come from ``--redact``/``--no-redact``.
    """
    from wscap.render.csv import render_csv
    from wscap.render.har import render_har_json
    from wscap.render.html import render_html
    from wscap.render.markdown import render_markdown
    from wscap.render.redact import redact_document

    renderers = {"markdown": render_markdown, "html": render_html, "csv": render_csv, "har": render_har_json}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(renderers)})")
    if redact is None:
        redact = REDACT_BY_DEFAULT[fmt]
    return renderers[fmt](redact_document(doc) if redact else doc)


def write_format(doc: dict[str, Any], fmt: str, fp: Any, redact: bool | None = None) -> None:
    """render_format written to the text stream `fp` piece by piece, as it is made: with a
    spooled document (Pipeline.lazy_document) memory does not grow with the handshakes."""
    from wscap.render.csv import write_csv
    from wscap.render.har import iter_har_json
    from wscap.render.html import iter_html
    from wscap.render.markdown import iter_markdown
    from wscap.render.redact import redact_document
    if fmt not in ("markdown", "html", "csv", "har"):
        raise ValueError(f"unknown format {fmt!r} (expected one of markdown, html, csv, har)")
    if redact is None:
        redact = REDACT_BY_DEFAULT[fmt]
    doc = redact_document(doc) if redact else doc
    if fmt == "csv":
        write_csv(doc, fp)
        return
    for piece in {"markdown": iter_markdown, "html": iter_html, "har": iter_har_json}[fmt](doc):
        fp.write(piece)
