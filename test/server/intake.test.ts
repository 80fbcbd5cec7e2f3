import t from 'tap'
import { sql } from 'kysely'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { jobRows } from '../fixtures/jobs.ts'
import { startService } from '../fixtures/service.ts'

async function jobIds ({ db }: TestDatabase): Promise<Set<string>> {
  return new Set((await jobRows(db)).map((job) => job.id))
}

const buy = async (base: string, eventId: string, userId = newUserId(), quantity = 1) =>
  await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId, quantity } })

t.test('concurrent purchases share one transaction, each answered after its commit', async (t) => {
  const database = await createTestDatabase(t)
  // A long window, so that 20 requests sent together are certainly gathered.
  const { base } = await startTestApp(t, database, { intakeBatchWaitMs: 200 })
  const eventId = await createEvent(database.db, 100)
  const responses = await Promise.all(Array.from({ length: 20 }, async () => await buy(base, eventId)))
  t.ok(responses.every((r) => r.status === 202), 'all accepted')
  const rows = await database.db.selectFrom('bookings').select(['id', 'created_at']).execute()
  // created_at is the inserting transaction's start time: one value per transaction.
  const transactions = new Set(rows.map((row) => row.created_at.getTime())).size
  t.ok(transactions < 20, `20 purchases were stored by ${transactions} transaction(s), not 20`)
  const jobs = await jobIds(database)
  t.ok(responses.every((r) => jobs.has(r.body.booking_id)), 'every 202 has its job stored')
})

t.test('a batch whose commit fails answers all of its requests 503, stores none of them, and no other batch suffers', async (t) => {
  const database = await createTestDatabase(t)
  const poisoned = newUserId()
  // Raised at COMMIT (a deferred constraint trigger), after both inserts succeeded: the worst moment.
  await sql`CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.user_id = ${sql.lit(poisoned)}::uuid THEN RAISE EXCEPTION 'disk full at commit'; END IF; RETURN NULL; END $$`.execute(database.db)
  await sql`CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON bookings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()`.execute(database.db)
  // Batches of at most 3, gathered over a long window: 9 requests sent together make 3 batches.
  const { base } = await startTestApp(t, database, { intakeBatchMax: 3, intakeBatchWaitMs: 200 })
  const eventId = await createEvent(database.db, 100)
  const users = [poisoned, ...Array.from({ length: 8 }, newUserId)]
  const responses = await Promise.all(users.map(async (userId) => await buy(base, eventId, userId)))

  const failed = responses.filter((r) => r.status === 503)
  const accepted = responses.filter((r) => r.status === 202)
  t.equal(failed.length, 3, 'exactly one batch (the poisoned purchase and the two sharing its transaction) failed')
  t.equal(accepted.length, 6, 'the two other batches were stored')
  t.ok(failed.every((r) => r.body.code === 'PURCHASE_NOT_STORED' && /nothing was recorded/.test(r.body.message)), 'a clear JSON message')
  t.ok(failed.every((r) => Number(r.headers.get('retry-after')) >= 1), 'with Retry-After')
  const bookings = await database.db.selectFrom('bookings').select('id').execute()
  t.equal(bookings.length, 6, 'nothing of the failed batch was stored')
  const jobs = await jobIds(database)
  t.equal(jobs.size, 6)
  t.ok(accepted.every((r) => jobs.has(r.body.booking_id)), 'no request was answered 202 without its job stored')

  const later = await buy(base, eventId)
  t.equal(later.status, 202, 'intake goes on after a failed batch')
})

t.test('an unknown event in a batch fails only that purchase, with 404', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { intakeBatchWaitMs: 200 })
  const eventId = await createEvent(database.db, 100)
  const unknown = '00000000-0000-4000-8000-000000000000'
  const responses = await Promise.all([eventId, unknown, eventId].map(async (id) => await buy(base, id)))
  t.same(responses.map((r) => r.status), [202, 404, 202])
  t.equal(responses[1]?.body.code, 'EVENT_NOT_FOUND')
  t.equal((await database.db.selectFrom('bookings').select('id').execute()).length, 2)
})

t.test('sold-out fast path', async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(db, 2)
  const queued = await Promise.all([buy(base, eventId), buy(base, eventId)])
  t.same(queued.map((r) => r.status), [202, 202])
  await waitFor(async () => {
    const event = await db.selectFrom('events').select('available_quota').where('id', '=', eventId).executeTakeFirstOrThrow()
    return event.available_quota === 0 ? true : undefined
  }, { what: 'the two seats to be sold' })

  t.test('once no seat is left, a purchase is answered at once: 200, failed, sold_out, stored, no job', async (t) => {
    const userId = newUserId()
    const res = await buy(base, eventId, userId)
    t.equal(res.status, 200)
    t.same(res.body, { booking_id: res.body.booking_id, status: 'failed', reason: 'sold_out', message: 'Sold out' })
    t.equal(res.headers.get('location'), `/bookings/${res.body.booking_id}?user_id=${userId}`)
    const booking = await request(base, 'GET', res.headers.get('location') ?? '')
    t.match(booking.body, { status: 'failed', reason: 'sold_out' })
    t.ok(booking.body.decided_at !== null, 'it has a decision time like any decided purchase')
    t.notOk((await jobIds(database)).has(res.body.booking_id), 'no hopeless work was queued')
  })

  t.test('another API process sees the sell-out too, with nothing to tell it', async (t) => {
    const other = await startService(t, 'api', { DATABASE_URL: database.url, ADMIN_TOKEN })
    const res = await buy(other.base, eventId)
    t.equal(res.status, 200)
    t.equal(res.body.reason, 'sold_out')
  })

  t.test('when seats come back (a cancellation), purchases queue again and can win them', async (t) => {
    // What cancellation will do: give a seat back, under the event's lock, in one statement.
    await sql`UPDATE events SET available_quota = available_quota + 1 WHERE id = ${eventId}`.execute(db)
    const res = await buy(base, eventId)
    t.equal(res.status, 202, 'queued, not turned away', { body: res.body })
    const decided = await waitFor(async () => {
      const row = await db.selectFrom('bookings').select(['status', 'reason']).where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
      return row.status === 'PENDING' ? undefined : row
    }, { what: 'the purchase to be decided' })
    t.same(decided, { status: 'SUCCESS', reason: null })
  })
})

t.test('a worker in another process wakes for new purchases by notification, not by polling', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 5)
  // A poll so slow that only the NOTIFY can explain a decision within the wait below.
  const worker = await startService(t, 'worker', { DATABASE_URL: database.url, WORKER_IDLE_POLL_MS: '60000' })
  await waitFor(async () => worker.lines.some((line) => line.includes('purchase worker started')) ? true : undefined, { what: 'the worker to start' })
  // Let its first (empty) look at the queue pass, so it is idle when the purchase arrives.
  await waitFor(async () => {
    const rows = await sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'listen%' AND application_name = 'boxoffice-worker'`.execute(database.db)
    return Number(rows.rows[0]?.n) > 0 ? true : undefined
  }, { what: 'the worker to listen' })
  const res = await buy(base, eventId)
  t.equal(res.status, 202)
  const decided = await waitFor(async () => {
    const row = await database.db.selectFrom('bookings').select('status').where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
    return row.status === 'PENDING' ? undefined : row
  }, { timeoutMs: 30_000, what: 'the notified worker to decide the purchase' })
  t.equal(decided.status, 'SUCCESS')
})

