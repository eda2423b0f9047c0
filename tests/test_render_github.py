"""The Markdown outputs through GitHub's own renderer (cmark-gfm, via cmarkgfm).

markdown-it-py is a CommonMark parser; GitHub renders with cmark-gfm, whose
table and autolink extensions differ in details (how a backslash before '|'
splits cells, bare URLs becoming links). These tests render with cmark-gfm
in *unsafe* mode (raw HTML passed through, so anything we failed to escape
would show up as an element) and check the HTML cell by cell.
"""
from __future__ import annotations

import copy
import json
import pathlib

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings

from wscap.render import escape
from wscap.render.markdown import render_markdown
from wscap.render.redact import redact_document
from wscap.render.report import report_markdown

cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (GitHub's cmark-gfm) not installed: pip install cmarkgfm")
from cmarkgfm.cmark import Options  # noqa: E402

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"
ALLOWED = {"html", "body", "h1", "h2", "h3", "h4", "h5", "p", "strong", "em", "code", "pre", "table", "thead",
           "tbody", "tr", "th", "td", "ul", "li"}


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def github(md: str):
    html = cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)
    return lxml.html.document_fromstring(("<html><body>" + html + "</body></html>").encode())


def check_tree(tree) -> None:
    for el in tree.iter():
        if isinstance(el.tag, str):
            if el.tag == "a":  # the report's contents list links to its own headings only
                assert set(el.attrib) == {"href"} and el.attrib["href"].startswith("#chain-"), el.attrib
                continue
            assert el.tag in ALLOWED, (el.tag, lxml.html.tostring(el)[:200])
    for table in tree.xpath("//table"):
        widths = {len(tr.xpath("./th|./td")) for tr in table.xpath(".//tr")}
        assert len(widths) == 1, lxml.html.tostring(table)[:500]


def cells(tree) -> list[str]:
    return [td.text_content() for td in tree.xpath("//td")]


@pytest.mark.parametrize("name", ["healthy-2hop", "origin-rejected-2hop", "refused-v6", "hostile"])
def test_reports_render_on_github_without_markup_from_data(name):
    for doc in (load(name), redact_document(load(name))):
        for md in (render_markdown(doc), report_markdown(doc)):
            check_tree(github(md))


def test_hostile_values_read_back_exactly_on_github():
    doc = load("hostile")
    hdr = {n.lower(): v for n, v in doc["handshakes"][0]["request"]["headers"]}
    tree = github(render_markdown(doc))
    got = cells(tree)
    for v in (hdr["host"], hdr["origin"]):
        assert escape.visible(v) in got, v
    assert escape.visible(doc["chains"][0]["verdict"]["summary"]) in got
    tree = github(report_markdown(doc))
    got = cells(tree)
    pipe = hdr["x-pipe"]
    assert escape.visible(pipe) in got and escape.visible(pipe + "|") in got
    pres = [p.text_content() for p in tree.xpath("//pre")]
    assert escape.raw_head_lines(doc["handshakes"][0]["request"]["raw"]) + "\n" in pres


def test_backslash_before_pipe_does_not_split_a_cell_on_github():
    doc = load("origin-rejected-2hop")
    hs = doc["handshakes"][0]
    hs["request"]["headers"][0][1] = "a\\|b\\\\|c\\"
    tree = github(render_markdown(doc))
    check_tree(tree)
    assert "a\\|b\\\\|c\\" in cells(tree)


def test_urls_in_values_are_not_links_on_github():
    tree = github(render_markdown(load("origin-rejected-2hop")))
    assert not tree.xpath("//a")
    assert "http://localhost:5173" in cells(tree)


# The property test of test_render_fuzz, through GitHub's renderer (loaded by
# path so it works whatever pytest's import mode).
def _fuzz_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_wscap_render_fuzz", pathlib.Path(__file__).with_name(
        "test_render_fuzz.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


documents = _fuzz_module().documents


@given(documents())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_documents_on_github(doc):
    for d in (doc, redact_document(copy.deepcopy(doc))):
        for md in (render_markdown(d), report_markdown(d)):
            check_tree(github(md))
