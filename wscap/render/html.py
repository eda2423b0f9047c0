"""HTML output (``wscap analyze --format html``) and the HTML building blocks.

Every page is one self-contained file: inline CSS, inline SVG, no scripts, no
external fetches. A Content-Security-Policy meta tag forbids scripts and any
network access as a second line of defence: even if a wire value escaped
escaping, the browser would not run it. Every wire value goes through
:func:`wscap.render.escape.html`.

:func:`ladder_svg` draws a chain's hop ladder (the same model as the Mermaid
diagram, :func:`wscap.render.mermaid.ladder`) as inline SVG.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from wscap.render import escape
from wscap.render.markdown import (CAPTURE_HEADER, CHAIN_HEADER, HANDSHAKE_HEADER, REDACTED_NOTE, TLS_HEADER, TLS_NOTE,
                                   capture_rows, filter_text, has_chains, iter_chain_rows, iter_handshake_rows,
                                   plural, tls_rows)
from wscap.render.mermaid import Ladder

__all__ = ["render_html", "page", "table", "ladder_svg", "CSS"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1200px; padding: 0 16px; color: #1f2328; }
h1 { font-size: 24px; border-bottom: 1px solid #d0d7de; padding-bottom: 6px; }
h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
td { overflow-wrap: break-word; }
.scroll { overflow-x: auto; max-width: 100%; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
code { background: #f6f8fa; padding: 1px 4px; border-radius: 4px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px 10px; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; }
.bad { color: #cf222e; font-weight: 600; }
.ok { color: #1a7f37; font-weight: 600; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 6px; }
.verdict { background: #ffebe9; border: 1px solid #ff8182; padding: 8px 12px; border-radius: 6px; }
.diagram { overflow-x: auto; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; background: #fff; }
.muted { color: #656d76; }
tr.breaking td { background: #ffebe9; }
tr.suspicious td { background: #fff8c5; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document; ``title`` is plain text, ``body`` is HTML."""
    return page_head(title) + f"{body}\n" + PAGE_TAIL


