"""Redaction of secrets in a wscap JSON document.

Handshakes routinely carry credentials: cookies, ``Authorization`` headers,
tokens in the query string (``/ws?token=...``) and bearer tokens smuggled in
``Sec-WebSocket-Protocol`` (browsers cannot set headers on a WebSocket, so
``authorization.bearer.<jwt>``-style subprotocols are common). Reports get
pasted into tickets, so they are redacted by default.

Each secret value is replaced by ``[redacted sha256:xxxxxxxx]`` — the first 8
hex digits of its SHA-256 — so the *same* value can still be followed across
hops ("the proxy forwarded the cookie unchanged") without showing it.
Names are kept: ``Cookie: sid=[redacted sha256:…]; theme=[redacted sha256:…]``.

How: first walk every header/target in the document and collect the secret
values (positionally: we know which header or query key holds them), then
rewrite the document. Headers, targets, raw heads and diff entries are
rewritten positionally; every other string (verdict summaries, evidence,
anomaly messages, frame previews, ...) gets the collected secrets replaced as
plain substrings. Very short values (``theme=1``) are only redacted where they
sit, never as substrings, or "1" would be replaced in every frame number.
JWT-looking tokens are redacted wherever they appear.

``Sec-WebSocket-Key`` and ``Sec-WebSocket-Accept`` are never redacted: they are
nonces, not credentials, and the Accept check is a core debugging step.
"""
from __future__ import annotations

import copy
import hashlib
import re
from typing import Any, Callable, Iterable

__all__ = [
    "redact_document",
    "redact_live_event",
    "redact_header_value",
    "redact_target",
    "marker",
    "SECRET_HEADERS",
    "SECRET_QUERY_KEYS",
]

# Headers whose whole value (or each cookie value) is a credential.
SECRET_HEADERS = frozenset({
    "cookie", "set-cookie", "set-cookie2", "authorization", "proxy-authorization",
    "x-api-key", "x-auth-token", "x-access-token", "x-amz-security-token",
    "x-csrf-token", "x-xsrf-token", "x-goog-api-key", "private-token", "api-key", "apikey",
    "x-apikey", "x-auth", "x-session-token", "x-refresh-token", "x-id-token", "x-vault-token",
})
# Parts of a header name that mark it as a credential (the API-key headers of many vendors).
_SECRET_NAME_PARTS = ("api-key", "apikey", "token", "secret", "password", "passwd", "authorization",
                      "credential", "private-key", "session-id", "signature")
# Configured with --redact-header / --redact-query (beside the built-in ones), lower-case.
EXTRA_HEADERS: set[str] = set()
EXTRA_QUERY_KEYS: set[str] = set()


def configure(headers: Iterable[str] = (), query_keys: Iterable[str] = ()) -> None:
    """Add header names and query keys to redact (the CLI's --redact-header/--redact-query)."""
    EXTRA_HEADERS.update(h.strip().lower() for h in headers if h.strip())
    EXTRA_QUERY_KEYS.update(k.strip().lower().replace("-", "_") for k in query_keys if k.strip())


def is_secret_header(name: str) -> bool:
    n = name.strip().lower().replace("_", "-")
    if n in NEVER_REDACT or n.startswith("sec-websocket-"):
        return False
    return n in SECRET_HEADERS or n in EXTRA_HEADERS or any(p in n for p in _SECRET_NAME_PARTS)
# Headers holding a URL whose query may carry a credential.
URL_HEADERS = frozenset({
    "referer", "location", "content-location", "x-original-uri", "x-original-url",
    "x-forwarded-uri", "x-rewrite-url", ":path", ":target", "target", "request-target",
})
# Never touched, whatever they look like.
NEVER_REDACT = frozenset({"sec-websocket-key", "sec-websocket-accept"})

# Query keys that carry credentials (compared lower-case, '-' treated as '_').
SECRET_QUERY_KEYS = frozenset({
    "token", "access_token", "accesstoken", "refresh_token", "id_token", "jwt",
    "key", "api_key", "apikey", "password", "passwd", "pwd", "pass", "secret",
    "client_secret", "auth", "authorization", "session", "sessionid",
    "session_id", "sid", "sig", "signature", "code", "ticket", "credential",
    "credentials", "bearer", "x_amz_signature", "x_amz_security_token",
    "x_amz_credential",
})
# Substrings of a query key that mark it as a credential.
_SECRET_KEY_PARTS = ("token", "secret", "passw", "auth", "session", "apikey",
                     "api_key", "jwt", "credential", "signature", "private")

