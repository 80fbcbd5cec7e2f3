import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { JOB_STATE, JOBS } from '../../db/pgboss-tables.ts'
import { claimPurchaseJobs } from '../../db/purchase-jobs.ts'
import { storePurchases } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { PURCHASE_QUEUE } from '../../purchase/jobs.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

// db/purchase-jobs.ts writes and claims pg-boss's job rows with its own SQL. These tests hold it to
// what pg-boss itself does, so that a pg-boss upgrade that changes its table fails here.

type Row = Record<string, unknown>

t.test('the job intake stores is the row pg-boss\'s insert() writes for the same purchase', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const eventId = await createEvent(db, 10, 'Compared')
  const ours = { id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 3, idempotency_key: null, max_wait_seconds: 120 }
  const [stored] = await storePurchases(db, [ours])
  if (stored?.verdict !== 'pending' || stored.expires_at === null) throw new Error(`expected a pending purchase with a deadline, got ${JSON.stringify(stored)}`)
  // What the service wrote before it stored jobs itself: insert() with the payload built in JavaScript.
  const theirsId = timeOrderedId()
  const data = { event_id: eventId, user_id: ours.user_id, quantity: 3, arrival: Number(stored.arrival), expires_at: stored.expires_at.toISOString() }
  await boss.insert(PURCHASE_QUEUE, [{ id: theirsId, data, group: { id: eventId } }])

  const { rows } = await sql<Row>`SELECT * FROM ${JOBS} WHERE id = ANY(${[ours.id, theirsId]}::uuid[]) ORDER BY id`.execute(db)
  const [mine, theirs] = rows
  if (mine === undefined || theirs === undefined) throw new Error('both jobs should exist')
  t.same(mine.data, theirs.data, 'the same payload, the deadline written as toISOString() writes it')
  // Times differ by when each was written; what they are relative to each other must not.
  const shape = (row: Row): Row => {
    const { id, data, created_on: created, start_after: start, keep_until: keep, ...rest } = row
    return { ...rest, starts_when_created: (start as Date).getTime() === (created as Date).getTime(), kept_ms: (keep as Date).getTime() - (start as Date).getTime() }
  }
  t.same(shape(mine), shape(theirs), 'every other column as pg-boss writes it (a column pg-boss adds or fills differently fails here)')
  t.same(Object.keys(mine).sort(), Object.keys(theirs).sort())
  t.equal(mine.state, JOB_STATE.created)
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
    const claimed = await claimPurchaseJobs(trx, { limit: 10, ignoreGroups: [b] })
    t.same(ids(claimed), ids([first[0], first[2], later[0]] as Array<{ id: string }>), 'every due job but the set-aside event\'s')
    t.same(claimed.find((job) => job.id === first[0]?.id)?.data, { event_id: a, user_id: first[0]?.user_id, quantity: 1, arrival: 1 })
    throw new Error('roll back')
  }), /roll back/)
  const { rows: [back] } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${JOBS} WHERE name = ${PURCHASE_QUEUE}`.execute(db)
  t.equal(Number(back?.n), 5, 'rolled back: every job is queued again')

  const claimed = await db.transaction().execute(async (trx) => await claimPurchaseJobs(trx, { limit: 2, ignoreGroups: [] }))
  t.same(ids(claimed), ids(first.slice(0, 2) as Array<{ id: string }>), 'committed: the two oldest, gone from the table')
  const { rows: left } = await sql<{ id: string }>`SELECT id FROM ${JOBS} WHERE name = ${PURCHASE_QUEUE} ORDER BY id`.execute(db)
  t.same(left.map((row) => row.id), [first[2]?.id, later[0]?.id, later[1]?.id])
})
