// A WebSocket client over HTTP/2 (RFC 8441) with Node's http2 module, for the
// scenarios a browser cannot drive (cleartext h2c with prior knowledge) or
// does not drive over h2. Does what app/main.js does: open, send
// "hello from wscap lab", expect the echo, close with 1000 "lab done"; and
// prints one JSON object shaped like browser.mjs's output.
//
// usage: node h2client.mjs URL WAIT_SECONDS [KEYLOG_FILE]
//   URL https://localhost:5173/ws (TLS, ALPN h2) or http://localhost:5173/ws (h2c)
// Protocol with scripts/lab/run: prints READY, waits for a line on stdin
// (the capture has started), then connects.
import fs from 'node:fs'
import http2 from 'node:http2'
import { closePayload, encodeFrame, FrameParser, OP } from '../backends/wsframe.mjs'

const [url, waitArg, keylog] = process.argv.slice(2)
const waitMs = Number(waitArg || 6) * 1000
const u = new URL(url)
const t0 = Date.now()
const lab = { url: url.replace(/^http/, 'ws'), events: [], sent: null, received: null, close: null, done: false }
const out = { url, client: `node ${process.version} http2 (RFC 8441 extended CONNECT)`, console: [], ws: [], page: lab, lab_closed_after_s: null, error: null, h2: {} }
const note = (what, extra) => lab.events.push({ what, t: Date.now() - t0, ...extra })

process.stdout.write('READY\n')
await new Promise((resolve) => process.stdin.once('data', resolve))

const finished = new Promise((resolve) => {
  let stream = null
  let timer = null
  const finish = (code, reason) => {
    if (lab.done) return
    lab.close = { code, reason, wasClean: code !== 1006 }
    note('close', lab.close)
    lab.done = true
    clearTimeout(timer)
    setTimeout(() => { session.close(); resolve() }, 200)
  }
  const session = http2.connect(u.origin, {
    rejectUnauthorized: false, // the lab's self-signed certificate
    ...(u.protocol === 'https:' ? { ALPNProtocols: ['h2'] } : {}),
  })
  if (keylog) session.on('connect', (_s, socket) => socket.on('keylog', (line) => fs.appendFileSync(keylog, line)))
  session.on('error', (e) => {
    out.console.push({ type: 'error', text: `session error: ${e.code || ''} ${e.message}` })
    note('error')
    finish(1006, '')
  })
  session.on('remoteSettings', (s) => {
    out.h2.server_enable_connect_protocol = Boolean(s.enableConnectProtocol)
    if (stream) return
    if (!s.enableConnectProtocol) {
      out.console.push({ type: 'error', text: 'server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1' })
      note('error')
      finish(1006, '')
      return
    }
    stream = session.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': u.protocol.replace(':', ''),
      ':authority': u.host,
      ':path': u.pathname + u.search,
      'sec-websocket-version': '13',
      origin: `${u.protocol}//${u.host}`,
    })
    const parser = new FrameParser()
    stream.on('response', (h) => {
      out.h2.status = h[':status']
      if (h[':status'] !== 200) {
        out.console.push({ type: 'error', text: `Unexpected response code: ${h[':status']}` })
        note('error')
        finish(1006, '')
        return
      }
      note('open', { protocol: h['sec-websocket-protocol'] || '', extensions: h['sec-websocket-extensions'] || '' })
      lab.sent = 'hello from wscap lab'
      stream.write(encodeFrame(OP.text, lab.sent, true))
    })
    stream.on('data', (chunk) => {
      for (const f of parser.push(chunk)) {
        if (f.opcode === OP.text) {
          note('message', { data: f.payload.toString() })
          lab.received = f.payload.toString()
          stream.write(encodeFrame(OP.close, closePayload(1000, 'lab done'), true))
        } else if (f.opcode === OP.close) {
          const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005
          stream.end()
          finish(code, f.payload.subarray(2).toString())
        }
      }
    })
    stream.on('close', () => finish(1006, ''))
    stream.on('error', (e) => out.console.push({ type: 'error', text: `stream error: ${e.code || ''} ${e.message}` }))
  })
  timer = setTimeout(() => {
    out.lab_closed_after_s = waitMs / 1000
    if (stream) stream.close(http2.constants.NGHTTP2_CANCEL)
    finish(1006, '')
  }, waitMs)
})
await finished
process.stdout.write(JSON.stringify(out) + '\n')
process.exit(0)
