// Several API processes and several worker processes on one database, as `npm run server` and
// `npm run worker` run them side by side (docs/operations.md, "Running the parts separately").
import t from 'tap'
import { sql } from 'kysely'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { freePort } from '../../db/embedded.ts'
import { startService } from '../fixtures/service.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

t.test('3 API and 3 worker processes, 50 events, one of them hot: every purchase decided once, in arrival order, every event\'s books add up', { timeout: 150_000 }, async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const env = { DATABASE_URL: database.url, ADMIN_TOKEN }
  const apis = await Promise.all([1, 2, 3].map(async () => await startService(t, 'api', env)))
  // Each worker serves /metrics and /health/* on its METRICS_PORT (compose.yaml's worker service).
  const metricsPorts = await Promise.all([1, 2, 3].map(async () => await freePort()))
  const workers = await Promise.all(metricsPorts.map(async (port) => await startService(t, 'worker', { ...env, METRICS_PORT: String(port) })))

  // The hot event: one seat per purchase, no cap, so first come first served is exact. The 49
  // others: a cap of 2 and purchases of 1 or 2 seats.
  const hot = await createEvent(db, 300, 'Hot')
  const others = await Promise.all(Array.from({ length: 49 }, async (_v, i) => await createEvent(db, 10, `Event ${i + 1}`, { max_per_user: 2 })))
  const users = Array.from({ length: 800 }, newUserId)

  const purchases = Array.from({ length: 3000 }, (_v, i) => i % 2 === 0
    ? { event_id: hot, user_id: users[i % users.length] as string, quantity: 1 }
    : { event_id: others[i % others.length] as string, user_id: users[i % users.length] as string, quantity: 1 + (i % 3 === 0 ? 1 : 0) })
  const answers = await mapConcurrent(purchases, 30, async (body, i) => {
    const api = apis[i % apis.length] as typeof apis[number]
    return await request(api.base, 'POST', '/buy', { json: body })
  })
  t.ok(answers.every((a) => a.status === 202 || a.status === 200), `every purchase stored (${[...new Set(answers.map((a) => a.status))].join(', ')})`)

  await waitFor(async () => {
    const { rows: [row] } = await sql<{ n: string }>`SELECT count(*) AS n FROM bookings WHERE status = 'PENDING'`.execute(db)
    return row?.n === '0' ? true : undefined
  }, { timeoutMs: 60_000, what: 'every purchase decided' })
  const ids = answers.map((a) => a.body.booking_id as string)
  const decided = await db.selectFrom('bookings').select(['id', 'status']).where('id', 'in', ids).execute()
  t.equal(decided.length, ids.length, 'every accepted purchase is stored, once')

  // Arrival order on the hot event, across three API processes and three workers. Arrival numbers
  // come from the event's sequence as each batch is inserted; the worker takes jobs in the order
  // pg-boss stored them (each batch's start, then the id each API process gave at receipt). The two
  // agree within one process (test/worker/settle.test.ts); across processes they can disagree for
  // purchases in flight together, and two workers' batches of the hot event can take its lock in
  // either order. Bounded here at a tenth of the hot event's purchases: a gross violation fails.
  const { rows: [order] } = await sql<{ sold: string, last_sold: string, first_refused: string | null, refused_before: string }>`
    SELECT count(*) FILTER (WHERE status = 'SUCCESS') AS sold,
      max(arrival) FILTER (WHERE status = 'SUCCESS') AS last_sold,
      min(arrival) FILTER (WHERE status = 'FAILED') AS first_refused,
      count(*) FILTER (WHERE status = 'FAILED' AND arrival < (SELECT max(arrival) FROM bookings WHERE event_id = ${hot} AND status = 'SUCCESS')) AS refused_before
    FROM bookings WHERE event_id = ${hot}`.execute(db)
  t.equal(order?.sold, '300', 'the hot event sold out, exactly')
  const disorder = Number(order?.refused_before)
  t.ok(disorder <= 150, `at most a tenth decided out of arrival order: ${disorder} refused before the last sold (last sold arrival ${order?.last_sold}, first refused ${order?.first_refused})`)

  const check = await request(apis[0]?.base as string, 'GET', '/admin/invariants?limit=50', { headers: admin })
  t.equal(check.body.events.length, 50)
  t.equal(check.body.ok, true, JSON.stringify(check.body.events.filter((e: { ok: boolean }) => !e.ok)))

  // Every worker process is ready by its own health check, and between them their metrics count
  // every purchase the workers decided (the 200s were decided at intake).
  let decidedByWorkers = 0
  for (const port of metricsPorts) {
    const base = `http://127.0.0.1:${port}`
    const ready = await request(base, 'GET', '/health/ready')
    t.same(ready.body, { status: 'ok', checks: { database: 'ok', migrations: 'ok', queue: 'ok' } }, 'a worker reports ready')
    const metrics = await request<string>(base, 'GET', '/metrics')
    for (const match of metrics.body.matchAll(/^boxoffice_purchases_decided_total\{[^}]*\} (\d+)$/gm)) decidedByWorkers += Number(match[1])
  }
  t.equal(decidedByWorkers, answers.filter((a) => a.status === 202).length, 'the workers\' metrics count each queued purchase\'s decision once')

  // The work was shared: each worker, stopped, says how many purchases it settled.
  const settled = await Promise.all(workers.map(async (worker) => {
    worker.child.kill('SIGTERM')
    const { code } = await worker.exited
    t.equal(code, 0, 'a worker stops cleanly')
    const line = worker.lines.find((l) => l.includes('purchase worker stopped'))
    return line === undefined ? 0 : Number((JSON.parse(line) as { settled?: number }).settled ?? 0)
  }))
  t.ok(settled.filter((n) => n > 0).length >= 2, `at least two workers settled purchases (${settled.join(', ')})`)
  t.comment(`3 API + 3 workers: ${answers.length} purchases over 50 events, ${answers.filter((a) => a.status === 200).length} sold out at once; settled per worker ${settled.join(' / ')}; ${disorder} hot-event purchases refused ahead of a later arrival`)
})

