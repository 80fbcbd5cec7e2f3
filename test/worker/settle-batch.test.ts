import t from 'tap'
import { sql } from 'kysely'
import { decideJobs, type DecisionContext, type JobsDecided, type LockedEvent } from '../../purchase/rules.ts'
import { buyerKey } from '../../purchase/vocabulary.ts'
import { settlePurchaseBatch } from '../../worker/settle-batch.ts'
import { startTestApp, startTestWorker } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { jobStateCounts } from '../fixtures/jobs.ts'
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

t.test('decideJobs, the batch rules without I/O', async (t) => {
  const event = '00000000-0000-4000-8000-00000000000e'
  const user = '00000000-0000-4000-8000-00000000000a'
  const now = new Date('2026-11-24T12:00:00Z')
  const open = (available: number, extra: Partial<LockedEvent> = {}): Map<string, LockedEvent> =>
    new Map([[event, { available_quota: available, max_per_user: null, sales_close_at: null, hold_seconds: null, ...extra }]])
  const context = (extra: Partial<DecisionContext> = {}): DecisionContext => ({ now, bookings: new Map(), buyerSeats: new Map(), ...extra })
  const p = (id: string, quantity: number, data: Record<string, unknown> = {}) => ({ id, data: { event_id: event, user_id: user, quantity, ...data } })
  // Ids sort like the UUIDv7s they stand for: by the two characters at the end.
  const u = (n: string): string => `00000000-0000-7000-8000-0000000000${n}`
  const outcomes = (decided: JobsDecided) => decided.decisions.map((d) => [d.id, d.decision.status === 'FAILED' ? d.decision.reason : 'SUCCESS'])

  const decided = decideJobs([p(u('03'), 3, { arrival: 3 }), p(u('01'), 2, { arrival: 1 }), p(u('02'), 2, { arrival: 2 }), p(u('04'), 1, { arrival: 4 }), p(u('05'), 1, { arrival: 5 })], open(5), context())
  t.same(outcomes(decided), [[u('01'), 'SUCCESS'], [u('02'), 'SUCCESS'], [u('03'), 'insufficient_quota'], [u('04'), 'SUCCESS'], [u('05'), 'sold_out']],
    'in id (arrival) order, whatever order they were claimed in; quantity 3 does not fit 1 seat, a later 1 does')
  t.same(decided.changes, [{ eventId: event, seats: -5, cancelledSeats: 0, decidedThrough: 5 }])

  const bad = decideJobs([{ id: u('01'), data: { event_id: event } }, p(u('02'), 1, { event_id: '00000000-0000-4000-8000-0000000000ff' })], open(5), context())
  t.same(outcomes(bad), [[u('01'), 'invalid_request'], [u('02'), 'invalid_request']])
  t.same(bad.changes, [], 'no seat moves for invalid purchases')

  const capped = decideJobs([p(u('01'), 2), p(u('02'), 2), p(u('03'), 1)], open(10, { max_per_user: 4 }), context({ buyerSeats: new Map([[buyerKey(event, user), 1]]) }))
  t.same(outcomes(capped), [[u('01'), 'SUCCESS'], [u('02'), 'limit_exceeded'], [u('03'), 'SUCCESS']], 'a cap counts seats held before the batch and in it')

  const closed = decideJobs([p(u('01'), 1)], open(10, { sales_close_at: new Date(now.getTime() - 1) }), context())
  t.same(outcomes(closed), [[u('01'), 'sale_closed']], 'a sale closed at decision time')
  const expired = decideJobs([p(u('01'), 1, { expires_at: new Date(now.getTime()).toISOString() }), p(u('02'), 1, { expires_at: new Date(now.getTime() + 1).toISOString() })], open(10), context())
  t.same(outcomes(expired), [[u('01'), 'expired'], [u('02'), 'SUCCESS']], 'a deadline reached at decision time')

  const skipped = decideJobs([p(u('01'), 1), p(u('02'), 1)], open(1), context({ bookings: new Map([[u('01'), { status: 'FAILED', quantity: 1, user_id: user, event_id: event }]]) }))
  t.same(outcomes(skipped), [[u('02'), 'SUCCESS']], 'a purchase decided while queued (expired) is skipped, and takes no seat')
  t.equal(skipped.outcomes.get(u('01')), 'skipped')

  const cancel = (id: string, target: string) => ({ id, data: { cancel_booking_id: target, event_id: event } })
  const sold = { status: 'SUCCESS', quantity: 2, user_id: user, event_id: event } as const
  const returned = decideJobs([p(u('01'), 2), cancel(u('02'), u('b0')), p(u('03'), 2), p(u('04'), 1)], open(1), context({ bookings: new Map([[u('b0'), sold]]) }))
  t.same(outcomes(returned), [[u('01'), 'insufficient_quota'], [u('03'), 'SUCCESS'], [u('04'), 'SUCCESS']], 'seats given back serve the purchases after the cancellation only')
  t.same(returned.cancelled, [u('b0')])
  t.same(returned.changes, [{ eventId: event, seats: -1, cancelledSeats: 2, decidedThrough: 0 }])

  const sameBatch = decideJobs([p(u('01'), 1), cancel(u('02'), u('01')), p(u('03'), 1)], open(1), context({ bookings: new Map([[u('01'), { ...sold, status: 'PENDING', quantity: 1 }]]) }))
  t.same(outcomes(sameBatch), [[u('01'), 'SUCCESS'], [u('03'), 'SUCCESS']], 'a purchase cancelled in the batch that decided it frees its seat for the next')
  t.same(sameBatch.cancelled, [u('01')])
  const failedTarget = decideJobs([cancel(u('02'), u('b0'))], open(0), context({ bookings: new Map([[u('b0'), { ...sold, status: 'FAILED' }]]) }))
  t.same(failedTarget.cancelled, [], 'a failed booking has nothing to cancel')
  t.equal(failedTarget.outcomes.get(u('02')), 'skipped')
})

