// The incident's backend: Node `ws` behind an Origin allow-list
// (ALLOWED_ORIGINS=http://localhost:5173), echoing every message.
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { WebSocketServer } from 'ws'

const port = Number(process.env.PORT || 5000)
const allowed = (process.env.ALLOWED_ORIGINS || '').split(',').map((s) => s.trim()).filter(Boolean)
// Optional behaviours, each a real-world backend habit:
//   SUBPROTOCOLS=a,b      only these subprotocols are spoken (others: no Sec-WebSocket-Protocol in the 101)
//   REQUIRE_TOKEN=1       upgrade needs ?token=... in the URL, else 401
//   CLOSE_AFTER_OPEN=CODE close every socket right after the upgrade with CODE
//   PERMESSAGE_DEFLATE=1  negotiate permessage-deflate (ws's server default is off)
//   TLS_CERT=F TLS_KEY=F  serve https/wss instead (https.createServer, same handlers)
const subprotocols = (process.env.SUBPROTOCOLS || '').split(',').map((s) => s.trim()).filter(Boolean)
const requireToken = process.env.REQUIRE_TOKEN === '1'
const closeAfterOpen = Number(process.env.CLOSE_AFTER_OPEN || 0)
const perMessageDeflate = process.env.PERMESSAGE_DEFLATE === '1' ? { threshold: 0 } : false

const tls = process.env.TLS_CERT && process.env.TLS_KEY
  ? { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }
  : null
const plain = (req, res) => {
  // Plain HTTP (no Upgrade/Connection: upgrade): what a WebSocket endpoint answers.
  console.log(`http ${req.method} ${req.url} -> 426`)
  res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' })
  res.end('Upgrade Required\n')
}
const server = tls ? https.createServer(tls, plain) : http.createServer(plain)

const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate,
  verifyClient: ({ origin, req }, done) => {
    const ok = allowed.includes(origin)
    console.log(`upgrade origin=${origin} -> ${ok ? 'allowed' : '403'}`)
    if (!ok) return done(false, 403, 'Forbidden')
    if (requireToken && !new URL(req.url, 'http://x').searchParams.get('token')) {
      console.log('upgrade without token -> 401')
      return done(false, 401, 'Unauthorized')
    }
    done(true)
  },
  ...(subprotocols.length
    ? { handleProtocols: (offered) => subprotocols.find((p) => offered.has(p)) || false }
    : {}),
})
wss.on('connection', (ws) => {
  if (closeAfterOpen) {
    console.log(`closing right after the upgrade with ${closeAfterOpen}`)
    ws.close(closeAfterOpen, 'session expired')
    return
  }
  ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo: ${data}`))
})
server.listen(port, '0.0.0.0', () => console.log(`ws backend listening on ${port}${tls ? ' (tls)' : ''}, allowed=${allowed}`))
