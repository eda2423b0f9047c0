"""What to check next, per verdict cause: the one table (the README's "Causes" table is generated from it)."""
from __future__ import annotations

# cause -> what to check next (README "Causes" table is generated from this)
ADVICE: dict[str, str] = {
    "ok": "Nothing to fix in the handshake.",
    "origin-rejected": "The backend refused the Origin it received. Add the client's origin to the backend's allow-list "
                       "(e.g. ALLOWED_ORIGINS), or remove a proxy hook that rewrites Origin (Vite `configure` + "
                       "`proxyReqWs`). `changeOrigin` rewrites Host only, never Origin.",
    "upgrade-header-stripped": "A proxy dropped `Upgrade`. nginx needs `proxy_http_version 1.1; proxy_set_header Upgrade "
                               "$http_upgrade;`; check Vite `configure` hooks that call removeHeader.",
    "connection-header-stripped": "A proxy dropped the `upgrade` token from `Connection`. nginx: `proxy_set_header "
                                  "Connection \"upgrade\";`; Varnish/other proxies: pipe Connection through.",
    "key-changed": "An intermediary regenerated Sec-WebSocket-Key without re-deriving Sec-WebSocket-Accept for the client.",
    "bad-accept": "Sec-WebSocket-Accept does not match the key: a buggy server or an intermediary that rewrote the key.",
    "invalid-101": "The client fails the connection (RFC 6455 §4.1; a browser fires error, then close 1006): the 101 "
                   "must carry `Upgrade: websocket`, `Connection: Upgrade` and a valid Sec-WebSocket-Accept. Fix "
                   "the server that produced it (the hop named), or the proxy hook that removed the header.",
    "malformed-request": "The client's request bytes break HTTP/1.1 grammar (obs-fold, bare LF, a header llhttp "
                         "rejects); the server refused or misread it. Fix the client, or the proxy that re-serialised "
                         "the request.",
    "client-http-after-101": "The client sent HTTP (another request) on the socket after the 101, where WebSocket "
                             "frames belong: a client or pooled HTTP agent reusing an upgraded socket. The server "
                             "reads it as a broken frame and fails the connection (close 1002).",
    "malformed-response": "The response bytes break HTTP/1.1 grammar; see which parser rejects them. Fix the server "
                          "(bare LF, Content-Length on 101, unterminated head) — Node/Bun clients reject what nginx may accept.",
    "upstream-refused": "The proxy's target refused the connection (RST to SYN): backend not listening on that port, or "
                        "`localhost` inside a container. Use the Compose service name and the container's port.",
    "upstream-unreachable": "The proxy's SYNs to the target were never answered: wrong address, firewall, or a "
                            "container on another network.",
    "no-upstream-connection": "The proxy received the upgrade but never connected upstream: no `ws: true` for that path, "
                              "name not resolvable, Vite in middleware mode, or the leg runs on loopback inside a "
                              "container (capture there: `wscap live --container NAME`).",
    "upstream-rejected": "The backend answered the upgrade with a non-101 status; see its response and headers.",
    "upstream-closed": "The backend closed or reset the connection without answering: crash, TLS expected, or a "
                       "protocol mismatch.",
    "proxy-rejected": "The proxy answered without going upstream: the path is not proxied (check `server.proxy` "
                      "keys and `rewrite`), or Vite's own host/origin check refused it (`server.allowedHosts`).",
    "proxy-dropped-upgrade": "The backend said 101 but the client got something else: a proxy runtime bug (Bun's "
                             "node:http client not surfacing 'upgrade', oven-sh/bun#24127) or an old http-proxy.",
    "proxy-dropped-response": "The backend's non-101 answer never reached the client (http-proxy listened only for "
                              "'upgrade'; node-http-proxy#624, http-proxy-3#26). Upgrade the proxy.",
    "frames-lost-at-proxy": "Frames that arrived with the upstream 101 never reached the client: the proxy lost the "
                            "'head' bytes when switching to piping.",
    "subprotocol-mismatch": "The chosen Sec-WebSocket-Protocol was not offered, or was not passed back to the client.",
    "extension-mismatch": "Extensions differ between what was negotiated and what frames use (RSV1 without "
                          "permessage-deflate): a proxy relayed the offer but not the answer, or vice versa.",
    "version-unsupported": "Sec-WebSocket-Version is not 13, or the server answered 426 with the versions it supports.",
    "timeout": "No answer within --timeout (the wait the capture observed is in the summary): the backend is slow "
               "or hung, or the proxy is waiting on it.",
    "unanswered-at-capture-end": "Not a failure seen: the capture ended before --timeout had passed since the "
                                 "request, with no answer yet. Capture longer (or lower --timeout) to judge it.",
    "closed-after-upgrade": "The WebSocket opened and was then closed abnormally; check the close code, which side "
                            "closed, and idle timeouts (nginx proxy_read_timeout 60 s, load balancers) — send pings.",
}
