// WebSockets over HTTP/2 (RFC 8441): a Node http2 server that advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL=1, answers an extended CONNECT
// (:method CONNECT, :protocol websocket, :path /ws) with :status 200 and
// echoes RFC 6455 frames on that stream ("echo: " + text), like ws-backend.mjs.
//
// env: PORT, TLS_CERT + TLS_KEY (http2.createSecureServer, ALPN h2 with
//      allowHTTP1; without them: cleartext h2c, prior knowledge only)
//      STATIC_DIR (serve index.html and main.js over the same connection, so a
//      browser has an h2 session to reuse for its WebSocket)
// An HTTP/1.1 upgrade (a client that does not use RFC 8441) is served by `ws`
// on the same port, and the log says which of the two happened.
import fs from 'node:fs'
import http2 from 'node:http2'
import path from 'node:path'
import { WebSocketServer } from 'ws'
import { closePayload, encodeFrame, FrameParser, OP } from './wsframe.mjs'

const port = Number(process.env.PORT || 5443)
const tls = process.env.TLS_CERT && process.env.TLS_KEY
  ? { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }
  : null
const staticDir = process.env.STATIC_DIR || ''
const settings = { enableConnectProtocol: true }
const server = tls
  ? http2.createSecureServer({ ...tls, settings, allowHTTP1: true })
  : http2.createServer({ settings })

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' }

function serveStatic(stream, p) {
  const name = p === '/' ? 'index.html' : p.replace(/^\/+/, '')
  const file = staticDir && !name.includes('..') ? path.join(staticDir, name) : ''
  if (!file || !fs.existsSync(file)) {
    stream.respond({ ':status': 404, 'content-type': 'text/plain' })
    stream.end('not found\n')
    return
  }
  stream.respond({ ':status': 200, 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' })
  stream.end(fs.readFileSync(file))
}

function websocketOnStream(stream, headers) {
  console.log(`h2 extended CONNECT :protocol=${headers[':protocol']} :path=${headers[':path']} origin=${headers.origin} version=${headers['sec-websocket-version']} -> 200`)
  stream.respond({ ':status': 200 })
  const parser = new FrameParser()
  let closed = false
  stream.on('data', (chunk) => {
    for (const f of parser.push(chunk)) {
      if (f.opcode === OP.text) {
        console.log(`h2 ws text ${JSON.stringify(f.payload.toString())}`)
        stream.write(encodeFrame(OP.text, `echo: ${f.payload.toString()}`))
      } else if (f.opcode === OP.binary) {
        stream.write(encodeFrame(OP.binary, f.payload))
      } else if (f.opcode === OP.ping) {
        stream.write(encodeFrame(OP.pong, f.payload))
      } else if (f.opcode === OP.close && !closed) {
        closed = true
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005
        console.log(`h2 ws close ${code}`)
        // Echo the close (RFC 6455 5.5.1), then end our half of the stream.
        stream.end(encodeFrame(OP.close, code === 1005 ? Buffer.alloc(0) : closePayload(code, f.payload.subarray(2).toString())))
      }
    }
  })
  stream.on('end', () => { if (!stream.writableEnded) stream.end() })
  stream.on('error', (e) => console.log(`h2 ws stream error ${e.code || e.message}`))
}

server.on('stream', (stream, headers) => {
  const method = headers[':method']
  if (method === 'CONNECT' && headers[':protocol'] === 'websocket' && (headers[':path'] || '').split('?')[0] === '/ws') {
    websocketOnStream(stream, headers)
  } else if (method === 'CONNECT') {
    console.log(`h2 CONNECT ${headers[':protocol']} ${headers[':path']} -> 400`)
    stream.respond({ ':status': 400 })
    stream.end()
  } else if (method === 'GET') {
    console.log(`h2 GET ${headers[':path']}`)
    serveStatic(stream, (headers[':path'] || '/').split('?')[0])
  } else {
    stream.respond({ ':status': 405 })
    stream.end()
  }
})
server.on('session', (s) => s.on('error', (e) => console.log(`h2 session error ${e.code || e.message}`)))

// HTTP/1.1 fallback (allowHTTP1): the classic upgrade, served by ws.
const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  console.log(`http/1.1 upgrade ${req.url} origin=${req.headers.origin} (not RFC 8441)`)
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo: ${data}`))
  })
})
server.on('request', (req, res) => {
  // Only HTTP/1.x requests reach here with allowHTTP1 (h2 streams are handled above).
  if (req.httpVersionMajor !== 1) return
  console.log(`http/1.1 ${req.method} ${req.url}`)
  res.writeHead(426, { 'content-type': 'text/plain' })
  res.end('Upgrade Required\n')
})
// A 'request' listener makes Node's compat layer route h2 CONNECT streams to
// 'connect' (else it answers 405 itself); the 'stream' handler above owns them.
server.on('connect', () => {})

server.listen(port, '0.0.0.0', () => console.log(`h2 backend listening on ${port} (${tls ? 'h2 over TLS, allowHTTP1' : 'h2c prior knowledge'}), enableConnectProtocol`))