# A JWT (or JWS/JWE compact form): base64url JSON header starting '{"'.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,4}")
# A subprotocol element naming a credential, then the credential itself:
# 'authorization.bearer.<tok>', 'base64url.bearer.authorization.k8s.io.<tok>',
# 'access_token.<tok>', 'token.<tok>'. Greedy prefix: the secret starts after
# the *last* marker segment.
_SUBPROTO_MARKER_RE = re.compile(
    r"^(.*(?:^|[.])(?:authorization\.k8s\.io|bearer|token|access_token|access-token"
    r"|jwt|auth|authorization|apikey|api_key|api-key|password|secret)[.])(.+)$",
    re.IGNORECASE,
)
# 'base64.<data>' / 'base64url.<data>' carrying a credential (but not
# Kubernetes' plain protocol names such as 'base64.binary.k8s.io').
_SUBPROTO_B64_RE = re.compile(r"^(base64(?:url)?[.])(.+)$", re.IGNORECASE)
# An opaque high-entropy element: 20+ token characters with letters and digits.
_OPAQUE_RE = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9+/_=-]{20,}$")

# A query pair quoted anywhere (an anomaly quoting a request line, a verdict, a preview).
_QUERY_PAIR_RE = re.compile(r"([?&;][A-Za-z0-9_.%-]+=)([^&;#\s\"'<>\]\[]+)")
# A bearer/basic credential quoted anywhere ('Authorization Bearer x' without its colon, too).
_BEARER_RE = re.compile(r"(?i)(\b(?:bearer|basic)\s+)(?!\[redacted)([A-Za-z0-9._~+/-]{6,}=*)")

# Secrets shorter than this are redacted only where they sit, never replaced
# as substrings elsewhere (too likely to hit unrelated text).
MIN_GLOBAL_LEN = 6


def marker(value: str) -> str:
    """The stable replacement for one secret value."""
    digest = hashlib.sha256(value.encode("latin-1", "replace")).hexdigest()[:8]
    return f"[redacted sha256:{digest}]"


def _secret(value: str, found: list[str]) -> str:
    """Record ``value`` as a secret and return its marker (empty stays empty)."""
    if value == "" or value.startswith("[redacted sha256:"):
        return value
    found.append(value)
    return marker(value)


def _redact_jwts(s: str, found: list[str]) -> str:
    return _JWT_RE.sub(lambda m: _secret(m.group(0), found), s)


def _redact_cookie_pairs(value: str, found: list[str]) -> str:
    """``a=1; b=2`` -> ``a=[redacted]; b=[redacted]`` (names kept)."""
    out = []
    for part in value.split(";"):
        name, eq, val = part.partition("=")
        if not eq:
            # A bare word in a Cookie header is still a value.
            stripped = part.strip()
            lead = part[: len(part) - len(part.lstrip())]
            out.append(lead + _secret(stripped, found) if stripped else part)
            continue
        v = val.strip()
        lead = val[: len(val) - len(val.lstrip())]
        trail = val[len(val.rstrip()):]
        out.append(f"{name}={lead}{_secret(v, found)}{trail}")
    return ";".join(out)


def _redact_set_cookie(value: str, found: list[str]) -> str:
    """Only the first ``name=value`` pair is the secret; attributes stay."""
    first, sep, rest = value.partition(";")
    return _redact_cookie_pairs(first, found) + sep + rest


def _redact_authorization(value: str, found: list[str]) -> str:
    """``Bearer xyz`` -> ``Bearer [redacted]``: keep the scheme."""
    scheme, sp, cred = value.strip().partition(" ")
    if not sp:
        return _secret(value.strip(), found)
    lead = value[: len(value) - len(value.lstrip())]
    return f"{lead}{scheme} {_secret(cred.strip(), found)}"


def _redact_subprotocol_item(item: str, found: list[str]) -> str:
    stripped = item.strip()
    if not stripped:
        return item
    lead = item[: len(item) - len(item.lstrip())]
    trail = item[len(item.rstrip()):]
    if _JWT_RE.search(stripped):
        return lead + _redact_jwts(stripped, found) + trail
    m = _SUBPROTO_MARKER_RE.match(stripped)
    if m:
        return lead + m.group(1) + _secret(m.group(2), found) + trail
    m = _SUBPROTO_B64_RE.match(stripped)
    if m and not re.search(r"\.k8s\.io$", m.group(2), re.IGNORECASE):
        return lead + m.group(1) + _secret(m.group(2), found) + trail
    # Opaque tokens: redact the long dotted segment(s) only.
    segs = stripped.split(".")
    if any(_OPAQUE_RE.match(s) for s in segs):
        segs = [_secret(s, found) if _OPAQUE_RE.match(s) else s for s in segs]
        return lead + ".".join(segs) + trail
    return item


