// PostgreSQL stopped and started again in the middle of a sale, with a real API process and a
// real worker process on a server of this test's own (the suite's shared one must stay up).
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import postgres from 'postgres'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../db/embedded.ts'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { startService } from '../fixtures/service.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

interface Answer { key: string, userId: string, sentAt: number, ms: number, status: number, code?: string, retryAfter: string | null, id?: string }

t.test('PostgreSQL restarted during a sale: 503s with Retry-After while it is down, no 500, no hang; both processes reconnect by themselves and the sale completes', { timeout: 150_000 }, async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-restart-'))
  let pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir, database: 'boxoffice' })
  t.teardown(async () => {
    await pg.stop()
    await rm(dataDir, { recursive: true, force: true })
  })
  const env = { DATABASE_URL: pg.url, ADMIN_TOKEN, DB_CONNECT_TIMEOUT_S: '2' }
  const api = await startService(t, 'api', env)
  await startService(t, 'worker', env)
  const created = await request(api.base, 'POST', '/events', { json: { name: 'Restart sale', total_quota: 1500 }, headers: admin })
  t.equal(created.status, 201)
  const eventId: string = created.body.id

  // A steady crowd (six clients, a request every 10 ms each), each purchase under its own key.
  const start = performance.now()
  const now = (): number => performance.now() - start
  let selling = true
  let n = 0
  const answers: Answer[] = []
  const crowd = Promise.all(Array.from({ length: 6 }, async () => {
    while (selling) {
      const key = `restart-${n++}`
      const userId = newUserId()
      const sentAt = now()
      try {
        const res = await request(api.base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId }, headers: { 'idempotency-key': key } })
        answers.push({ key, userId, sentAt, ms: now() - sentAt, status: res.status, code: res.body?.code, retryAfter: res.headers.get('retry-after'), id: res.body?.booking_id })
      } catch (err) {
        answers.push({ key, userId, sentAt, ms: now() - sentAt, status: 0, code: String(err), retryAfter: null })
      }
      await sleep(10)
    }
  }))

  // The sale under way, then the outage: the database is away for 3 s, a length of outage.
  await waitFor(async () => answers.filter((a) => a.status === 202).length >= 100 ? true : undefined, { what: 'the sale to be under way' })
  const downAt = now()
  await pg.stop()
  await sleep(3000)
  const upAt = now()
  pg = await startEmbeddedPostgres({ dataDir, database: 'boxoffice', port: pg.port })
  // Until the API has stored a purchase again, by itself, then a little longer.
  try {
    await waitFor(async () => answers.some((a) => a.sentAt > upAt && a.status === 202) ? true : undefined, { timeoutMs: 30_000, what: 'the API to store purchases again' })
  } catch (err) {
    selling = false
    await crowd
    throw err
  }
  const recoveredAt = Math.min(...answers.filter((a) => a.sentAt > upAt && a.status === 202).map((a) => a.sentAt))
  await sleep(1500)
  selling = false
  await crowd

  const statuses = [...new Set(answers.map((a) => a.status))].sort()
  t.ok(statuses.every((s) => s === 200 || s === 202 || s === 503), `only stored or 503 (${statuses.join(', ')}): no 500, no dropped connection`)
  const refused = answers.filter((a) => a.status === 503)
  t.ok(refused.length > 0, `${refused.length} purchases refused while the database was down`)
  t.ok(refused.every((a) => a.retryAfter !== null && (a.code === 'DATABASE_UNAVAILABLE' || a.code === 'PURCHASE_NOT_STORED')), 'each 503 says why, with a Retry-After')
  const slowest = Math.max(...answers.map((a) => a.ms))
  t.ok(slowest < 10_000, `every request answered within 10 s (slowest ${Math.round(slowest)} ms): no hang`)

  // Clients resend what was refused, same key: each purchase ends up stored exactly once.
  const resent = await mapConcurrent(refused, 10, async (a) =>
    (await request(api.base, 'POST', '/buy', { json: { event_id: eventId, user_id: a.userId }, headers: { 'idempotency-key': a.key } })).status)
  t.ok(resent.every((s) => s === 202 || s === 200), 'every resend stored')

  const sql = postgres(pg.url, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await sql.end() })
  const [keys] = await sql<[{ keys: string, bookings: string }]>`SELECT count(DISTINCT idempotency_key) AS keys, count(*) AS bookings FROM bookings WHERE event_id = ${eventId}`
  t.same(keys, { keys: String(answers.length), bookings: String(answers.length) }, 'one booking per purchase sent')
  // The worker reconnected by itself: everything gets decided.
  await waitFor(async () => {
    const [row] = await sql<[{ n: string }]>`SELECT count(*) AS n FROM bookings WHERE event_id = ${eventId} AND status = 'PENDING'`
    return row.n === '0' ? true : undefined
  }, { timeoutMs: 60_000, what: 'every purchase decided after the restart' })
  const check = await request(api.base, 'GET', `/admin/invariants?event_id=${eventId}`, { headers: admin })
  t.match(check.body, { ok: true, events: [{ stranded_purchases: 0, pending_purchases: 0 }] }, 'the books add up')
  const { sold_seats: sold, total_quota: total } = check.body.events[0]
  t.ok(sold <= total, 'nothing oversold')
  t.comment(`database down ${((upAt - downAt) / 1000).toFixed(1)} s; stored again ${((recoveredAt - upAt) / 1000).toFixed(1)} s after it came back; ${answers.length} purchases, ${refused.length} refused with 503 and resent, slowest answer ${Math.round(slowest)} ms, ${sold} of ${total} seats sold`)
})
