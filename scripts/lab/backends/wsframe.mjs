// Minimal RFC 6455 framing for WebSockets carried on an HTTP/2 stream
// (RFC 8441): `ws` only wraps net.Socket-like duplexes after an HTTP/1.1
// upgrade, so the h2 backend and the lab's h2 client frame by hand.
// Enough for the lab: text, binary, close, ping/pong; no fragmentation
// across frames, no extensions.
import crypto from 'node:crypto'

export const OP = { cont: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 }

// Encode one final frame. mask=true for client->server frames (RFC 6455 5.3).
export function encodeFrame(opcode, payload = Buffer.alloc(0), mask = false) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  const len = data.length
  let head
  if (len < 126) {
    head = Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | len])
  } else if (len < 65536) {
    head = Buffer.alloc(4)
    head[0] = 0x80 | opcode
    head[1] = (mask ? 0x80 : 0) | 126
    head.writeUInt16BE(len, 2)
  } else {
    head = Buffer.alloc(10)
    head[0] = 0x80 | opcode
    head[1] = (mask ? 0x80 : 0) | 127
    head.writeBigUInt64BE(BigInt(len), 2)
  }
  if (!mask) return Buffer.concat([head, data])
  const key = crypto.randomBytes(4)
  const body = Buffer.alloc(len)
  for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3]
  return Buffer.concat([head, key, body])
}

export function closePayload(code, reason = '') {
  const r = Buffer.from(reason)
  const b = Buffer.alloc(2 + r.length)
  b.writeUInt16BE(code, 0)
  r.copy(b, 2)
  return b
}

// Incremental parser: push(chunk) returns the complete frames so far as
// {fin, rsv, opcode, masked, payload} (payload unmasked).
export class FrameParser {
  constructor() {
    this.buf = Buffer.alloc(0)
  }

  push(chunk) {
    this.buf = Buffer.concat([this.buf, chunk])
    const out = []
    for (;;) {
      const b = this.buf
      if (b.length < 2) break
      let len = b[1] & 0x7f
      let off = 2
      if (len === 126) {
        if (b.length < 4) break
        len = b.readUInt16BE(2)
        off = 4
      } else if (len === 127) {
        if (b.length < 10) break
        len = Number(b.readBigUInt64BE(2))
        off = 10
      }
      const masked = Boolean(b[1] & 0x80)
      const keyOff = off
      if (masked) off += 4
      if (b.length < off + len) break
      const payload = Buffer.from(b.subarray(off, off + len))
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[keyOff + (i & 3)]
      out.push({ fin: Boolean(b[0] & 0x80), rsv: (b[0] >> 4) & 7, opcode: b[0] & 0x0f, masked, payload })
      this.buf = b.subarray(off + len)
    }
    return out
  }
}
