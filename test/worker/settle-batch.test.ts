import t from 'tap'
import { sql } from 'kysely'
import { PURCHASE_QUEUE } from '../../lib/purchase-queue.ts'
import { decidePurchases, settlePurchaseBatch } from '../../worker/settle.ts'
import { startTestApp, startTestWorker } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { silentLog } from '../fixtures/log.ts'

/** Stores purchases one after another through the real API (no worker), returning ids in arrival order. */
async function enqueue (base: string, purchases: ReadonlyArray<{ eventId: string, quantity?: number }>): Promise<string[]> {
  const ids: string[] = []
  for (const { eventId, quantity = 1 } of purchases) {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity } })
    if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${JSON.stringify(res.body)}`)
    ids.push(res.body.booking_id)
  }
  return ids
}

async function outcomesById ({ db }: TestDatabase, ids: readonly string[]): Promise<string[]> {
  const rows = await db.selectFrom('bookings').select(['id', 'status', 'reason']).where('id', 'in', ids).execute()
  const byId = new Map(rows.map((row) => [row.id, row.status === 'FAILED' ? `FAILED ${row.reason ?? ''}` : row.status]))
  return ids.map((id) => byId.get(id) ?? 'MISSING')
}

async function available ({ db }: TestDatabase, eventId: string): Promise<number> {
  return (await db.selectFrom('events').select('available_quota').where('id', '=', eventId).executeTakeFirstOrThrow()).available_quota
}

t.test('decidePurchases, the batch rule without I/O', async (t) => {
  const event = '00000000-0000-4000-8000-00000000000e'
  const user = '00000000-0000-4000-8000-00000000000a'
  const p = (id: string, quantity: number, eventId = event) => ({ id, data: { event_id: eventId, user_id: user, quantity } })
  const { decisions, sales } = decidePurchases([p('03', 3), p('01', 2), p('02', 2), p('04', 1), p('05', 1)], new Map([[event, 5]]))
  t.same(decisions.map((d) => [d.id, d.decision]), [
    ['01', { status: 'SUCCESS' }],
    ['02', { status: 'SUCCESS' }],
    ['03', { status: 'FAILED', reason: 'insufficient_quota' }],
    ['04', { status: 'SUCCESS' }],
    ['05', { status: 'FAILED', reason: 'sold_out' }]
  ], 'in id (arrival) order, whatever order they were claimed in; quantity 3 does not fit 1 seat, a later 1 does')
  t.same(sales, [{ eventId: event, seats: 5 }])
  const bad = decidePurchases([{ id: '01', data: { event_id: event } }, p('02', 1, '00000000-0000-4000-8000-0000000000ff')], new Map([[event, 5]]))
  t.same(bad.decisions.map((d) => d.decision), [{ status: 'FAILED', reason: 'invalid_request' }, { status: 'FAILED', reason: 'invalid_request' }])
  t.same(bad.sales, [], 'no seat moves for invalid purchases')
})

t.test('one batch that mixes events decides each event against its own seats, in arrival order', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const [a, b, c] = [await createEvent(database.db, 2), await createEvent(database.db, 3), await createEvent(database.db, 1)]
  const order = [a, b, c, a, b, c, a, b, a, b] as string[]
  const ids = await enqueue(base, order.map((eventId) => ({ eventId })))
  const claimed = await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100)
  t.equal(claimed, 10, 'all ten in one transaction')
  t.same(await outcomesById(database, ids), [
    'SUCCESS', 'SUCCESS', 'SUCCESS', // a1 b1 c1
    'SUCCESS', 'SUCCESS', 'FAILED sold_out', // a2 b2 c2
    'FAILED sold_out', 'SUCCESS', 'FAILED sold_out', 'FAILED sold_out' // a3 b3 a4 b4
  ])
  t.same([await available(database, a), await available(database, b), await available(database, c)], [0, 0, 0])
  const decided = await database.db.selectFrom('bookings').select('decided_at').distinct().execute()
  t.equal(decided.length, 1, 'the batch shares one decision time (ties broken by id)')
  const jobs = await sql<{ state: string, n: string }>`SELECT state, count(*) AS n FROM pgboss.job WHERE name = ${PURCHASE_QUEUE} GROUP BY state`.execute(database.db)
  t.same(jobs.rows, [{ state: 'completed', n: '10' }], 'every job completed in the same transaction')
})

t.test('a batch that crosses the sell-out: earlier arrivals win, later ones fail; quantity > 1 that does not fit fails alone', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 6)
  const quantities = [2, 3, 2, 1, 4, 1, 1]
  const ids = await enqueue(base, quantities.map((quantity) => ({ eventId, quantity })))
  t.equal(await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), 7)
  t.same(await outcomesById(database, ids), [
    'SUCCESS', 'SUCCESS', // 2 + 3: 1 left
    'FAILED insufficient_quota', // 2 > 1
    'SUCCESS', // 1: none left
    'FAILED sold_out', 'FAILED sold_out', 'FAILED sold_out'
  ])
  t.equal(await available(database, eventId), 0)
  const event = await database.db.selectFrom('events').select(['total_quota', 'available_quota', 'version']).where('id', '=', eventId).executeTakeFirstOrThrow()
  t.same(event, { total_quota: 6, available_quota: 0, version: 1 }, 'one quota change for the whole batch')
})

t.test('batches respect their size and drain a backlog back to back, in arrival order across batches', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 25)
  const ids = await enqueue(base, Array.from({ length: 60 }, () => ({ eventId })))
  startTestWorker(t, database, { batchSize: 7, idlePollMs: 60_000 })
  await waitFor(async () => {
    const row = await database.db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'PENDING').executeTakeFirstOrThrow()
    return row.n === '0' ? true : undefined
  }, { what: 'the backlog to drain without any poll' })
  const outcomes = await outcomesById(database, ids)
  t.same(outcomes, [...Array.from({ length: 25 }, () => 'SUCCESS'), ...Array.from({ length: 35 }, () => 'FAILED sold_out')], 'the first 25 to arrive won')
  const batches = await database.db.selectFrom('bookings').select('decided_at').distinct().execute()
  t.ok(batches.length >= 9, `at most 7 per transaction (${batches.length} decision times for 60 purchases)`)
  const order = await database.db.selectFrom('bookings').select('id').orderBy('decided_at').orderBy('id').execute()
  t.same(order.map((row) => row.id), ids, 'decided in arrival order')
})

t.test('a batch holding an already-decided purchase rolls back and is settled one at a time, skipping it', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 5)
  const ids = await enqueue(base, [{ eventId }, { eventId }, { eventId }])
  // As if decided by an earlier delivery whose job was then re-queued by hand.
  await sql`UPDATE bookings SET status = 'SUCCESS', decided_at = now() WHERE id = ${ids[1]}`.execute(database.db)
  await sql`UPDATE events SET available_quota = 4 WHERE id = ${eventId}`.execute(database.db)
  await t.rejects(settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), /only 2 of 3 claimed purchases were pending/)
  t.equal(await available(database, eventId), 4, 'the failed batch changed nothing')
  startTestWorker(t, database, { batchSize: 100 })
  await waitFor(async () => {
    const jobs = await sql<{ n: string }>`SELECT count(*) AS n FROM pgboss.job WHERE name = ${PURCHASE_QUEUE} AND state = 'completed'`.execute(database.db)
    return jobs.rows[0]?.n === '3' ? true : undefined
  }, { what: 'all three jobs to be completed' })
  t.same(await outcomesById(database, ids), ['SUCCESS', 'SUCCESS', 'SUCCESS'])
  t.equal(await available(database, eventId), 2, 'the already-decided purchase took no second seat')
})
