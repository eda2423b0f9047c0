// Drive headless Chromium (Debian's /usr/bin/chromium) through playwright-core:
// load the page from Vite, let it open its WebSocket, and print one JSON object
// with what the browser reported: page events, close code, console errors and
// the WebSocket errors Chromium exposes over the DevTools protocol.
//
// usage: node browser.mjs URL WAIT_SECONDS USER_DATA_DIR
import { chromium } from 'playwright-core'

const [url, waitArg, userDataDir] = process.argv.slice(2)
const waitMs = Number(waitArg || 8) * 1000
const out = { url, console: [], ws: [], page: null, lab_closed_after_s: null, error: null }

const args = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
]
// TLS scenarios (LAB_SSLKEYLOG=FILE): accept the lab's self-signed
// certificate and have Chromium write its TLS secrets (NSS key log format).
const keylog = process.env.LAB_SSLKEYLOG || ''
if (keylog) args.push('--ignore-certificate-errors', `--ssl-key-log-file=${keylog}`)
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.LAB_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args,
  ignoreDefaultArgs: ['--headless'],
  ...(keylog ? { ignoreHTTPSErrors: true, env: { ...process.env, SSLKEYLOGFILE: keylog } } : {}),
})
try {
  const page = ctx.pages()[0] || (await ctx.newPage())
  page.on('console', (m) => out.console.push({ type: m.type(), text: m.text() }))
  page.on('websocket', (ws) => {
    const rec = { url: ws.url(), frames_sent: [], frames_received: [], error: null, closed: false }
    out.ws.push(rec)
    ws.on('framesent', (f) => rec.frames_sent.push(String(f.payload)))
    ws.on('framereceived', (f) => rec.frames_received.push(String(f.payload)))
    ws.on('socketerror', (e) => { rec.error = String(e) })
    ws.on('close', () => { rec.closed = true })
  })
  // Network-level console lines ("WebSocket connection to ... failed: ...")
  // arrive as Log.entryAdded; collect them directly too.
  const cdp = await ctx.newCDPSession(page)
  cdp.on('Log.entryAdded', ({ entry }) => out.console.push({ type: `log:${entry.level}`, source: entry.source, text: entry.text }))
  await cdp.send('Log.enable')
  // A network change seen by Chromium (an interface of the namespace changing
  // state just after setup) aborts the load before anything is served: try once
  // more rather than fail the scenario.
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url, { waitUntil: 'load', timeout: 20000 })
      break
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e
      out.console.push({ type: 'lab', text: `retry ${attempt}: ${String(e).split('\n')[0]}` })
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  await page.waitForFunction(() => Boolean(window.__labGo || window.__labSocket), null, { timeout: 20000 })
  // Tell the lab the page is loaded, wait for it to start the capture.
  process.stdout.write('READY\n')
  await new Promise((resolve) => process.stdin.once('data', resolve))
  await page.evaluate(() => window.__labGo && window.__labGo())
  const t0 = Date.now()
  let done = false
  while (Date.now() - t0 < waitMs) {
    done = await page.evaluate(() => Boolean(window.__lab && window.__lab.done))
    if (done) break
    await page.waitForTimeout(100)
  }
  if (!done) {
    // The user gives up: the lab closes the socket after WAIT_SECONDS.
    out.lab_closed_after_s = waitMs / 1000
    await page.evaluate(() => window.__labSocket && window.__labSocket.close())
    const t1 = Date.now()
    while (Date.now() - t1 < 3000) {
      if (await page.evaluate(() => Boolean(window.__lab && window.__lab.done))) break
      await page.waitForTimeout(100)
    }
  }
  await page.waitForTimeout(300)
  out.page = await page.evaluate(() => window.__lab || null)
} catch (e) {
  out.error = String(e && e.stack || e)
} finally {
  await ctx.close().catch(() => {})
}
// Deduplicate console lines that arrived on both channels.
const seen = new Set()
out.console = out.console.filter((c) => (seen.has(c.text) ? false : (seen.add(c.text), true)))
process.stdout.write(JSON.stringify(out) + '\n')
