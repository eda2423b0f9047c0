// The incident's Vite config, parameterised by the lab through environment
// variables so every scenario runs the same file:
//   LAB_HMR=1              keep Vite's HMR WebSocket (otherwise server.hmr=false)
//   LAB_PROXY_HOOK=...     origin-rewrite | origin-rewrite-option |
//                          strip-upgrade | strip-connection |
//                          rewrite-strip-prefix | bypass-false | (empty: none)
//   LAB_TLS_CERT/LAB_TLS_KEY  serve the dev server over TLS (server.https):
//                          the page then opens wss://localhost:5173/ws
//   LAB_BACKEND_TARGET=... proxy target instead of http://meetsonar-backend:5000
//                          (https://meetsonar-backend:5443 with secure: false for
//                          a TLS backend with the lab's self-signed certificate)
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const hook = process.env.LAB_PROXY_HOOK || ''

// The incident's proxy entry, verbatim.
const wsProxy = {
  target: 'http://meetsonar-backend:5000',
  ws: true,
  changeOrigin: true,
}
const target = process.env.LAB_BACKEND_TARGET || ''
if (target) {
  wsProxy.target = target
  // The lab's self-signed certificate, as a dev setup would have it.
  if (target.startsWith('https:')) wsProxy.secure = false
}
const https = process.env.LAB_TLS_CERT && process.env.LAB_TLS_KEY
  ? { cert: process.env.LAB_TLS_CERT, key: process.env.LAB_TLS_KEY }
  : undefined

let userHook = null
if (hook === 'origin-rewrite') {
  // "Fix" seen in the wild for CORS-ish errors: pretend to be the backend.
  userHook = (proxy) =>
    proxy.on('proxyReqWs', (proxyReq) => proxyReq.setHeader('origin', 'http://meetsonar-backend:5000'))
} else if (hook === 'origin-rewrite-option') {
  // Vite's own option that does the same thing.
  wsProxy.rewriteWsOrigin = true
} else if (hook === 'strip-upgrade') {
  userHook = (proxy) => proxy.on('proxyReqWs', (proxyReq) => proxyReq.removeHeader('upgrade'))
} else if (hook === 'strip-connection') {
  userHook = (proxy) => proxy.on('proxyReqWs', (proxyReq) => proxyReq.removeHeader('connection'))
} else if (hook === 'rewrite-strip-prefix') {
  // The REST-API habit copied onto the socket: the backend serves /ws, not /.
  wsProxy.rewrite = (path) => path.replace(/^\/ws/, '')
} else if (hook === 'bypass-false') {
  // An "auth gate" in bypass: requests without a session cookie are not
  // proxied. For an upgrade, `false` makes Vite answer 404 itself.
  wsProxy.bypass = (req) => (req.headers.cookie && req.headers.cookie.includes('session=') ? undefined : false)
} else if (hook) {
  throw new Error(`unknown LAB_PROXY_HOOK ${hook}`)
}

// Observer only (changes nothing on the wire): Vite logs `err.stack`, which is
// undefined for Bun's errors, so log code and message on one greppable line.
wsProxy.configure = (proxy, opts) => {
  proxy.on('error', (err) => console.error(`[wscap-lab] proxy error code=${err && err.code} message=${err && err.message}`))
  if (userHook) userHook(proxy, opts)
}

const hmr = process.env.LAB_HMR === '1'

// Vite 8 still injects /@vite/client with hmr:false, and the client still
// opens its vite-hmr socket (with server.ws:false it hangs in CONNECTING and
// Chromium then holds back every other WebSocket to localhost:5173 - one
// handshake per host at a time). Scenarios that are not about HMR drop the
// client script so the capture holds only the app's socket; the dedicated
// hmr-beside-app scenario keeps it.
const dropViteClient = {
  name: 'wscap-lab-drop-vite-client',
  transformIndexHtml: {
    order: 'post',
    handler: (html) => html.replace(/<script type="module" src="\/@vite\/client"><\/script>\s*/g, ''),
  },
}

export default defineConfig({
  plugins: hmr ? [] : [dropViteClient],
  root: fileURLToPath(new URL('./app', import.meta.url)),
  cacheDir: process.env.LAB_VITE_CACHE || undefined,
  clearScreen: false,
  logLevel: 'info',
  server: {
    host: '0.0.0.0',
    port: 5173,
    strictPort: true,
    hmr: hmr,
    watch: null,
    https,
    proxy: {
      '/ws': wsProxy,
    },
  },
})