def _redact_subprotocols(value: str, found: list[str]) -> str:
    return ",".join(_redact_subprotocol_item(i, found) for i in value.split(","))


def _is_secret_query_key(key: str) -> bool:
    k = key.strip().lower().replace("-", "_")
    # %-encoded keys are rare; decoding just for the test is cheap.
    k = re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), k)
    if k in SECRET_QUERY_KEYS or k in EXTRA_QUERY_KEYS:
        return True
    return any(p in k for p in _SECRET_KEY_PARTS) or k.endswith("_key")


def _redact_query(query: str, found: list[str]) -> str:
    out = []
    for part in re.split(r"([&;])", query):
        if part in ("&", ";"):
            out.append(part)
            continue
        key, eq, val = part.partition("=")
        if eq and val and _is_secret_query_key(key):
            out.append(f"{key}={_secret(val, found)}")
        else:
            out.append(_redact_jwts(part, found))
    return "".join(out)


# user:password@ in a URL (an absolute-form target, a Referer, a quoted line)
# (the scheme starts a run and is short, so a long run of letters is one linear scan, not n^2)
_USERINFO_RE = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}://[^/\s:@?#\[\]]*:)([^/\s@?#]+)(@)")


def _redact_userinfo(s: str, found: list[str]) -> str:
    return _USERINFO_RE.sub(lambda m: m.group(1) + _secret(m.group(2), found) + m.group(3), s)


def redact_target(target: str, found: list[str] | None = None) -> str:
    """Redact credentials in a request target's query (and any JWT in it)."""
    found = [] if found is None else found
    path, q, query = target.partition("?")
    frag = ""
    if q and "#" in query:
        query, _, rest = query.partition("#")
        frag = "#" + rest
    path = _redact_userinfo(_redact_jwts(path, found), found)
    if not q:
        return path
    return f"{path}?{_redact_query(query, found)}{frag}"


def redact_header_value(name: str, value: str, found: list[str] | None = None) -> str:
    """Redact one header value according to its name.

    Appends every secret it removed to ``found`` (when given). JWT-looking
    tokens are redacted in any header except Sec-WebSocket-Key/Accept.
    """
    found = [] if found is None else found
    n = name.strip().lower()
    if n in NEVER_REDACT or value is None:
        return value
    if n in ("cookie",):
        return _redact_cookie_pairs(value, found)
    if n in ("set-cookie", "set-cookie2"):
        return _redact_set_cookie(value, found)
    if n in ("authorization", "proxy-authorization"):
        return _redact_authorization(value, found)
    if is_secret_header(n):
        return _secret(value.strip(), found) if value.strip() else value
    if n == "sec-websocket-protocol":
        return _redact_subprotocols(value, found)
    if n in URL_HEADERS or n in ("origin", "host", ":authority"):
        return redact_target(value, found)
    return _redact_userinfo(_redact_jwts(value, found), found)


# A header line inside a raw head: name, colon, value (obs-fold lines have
# no name and are left to the substring pass).
_RAW_HEADER_RE = re.compile(r"^(:?[^:\s][^:]*):(.*)$", re.DOTALL)   # HTTP/2 pseudo-headers included
_NO_COLON_RE = re.compile(r"^([^:\s]+)(\s+)(.+)$", re.DOTALL)          # 'Authorization Bearer x'

_REQUEST_LINE_RE = re.compile(r"^(\S+)( +)(\S+)(.*)$", re.DOTALL)


