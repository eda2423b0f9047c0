"""`analyze --format har`: HAR 1.2 with Chrome's _webSocketMessages."""
from __future__ import annotations

import datetime
import json
import pathlib

from wscap.render.har import render_har, render_har_json

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


REQUIRED_ENTRY = {"startedDateTime", "time", "request", "response", "cache", "timings"}
REQUIRED_REQUEST = {"method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"}
REQUIRED_RESPONSE = {"status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL",
                     "headersSize", "bodySize"}


def test_har_structure_and_messages():
    doc = load("healthy-2hop")
    har = render_har(doc)
    log = har["log"]
    assert log["version"] == "1.2" and log["creator"] == {"name": "wscap", "version": "0.1.0"}
    assert len(log["entries"]) == 2
    for e, hs in zip(log["entries"], doc["handshakes"], strict=True):
        assert REQUIRED_ENTRY <= set(e) and REQUIRED_REQUEST <= set(e["request"])
        assert REQUIRED_RESPONSE <= set(e["response"])
        assert e["request"]["headers"] == [{"name": n, "value": v} for n, v in hs["request"]["headers"]]
        assert e["response"]["status"] == 101
        assert e["_resourceType"] == "websocket"
        started = datetime.datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00"))
        assert abs(started.timestamp() - hs["request"]["ts"]) < 1e-6
        assert e["timings"]["wait"] == round((hs["response"]["ts"] - hs["request"]["ts"]) * 1000, 3)
        assert e["_webSocketMessages"] == [
            {"type": "send" if f["dir"] == "client" else "receive", "time": f["ts"], "opcode": f["opcode"],
             "data": f["preview"]} for f in hs["frames"]]
    assert log["entries"][0]["request"]["url"] == "ws://localhost:5173/ws"
    assert log["entries"][1]["request"]["url"] == "ws://meetsonar-backend:5000/ws"
    assert log["entries"][0]["serverIPAddress"] == "172.18.0.2" and log["entries"][0]["connection"] == "5173"


def test_har_query_cookies_and_missing_response():
    doc = load("hostile")
    e = render_har(doc)["log"]["entries"][0]
    target = doc["handshakes"][0]["request"]["target"]
    token = target.split("token=")[1].split("&")[0]
    assert e["request"]["queryString"][0] == {"name": "token", "value": token}
    assert e["request"]["cookies"] == [{"name": "session", "value": "SESSION_SECRET_abc123"},
                                       {"name": "theme", "value": "dark"}]
    assert e["response"]["cookies"][0]["name"] == "session"
    doc = load("refused-v6")
    entries = render_har(doc)["log"]["entries"]
    # the refused leg sent no request: no entry for it
    assert [x["_wscap"]["handshake"] for x in entries] == [1, 3]
    assert entries[0]["response"]["status"] == 0 and entries[0]["response"]["statusText"] == "closed"
    assert entries[1]["timings"]["wait"] == 5000.0
    assert entries[0]["request"]["url"] == "ws://[::1]:5173/@vite/hmr"


def test_har_json_round_trips():
    doc = load("hostile")
    assert json.loads(render_har_json(doc)) == render_har(doc)
