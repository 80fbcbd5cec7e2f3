import { sql } from 'kysely'
import t from 'tap'
import { closeDb, createDb, poolUsage } from '../../db/client.ts'
import { createBoss } from '../../purchase/queue.ts'
import { startTestApp } from '../fixtures/app.ts'
import { silentLog } from '../fixtures/log.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { startTcpProxy } from '../fixtures/tcp-proxy.ts'

t.test('GET /health answers 200 while the database answers', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss })
  const res = await request(base, 'GET', '/health')
  t.equal(res.status, 200)
  t.same(res.body, { status: 'ok' })
})

t.test('a database outage is a prompt 503, and service resumes when it returns', async (t) => {
  const { url, db: directDb } = await createTestDatabase(t)
  const eventId = await createEvent(directDb, 10)
  // The app reaches PostgreSQL only through a proxy the test can cut.
  const target = new URL(url)
  const proxy = await startTcpProxy(Number(target.port))
  t.teardown(proxy.close)
  target.port = String(proxy.port)
  const db = createDb({ url: target.toString(), poolMax: 4, connectTimeoutSeconds: 2, statementTimeoutMs: 5000, applicationName: 'boxoffice-test' })
  const boss = createBoss({ url: target.toString(), applicationName: 'boxoffice-test', supervise: false, log: silentLog })
  await boss.start()
  t.teardown(async () => { await boss.stop({ graceful: false, close: true }); await closeDb(db) })
  const { base } = await startTestApp(t, { db, boss })
  t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })).status, 202)

  await proxy.cut()
  const started = Date.now()
  const health = await request(base, 'GET', '/health')
  t.equal(health.status, 503)
  t.equal(health.body.code, 'DATABASE_UNAVAILABLE')
  const buy = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
  t.equal(buy.status, 503)
  t.equal(buy.body.code, 'DATABASE_UNAVAILABLE')
  t.ok(Number(buy.headers.get('retry-after')) >= 1, 'Retry-After is set')
  const booking = await request(base, 'GET', `/bookings/0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e?user_id=${newUserId()}`)
  t.equal(booking.status, 503)
  t.ok(Date.now() - started < 10_000, `answered within the connect timeout (${Date.now() - started} ms), not a hang`)

  await proxy.restore()
  await waitFor(async () => (await request(base, 'GET', '/health')).status === 200 ? true : undefined, { what: 'health to recover' })
  const again = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
  t.equal(again.status, 202)
  const pending = await directDb.selectFrom('bookings').select('id').execute()
  t.equal(pending.length, 2, 'exactly the two accepted purchases are stored; the refused one is not')
})

t.test('a request that finds every connection of the pool busy is a prompt 503 DATABASE_BUSY, and nothing is lost', async (t) => {
  const { url, db: directDb, boss } = await createTestDatabase(t)
  const eventId = await createEvent(directDb, 10)
  // The API's pool, small, with a short wait for a connection.
  const db = createDb({ url, poolMax: 2, connectTimeoutSeconds: 5, acquireTimeoutMs: 300, statementTimeoutMs: 10_000, applicationName: 'boxoffice-test' })
  t.teardown(async () => { await closeDb(db) })
  const { base } = await startTestApp(t, { db, boss }, { intakeBatchWaitMs: 0 })
  const bought = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
  t.equal(bought.status, 202)
  const location = bought.headers.get('location') as string

  // Both connections held by statements that take 5 s (a stand-in for anything slow).
  const holding = Promise.all([sql`SELECT pg_sleep(5)`.execute(db), sql`SELECT pg_sleep(5)`.execute(db)])
  await waitFor(async () => poolUsage(db)?.inUse === 2 ? true : undefined, { what: 'both connections to be in use' })
  const started = Date.now()
  const read = await request(base, 'GET', location)
  const waited = Date.now() - started
  t.equal(read.status, 503)
  t.equal(read.body.code, 'DATABASE_BUSY')
  t.match(read.body.message, /busy/)
  t.equal(read.headers.get('retry-after'), '1')
  t.ok(waited >= 250 && waited < 3000, `answered after the 300 ms wait for a connection, not at the end of the slow statements (${waited} ms)`)
  const refused = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
  t.equal(refused.status, 503, 'a purchase meanwhile is refused too')
  t.equal(refused.body.code, 'DATABASE_BUSY')

  await holding
  t.equal((await request(base, 'GET', location)).status, 200, 'once a connection is free, the booking is read')
  const stored = await directDb.selectFrom('bookings').select('id').execute()
  t.equal(stored.length, 1, 'the refused purchase stored nothing; the accepted one is there')
})
