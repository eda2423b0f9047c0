"""The lab's scenarios: how each is built and what it must produce.

Everything in `chains` is derived from how the scenario is built (which hook,
which backend, which bytes) and is *checked* after every recording against
the capture (lib/pcapcheck.py: statuses per leg, number of legs) and against
what the browser reported (`expect_open`). Nothing here comes from wscap.

Chain conventions (see README.md):
  hops      number of TCP legs, client side first (browser->first proxy = hop 0)
  hop       0-based index of the leg where the fault first shows on the wire
            (null when the chain is ok)
  statuses  HTTP status of each leg's response, client side first; null when
            no complete response head came on that leg
  broken    (optional) false when the chain carries a defect but the browser's
            socket worked anyway; absent means broken == (cause != "ok")
  also_acceptable (optional) other cause codes that describe the same wire
            facts equally well (e.g. nginx drops Upgrade *and* Connection)
"""

from __future__ import annotations

from dataclasses import dataclass, field

APP = "/ws"


@dataclass
class Scenario:
    name: str
    description: str
    chains: list
    backend: str = "ws"  # ws | bun | raw:<mode> | none
    backend_name: str = (
        "ok"  # ok | dead (resolves, nobody answers) | missing (does not resolve)
    )
    vite: str = "node"  # node | bun | bun14  (`bun --bun vite` with Bun 1.3 / 1.4)
    hook: str = ""  # LAB_PROXY_HOOK for vite.config.js
    hmr: bool = False
    nginx: str = ""  # "" | upgrade | no-upgrade | upgrade-timeout3
    backend_env: dict = field(default_factory=dict)  # extra env for the ws backend
    protocols: str = ""  # subprotocols the page asks for (comma separated)
    path: str = APP
    wait: float = 6.0  # seconds before the "user" (lab) gives up
    expect_open: bool = False  # did the browser's WebSocket open?
    expect_echo: bool = False  # did the echo come back?
    notes: str = ""
    extra_topology: dict = field(default_factory=dict)
    # TLS / HTTP/2 (issue 9). transport: "" (cleartext HTTP/1.1) | tls | h2 | h2c
    #   tls  the browser talks wss:// to Vite (server.https, self-signed
    #        certificate made by openssl at run time); Chromium's key log (and
    #        Node's, when a leg is TLS on Node's side too) goes to pcaps/NAME.keys
    #   h2   WebSocket over HTTP/2 over TLS (RFC 8441 extended CONNECT)
    #   h2c  the same over cleartext HTTP/2 with prior knowledge
    transport: str = ""
    twin: str = ""  # the cleartext scenario this one mirrors
    backend_tls: bool = False  # the ws backend serves https/wss on BACKEND_TLS_PORT
    client: str = (
        "browser"  # browser (Chromium) | h2client (lib/h2client.mjs, Node http2)
    )

    def encrypted_legs(self) -> list:
        """Hop indices carried over TLS (expected.json "encrypted_legs")."""
        if self.transport == "tls":
            return [0, 1] if self.backend_tls else [0]
        return [0] if self.transport == "h2" else []


def chain(cause, hops, hop, statuses, path=APP, **kw):
    d = {"path": path, "hops": hops, "cause": cause, "hop": hop, "statuses": statuses}
    d.update(kw)
    return d


