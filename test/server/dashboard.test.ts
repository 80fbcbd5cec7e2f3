import { readdir } from 'node:fs/promises'
import path from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { registerErrorHandler } from '../../server/errors.ts'
import { dashboardRoutes } from '../../server/routes/dashboard.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { silentLog } from '../fixtures/log.ts'
import { openEventStream, type EventStream } from '../fixtures/sse.ts'

interface StreamState {
  events: Array<{
    id: string, name: string, total_quota: number, available_quota: number, sold: number, held: number, hold_seconds: number | null,
    pending: number, cancelled: number, sale_status: string
  }>
  events_total: number
  queue_depth: number
}

// The page's script and the modules it imports: every *.js file in server/dashboard/.
const DASHBOARD_DIR = path.join(import.meta.dirname, '..', '..', 'server', 'dashboard')
const DASHBOARD_MODULES = ['chart.js', 'dashboard.js', 'dom.js', 'events-table.js', 'format.js', 'purchase.js', 'stream.js']

const stateOf = (stream: EventStream, after = 0): Promise<StreamState> =>
  stream.next((e) => e.event === 'state', { after }).then((e) => JSON.parse(e.data) as StreamState)

t.test('the dashboard page and its files', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)

  t.test('GET / serves the page with a CSP that allows only its own script, style and connections', async (t) => {
    const res = await request(base, 'GET', '/')
    t.equal(res.status, 200)
    t.match(res.headers.get('content-type'), /^text\/html/)
    t.match(res.body, /<script type="module" src="\/dashboard\/dashboard\.js"><\/script>/)
    const csp = res.headers.get('content-security-policy') ?? ''
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
      t.ok(csp.split('; ').includes(directive), `CSP has ${directive}`)
    }
    t.notMatch(csp, /unsafe-inline|unsafe-eval|\*/, 'nothing inline, nothing from elsewhere')
    t.notMatch(res.body, /<script>|<style>| style=| on[a-z]+=/, 'no inline script, style or handler in the page')
    t.equal(res.headers.get('x-content-type-options'), 'nosniff')
    t.equal(res.headers.get('x-frame-options'), 'DENY')
    t.equal(res.headers.get('referrer-policy'), 'no-referrer')
  })

  t.test('the page is revalidated by ETag: an unchanged page is a 304', async (t) => {
    const first = await request(base, 'GET', '/')
    const etag = first.headers.get('etag')
    t.ok(etag)
    t.equal(first.headers.get('cache-control'), 'no-cache')
    const again = await request(base, 'GET', '/', { headers: { 'if-none-match': etag ?? '' } })
    t.equal(again.status, 304)
    t.equal(again.body, '')
  })

  t.test('its script modules, stylesheet and icon, each with its type; nothing else under /dashboard/', async (t) => {
    const files = [
      ...DASHBOARD_MODULES.map((name) => [`/dashboard/${name}`, /^text\/javascript/] as const),
      ['/dashboard/dashboard.css', /^text\/css/],
      ['/dashboard/favicon.svg', /^image\/svg\+xml/]
    ] as const
    for (const [path, type] of files) {
      const res = await request(base, 'GET', path)
      t.equal(res.status, 200, path)
      t.match(res.headers.get('content-type'), type, path)
      t.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
    }
    for (const path of ['/dashboard/index.html', '/dashboard/tsconfig.json', '/dashboard/unknown.js', '/dashboard/../app.ts', '/dashboard/%2e%2e/app.ts', '/dashboard/']) {
      const res = await request(base, 'GET', path)
      t.equal(res.status, 404, path)
      t.equal(res.body.code, 'ROUTE_NOT_FOUND', path)
    }
  })

  t.test('every module the page\'s script imports, and theirs, is served as JavaScript; no module is left out', async (t) => {
    // Browsers refuse a module import answered 404 or with another type, and the page stays blank.
    const reached = new Set<string>()
    const toVisit = ['/dashboard/dashboard.js']
    for (let path = toVisit.pop(); path !== undefined; path = toVisit.pop()) {
      if (reached.has(path)) continue
      reached.add(path)
      const res = await request(base, 'GET', path)
      t.equal(res.status, 200, path)
      t.match(res.headers.get('content-type'), /^text\/javascript/, path)
      // Static imports only (the page has no other kind), each statement at the start of a line.
      for (const [, specifier] of String(res.body).matchAll(/^import\s[^'"]*['"]([^'"]+)['"]/gm)) {
        toVisit.push(new URL(specifier ?? '', `${base}${path}`).pathname)
      }
    }
    t.same([...reached].sort(), DASHBOARD_MODULES.map((name) => `/dashboard/${name}`), 'the page loads every listed module')
    const onDisk = (await readdir(DASHBOARD_DIR)).filter((name) => name.endsWith('.js')).sort()
    t.same(onDisk, DASHBOARD_MODULES, 'and every module in server/dashboard/ is listed')
  })
})