def page_head(title: str) -> str:
    """What comes before the body (page() in pieces, for a body written as it is made)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape.html(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n")


PAGE_TAIL = "</body>\n</html>\n"


def table(header_cells: Sequence[str], rows: Iterable[Sequence[str]],
          row_classes: Sequence[str] | None = None) -> str:
    """A table from cells that are *already* HTML (escape wire text first)."""
    return "\n".join(table_lines(header_cells, rows, row_classes))


def table_lines(header_cells: Sequence[str], rows: Iterable[Sequence[str]],
                row_classes: Sequence[str] | None = None) -> Iterator[str]:
    """table(), line by line. `row_classes` is read by index as each row comes, so a generator
    of rows may append the class of the row it yields to it (nothing else is held)."""
    head = "".join(f"<th>{h}</th>" for h in header_cells)
    yield from ['<div class="scroll"><table>', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and i < len(row_classes) and row_classes[i] else ""
        attr = f' class="{escape.html(cls)}"' if cls else ""
        yield f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
    yield "</tbody></table></div>"


# ---- the ladder as SVG ------------------------------------------------------

_FONT = 12
_CHAR_W = 7.3          # DejaVu Sans Mono at 12px, roughly
_LINE_H = 15
_BLUE, _GREEN, _ORANGE, _RED, _GREY = "#0969da", "#1a7f37", "#bc4c00", "#cf222e", "#57606a"


def _text_lines(x: float, y: float, lines: Sequence[str], color: str, weight: str = "normal",
                anchor: str = "middle") -> str:
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if i == 0 else _LINE_H}">{escape.html(t)}</tspan>'
        for i, t in enumerate(lines)
    )
    return (f'<text x="{x:.1f}" y="{y:.1f}" fill="{color}" font-weight="{weight}" '
            f'text-anchor="{anchor}">{spans}</text>')


def ladder_svg(lad: Ladder) -> str:
    """The hop ladder as an inline ``<svg>`` element (no external references)."""
    parts = lad.participants
    if not parts:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    longest = max([len(t) for m in lad.messages for t in m.lines] +
                  [len(t) for p in parts for t in p.lines] + [20])
    gap = min(max(longest * _CHAR_W + 40, 240), 560)
    margin = gap / 2 + 10
    width = margin * 2 + gap * (len(parts) - 1)
    xs = [margin + k * gap for k in range(len(parts))]
    box_w, box_h, top = gap - 30, 2 * _LINE_H + 14, 10

    body: list[str] = []
    y = top + box_h + 24
    rows: list[str] = []
    notes_after: dict[int, list[Any]] = {}
    for note in lad.notes:
        notes_after.setdefault(note.after, []).append(note)
    for k, m in enumerate(lad.messages):
        y += _LINE_H * len(m.lines) + 4
        color = _BLUE if m.kind in ("request", "syn") else (_GREEN if not m.bad else _ORANGE)
        if m.failing:
            color = _RED
        x1, x2 = xs[m.src], xs[m.dst]
        mid = (x1 + x2) / 2
        label_y = y - _LINE_H * len(m.lines) + 2
        rows.append(_text_lines(mid, label_y, m.lines, color, "bold" if m.failing else "normal"))
        dash = ' stroke-dasharray="6 4"' if m.kind != "request" and m.kind != "syn" else ""
        sw = 2.5 if m.failing else 1.5
        if m.bad:
            # A cross at the receiving end, like Mermaid's --x arrow.
            d = 6
            end = x2 + (8 if x2 < x1 else -8)
            rows.append(f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{end:.1f}" y2="{y:.1f}" stroke="{color}" '
                        f'stroke-width="{sw}"{dash}/>')
            rows.append(f'<path d="M{end - d:.1f},{y - d:.1f} L{end + d:.1f},{y + d:.1f} '
                        f'M{end - d:.1f},{y + d:.1f} L{end + d:.1f},{y - d:.1f}" stroke="{color}" '
                        f'stroke-width="2.5"/>')
        else:
            head = 9 if x2 > x1 else -9
            rows.append(f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2 - head:.1f}" y2="{y:.1f}" '
                        f'stroke="{color}" stroke-width="{sw}"{dash}/>')
            rows.append(f'<path d="M{x2:.1f},{y:.1f} L{x2 - head:.1f},{y - 5:.1f} '
                        f'L{x2 - head:.1f},{y + 5:.1f} Z" fill="{color}"/>')
        y += 18
        for note in notes_after.get(k, []):
            left, right = xs[note.left], xs[note.right]
            h = _LINE_H * len(note.lines) + 10
            fill, stroke = ("#ffebe9", _RED) if note.failing else ("#fff8c5", "#d4a72c")
            rows.append(f'<rect x="{left - 20:.1f}" y="{y:.1f}" width="{right - left + 40:.1f}" '
                        f'height="{h}" rx="4" fill="{fill}" stroke="{stroke}"/>')
            rows.append(_text_lines((left + right) / 2, y + _LINE_H, note.lines,
                                    _RED if note.failing else "#1f2328", "bold"))
            y += h + 14
    height = y + 16

    for k, p in enumerate(parts):
        x = xs[k]
        body.append(f'<line x1="{x:.1f}" y1="{top + box_h:.1f}" x2="{x:.1f}" y2="{height - 6:.1f}" '
                    f'stroke="{_GREY}" stroke-dasharray="3 4"/>')
        body.append(f'<rect x="{x - box_w / 2:.1f}" y="{top}" width="{box_w:.1f}" height="{box_h}" rx="6" '
                    f'fill="#f6f8fa" stroke="{_GREY}"/>')
        body.append(_text_lines(x, top + 18, p.lines, "#1f2328", "bold"))
    title = f"Chain {lad.chain_id} hop ladder" + (
        f": hop {lad.fail_hop} failed ({lad.cause})" if lad.fail_hop is not None else "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans Mono, ui-monospace, monospace" '
        f'font-size="{_FONT}">'
        f"<title>{escape.html(title)}</title>"
        + "".join(body) + "".join(rows) + "</svg>"
    )


# ---- the analysis listing --------------------------------------------------

def _cells(row: Sequence[str]) -> list[str]:
    return [escape.html(c) for c in row]


def _summary(doc: dict[str, Any]) -> str:
    s = doc.get("summary") or {}
    causes = ", ".join(f"{k}: {v}" for k, v in sorted((s.get("by_cause") or {}).items()) if k != "ok")
    text = (f"{plural(s.get('handshakes', 0), 'handshake')} ({s.get('websocket', 0)} WebSocket), "
            f"{plural(s.get('chains', 0), 'chain')}, {s.get('broken', 0)} broken"
            + (f" ({causes})" if causes else "") + ".")
    return escape.html(text)


def render_html(doc: dict[str, Any]) -> str:
    """The whole analysis as one self-contained HTML page."""
    return "".join(iter_html(doc))


def iter_html(doc: dict[str, Any]) -> Iterator[str]:
    """render_html in pieces, written as they come (rows made one at a time)."""
    yield page_head("wscap: WebSocket handshakes")
    for line in _html_lines(doc):
        yield line + "\n"
    yield PAGE_TAIL


def _html_lines(doc: dict[str, Any]) -> Iterator[str]:
    yield from ["<h1>wscap: WebSocket handshakes</h1>", f"<p>{_summary(doc)}</p>"]
    if doc.get("filter"):
        yield f'<p class="note">{escape.html("Filtered: " + filter_text(doc["filter"]))}</p>'
    if doc.get("redacted"):
        yield f'<p class="note">{escape.html(REDACTED_NOTE.replace("`", ""))}</p>'
    chains = doc.get("chains") or []
    if has_chains(chains):
        classes: list[str] = []

        def chain_items() -> Iterator[dict[str, Any]]:
            for c in chains:
                if isinstance(c, dict):
                    classes.append("breaking" if (c.get("verdict") or {}).get("broken") else "")
                    yield c
        yield "<h2>Chains</h2>"
        yield from table_lines([escape.html(h) for h in CHAIN_HEADER],
                               map(_cells, iter_chain_rows(doc, chain_items())), classes)
    yield "<h2>Handshakes</h2>"
    seen: list = []
    if doc.get("handshakes"):
        yield from table_lines([escape.html(h) for h in HANDSHAKE_HEADER], map(_cells, iter_handshake_rows(doc, seen)))
    else:
        yield "<p>No handshakes found.</p>"
    if seen:
        arows = ([escape.html(x) for x in (hs.get("id"), a.get("severity"), a.get("code"), a.get("frame"),
                                           a.get("message"))]
                 for hs in doc.get("handshakes") or [] for a in hs.get("anomalies") or [])
        yield "<h2>Anomalies</h2>"
        yield from table_lines(["Handshake", "Severity", "Code", "Frame", "Message"], arows)
    trows = tls_rows(doc)
    if trows:
        yield from ["<h2>TLS connections</h2>", f"<p>{escape.html(TLS_NOTE.replace('`', ''))}</p>"]
        yield from table_lines([escape.html(h) for h in TLS_HEADER], map(_cells, trows))
    yield "<h2>Captures</h2>"
    yield from table_lines([escape.html(h) for h in CAPTURE_HEADER], map(_cells, capture_rows(doc)))
