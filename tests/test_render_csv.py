"""`analyze --format csv`: one row per handshake, read back with the csv module."""
from __future__ import annotations

import csv
import io
import json
import pathlib

from wscap.render.csv import COLUMNS, render_csv

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def test_rows_and_columns():
    doc = load("origin-rejected-2hop")
    rows = list(csv.DictReader(io.StringIO(render_csv(doc))))
    assert len(rows) == len(doc["handshakes"])
    assert list(rows[0]) == COLUMNS
    for row, hs in zip(rows, doc["handshakes"], strict=True):
        assert row["handshake"] == str(hs["id"])
        assert row["client"] == hs["client"] and row["server"] == hs["server"]
        assert row["target"] == hs["request"]["target"]
        assert row["status"] == str(hs["status"]) and row["outcome"] == hs["outcome"]
        assert row["verdict"] == "origin-rejected" and row["broken"] == "true" and row["failing_hop"] == "1"
        assert row["request_frame"] == str(hs["request"]["frame"])
        assert float(row["latency_ms"]) == round((hs["response"]["ts"] - hs["request"]["ts"]) * 1000, 3)
    assert rows[1]["server_name"] == "meetsonar-backend"
    assert rows[0]["wireshark_filter"] == "ip.addr==172.18.0.1 && tcp.port==51234 && ip.addr==172.18.0.2 && tcp.port==5173"


def test_missing_heads_and_lone_handshakes():
    doc = load("refused-v6")
    rows = list(csv.DictReader(io.StringIO(render_csv(doc))))
    assert rows[1]["method"] == "" and rows[1]["outcome"] == "refused" and rows[1]["status"] == ""
    assert rows[2]["chain"] == "" and rows[2]["verdict"] == ""
    assert rows[0]["wireshark_filter"].startswith("ipv6.addr==::1 && tcp.port==50000")


def test_crlf_rows():
    out = render_csv(load("healthy-2hop"))
    assert out.count("\r\n") == 3 and out.endswith("\r\n")