t.test('one batch that mixes events decides each event against its own seats, in arrival order', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const [a, b, c] = [await createEvent(database.db, 2), await createEvent(database.db, 3), await createEvent(database.db, 1)]
  const order = [a, b, c, a, b, c, a, b, a, b] as string[]
  const ids = await enqueue(base, order.map((eventId) => ({ eventId })))
  const claimed = await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100)
  t.same(claimed, { claimed: 10, decided: 10, setAside: 0 }, 'all ten in one transaction')
  t.same(await outcomesById(database, ids), [
    'SUCCESS', 'SUCCESS', 'SUCCESS', // a1 b1 c1
    'SUCCESS', 'SUCCESS', 'FAILED sold_out', // a2 b2 c2
    'FAILED sold_out', 'SUCCESS', 'FAILED sold_out', 'FAILED sold_out' // a3 b3 a4 b4
  ])
  t.same([await available(database, a), await available(database, b), await available(database, c)], [0, 0, 0])
  const decided = await database.db.selectFrom('bookings').select('decided_at').distinct().execute()
  t.equal(decided.length, 1, 'the batch shares one decision time (ties broken by id)')
  t.same(await jobStateCounts(database.db), {}, 'every job claimed by deletion, committed with the decisions')
})

t.test('a batch that crosses the sell-out: earlier arrivals win, later ones fail; quantity > 1 that does not fit fails alone', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 6)
  const quantities = [2, 3, 2, 1, 4, 1, 1]
  const ids = await enqueue(base, quantities.map((quantity) => ({ eventId, quantity })))
  t.same(await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), { claimed: 7, decided: 7, setAside: 0 })
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
  const decidedAt = new Date('2026-01-01T00:00:00Z')
  await sql`UPDATE bookings SET status = 'SUCCESS', decided_at = ${decidedAt} WHERE id = ${ids[1]}`.execute(database.db)
  await sql`UPDATE events SET available_quota = 4 WHERE id = ${eventId}`.execute(database.db)
  await t.rejects(settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), /only 2 of 3 claimed purchases were pending/)
  t.equal(await available(database, eventId), 4, 'the failed batch changed nothing')
  startTestWorker(t, database, { batchSize: 100 })
  await waitFor(async () => {
    // Settled one at a time after the failed batch: pg-boss completes each.
    return (await jobStateCounts(database.db)).completed === 3 ? true : undefined
  }, { what: 'all three jobs to be completed' })
  t.same(await outcomesById(database, ids), ['SUCCESS', 'SUCCESS', 'SUCCESS'])
  t.equal(await available(database, eventId), 2, 'the already-decided purchase took no second seat')
  const kept = await database.db.selectFrom('bookings').select('decided_at').where('id', '=', ids[1] as string).executeTakeFirstOrThrow()
  t.same(kept.decided_at, decidedAt, 'its decision was not rewritten')
})

t.test('a purchase expired while queued is skipped by the batch that claims it', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 5)
  const res = await Promise.all([1, 2].map(async () => await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), max_wait_seconds: 60 } })))
  // As the deadline sweep leaves it (under the event's lock, its job still queued).
  await sql`UPDATE bookings SET status = 'FAILED', reason = 'expired', decided_at = now() WHERE id = ${res[0]?.body.booking_id}`.execute(database.db)
  t.same(await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), { claimed: 2, decided: 1, setAside: 0 })
  t.same(await outcomesById(database, res.map((r) => r.body.booking_id as string)), ['FAILED expired', 'SUCCESS'])
  t.equal(await available(database, eventId), 4)
})
