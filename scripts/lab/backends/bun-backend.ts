// Same contract as ws-backend.mjs, written with Bun.serve.
const port = Number(process.env.PORT || 5000)
const allowed = (process.env.ALLOWED_ORIGINS || '').split(',').map((s) => s.trim()).filter(Boolean)

Bun.serve({
  hostname: '0.0.0.0',
  port,
  fetch(req, server) {
    const origin = req.headers.get('origin') ?? ''
    if (req.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
      return new Response('Upgrade Required\n', { status: 426 })
    }
    if (!allowed.includes(origin)) {
      console.log(`upgrade origin=${origin} -> 403`)
      return new Response('Forbidden\n', { status: 403 })
    }
    console.log(`upgrade origin=${origin} -> allowed`)
    if (server.upgrade(req)) return undefined
    return new Response('Upgrade failed\n', { status: 400 })
  },
  websocket: {
    message(ws, message) {
      ws.send(typeof message === 'string' ? `echo: ${message}` : message)
    },
  },
})
console.log(`bun backend listening on ${port}, allowed=${allowed}`)
