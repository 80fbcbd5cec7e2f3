import t from 'tap'
import { sql } from 'kysely'
import { execFile, spawnSync } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'

// The metrics are read back by an independent parser: the official Prometheus Python client's
// (Debian's python3-prometheus-client, which .ci/run installs), not by code of ours.
const PYTHON = '/usr/bin/python3'
const PARSER = path.join(import.meta.dirname, '../fixtures/parse-metrics.py')

interface Family { name: string, type: string, samples: Array<{ name: string, labels: Record<string, string>, value: number }> }

/** GET /metrics, parsed. Sample names keep their suffixes (_total, _count, _bucket). */
async function scrape (base: string): Promise<Map<string, Family>> {
  const res = await request<string>(base, 'GET', '/metrics')
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`)
  if (!/^text\/plain; version=0\.0\.4/.test(res.headers.get('content-type') ?? '')) throw new Error(`content type ${res.headers.get('content-type')}`)
  const parse = promisify(execFile)(PYTHON, [PARSER], { timeout: 30_000 })
  parse.child.stdin?.end(res.body)
  const families = JSON.parse((await parse).stdout) as Family[]
  return new Map(families.map((family) => [family.name, family]))
}

/** The value of the sample named `sample` (of family `family`) whose labels include `labels`; 0 when absent. */
function value (families: Map<string, Family>, family: string, sample: string, labels: Record<string, string> = {}): number {
  return families.get(family)?.samples.find((s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ?? 0
}

const parserMissing = spawnSync(PYTHON, ['-c', 'import prometheus_client']).status === 0 ? false : `no ${PYTHON} with prometheus_client (apt-get install python3-prometheus-client; .ci/run does)`

t.test('GET /metrics: a sale, counted by route, outcome and batch, in the exposition format', { skip: parserMissing }, async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 10)
  const answers = await mapConcurrent(Array.from({ length: 30 }, newUserId), 30, async (userId) =>
    await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId } }))
  const queued = answers.filter((r) => r.status === 202).length
  const soldOutAtOnce = answers.filter((r) => r.status === 200).length
  t.equal(queued + soldOutAtOnce, 30, 'every purchase stored')
  await waitFor(async () => {
    const row = await database.db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'PENDING').executeTakeFirstOrThrow()
    return Number(row.n) === 0 ? true : undefined
  }, { what: 'every purchase to be decided' })
  t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: 'not-a-uuid' } })).status, 400)

  const m = await scrape(base)
  t.equal(value(m, 'boxoffice_purchases_accepted', 'boxoffice_purchases_accepted_total', { outcome: 'queued' }), queued, 'queued purchases counted')
  t.equal(value(m, 'boxoffice_purchases_accepted', 'boxoffice_purchases_accepted_total', { outcome: 'sold_out' }), soldOutAtOnce, 'purchases answered sold out at once counted')
  t.equal(value(m, 'boxoffice_purchases_decided', 'boxoffice_purchases_decided_total', { status: 'success', reason: '' }), 10, 'ten decided successes: the seats')
  t.equal(value(m, 'boxoffice_purchases_decided', 'boxoffice_purchases_decided_total', { status: 'failed', reason: 'sold_out' }), queued - 10, 'the other queued purchases failed sold out')
  t.equal(value(m, 'boxoffice_http_request_duration_seconds', 'boxoffice_http_request_duration_seconds_count', { method: 'POST', route: '/buy', status_code: '202' }), queued, 'the latency histogram counts each 202 of POST /buy, by route pattern')
  t.equal(value(m, 'boxoffice_http_request_duration_seconds', 'boxoffice_http_request_duration_seconds_count', { method: 'POST', route: '/buy', status_code: '400' }), 1, 'and the 400')
  t.equal(m.get('boxoffice_http_request_duration_seconds')?.type, 'histogram')
  t.ok(value(m, 'boxoffice_settle_batch_size', 'boxoffice_settle_batch_size_count') >= 1, 'settlement batches observed')
  t.ok(value(m, 'boxoffice_settle_batch_duration_seconds', 'boxoffice_settle_batch_duration_seconds_count') >= 1, 'and their durations')
  t.equal(value(m, 'boxoffice_db_pool_connections', 'boxoffice_db_pool_connections', { pool: 'api', state: 'max' }), 10, 'pool size')
  t.ok(value(m, 'boxoffice_db_pool_acquire_seconds', 'boxoffice_db_pool_acquire_seconds_count', { pool: 'api' }) >= 1, 'waits for a connection of the pool observed (a few for the sale: its purchases share transactions)')
  t.equal(m.get('boxoffice_db_pool_acquire_seconds')?.type, 'histogram')
  t.ok(m.has('nodejs_eventloop_lag_seconds'), 'event-loop lag')
  t.equal(value(m, 'boxoffice_pending_purchases', 'boxoffice_pending_purchases', { event_id: eventId }), 0, 'nothing pending once decided')
})

t.test('GET /metrics: pending purchases per event and queue depth, read when scraped', { skip: parserMissing }, async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database) // no worker: purchases stay queued
  const eventId = await createEvent(database.db, 10)
  for (let i = 0; i < 3; i++) t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })).status, 202)
  const m = await scrape(base)
  t.equal(value(m, 'boxoffice_pending_purchases', 'boxoffice_pending_purchases', { event_id: eventId }), 3, 'three pending for the event')
  t.ok(m.has('boxoffice_queue_jobs'), 'the queue\'s job counts by state')
})

t.test('/health/live and /health/ready', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const live = await request(base, 'GET', '/health/live')
  t.equal(live.status, 200)
  t.equal(live.body.status, 'ok')
  const ready = await request(base, 'GET', '/health/ready')
  t.equal(ready.status, 200)
  t.same(ready.body, { status: 'ok', checks: { database: 'ok', migrations: 'ok', queue: 'ok' } })

  // A database whose schema is behind the code: not ready, and the answer says which migration.
  const [last] = (await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name DESC LIMIT 1`.execute(database.db)).rows
  await sql`DELETE FROM kysely_migration WHERE name = ${last?.name}`.execute(database.db)
  const behind = await request(base, 'GET', '/health/ready')
  t.equal(behind.status, 503)
  t.equal(behind.body.code, 'NOT_READY')
  t.match(behind.body.checks, { database: 'ok', migrations: new RegExp(`^1 pending: ${last?.name}$`), queue: 'ok' })
  t.ok(Number(behind.headers.get('retry-after')) >= 1, 'with Retry-After')
  t.equal((await request(base, 'GET', '/health/live')).status, 200, 'still alive: nothing to restart for')
})

