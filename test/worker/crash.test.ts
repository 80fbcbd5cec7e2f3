import t from 'tap'
import { sql } from 'kysely'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { jobRows } from '../fixtures/jobs.ts'
import { startService } from '../fixtures/service.ts'

for (const mode of ['batched', 'serial'] as const) {
t.test(`a ${mode} worker killed mid-transaction leaves nothing half-applied, and the purchase is decided exactly once`, async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const { base } = await startTestApp(t, database, { worker: false })
  const eventId = await createEvent(db, 5)
  const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity: 2 } })
  t.equal(accepted.status, 202)
  const bookingId: string = accepted.body.booking_id

  // Hold the booking's row lock. The worker claims the job, locks the event, reads the booking,
  // takes the seats (UPDATE events) and then waits to write the booking's status: killed there,
  // it has already changed the quota inside its transaction.
  const blocker = await db.startTransaction().execute()
  await sql`SELECT id FROM bookings WHERE id = ${bookingId} FOR UPDATE`.execute(blocker)
  const worker = await startService(t, 'worker', { DATABASE_URL: database.url, WORKER_MODE: mode })
  await waitFor(async () => {
    const waiting = await sql<{ query: string }>`SELECT query FROM pg_stat_activity
      WHERE application_name = 'boxoffice-worker' AND wait_event_type = 'Lock'`.execute(db)
    return waiting.rows.some((row) => /update "?bookings"?/i.test(row.query)) ? true : undefined
  }, { what: 'the worker to block while writing the booking, after taking the seats' })

  worker.child.kill('SIGKILL')
  const { signal } = await worker.exited
  t.equal(signal, 'SIGKILL')
  await blocker.rollback().execute()
  // PostgreSQL notices the dead connection and rolls its transaction back: the claim included.
  const job = await waitFor(async () => {
    const [row] = await jobRows(db, { id: bookingId })
    return row?.state === 'created' ? row : undefined
  }, { what: 'the claim to be rolled back' })
  t.equal(job.state, 'created', 'the job is claimable again at once (no expiry wait)')
  const untouched = await db.selectFrom('bookings').select('status').where('id', '=', bookingId).executeTakeFirstOrThrow()
  t.equal(untouched.status, 'PENDING', 'the booking was not half-decided')
  const event = await db.selectFrom('events').select(['available_quota', 'version']).where('id', '=', eventId).executeTakeFirstOrThrow()
  t.same(event, { available_quota: 5, version: 0 }, 'no seat was taken by the dead transaction')

  await startService(t, 'worker', { DATABASE_URL: database.url, WORKER_MODE: mode })
  await waitFor(async () => {
    const row = await db.selectFrom('bookings').select('status').where('id', '=', bookingId).executeTakeFirstOrThrow()
    return row.status === 'PENDING' ? undefined : row
  }, { what: 'the restarted worker to decide the purchase' })
  const decided = await db.selectFrom('bookings').selectAll().where('id', '=', bookingId).executeTakeFirstOrThrow()
  t.match(decided, { status: 'SUCCESS', reason: null })
  const after = await db.selectFrom('events').select(['available_quota', 'version']).where('id', '=', eventId).executeTakeFirstOrThrow()
  t.same(after, { available_quota: 3, version: 1 }, 'the two seats were taken exactly once')
  // Batched: claimed by deletion, the job went with the decision's commit; serial: completed by pg-boss.
  const settledJob = await jobRows(db, { id: bookingId })
  t.same(settledJob.map((row) => row.state), mode === 'batched' ? [] : ['completed'], 'its job is settled: deleted (batched) or completed (serial)')
})
}
