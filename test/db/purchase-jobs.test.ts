import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { fromKysely } from 'pg-boss'
import { JOB_STATE, JOBS } from '../../db/pgboss-tables.ts'
import { requestCancellationOf } from '../../db/bookings.ts'
import type { Db } from '../../db/client.ts'
import { claimPurchaseJobs } from '../../db/purchase-jobs.ts'
import { storePurchases } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { PURCHASE_QUEUE } from '../../purchase/jobs.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

// db/purchase-jobs.ts writes and claims pg-boss's job rows with its own SQL. These tests hold it to
// what pg-boss itself does, so that a pg-boss upgrade that changes its table fails here.

type Row = Record<string, unknown>
type Asserts = Pick<typeof t, 'same' | 'equal'>

/** Our job row and pg-boss's, read back: every column must match but the id and the write times. */
async function compareWithInsert (t: Asserts, db: Db, ours: string, theirs: string): Promise<void> {
  const { rows } = await sql<Row>`SELECT * FROM ${JOBS} WHERE id = ANY(${[ours, theirs]}::uuid[])`.execute(db)
  const mine = rows.find((row) => row.id === ours)
  const other = rows.find((row) => row.id === theirs)
  if (mine === undefined || other === undefined) throw new Error('both jobs should exist')
  t.same(mine.data, other.data, 'the same payload')
  // Times differ by when each was written; how they relate to each other must not.
  const shape = (row: Row): Row => {
    const { id, data, created_on: created, start_after: start, keep_until: keep, ...rest } = row
    const [startMs, createdMs, keepMs] = [start, created, keep].map((time) => (time as Date).getTime()) as [number, number, number]
    return { ...rest, starts_when_created: startMs === createdMs, kept_ms: keepMs - startMs }
  }
  t.same(shape(mine), shape(other), 'every other column as pg-boss writes it (a column pg-boss adds or fills differently fails here)')
  t.same(Object.keys(mine).sort(), Object.keys(other).sort())
  t.equal(mine.state, JOB_STATE.created)
}

t.test('the job intake stores is the row pg-boss\'s insert() writes for the same purchase', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const eventId = await createEvent(db, 10, 'Compared')
  const ours = { id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 3, idempotency_key: null, max_wait_seconds: 120 }
  const [stored] = await storePurchases(db, [ours])
  if (stored?.verdict !== 'pending' || stored.expires_at === null) throw new Error(`expected a pending purchase with a deadline, got ${JSON.stringify(stored)}`)
  // What the service wrote before it stored jobs itself: insert() with the payload built in
  // JavaScript, the deadline by toISOString().
  const theirs = timeOrderedId()
  const data = { event_id: eventId, user_id: ours.user_id, quantity: 3, arrival: Number(stored.arrival), expires_at: stored.expires_at.toISOString() }
  await boss.insert(PURCHASE_QUEUE, [{ id: theirs, data, group: { id: eventId } }])
  await compareWithInsert(t, db, ours.id, theirs)
})