def _redact_raw(raw: str, is_request: bool, found: list[str]) -> str:
    """Redact a raw head line by line, keeping every byte that is not secret."""
    lines = raw.split("\n")
    out = []
    for i, line in enumerate(lines):
        body, cr = (line[:-1], "\r") if line.endswith("\r") else (line, "")
        if i == 0 and is_request:
            m = _REQUEST_LINE_RE.match(body)
            if m:
                body = m.group(1) + m.group(2) + redact_target(m.group(3), found) + m.group(4)
        elif i > 0:
            m = _RAW_HEADER_RE.match(body)
            if m:
                name, val = m.group(1), m.group(2)
                body = f"{name}:{redact_header_value(name, val, found)}"
            else:
                m = _NO_COLON_RE.match(body)
                if m and (is_secret_header(m.group(1)) or m.group(1).lower() in ("cookie", "set-cookie")):
                    body = m.group(1) + m.group(2) + redact_header_value(m.group(1), m.group(3), found)
        out.append(body + cr)
    return "\n".join(out)


class _Redactor:
    def __init__(self) -> None:
        self.found: list[str] = []

    def head(self, head: dict[str, Any] | None, is_request: bool) -> None:
        if not isinstance(head, dict):
            return
        hdrs = head.get("headers")
        if isinstance(hdrs, list):
            new = []
            for pair in hdrs:
                if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[1], str):
                    new.append([pair[0], redact_header_value(str(pair[0]), pair[1], self.found)])
                else:
                    new.append(pair)
            head["headers"] = new
        if is_request and isinstance(head.get("target"), str):
            head["target"] = redact_target(head["target"], self.found)
        if isinstance(head.get("raw"), str):
            head["raw"] = _redact_raw(head["raw"], is_request, self.found)

    def diff(self, diff: dict[str, Any]) -> None:
        for ch in diff.get("changes") or []:
            if not isinstance(ch, dict):
                continue
            name = str(ch.get("name") or "")
            for k in ("before", "after"):
                if isinstance(ch.get(k), str):
                    ch[k] = redact_header_value(name, ch[k], self.found)

    def substrings(self, obj: Any, skip: Iterable[int] = ()) -> Any:
        """Replace collected secrets (and JWTs) in every string of ``obj`` (see `walker`)."""
        return self.walker()(obj, skip)

    def walker(self) -> Callable[..., Any]:
        """-> walk(obj, skip ids): replaces the secrets collected so far in every string of obj.

        Strings were cut before redaction runs (a 64-byte frame preview, an anomaly quoting
        80 characters of a request line), so a secret can also appear cut short at the end of
        a string (its beginning is redacted too), or a string can start inside one (a
        message's second fragment: its end is redacted too). And any string may quote a request line or a
        header: credential-shaped query pairs, `user:password@` and bearer tokens are redacted
        wherever they sit, not only in the fields that hold them.
        """
        secrets = sorted({s for s in self.found if len(s) >= MIN_GLOBAL_LEN}, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None
        skip_ids: set[int] = set()
        by_start: dict[str, list[str]] = {}
        by_end: dict[str, list[str]] = {}
        for sec in secrets:
            by_start.setdefault(sec[:MIN_GLOBAL_LEN], []).append(sec)
            by_end.setdefault(sec[-MIN_GLOBAL_LEN:], []).append(sec)
        found: list[str] = []        # secrets met by shape during the walk: not needed afterwards
        longest = max(map(len, secrets), default=0)

        def cut_tail(s: str) -> str:
            # The earliest position where the rest of the string is a secret's beginning.
            for i in range(max(0, len(s) - longest), len(s) - MIN_GLOBAL_LEN + 1):
                for sec in by_start.get(s[i:i + MIN_GLOBAL_LEN], ()):
                    if sec.startswith(s[i:]):
                        return s[:i] + marker(sec)
            return s

        def cut_head(s: str) -> str:
            # A string that starts inside a secret (the second frame of a fragmented message).
            for i in range(min(len(s), longest), MIN_GLOBAL_LEN - 1, -1):
                for sec in by_end.get(s[i - MIN_GLOBAL_LEN:i], ()):
                    if sec.endswith(s[:i]):
                        return marker(sec) + s[i:]
            return s

        def fix(s: str) -> str:
            if pattern is not None:
                s = pattern.sub(lambda m: marker(m.group(0)), s)
                s = cut_head(cut_tail(s))
            s = _QUERY_PAIR_RE.sub(lambda m: m.group(1) + (_secret(m.group(2), found) if _is_secret_query_key(
                m.group(1)[1:-1]) else m.group(2)), s)
            s = _redact_userinfo(s, found)
            s = _BEARER_RE.sub(lambda m: m.group(1) + _secret(m.group(2), found), s)
            return _JWT_RE.sub(lambda m: marker(m.group(0)), s)

        def walk(o: Any) -> Any:
            if id(o) in skip_ids:
                return o
            if isinstance(o, str):
                return fix(o)
            if isinstance(o, list):
                return [walk(x) for x in o]
            if isinstance(o, dict):
                return {k: walk(v) for k, v in o.items()}
            return o

        def run(obj: Any, skip: Iterable[int] = ()) -> Any:
            nonlocal skip_ids
            skip_ids = set(skip)
            found.clear()
            return walk(obj)
        return run


def _protected_pairs(doc: dict[str, Any]) -> list[int]:
    """ids of header pairs that the substring pass must leave alone."""
    ids: list[int] = []
    for hs in doc.get("handshakes") or []:
        for side in ("request", "response"):
            head = hs.get(side) if isinstance(hs, dict) else None
            for pair in (head or {}).get("headers") or []:
                if isinstance(pair, list) and pair and str(pair[0]).lower() in NEVER_REDACT:
                    ids.append(id(pair))
    return ids


def _redact_spooled(doc: dict[str, Any]) -> dict[str, Any]:
    """redact_document for a document whose handshakes/chains wait in a spool (SpooledList):
    one pass collects the secrets (what the deep copy's head pass collects), then every item is
    redacted as it is read back, with the same secrets; nothing is held but the secrets."""
    from wscap.document.spool import SpooledList
    r = _Redactor()
    hss, chains = doc.get("handshakes"), doc.get("chains")
    for hs in hss or []:
        if isinstance(hs, dict):
            r.head(hs.get("request"), True)
            r.head(hs.get("response"), False)
    for ch in chains or []:
        for d in (ch or {}).get("diffs") or []:
            if isinstance(d, dict):
                r.diff(d)
    walk = r.walker()
    heads = _Redactor()               # head/diff redaction per item (deterministic); its finds are dropped

    def one_handshake(hs: Any) -> Any:
        if isinstance(hs, dict):
            heads.head(hs.get("request"), True)
            heads.head(hs.get("response"), False)
            heads.found.clear()
        return walk(hs, _protected_pairs({"handshakes": [hs]}))

    def one_chain(ch: Any) -> Any:
        for d in (ch or {}).get("diffs") or [] if isinstance(ch, dict) else []:
            if isinstance(d, dict):
                heads.diff(d)
        heads.found.clear()
        return walk(ch)

    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "handshakes" and isinstance(v, SpooledList):
            out[k] = v.map(one_handshake)
        elif k == "chains" and isinstance(v, SpooledList):
            out[k] = v.map(one_chain)
        else:
            out[k] = walk(copy.deepcopy(v))
    out["redacted"] = True
    return out


def redact_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``doc`` with every secret replaced by a stable marker.

    Adds ``"redacted": true`` at the top level so renderers can say so.
    The input is never modified. Spooled handshakes/chains (SpooledList) stay spooled: they are
    redacted as they are read back.
    """
    from wscap.document.spool import SpooledList
    if isinstance(doc.get("handshakes"), SpooledList) or isinstance(doc.get("chains"), SpooledList):
        return _redact_spooled(doc)
    out = copy.deepcopy(doc)
    r = _Redactor()
    for hs in out.get("handshakes") or []:
        if not isinstance(hs, dict):
            continue
        r.head(hs.get("request"), True)
        r.head(hs.get("response"), False)
    for ch in out.get("chains") or []:
        for d in (ch or {}).get("diffs") or []:
            if isinstance(d, dict):
                r.diff(d)
    out = r.substrings(out, skip=_protected_pairs(out))
    out["redacted"] = True
    return out


def redact_live_event(obj: dict[str, Any], seen: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Redact one ``wscap live --format json`` line object.

    ``seen`` maps handshake id -> the *unredacted* handshake for every
    handshake event so far (the caller keeps it: ``seen[h["id"]] = h``); a
    chain event is redacted together with its hops, so secrets quoted in its
    verdict are found. Summary lines carry no wire data and pass through.
    """
    kind = obj.get("type")
    if kind == "handshake" and isinstance(obj.get("handshake"), dict):
        red = redact_document({"handshakes": [obj["handshake"]]})
        return {**obj, "handshake": red["handshakes"][0]}
    if kind == "chain" and isinstance(obj.get("chain"), dict):
        hops = [seen[h] for h in obj["chain"].get("hops") or [] if h in seen]
        red = redact_document({"handshakes": hops, "chains": [obj["chain"]]})
        return {**obj, "chain": red["chains"][0]}
    return copy.deepcopy(obj)