SCENARIOS = [
    Scenario(
        "healthy",
        "Browser -> Vite proxy (/ws, ws:true, changeOrigin) -> Node ws backend allowing http://localhost:5173; "
        "101 on both legs, echo comes back",
        chains=[chain("ok", 2, None, [101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "healthy-deflate",
        "Healthy chain with permessage-deflate negotiated end to end (ws backend perMessageDeflate on, "
        "threshold 0): the 101s carry Sec-WebSocket-Extensions and the data frames have RSV1 set legitimately",
        backend_env={"PERMESSAGE_DEFLATE": "1"},
        chains=[chain("ok", 2, None, [101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "origin-rewrite",
        "Vite proxyReqWs hook rewrites Origin to http://meetsonar-backend:5000; "
        "ws backend allows only http://localhost:5173 -> 403",
        hook="origin-rewrite",
        chains=[chain("origin-rejected", 2, 1, [403, 403])],
    ),
    Scenario(
        "origin-rewrite-option",
        "Same as origin-rewrite but done with Vite's own proxy option rewriteWsOrigin: true "
        "(with changeOrigin the Origin becomes the target) -> ws backend answers 403",
        hook="origin-rewrite-option",
        chains=[chain("origin-rejected", 2, 1, [403, 403])],
    ),
    Scenario(
        "backend-down-refused",
        "meetsonar-backend's container is up but nothing listens on :5000: Vite's connect is answered by RST "
        "(ECONNREFUSED) and Vite closes the browser's socket without a response",
        backend="none",
        chains=[chain("upstream-refused", 2, 1, [None, None])],
    ),
    Scenario(
        "backend-unreachable",
        "meetsonar-backend resolves to 10.88.0.21 where no container answers: Vite's SYNs go unanswered; "
        "the browser waits until the lab gives up",
        backend="none",
        backend_name="dead",
        chains=[chain("upstream-unreachable", 2, 1, [None, None])],
    ),
    Scenario(
        "backend-name-missing",
        "meetsonar-backend does not resolve (service not running in Compose): Vite gets ENOTFOUND, "
        "never opens an upstream connection and closes the browser's socket",
        backend="none",
        backend_name="missing",
        chains=[chain("no-upstream-connection", 1, 0, [None])],
    ),
    Scenario(
        "wrong-path",
        "The page connects to /socket, which no server.proxy entry matches: Vite neither answers nor forwards "
        "the upgrade; the browser waits until the lab gives up",
        path="/socket",
        chains=[
            chain(
                "no-upstream-connection",
                1,
                0,
                [None],
                path="/socket",
                also_acceptable=["timeout"],
            )
        ],
    ),
    Scenario(
        "upgrade-stripped",
        "Vite proxyReqWs hook removes the Upgrade header: the backend sees a plain GET and answers 426, "
        "which Vite relays to the browser",
        hook="strip-upgrade",
        chains=[chain("upgrade-header-stripped", 2, 1, [426, 426])],
    ),
    Scenario(
        "connection-stripped",
        "Vite proxyReqWs hook removes the Connection header (Node then sends its own Connection value): "
        "the backend sees no upgrade and answers 426, relayed to the browser",
        hook="strip-connection",
        chains=[chain("connection-header-stripped", 2, 1, [426, 426])],
    ),
    Scenario(
        "rewrite-path",
        "The REST proxy's rewrite copied onto the socket: rewrite: (p) => p.replace(/^\\/ws/, '') sends the "
        "upgrade for / to the backend, whose ws server only serves /ws and answers 400",
        hook="rewrite-strip-prefix",
        chains=[chain("upstream-rejected", 2, 1, [400, 400])],
    ),
    Scenario(
        "proxy-bypass-404",
        "A bypass() 'auth gate' returns false for requests without a session cookie; for the upgrade Vite "
        "answers 'HTTP/1.1 404 Not Found' itself and never contacts the backend",
        hook="bypass-false",
        chains=[chain("proxy-rejected", 1, 0, [404])],
    ),
    Scenario(
        "bad-accept",
        "Raw backend answers 101 with a Sec-WebSocket-Accept computed from another key; Vite relays it "
        "unchanged and the browser fails the handshake",
        backend="raw:bad-accept",
        chains=[chain("bad-accept", 2, 1, [101, 101])],
    ),
    Scenario(
        "no-upgrade-101",
        "Raw backend answers 101 without 'Upgrade: websocket' (RFC 6455 §4.1: the client must fail the "
        "connection); Node's HTTP client takes it as a plain response and Vite's proxy relays it to the "
        "browser as a 101 with the backend's headers, which Chromium fails ('Upgrade' header is missing)",
        backend="raw:no-upgrade-101",
        chains=[chain("invalid-101", 2, 1, [101, 101])],
    ),
    Scenario(
        "bare-lf-101",
        "Raw backend answers a correct 101 whose lines end in bare LF; Vite's HTTP client (Node llhttp) "
        "rejects it (HPE_CR_EXPECTED 'Missing expected CR after response line') and destroys the browser's "
        "socket without a response",
        backend="raw:bare-lf",
        chains=[chain("malformed-response", 2, 1, [None, 101])],
    ),
    Scenario(
        "content-length-101",
        "Raw backend answers a correct 101 that carries Content-Length: 5 (forbidden on 1xx); Vite copies "
        "the header into its own 101 and Chromium tolerates it: the socket works (malformed but not broken)",
        backend="raw:content-length-101",
        chains=[chain("malformed-response", 2, 1, [101, 101], broken=False)],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "deflate-mismatch",
        "Raw backend accepts without negotiating permessage-deflate, then answers the first message with an "
        "RSV1 (compressed) frame; the browser fails the connection",
        backend="raw:deflate-rsv1",
        chains=[chain("extension-mismatch", 2, 1, [101, 101])],
        expect_open=True,
    ),
    Scenario(
        "slow-backend",
        "Backend accepts the connection and reads the upgrade request but never answers; the browser waits "
        "until the lab gives up",
        backend="raw:silent",
        chains=[chain("timeout", 2, 1, [None, None])],
    ),
    Scenario(
        "hmr-beside-app",
        "Healthy app socket plus Vite's own HMR WebSocket (subprotocol vite-hmr, served by Vite itself: "
        "a one-hop chain)",
        hmr=True,
        chains=[
            chain("ok", 1, None, [101], path="/"),
            chain("ok", 2, None, [101, 101]),
        ],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "bun-backend",
        "Vite (Node) proxy -> Bun.serve backend with the same Origin allow-list: healthy",
        backend="bun",
        chains=[chain("ok", 2, None, [101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "unterminated-101",
        "Raw backend's 101 head is never terminated (no empty line; its greeting frame follows the last "
        "header line). Vite under Node: llhttp fails with HPE_INVALID_HEADER_TOKEN and Vite destroys the "
        "browser's socket without a response",
        backend="raw:unterminated-101",
        chains=[chain("malformed-response", 2, 1, [None, None])],
    ),
    Scenario(
        "bun-backend-origin-rewrite",
        "The origin-rewrite hook in front of the Bun.serve backend: same Origin allow-list, Bun's own 403",
        backend="bun",
        hook="origin-rewrite",
        chains=[chain("origin-rejected", 2, 1, [403, 403])],
    ),
    Scenario(
        "bun-vite-unterminated-101",
        "The incident: Vite run under Bun 1.3 (`bun --bun vite`) proxying to a backend whose 101 head is "
        "never terminated (greeting frame right after the last header line); Bun's HTTP client fails with "
        "Malformed_HTTP_Response, Vite logs 'ws proxy error' and closes the browser's socket without a response",
        vite="bun",
        backend="raw:unterminated-101",
        chains=[chain("malformed-response", 2, 1, [None, None])],
    ),
    Scenario(
        "bun-vite-healthy",
        "Vite run under Bun 1.3 (`bun --bun vite`) against the healthy Node ws backend: Bun 1.3's node:http "
        "client reports the backend's 101 as an ordinary 'response' instead of an 'upgrade', so the proxy "
        "never answers the browser, which waits until the lab gives up",
        vite="bun",
        chains=[
            chain(
                "proxy-dropped-upgrade",
                2,
                0,
                [None, 101],
                also_acceptable=["proxy-dropped-response"],
            )
        ],
    ),
    Scenario(
        "bun14-vite-healthy",
        "Control for bun-vite-healthy: Vite under current Bun 1.4 (`bun --bun vite`) against the healthy ws "
        "backend behaves like Node: 101 on both legs, echo comes back",
        vite="bun14",
        chains=[chain("ok", 2, None, [101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "bun14-vite-unterminated-101",
        "Control for bun-vite-unterminated-101: under Bun 1.4 the same never-terminated 101 head fails like "
        "under Node (parse error, browser's socket closed without a response)",
        vite="bun14",
        backend="raw:unterminated-101",
        chains=[chain("malformed-response", 2, 1, [None, None])],
    ),
    Scenario(
        "subprotocol-mismatch",
        "The page asks for subprotocol meetsonar.v1; the ws backend (after a deploy) speaks only meetsonar.v2, "
        "so its 101 carries no Sec-WebSocket-Protocol and Chromium fails the handshake",
        protocols="meetsonar.v1",
        backend_env={"SUBPROTOCOLS": "meetsonar.v2"},
        chains=[chain("subprotocol-mismatch", 2, 1, [101, 101])],
    ),
    Scenario(
        "upstream-401",
        "The ws backend requires ?token=... on the upgrade URL, the page sends none: the backend answers 401, "
        "which Vite relays",
        backend_env={"REQUIRE_TOKEN": "1"},
        chains=[chain("upstream-rejected", 2, 1, [401, 401])],
    ),
    Scenario(
        "upstream-closed",
        "Backend reads the upgrade request and closes the connection without a response (crash in its upgrade "
        "handler); Vite gets 'socket hang up' and closes the browser's socket",
        backend="raw:close-after-request",
        chains=[chain("upstream-closed", 2, 1, [None, None])],
    ),
    Scenario(
        "closed-after-upgrade",
        "The ws backend upgrades and immediately closes the socket with 1008 'session expired'; the browser "
        "sees open then close 1008",
        backend_env={"CLOSE_AFTER_OPEN": "1008"},
        chains=[chain("closed-after-upgrade", 2, 1, [101, 101])],
        expect_open=True,
    ),
    Scenario(
        "backend-crash-after-upgrade",
        "The backend upgrades, then its process dies when the first message arrives (connection reset, like a "
        "dev server restarting under an open socket); Vite drops the browser's socket, which closes with 1006",
        backend="raw:reset-after-message",
        chains=[chain("closed-after-upgrade", 2, 1, [101, 101])],
        expect_open=True,
    ),
    Scenario(
        "nginx-vite-backend",
        "Three hops: browser -> nginx (proxy_http_version 1.1, Upgrade/Connection forwarded) -> Vite proxy "
        "-> ws backend; healthy",
        nginx="upgrade",
        chains=[chain("ok", 3, None, [101, 101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "nginx-origin-rewrite",
        "Three hops, nginx configured for WebSockets in front of Vite with the origin-rewrite hook: the 403 "
        "from the backend comes back through Vite and nginx",
        nginx="upgrade",
        hook="origin-rewrite",
        chains=[chain("origin-rejected", 3, 2, [403, 403, 403])],
    ),
    Scenario(
        "nginx-no-upgrade",
        "Three hops with the classic nginx mistake: no proxy_http_version 1.1 / Upgrade / Connection "
        "forwarding. Vite receives a plain HTTP/1.0 GET /ws, proxies it as plain HTTP and the backend's 426 "
        "comes back through both proxies",
        nginx="no-upgrade",
        chains=[
            chain(
                "upgrade-header-stripped",
                3,
                1,
                [426, 426, 426],
                also_acceptable=["connection-header-stripped"],
            )
        ],
    ),
    Scenario(
        "nginx-slow-backend",
        "Three hops, nginx configured for WebSockets but with proxy_read_timeout 3s; the backend reads the upgrade "
        "and never answers, Vite waits, nginx gives up first and answers the browser 504 Gateway Time-out",
        nginx="upgrade-timeout3",
        backend="raw:silent",
        chains=[chain("timeout", 3, 2, [504, None, None])],
    ),
]


SCENARIOS += [
    Scenario(
        "tls-healthy",
        "Twin of healthy over TLS: the page (https://localhost:5173, Vite server.https with a self-signed "
        "certificate) opens wss://localhost:5173/ws; Vite's proxy forwards it in cleartext to the Node ws "
        "backend allowing https://localhost:5173; 101 on both legs, echo comes back. Chromium's TLS secrets "
        "are in tls-healthy.keys",
        transport="tls",
        twin="healthy",
        backend_env={"ALLOWED_ORIGINS": "https://localhost:5173"},
        chains=[chain("ok", 2, None, [101, 101])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "tls-origin-rewrite",
        "Twin of origin-rewrite with both legs encrypted: wss://localhost:5173/ws to Vite over TLS, and Vite's "
        "proxy to https://meetsonar-backend:5443 (secure: false) where the Node ws backend serves wss with the "
        "same self-signed certificate. The proxyReqWs hook rewrites Origin to http://meetsonar-backend:5000; the "
        "backend allows only https://localhost:5173 -> 403 relayed to the browser. Chromium's and Node's (Vite's "
        "--tls-keylog) secrets are merged in tls-origin-rewrite.keys",
        transport="tls",
        twin="origin-rewrite",
        hook="origin-rewrite",
        backend_tls=True,
        backend_env={"ALLOWED_ORIGINS": "https://localhost:5173"},
        chains=[chain("origin-rejected", 2, 1, [403, 403])],
    ),
    Scenario(
        "h2-websocket",
        "WebSocket over HTTP/2 (RFC 8441): Chromium loads the page from a Node http2.createSecureServer "
        "(published on localhost:5173, SETTINGS_ENABLE_CONNECT_PROTOCOL=1, allowHTTP1) and opens "
        "wss://localhost:5173/ws on the same h2 connection as an extended CONNECT (:protocol websocket); "
        "the backend answers :status 200 and echoes RFC 6455 frames on the stream. One leg; key log in "
        "h2-websocket.keys",
        transport="h2",
        backend="h2",
        chains=[chain("ok", 1, None, [200])],
        expect_open=True,
        expect_echo=True,
    ),
    Scenario(
        "h2c-websocket",
        "WebSocket over cleartext HTTP/2 with prior knowledge (RFC 8441 on h2c): a Node http2 client "
        "(lib/h2client.mjs, no browser speaks h2c) connects through the published port to a Node "
        "http2.createServer with enableConnectProtocol, sends the extended CONNECT (:protocol websocket, "
        ":path /ws), gets :status 200, sends a masked text frame, gets the echo, closes with 1000",
        transport="h2c",
        backend="h2",
        client="h2client",
        chains=[chain("ok", 1, None, [200])],
        expect_open=True,
        expect_echo=True,
    ),
]


BY_NAME = {s.name: s for s in SCENARIOS}