t.test('the job a cancellation request stores is the row pg-boss\'s insert() writes for it', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const eventId = await createEvent(db, 10, 'Compared')
  const booking = { id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null }
  await storePurchases(db, [booking])
  const data = { cancel_booking_id: booking.id, event_id: eventId }
  const ours = timeOrderedId()
  t.match(await requestCancellationOf(db, booking.id, { id: ours, data }), { status: 'PENDING' }, 'requested')
  t.equal(await requestCancellationOf(db, booking.id, { id: timeOrderedId(), data }), undefined, 'a second request queues nothing')
  const theirs = timeOrderedId()
  await boss.insert(PURCHASE_QUEUE, [{ id: theirs, data, group: { id: eventId } }])
  await compareWithInsert(t, db, ours, theirs)
  const { rows: [count] } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${JOBS} WHERE data->>'cancel_booking_id' = ${booking.id}`.execute(db)
  t.equal(Number(count?.n), 2, 'one job from the request (and pg-boss\'s copy): the refused second request stored none')
})

t.test('claiming deletes the oldest ready jobs, skips what it is told to and what is not due, and a rollback puts them back', async (t) => {
  const { db } = await createTestDatabase(t)
  const [a, b] = [await createEvent(db, 100, 'A'), await createEvent(db, 100, 'B')]
  const purchase = (eventId: string): Parameters<typeof storePurchases>[1][number] =>
    ({ id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null })
  const first = [purchase(a), purchase(b), purchase(a)]
  await storePurchases(db, first)
  const later = [purchase(a), purchase(a)]
  await storePurchases(db, later)
  // A job waiting for its retry is not due yet.
  await sql`UPDATE ${JOBS} SET state = 'retry', start_after = now() + interval '1 hour' WHERE id = ${later[1]?.id}`.execute(db)

  const ids = (jobs: Array<{ id: string }>): string[] => jobs.map((job) => job.id).sort()
  await t.rejects(db.transaction().execute(async (trx) => {
    const claimed = await claimPurchaseJobs(trx, { db, limit: 10, ignoreGroups: [b] })
    t.same(ids(claimed), ids([first[0], first[2], later[0]] as Array<{ id: string }>), 'every due job but the set-aside event\'s')
    t.same(claimed.find((job) => job.id === first[0]?.id)?.data, { event_id: a, user_id: first[0]?.user_id, quantity: 1, arrival: 1 })
    throw new Error('roll back')
  }), /roll back/)
  const { rows: [back] } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${JOBS} WHERE name = ${PURCHASE_QUEUE}`.execute(db)
  t.equal(Number(back?.n), 5, 'rolled back: every job is queued again')

  const claimed = await db.transaction().execute(async (trx) => await claimPurchaseJobs(trx, { db, limit: 2, ignoreGroups: [] }))
  t.same(ids(claimed), ids(first.slice(0, 2)), 'committed: the two oldest, gone from the table')
  const { rows: left } = await sql<{ id: string }>`SELECT id FROM ${JOBS} WHERE name = ${PURCHASE_QUEUE} ORDER BY id`.execute(db)
  t.same(left.map((row) => row.id), [first[2]?.id, later[0]?.id, later[1]?.id])
})

t.test('the claim takes the jobs pg-boss\'s own fetch() would, in the same order', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const [a, b, c] = [await createEvent(db, 100, 'A'), await createEvent(db, 100, 'B'), await createEvent(db, 100, 'C')]
  const purchase = (eventId: string): Parameters<typeof storePurchases>[1][number] =>
    ({ id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null })
  const stored = [purchase(a), purchase(b), purchase(a), purchase(c), purchase(a), purchase(b), purchase(a), purchase(a)]
  await storePurchases(db, stored)
  const id = (i: number): string => (stored[i] as { id: string }).id
  // Every condition fetch() weighs, one job each: distinct creation times (oldest first), a job
  // waiting for its retry and due, one not due, one blocked, one of higher priority, one already claimed.
  await sql`UPDATE ${JOBS} j SET created_on = now() - (x.n * interval '1 second') FROM unnest(${stored.map((p) => p.id)}::uuid[]) WITH ORDINALITY AS x (id, n)
    WHERE j.id = x.id`.execute(db)
  await sql`UPDATE ${JOBS} SET state = 'retry', retry_count = 1 WHERE id = ${id(1)}`.execute(db)
  await sql`UPDATE ${JOBS} SET start_after = now() + interval '1 hour' WHERE id = ${id(2)}`.execute(db)
  await sql`UPDATE ${JOBS} SET blocked = true WHERE id = ${id(3)}`.execute(db)
  await sql`UPDATE ${JOBS} SET priority = 1 WHERE id = ${id(7)}`.execute(db)
  await sql`UPDATE ${JOBS} SET state = 'active', started_on = now() WHERE id = ${id(6)}`.execute(db)

  const cases = [{ limit: 10, ignoreGroups: [] }, { limit: 2, ignoreGroups: [] }, { limit: 10, ignoreGroups: [b] }, { limit: 1, ignoreGroups: [a] }]
  for (const { limit, ignoreGroups } of cases) {
    const theirs: string[] = []
    const ours: string[] = []
    // Each inside a transaction that rolls back, so both see the same rows.
    await t.rejects(db.transaction().execute(async (trx) => {
      const jobs = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize: limit, ignoreGroups, db: fromKysely(trx) })
      theirs.push(...jobs.map((job) => job.id))
      throw new Error('roll back')
    }), /roll back/)
    await t.rejects(db.transaction().execute(async (trx) => {
      ours.push(...(await claimPurchaseJobs(trx, { db, limit, ignoreGroups })).map((job) => job.id))
      throw new Error('roll back')
    }), /roll back/)
    t.ok(theirs.length > 0, `fetch() found jobs (limit ${limit}, ignoring ${ignoreGroups.length})`)
    t.same(ours.sort(), theirs.sort(), `the same jobs as fetch() (limit ${limit}, ignoring ${ignoreGroups.length} events)`)
  }
})
