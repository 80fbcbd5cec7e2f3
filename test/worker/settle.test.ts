import t from 'tap'
import { PURCHASE_DEAD_LETTER_QUEUE } from '../../purchase/queue.ts'
import { decidePurchase } from '../../purchase/rules.ts'
import { ADMIN_TOKEN, startTestApp, startTestWorker } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { enqueuePurchaseJob, jobRows, jobStateCounts, refuseSuccessfulDecisions } from '../fixtures/jobs.ts'

async function waitUntilNonePending ({ db }: TestDatabase, what = 'every purchase to be decided'): Promise<void> {
  await waitFor(async () => {
    const row = await db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'PENDING').executeTakeFirstOrThrow()
    return Number(row.n) === 0 ? true : undefined
  }, { timeoutMs: 60_000, what })
}

async function outcomes ({ db }: TestDatabase, eventId: string) {
  const rows = await db.selectFrom('bookings')
    .select(['status', 'reason'])
    .select((eb) => [eb.fn.countAll<string>().as('n'), eb.fn.sum<string>('quantity').as('seats')])
    .where('event_id', '=', eventId).groupBy(['status', 'reason']).execute()
  const event = await db.selectFrom('events').selectAll().where('id', '=', eventId).executeTakeFirstOrThrow()
  const get = (status: string, reason: string | null) => rows.find((r) => r.status === status && r.reason === reason)
  return { rows, event, get }
}

t.test('decidePurchase takes all the seats asked for or none', async (t) => {
  t.same(decidePurchase(5, 1), { status: 'SUCCESS' })
  t.same(decidePurchase(5, 5), { status: 'SUCCESS' })
  t.same(decidePurchase(4, 5), { status: 'FAILED', reason: 'insufficient_quota' })
  t.same(decidePurchase(0, 1), { status: 'FAILED', reason: 'sold_out' })
})

for (const mode of ['batched', 'serial'] as const) {
t.test(`the race, ${mode} worker: 1,200 concurrent buyers for 100 seats get exactly 100 seats`, async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: { mode } })
  const eventId = await createEvent(database.db, 100)
  const users = Array.from({ length: 1200 }, newUserId)
  // All 1,200 in flight at once: one connection each.
  const responses = await mapConcurrent(users, users.length, async (userId) =>
    await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId } }))
  const queued = responses.filter((r) => r.status === 202)
  const soldOutAtOnce = responses.filter((r) => r.status === 200)
  t.equal(queued.length + soldOutAtOnce.length, 1200, 'every request stored: queued (202) or decided at once (200)')
  t.ok(queued.length >= 100, `at least the seats' worth were queued (${queued.length})`)
  t.ok(soldOutAtOnce.every((r) => r.body.status === 'failed' && r.body.reason === 'sold_out'), 'an answer at once is always sold out')
  t.equal(new Set(responses.map((r) => r.body.booking_id)).size, 1200, 'no booking id twice')
  await waitUntilNonePending(database)

  const { rows, event, get } = await outcomes(database, eventId)
  t.equal(Number(get('SUCCESS', null)?.n), 100, 'exactly 100 successes')
  t.equal(Number(get('FAILED', 'sold_out')?.n), 1100, 'everyone else failed sold_out')
  t.equal(rows.length, 2, 'no other outcome')
  t.equal(event.available_quota, 0)
  t.equal(event.total_quota - event.available_quota, Number(get('SUCCESS', null)?.seats), 'quota used == seats sold')

  // The API agrees with the database for a sample of buyers.
  for (const res of responses.slice(0, 1200).filter((_r, i) => i % 97 === 0)) {
    const booking = await request(base, 'GET', res.headers.get('location') ?? '')
    const row = await database.db.selectFrom('bookings').select(['status', 'reason']).where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
    t.equal(booking.body.status, row.status.toLowerCase())
    t.equal(booking.body.reason, row.reason)
  }
  // Batched: each job deleted with its decision; serial: each completed by pg-boss. None left live.
  t.same(await jobStateCounts(database.db), mode === 'batched' ? {} : { completed: queued.length }, 'every queued purchase\'s job settled with its decision')
})
}