t.test('load shedding: while the event loop lags, 503 OVERLOADED with Retry-After; liveness and metrics still answer', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { maxEventLoopDelayMs: 100 })
  const eventId = await createEvent(database.db, 10)
  let accepted = 0
  const buy = async (): Promise<{ status: number, body: any, headers: Headers }> => {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    if (res.status === 202) accepted++
    return res
  }
  t.equal((await buy()).status, 202, 'served while the loop is free')

  // The server runs in this process: hold its event loop for 1.5 s, as a burst of work would.
  const shed = await waitFor(async () => {
    const until = Date.now() + 1500
    while (Date.now() < until) { /* busy */ }
    const res = await buy()
    return res.status === 503 ? res : undefined
  }, { timeoutMs: 20_000, intervalMs: 0, what: 'a request to be shed' })
  t.equal(shed.body.code, 'OVERLOADED')
  t.equal(shed.headers.get('retry-after'), '1')
  t.equal((await request(base, 'GET', '/health/live')).status, 200, '/health/live is never shed')
  t.equal((await request(base, 'GET', '/metrics')).status, 200, '/metrics is never shed')

  const served = await waitFor(async () => { const res = await buy(); return res.status === 202 ? res : undefined }, { timeoutMs: 10_000, what: 'service to resume' })
  t.equal(served.status, 202, 'served again once the loop is free')
  const stored = await database.db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).where('event_id', '=', eventId).executeTakeFirstOrThrow()
  t.equal(Number(stored.n), accepted, 'every 202 stored, the shed requests nothing')
})