t.test('GET /dashboard/stream: live counts that agree with GET /events/:id', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 40, 'Stream sale')

  // Left open: closing the app at teardown ends it.
  const stream = await openEventStream(`${base}/dashboard/stream`)
  t.equal(stream.status, 200)
  t.match(stream.headers.get('content-type'), /^text\/event-stream/)
  t.equal(stream.headers.get('cache-control'), 'no-store')
  t.equal(stream.headers.get('x-content-type-options'), 'nosniff', 'the security headers too')
  const history = JSON.parse((await stream.next((e) => e.event === 'history')).data) as { tick_ms: number, window_ms: number, points: unknown[] }
  t.equal(history.tick_ms, 1000)
  t.equal(history.window_ms, 5 * 60_000)
  t.equal(stream.received[0]?.event, 'history', 'the history comes first')
  const first = await stateOf(stream)
  t.match(first.events.find((e) => e.id === eventId), { name: 'Stream sale', total_quota: 40, available_quota: 40, sold: 0, held: 0, hold_seconds: null, pending: 0, sale_status: 'open' })

  // 100 purchases for 40 seats; then the stream must settle on what the API says.
  const answers = await mapConcurrent(Array.from({ length: 100 }, () => newUserId()), 10, async (user) =>
    (await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: user } })).status)
  t.ok(answers.every((s) => s === 202 || s === 200))
  const api = await waitFor(async () => {
    const res = await request(base, 'GET', `/events/${eventId}`)
    return res.body.pending === 0 ? res.body as { sold: number, held: number, pending: number, available_quota: number, cancelled: number } : undefined
  }, { timeoutMs: 60_000, what: 'every purchase decided' })
  t.equal(api.sold, 40)
  const settled = await stream.next((e) => {
    if (e.event !== 'state') return false
    const event = (JSON.parse(e.data) as StreamState).events.find((ev) => ev.id === eventId)
    return event?.pending === 0 && event.sold === api.sold
  }, { timeoutMs: 30_000 })
  const shown = JSON.parse(settled.data) as StreamState
  t.match(shown.events.find((e) => e.id === eventId),
    { sold: api.sold, held: api.held, pending: api.pending, available_quota: api.available_quota, cancelled: api.cancelled })
  t.equal(shown.queue_depth, 0)
  t.equal(shown.events_total, 1)

  const points = await waitFor(async () => {
    const received = stream.received.filter((e) => e.event === 'point').map((e) => JSON.parse(e.data) as { t: number, decisions_per_second: number })
    return received.some((p) => p.decisions_per_second > 0) ? received : undefined
  }, { timeoutMs: 30_000, what: 'a point with decisions' })
  t.ok(points.every((p, i) => i === 0 || p.t > (points[i - 1] as { t: number }).t), 'points in time order')

  // A second dashboard opened now gets the same numbers, and the chart so far, at once.
  const late = await openEventStream(`${base}/dashboard/stream`)
  const lateHistory = JSON.parse((await late.next((e) => e.event === 'history')).data) as { points: Array<{ decisions_per_second: number }> }
  t.ok(lateHistory.points.some((p) => p.decisions_per_second > 0), 'the history holds the sale')
  t.same((await stateOf(late)).events, shown.events)
})

