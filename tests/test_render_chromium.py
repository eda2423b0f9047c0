"""Real renderers: Mermaid's own parser (mermaid-cli in headless Chromium) and
Chromium itself on the HTML report.

Needs ``scripts/render_check/node_modules`` (``scripts/render_check/setup.sh``)
and Debian's ``/usr/bin/chromium``; each test skips with the reason when one
is missing.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess
import zlib

import lxml.etree
import pytest

from wscap.render import escape
from wscap.render.mermaid import sequence_diagram
from wscap.render.redact import redact_document
from wscap.render.report import report_html, report_markdown

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "tests" / "fixtures" / "docs"
CHECK = ROOT / "scripts" / "render_check"
MMDC = CHECK / "node_modules" / ".bin" / "mmdc"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

need_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                   reason="Debian chromium not installed (apt-get install chromium)")
need_mmdc = pytest.mark.skipif(not MMDC.exists(),
                               reason="mermaid-cli not installed: run scripts/render_check/setup.sh")

NAMES = ["healthy-2hop", "origin-rejected-2hop", "refused-v6", "hostile"]


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def _svg_text(path: pathlib.Path) -> str:
    tree = lxml.etree.parse(str(path))
    return " ".join(t for t in tree.xpath("//text()") if t.strip())


@need_chromium
@need_mmdc
def test_mermaid_cli_parses_and_renders_every_ladder(tmp_path):
    """Every chain's ladder, redacted or not, through the real Mermaid parser."""
    parts = []
    for name in NAMES:
        for doc in (load(name), redact_document(load(name))):
            for ch in doc["chains"]:
                parts.append(escape.md_fence(sequence_diagram(doc, ch).rstrip("\n"), "mermaid"))
    # and the report file itself, so its fences are checked as written
    parts.append(report_markdown(load("origin-rejected-2hop")))
    md = tmp_path / "all.md"
    md.write_text("\n\n".join(parts))
    env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1", PUPPETEER_EXECUTABLE_PATH=CHROMIUM)
    r = subprocess.run([str(MMDC), "-p", str(CHECK / "puppeteer-config.json"), "-i", str(md),
                        "-o", str(tmp_path / "out.md"), "-q"],
                       capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    svgs = sorted(tmp_path.glob("out-*.svg"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(svgs) == sum(len(load(n)["chains"]) for n in NAMES) * 2 + 1
    text = _svg_text(svgs[0])  # healthy
    assert "\u2714 101 Switching Protocols" in text
    # origin-rejected (plain, redacted, and inside the report): labels decoded as text.
    for k in (2, 3, 8):
        text = _svg_text(svgs[k])
        assert "\u2716 403 Forbidden" in text
        assert "\u2716 failing hop 1: origin-rejected" in text
        assert "meetsonar-backend (backend)" in text
    # Hostile: the name with '<b>', '|' and an ESC shows as literal, visible text.
    hostile = load("hostile")
    name = hostile["endpoints"][2]["name"]
    for k in (6, 7):
        text = _svg_text(svgs[k])
        assert escape.visible(name) + " (backend)" in text
        assert escape.visible(hostile["handshakes"][1]["response"]["reason"]) in text
    tree = lxml.etree.parse(str(svgs[6]))
    assert not tree.xpath("//*[local-name()='script' or local-name()='b' or local-name()='i']")


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows (enough for Chromium's screenshots)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, hgt, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(hgt):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, bpp, rows


@need_chromium
def test_html_report_screenshot_in_headless_chromium(tmp_path):
    """Open the report as a file:// page and check the red failing-hop arrow is drawn."""
    html = tmp_path / "report.html"
    html.write_text(report_html(redact_document(load("origin-rejected-2hop"))), encoding="utf-8")
    png = tmp_path / "report.png"
    r = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1100,1300", f"--screenshot={png}", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert png.exists() and png.stat().st_size > 20_000, r.stderr[-2000:]
    w, bpp, rows = _png_pixels(png.read_bytes())
    red = 0
    for row in rows:
        for x in range(0, w * bpp, bpp):
            r_, g, b = row[x], row[x + 1], row[x + 2]
            if r_ > 180 and g < 80 and b < 80:   # the failing hop's #cf222e
                red += 1
    assert red > 200, f"only {red} red pixels: the failing hop was not drawn"
