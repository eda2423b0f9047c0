// The incident's backend: Node `ws` behind an Origin allow-list
// (ALLOWED_ORIGINS=http://localhost:5173), echoing every message.
import http from 'node:http'
import { WebSocketServer } from 'ws'

const port = Number(process.env.PORT || 5000)
const allowed = (process.env.ALLOWED_ORIGINS || '').split(',').map((s) => s.trim()).filter(Boolean)

const server = http.createServer((req, res) => {
  // Plain HTTP (no Upgrade/Connection: upgrade): what a WebSocket endpoint answers.
  console.log(`http ${req.method} ${req.url} -> 426`)
  res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' })
  res.end('Upgrade Required\n')
})

const wss = new WebSocketServer({
  server,
  path: '/ws',
  verifyClient: ({ origin }, done) => {
    const ok = allowed.includes(origin)
    console.log(`upgrade origin=${origin} -> ${ok ? 'allowed' : '403'}`)
    if (ok) done(true)
    else done(false, 403, 'Forbidden')
  },
})
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo: ${data}`))
})
server.listen(port, '0.0.0.0', () => console.log(`ws backend listening on ${port}, allowed=${allowed}`))
