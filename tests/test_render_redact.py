"""Redaction: secrets replaced by stable hashes everywhere, nothing else touched."""
from __future__ import annotations

import hashlib
import json
import pathlib

from wscap.render.redact import marker, redact_document, redact_header_value, redact_target

DOCS = pathlib.Path(__file__).parent / "fixtures" / "docs"


def load(name: str) -> dict:
    return json.loads((DOCS / f"{name}.json").read_text())


def h(v: str) -> str:
    return f"[redacted sha256:{hashlib.sha256(v.encode('latin-1')).hexdigest()[:8]}]"


def test_marker_is_stable_short_sha256():
    assert marker("abc") == "[redacted sha256:ba7816bf]"
    assert marker("abc") == h("abc")


def test_cookie_values_redacted_names_kept():
    assert redact_header_value("Cookie", "sid=abc123456; theme=dark") == f"sid={h('abc123456')}; theme={h('dark')}"


def test_set_cookie_keeps_attributes():
    assert (redact_header_value("set-cookie", "sid=abc123456; Path=/; HttpOnly")
            == f"sid={h('abc123456')}; Path=/; HttpOnly")


def test_authorization_keeps_scheme():
    assert redact_header_value("Authorization", "Bearer tok123456") == f"Bearer {h('tok123456')}"
    assert redact_header_value("Proxy-Authorization", "Basic dXNlcjpwYXNz") == f"Basic {h('dXNlcjpwYXNz')}"


def test_subprotocol_tokens():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
    assert redact_header_value("Sec-WebSocket-Protocol", "chat, authorization.bearer." + jwt) == f"chat, authorization.bearer.{h(jwt)}"
    assert (redact_header_value("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.dG9rZW4xMjM")
            == f"base64url.bearer.authorization.k8s.io.{h('dG9rZW4xMjM')}")
    assert redact_header_value("Sec-WebSocket-Protocol", "access_token, opaque99") == "access_token, opaque99"
    assert redact_header_value("Sec-WebSocket-Protocol", "base64.dXNlcjpwYXNzd29yZA") == f"base64.{h('dXNlcjpwYXNzd29yZA')}"
    # Kubernetes' plain protocol names are not secrets.
    assert redact_header_value("Sec-WebSocket-Protocol", "v4.channel.k8s.io, base64.binary.k8s.io") == \
        "v4.channel.k8s.io, base64.binary.k8s.io"
    assert redact_header_value("Sec-WebSocket-Protocol", "graphql-transport-ws") == "graphql-transport-ws"
    tok = "a1B2c3D4e5F6g7H8i9J0kLm"
    assert redact_header_value("Sec-WebSocket-Protocol", f"chat, {tok}") == f"chat, {h(tok)}"


def test_query_credentials():
    assert redact_target("/ws?token=abc&room=1") == f"/ws?token={h('abc')}&room=1"
    assert redact_target("/ws?api_key=k1&apikey=k2&x=1&Password=p") == \
        f"/ws?api_key={h('k1')}&apikey={h('k2')}&x=1&Password={h('p')}"
    assert redact_target("/ws?access_token=a&jwt=b&session=c&auth=d&secret=e&key=f") == \
        "/ws?" + "&".join(f"{k}={h(v)}" for k, v in
                          [("access_token", "a"), ("jwt", "b"), ("session", "c"), ("auth", "d"),
                           ("secret", "e"), ("key", "f")])
    assert redact_target("/ws") == "/ws"
    assert redact_target("/ws?room=a&debug") == "/ws?room=a&debug"