t.test('mixed quantities never oversell and fail whole with a precise reason', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 97)
  const quantities = Array.from({ length: 300 }, (_v, i) => (i * 7) % 10 + 1)
  const responses = await mapConcurrent(quantities, 100, async (quantity) =>
    await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity } }))
  t.ok(responses.every((r) => r.status === 202 || (r.status === 200 && r.body.reason === 'sold_out')), 'queued, or sold out at once')
  await waitUntilNonePending(database)
  const { rows, event, get } = await outcomes(database, eventId)
  const sold = Number(get('SUCCESS', null)?.seats)
  t.equal(event.total_quota - event.available_quota, sold, 'quota used == seats sold')
  t.ok(sold <= 97, `never more than the quota (${sold})`)
  t.ok(rows.every((r) => r.status === 'SUCCESS' || ['sold_out', 'insufficient_quota'].includes(r.reason ?? '')), 'failures say why')
  // Nobody who asked for fewer seats than were left at the end was turned away.
  const turnedAway = await database.db.selectFrom('bookings').select('quantity').where('event_id', '=', eventId).where('status', '=', 'FAILED').execute()
  t.ok(turnedAway.every((b) => b.quantity > event.available_quota), 'a failed purchase always asked for more than was left')
})

t.test('purchases are decided first come, first served', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: false })
  const eventId = await createEvent(database.db, 10)
  const ids: string[] = []
  for (let i = 0; i < 30; i++) {
    ids.push((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })).body.booking_id)
  }
  startTestWorker(t, database)
  await waitUntilNonePending(database)
  const winners = await database.db.selectFrom('bookings').select('id').where('status', '=', 'SUCCESS').execute()
  t.same(winners.map((w) => w.id).sort(), ids.slice(0, 10).sort(), 'the first ten to arrive got the ten seats')
  const order = await database.db.selectFrom('bookings').select('id').orderBy('decided_at').orderBy('id').execute()
  t.same(order.map((o) => o.id), ids, 'decided in arrival order')
})

t.test('a job with a malformed payload is failed as invalid_request without touching seats', async (t) => {
  const database = await createTestDatabase(t)
  const eventId = await createEvent(database.db, 5)
  const id = await enqueuePurchaseJob(database, eventId, { event_id: eventId, user_id: 'not-a-uuid', quantity: 1 })
  startTestWorker(t, database)
  await waitUntilNonePending(database)
  const booking = await database.db.selectFrom('bookings').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  t.match(booking, { status: 'FAILED', reason: 'invalid_request' })
  const event = await database.db.selectFrom('events').select('available_quota').where('id', '=', eventId).executeTakeFirstOrThrow()
  t.equal(event.available_quota, 5)
})

t.test('a decision that keeps failing is retried, then failed with reason "error" and dead-lettered', async (t) => {
  const database = await createTestDatabase(t)
  const eventId = await createEvent(database.db, 5)
  // Sabotage: any attempt to record a decision for this event raises.
  await refuseSuccessfulDecisions(database.db)
  const id = await enqueuePurchaseJob(database, eventId, { event_id: eventId, user_id: crypto.randomUUID(), quantity: 1 }, { retryLimit: 1 })
  const behind = await enqueuePurchaseJob(database, eventId, { event_id: eventId, user_id: crypto.randomUUID(), quantity: 9 })
  startTestWorker(t, database)
  await waitUntilNonePending(database, 'the failing purchase to be given up on')
  const booking = await database.db.selectFrom('bookings').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  t.match(booking, { status: 'FAILED', reason: 'error' })
  const next = await database.db.selectFrom('bookings').selectAll().where('id', '=', behind).executeTakeFirstOrThrow()
  t.match(next, { status: 'FAILED', reason: 'insufficient_quota' }, 'the job behind it was not blocked')
  const event = await database.db.selectFrom('events').select('available_quota').where('id', '=', eventId).executeTakeFirstOrThrow()
  t.equal(event.available_quota, 5, 'no seat was spent by the failed attempts')
  const [job] = await jobRows(database.db, { id })
  t.same(job === undefined ? undefined : { state: job.state, retry_count: job.retry_count }, { state: 'failed', retry_count: 1 })
  t.equal((await jobRows(database.db, { queue: PURCHASE_DEAD_LETTER_QUEUE })).length, 1, 'a copy waits in the dead-letter queue for operators')

  // Operators see it: GET /admin/failed-purchases names the job, its booking and the error.
  const { base } = await startTestApp(t, database, { worker: false })
  const seen = await request(base, 'GET', '/admin/failed-purchases', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(seen.status, 200)
  t.match(seen.body, { dead_lettered: 1, failed: [{ job_id: id, kind: 'purchase', event_id: eventId, booking_id: id, booking_status: 'FAILED', booking_reason: 'error', attempts: 1, error: /disk on fire/ }] })
  t.equal(seen.body.failed.length, 1, 'only the failed one')
  t.equal((await request(base, 'GET', '/admin/failed-purchases')).status, 401, 'admin only')
})
