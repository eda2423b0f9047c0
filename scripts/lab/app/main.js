// The page under test: open a WebSocket to the proxied path exactly like the
// incident's app did, send one message, wait for the echo, close cleanly.
// Everything the browser reports is collected in window.__lab for the driver.
const params = new URLSearchParams(location.search)
const path = params.get('path') || '/ws'
const protocols = params.get('protocols') ? params.get('protocols').split(',') : undefined
// wss:// when the page itself came over TLS (the tls-* and h2-websocket scenarios).
const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
const url = `${scheme}://${location.host}${path}`
const lab = { url, events: [], sent: null, received: null, close: null, done: false }
window.__lab = lab
const logEl = document.getElementById('log')
const note = (what, extra) => {
  lab.events.push({ what, t: Math.round(performance.now()), ...extra })
  logEl.textContent += `${what} ${extra ? JSON.stringify(extra) : ''}\n`
}

function connect() {
const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url)
window.__labSocket = ws
ws.onopen = () => {
  note('open', { protocol: ws.protocol, extensions: ws.extensions })
  lab.sent = 'hello from wscap lab'
  ws.send(lab.sent)
}
ws.onmessage = (ev) => {
  note('message', { data: String(ev.data) })
  lab.received = String(ev.data)
  ws.close(1000, 'lab done')
}
ws.onerror = () => note('error')
ws.onclose = (ev) => {
  lab.close = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean }
  note('close', lab.close)
  lab.done = true
}
}

// The lab loads the page first and starts the capture afterwards (keeps the
// recordings small); it then calls window.__labGo() to open the socket.
if (params.get('defer')) window.__labGo = connect
else connect()