t.test('GET /dashboard/stream: held seats apart from sold and left, as GET /events/:id gives them, until confirmed', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
  const created = await request(base, 'POST', '/events', { headers: admin, json: { name: 'Matinee', total_quota: 10, hold_seconds: 600 } })
  t.equal(created.status, 201)
  const eventId: string = created.body.id

  const stream = await openEventStream(`${base}/dashboard/stream`)
  t.match((await stateOf(stream)).events.find((e) => e.id === eventId), { sold: 0, held: 0, hold_seconds: 600, available_quota: 10 })

  const apiCounts = async () => (await request(base, 'GET', `/events/${eventId}`)).body as { sold: number, held: number, available_quota: number, pending: number }
  /** The event in the first state since `after` in which `match` holds for it. */
  const shownOf = async (match: (event: StreamState['events'][number]) => boolean, after = 0) => {
    const state = await stream.next((e) => e.event === 'state' && (JSON.parse(e.data) as StreamState).events.some((ev) => ev.id === eventId && match(ev)),
      { after, timeoutMs: 30_000 })
    return (JSON.parse(state.data) as StreamState).events.find((e) => e.id === eventId)
  }

  // Three buyers, one for two seats: each purchase that gets its seats is held, none sold yet.
  const bookings = await Promise.all([2, 1, 1].map(async (quantity) =>
    (await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity } })).body.booking_id as string))
  const decided = await waitFor(async () => { const api = await apiCounts(); return api.pending === 0 ? api : undefined }, { what: 'every purchase decided' })
  t.match(decided, { sold: 0, held: 4, available_quota: 6 })
  const decidedShown = await shownOf((ev) => ev.pending === 0 && ev.available_quota === 6)
  t.match(decidedShown, { sold: 0, held: 4, available_quota: 6, total_quota: 10 }, 'held seats are sent, apart from sold')

  // The seller confirms the two-seat hold: those seats move from held to sold on the dashboard.
  const mark = stream.received.length
  const confirmed = await request(base, 'POST', `/bookings/${bookings[0] ?? ''}/confirm`, { headers: admin, json: { payment_reference: 'pay-1' } })
  t.equal(confirmed.status, 200)
  t.equal(confirmed.body.status, 'success')
  const shown = await shownOf((ev) => ev.sold === 2, mark)
  t.match(shown, { sold: 2, held: 2, available_quota: 6 })
  const api = await apiCounts()
  t.match(shown, { sold: api.sold, held: api.held, available_quota: api.available_quota, pending: api.pending }, 'as GET /events/:id says')
})

t.test('closing the server ends open dashboard streams instead of waiting for them', async (t) => {
  const database = await createTestDatabase(t)
  const { app, base } = await startTestApp(t, database)
  const streams = await Promise.all(Array.from({ length: 5 }, async () => await openEventStream(`${base}/dashboard/stream`)))
  for (const stream of streams) await stateOf(stream)
  const started = Date.now()
  const closed = await Promise.race([
    app.close().then(() => true),
    new Promise((resolve) => setTimeout(resolve, 15_000, false))
  ])
  t.ok(closed, 'app.close() finished')
  t.ok(Date.now() - started < 15_000)
  await Promise.all(streams.map(async (stream) => { await stream.ended }))
  t.pass('every stream ended')
})

t.test('beyond its client limit the stream is refused with 503 DASHBOARD_FULL and a Retry-After', async (t) => {
  const database = await createTestDatabase(t)
  const app = Fastify()
  registerErrorHandler(app)
  await app.register(dashboardRoutes, { db: database.db, log: silentLog, feed: { maxClients: 2 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close() })
  const address = app.server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no address')
  const base = `http://127.0.0.1:${address.port}`
  const open = [await openEventStream(`${base}/dashboard/stream`), await openEventStream(`${base}/dashboard/stream`)]
  const refused = await request(base, 'GET', '/dashboard/stream')
  t.equal(refused.status, 503)
  t.equal(refused.body.code, 'DASHBOARD_FULL')
  t.equal(refused.headers.get('retry-after'), '10')
  open[0]?.close()
  await waitFor(async () => (await openEventStream(`${base}/dashboard/stream`).then(async (s) => { s.close(); return s.status })) === 200 ? true : undefined, { what: 'a free place' })
  open[1]?.close()
})
