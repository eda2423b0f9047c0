"""What to check next, per verdict cause (the causes wscap.judge.verdict produces): one table
the report, the Markdown output and the terminal share."""
from __future__ import annotations

CAUSE_ADVICE: dict[str, list[str]] = {
    "origin-rejected": [
        "Compare the Origin the backend received (diff table above) with the backend's allow-list: "
        "ALLOWED_ORIGINS / CORS_ORIGINS / Socket.IO `cors.origin` / Django `CSRF_TRUSTED_ORIGINS` / "
        "Spring `setAllowedOrigins`.",
        "Vite `server.proxy`: `changeOrigin: true` rewrites Host only, never Origin. To rewrite Origin "
        "use `rewriteWsOrigin: true` (Vite 6+), or a `configure: (proxy) => proxy.on('proxyReqWs', "
        "(req) => req.setHeader('origin', target))` hook.",
        "If a proxy hook already rewrites Origin, check the value it writes (scheme, host and port must "
        "all match the allow-list entry).",
        "Behind nginx: Origin passes through unchanged unless `proxy_set_header Origin ...` is set.",
    ],
    "upgrade-header-stripped": [
        "nginx: `proxy_http_version 1.1;` and `proxy_set_header Upgrade $http_upgrade;` in the location.",
        "Vite: look for `configure` hooks that call `removeHeader`/`setHeader` on `proxyReqWs`.",
        "Load balancers/CDNs: WebSocket support must be enabled for the route.",
    ],
    "connection-header-stripped": [
        "nginx: `proxy_set_header Connection \"upgrade\";` (or a `map $http_upgrade $connection_upgrade`).",
        "HTTP/1.0 proxies drop hop-by-hop headers: make the proxy speak HTTP/1.1 upstream.",
    ],
    "key-changed": [
        "An intermediary regenerated Sec-WebSocket-Key; it must also recompute Sec-WebSocket-Accept "
        "for the client, or pass the key through unchanged.",
    ],
    "bad-accept": [
        "Recompute Accept = base64(SHA-1(key + 258EAFA5-E914-47DA-95CA-C5AB0DC85B11)) and compare with "
        "the response head below; a mismatch means the server or an intermediary rewrote the key.",
    ],
    "malformed-response": [
        "Read the raw response head below for bare LF line endings, a body or Content-Length on the "
        "101, or a head that never ends; see which parser rejects it in the JSON `parsers` field.",
        "Node/Bun clients are strict (llhttp); nginx may accept what they reject.",
    ],
    "upstream-refused": [
        "Nothing listens on the proxy's target address/port: check the backend is up and bound to "
        "0.0.0.0 (not 127.0.0.1) inside its container.",
        "`localhost` inside a container is the container itself: use the Compose service name "
        "(e.g. `http://backend:5000`) as the proxy target.",
        "Vite HMR: the HMR socket port must be reachable; set `server.hmr.clientPort` (and "
        "`server.hmr.port`) when the dev server runs behind a proxy or in a container.",
    ],
    "upstream-unreachable": [
        "The proxy's SYNs went unanswered: wrong address, firewall, or the backend container is on "
        "another Docker network (`docker network inspect`).",
    ],
    "no-upstream-connection": [
        "The proxy never connected upstream: make sure the path is proxied with `ws: true` "
        "(Vite `server.proxy['/ws'] = {target, ws: true}`).",
        "The upstream name may not resolve inside the proxy's container: use the Compose service name.",
        "If the upstream leg runs on loopback inside a container, capture there "
        "(`wscap live --container NAME`).",
    ],
    "upstream-rejected": [
        "The backend answered the upgrade with a non-101 status: read its response head below "
        "(auth, path, Host allow-lists such as Django `ALLOWED_HOSTS`).",
        "A 404 usually means a path mismatch: check the proxy's `rewrite` and the backend's route.",
    ],
    "upstream-closed": [
        "The backend closed/reset without answering: check its logs for a crash, a TLS listener "
        "receiving plaintext, or a protocol mismatch (HTTP/2-only server).",
    ],
    "proxy-rejected": [
        "The proxy answered itself without going upstream: is the path in `server.proxy` (key and "
        "`rewrite`)? Vite's host check: `server.allowedHosts`.",
        "nginx: check the `location` that matched and any `allow/deny` or auth directives.",
    ],
    "proxy-dropped-upgrade": [
        "The backend said 101 but the client got something else: upgrade the proxy runtime "
        "(Bun node:http 'upgrade' bug oven-sh/bun#24127, old http-proxy versions).",
    ],
    "proxy-dropped-response": [
        "The backend's non-101 answer never reached the client: old http-proxy listened only for "
        "'upgrade' (node-http-proxy#624). Upgrade the proxy; the backend's own answer is below.",
    ],
    "frames-lost-at-proxy": [
        "Frames sent together with the upstream 101 never reached the client: the proxy dropped the "
        "'head' bytes when it switched to piping. Upgrade the proxy.",
    ],
    "subprotocol-mismatch": [
        "The server must choose one of the offered Sec-WebSocket-Protocol values and the proxy must "
        "pass it back; browsers fail the connection otherwise.",
        "If a token travels in Sec-WebSocket-Protocol, the server must echo only the protocol name.",
    ],
    "extension-mismatch": [
        "Negotiated extensions and the frames disagree (RSV1 without permessage-deflate): a proxy "
        "relayed the offer but not the answer, or vice versa. Disable compression on one side to confirm.",
    ],
    "version-unsupported": [
        "Sec-WebSocket-Version must be 13; a 426 lists what the server supports.",
    ],
    "timeout": [
        "No answer before the capture (or `--timeout`) ended: check whether the backend is hung or the "
        "proxy is waiting on a slow upstream; capture longer to be sure.",
    ],
    "closed-after-upgrade": [
        "The WebSocket opened and was closed abnormally: check the close code and which side closed.",
        "Idle timeouts close quiet sockets (nginx `proxy_read_timeout` 60 s, load balancers): send pings.",
    ],
}

_ADVICE_KEYWORDS = (
    ("origin", "origin-rejected"), ("refused", "upstream-refused"), ("unreachable", "upstream-unreachable"),
    ("upgrade", "upgrade-header-stripped"), ("connection", "connection-header-stripped"),
    ("accept", "bad-accept"), ("key", "key-changed"), ("malformed", "malformed-response"),
    ("subprotocol", "subprotocol-mismatch"), ("extension", "extension-mismatch"),
    ("timeout", "timeout"), ("closed", "upstream-closed"), ("reject", "upstream-rejected"),
)


def advice_for(cause: str | None) -> list[str]:
    """Checklist for ``cause`` (exact name first, then by keyword, then generic)."""
    if not cause or cause == "ok":
        return []
    if cause in CAUSE_ADVICE:
        return CAUSE_ADVICE[cause]
    low = cause.lower()
    for kw, known in _ADVICE_KEYWORDS:
        if kw in low:
            return CAUSE_ADVICE[known]
    return ["Read the failing hop's request and response heads below and compare them with the hop before it."]