def test_key_and_accept_never_redacted():
    assert redact_header_value("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert redact_header_value("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_document_is_deep_copied_and_marked():
    doc = load("hostile")
    before = json.dumps(doc, sort_keys=True)
    out = redact_document(doc)
    assert json.dumps(doc, sort_keys=True) == before
    assert out["redacted"] is True


def _secrets_of(doc: dict) -> list[str]:
    """The secret values, read from the input document's own headers."""
    req = doc["handshakes"][0]["request"]
    hdr = {n.lower(): v for n, v in req["headers"]}
    cookie_value = hdr["cookie"].split(";")[0].split("=", 1)[1]
    bearer = hdr["authorization"].split(" ", 1)[1]
    jwt = hdr["sec-websocket-protocol"].split("authorization.bearer.", 1)[1]
    query = req["target"].split("token=", 1)[1].split("&", 1)[0]
    return [cookie_value, bearer, jwt, query]


def test_hostile_document_has_no_secret_left_anywhere():
    doc = load("hostile")
    secrets = _secrets_of(doc)
    text = json.dumps(redact_document(doc), ensure_ascii=False)
    for s in secrets:
        assert s not in text, s
        assert h(s) in text
    # The same cookie value hashes the same on both hops (it was forwarded).
    out = redact_document(doc)
    c0 = dict((n.lower(), v) for n, v in out["handshakes"][0]["request"]["headers"])["cookie"]
    c1 = dict((n.lower(), v) for n, v in out["handshakes"][1]["request"]["headers"])["cookie"]
    assert c0.startswith(f"session={h(secrets[0])}") and c1 == f"session={h(secrets[0])}"
    # Raw heads, verdict summary, evidence and diffs are covered too.
    assert secrets[0] not in out["handshakes"][0]["request"]["raw"]
    assert h(secrets[0]) in out["chains"][0]["verdict"]["summary"]
    assert h(secrets[1]) in out["chains"][0]["verdict"]["evidence"][1]["what"]
    assert h(secrets[0]) in out["chains"][0]["diffs"][0]["changes"][0]["before"]


def test_everything_else_is_unchanged():
    doc = load("origin-rejected-2hop")  # no secrets in it
    out = redact_document(doc)
    out.pop("redacted")
    assert out == doc


def test_raw_head_redacted_line_by_line_keeping_bytes():
    doc = {"handshakes": [{"id": 1, "request": {
        "method": "GET", "target": "/ws?token=abc", "version": "HTTP/1.1",
        "headers": [["Cookie", "a=1"], ["Sec-WebSocket-Key", "k=="]],
        "raw": "GET /ws?token=abc HTTP/1.1\r\nCookie: a=1\r\nSec-WebSocket-Key: k==\r\n\r\n"},
        "response": None}]}
    out = redact_document(doc)
    assert out["handshakes"][0]["request"]["raw"] == (
        f"GET /ws?token={h('abc')} HTTP/1.1\r\nCookie: a={h('1')}\r\nSec-WebSocket-Key: k==\r\n\r\n")


def test_short_secrets_not_replaced_as_substrings():
    """A cookie value '1' must not turn every '1' (frame numbers...) into a hash."""
    doc = {"handshakes": [{"id": 1, "request": {"headers": [["Cookie", "a=1"]], "target": "/",
                                                "raw": "GET / HTTP/1.1\r\nCookie: a=1\r\n\r\n"}}],
           "chains": [{"id": 1, "verdict": {"summary": "frame 1 and 11"}}]}
    out = redact_document(doc)
    assert out["chains"][0]["verdict"]["summary"] == "frame 1 and 11"


def test_live_events_redacted_with_their_hops():
    from wscap.render.redact import redact_live_event

    doc = load("hostile")
    secrets = _secrets_of(doc)
    seen = {}
    out = []
    for hs in doc["handshakes"]:
        seen[hs["id"]] = hs
        out.append(redact_live_event({"type": "handshake", "handshake": hs}, seen))
    out.append(redact_live_event({"type": "chain", "chain": doc["chains"][0]}, seen))
    text = json.dumps(out)
    for s in secrets:
        assert s not in text
    assert h(secrets[0]) in out[-1]["chain"]["verdict"]["summary"]
    assert seen[1] is doc["handshakes"][0] and secrets[0] in json.dumps(seen[1])  # caller's copy untouched
