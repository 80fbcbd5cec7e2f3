// Processes killed with SIGKILL during a sale: the worker many times over, the API with requests
// in flight. Real processes (`npm run worker`, `npm run server` entry points), a real database.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { sql } from 'kysely'
import type { Db } from '../../db/client.ts'
import { JOBS } from '../../db/pgboss-tables.ts'
import { PURCHASE_DEAD_LETTER_QUEUE, PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { jobRows, jobStateCounts } from '../fixtures/jobs.ts'
import { startService, workerInTransaction } from '../fixtures/service.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

/** The event's bookings by status, and its seats. */
async function books (db: Db, eventId: string): Promise<{ statuses: Record<string, number>, sold: number, available: number, total: number }> {
  const rows = await db.selectFrom('bookings').select(['status', (eb) => eb.fn.countAll<string>().as('n'), (eb) => eb.fn.sum<string>('quantity').as('seats')])
    .where('event_id', '=', eventId).groupBy('status').execute()
  const event = await db.selectFrom('events').select(['available_quota', 'total_quota']).where('id', '=', eventId).executeTakeFirstOrThrow()
  return {
    statuses: Object.fromEntries(rows.map((row) => [row.status, Number(row.n)])),
    sold: Number(rows.find((row) => row.status === 'SUCCESS')?.seats ?? 0),
    available: event.available_quota,
    total: event.total_quota
  }
}


t.test('the worker killed with SIGKILL 10 times during a sale, restarted each time: every purchase decided exactly once, no seat sold twice', { timeout: 120_000 }, async (t) => {
  const KILLS = 10
  const database = await createTestDatabase(t)
  const { db } = database
  const api = await startService(t, 'api', { DATABASE_URL: database.url, ADMIN_TOKEN })
  // More asked than there is (quantities 1-2 against 2,000 seats), by few enough users that the
  // cap of 3 bites: every kind of decision is in the mix.
  const eventId = await createEvent(db, 2000, 'Kill sale', { max_per_user: 3 })
  const users = Array.from({ length: 600 }, newUserId)

  // The crowd arrives over the whole run (about 300 a second), so each new worker finds a backlog.
  let killing = true
  const answers: Array<{ status: number, id?: string }> = []
  const crowd = (async () => {
    let i = 0
    await Promise.all(Array.from({ length: 6 }, async () => {
      while (killing) {
        const n = i++
        const res = await request(api.base, 'POST', '/buy', { json: { event_id: eventId, user_id: users[n % users.length], quantity: 1 + (n % 3 === 0 ? 1 : 0) } })
        answers.push({ status: res.status, id: res.body.booking_id })
        await sleep(20)
      }
    }))
  })()

  let midTransaction = 0
  for (let kill = 0; kill < KILLS; kill++) {
    const worker = await startService(t, 'worker', { DATABASE_URL: database.url })
    // A random moment, then the next one at which the worker is inside a transaction.
    await sleep(Math.floor(Math.random() * 300))
    const open = await waitFor(async () => await workerInTransaction(db) ? true : undefined, { timeoutMs: 3000, intervalMs: 2, what: 'a worker transaction' }).catch(() => false)
    worker.child.kill('SIGKILL')
    const { signal } = await worker.exited
    t.equal(signal, 'SIGKILL', `kill ${kill + 1}`)
    if (open) midTransaction++
  }
  killing = false
  await crowd
  t.ok(midTransaction >= KILLS / 2, `${midTransaction} of ${KILLS} kills hit an open transaction`)

  const accepted = answers.filter((a) => a.status === 202 || a.status === 200)
  t.equal(accepted.length, answers.length, `every purchase stored (${answers.length}: ${[...new Set(answers.map((a) => a.status))].join(', ')})`)
  // A last worker, left alone, finishes what the killed ones left.
  await startService(t, 'worker', { DATABASE_URL: database.url })
  await waitFor(async () => (await books(db, eventId)).statuses.PENDING === undefined ? true : undefined, { timeoutMs: 60_000, what: 'every purchase decided' })

  const ids = accepted.map((a) => a.id as string)
  const stored = await db.selectFrom('bookings').select(['id', 'status']).where('id', 'in', ids).execute()
  t.equal(stored.length, ids.length, 'every accepted purchase is in the database')
  t.ok(stored.every((row) => row.status !== 'PENDING'), 'each has a final status')
  const { sold, available, total, statuses } = await books(db, eventId)
  t.equal(sold + available, total, `seats add up: ${sold} sold + ${available} left = ${total}`)
  t.ok(sold <= total, 'nothing oversold')
  // Each queued purchase's job settled: deleted with its decision by a batch, or completed by pg-boss
  // when a failed batch was settled one job at a time; none left claimed, queued, failed or dead-lettered.
  const queued = accepted.filter((a) => a.status === 202).length
  t.ok(queued > 0, `${queued} purchases queued`)
  const { completed = 0, ...live } = await jobStateCounts(db, { eventId })
  t.same(live, {}, `no job left live (${completed} completed one at a time, the rest deleted with their decisions)`)
  t.equal((await jobRows(db, { queue: PURCHASE_DEAD_LETTER_QUEUE })).length, 0, 'nothing dead-lettered')
  const check = await request(api.base, 'GET', `/admin/invariants?event_id=${eventId}`, { headers: admin })
  t.match(check.body, { ok: true, events: [{ users_over_cap: 0, stranded_purchases: 0 }] }, 'the operators\' check agrees')
  t.comment(`${KILLS} SIGKILLs (${midTransaction} inside a transaction), ${answers.length} purchases, ${queued} queued, ${JSON.stringify(statuses)}, ${sold} of ${total} seats sold`)
})

t.test('the API killed with SIGKILL with requests in flight: every answered purchase is stored, none half-stored, and a resend with the same key settles the rest', { timeout: 120_000 }, async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const eventId = await createEvent(db, 400, 'API kill sale')
  let api = await startService(t, 'api', { DATABASE_URL: database.url, ADMIN_TOKEN })

  // 1,500 purchases, each under its own Idempotency-Key, 40 at a time; the API dies after 300 answers.
  const purchases = Array.from({ length: 1500 }, (_v, i) => ({ key: `order-${i}`, body: { event_id: eventId, user_id: newUserId() } }))
  let answered = 0
  let killed = false
  const outcomes = await mapConcurrent(purchases, 40, async ({ key, body }) => {
    try {
      const res = await request(api.base, 'POST', '/buy', { json: body, headers: { 'idempotency-key': key } })
      if (++answered === 300 && !killed) {
        killed = true
        api.child.kill('SIGKILL')
      }
      return { status: res.status, id: res.body.booking_id as string | undefined }
    } catch {
      return { status: 0, id: undefined } // no answer: the connection died with the process
    }
  })
  const { signal } = await api.exited
  t.equal(signal, 'SIGKILL')
  const got = outcomes.filter((o) => o.status === 202 || o.status === 200)
  const unanswered = outcomes.map((o, i) => ({ ...o, purchase: purchases[i] as typeof purchases[number] })).filter((o) => o.status === 0)
  t.ok(got.length >= 300 && unanswered.length > 0, `${got.length} answered before the kill, ${unanswered.length} without an answer`)
  t.ok(outcomes.every((o) => o.status === 0 || o.status === 202 || o.status === 200), 'no other answer than stored or none')

  // What got an answer is in the database, as answered.
  const rows = await db.selectFrom('bookings').select(['id', 'status', 'reason']).where('id', 'in', got.map((o) => o.id as string)).execute()
  const byId = new Map(rows.map((row) => [row.id, row]))
  t.ok(got.every((o) => byId.get(o.id as string)?.status === (o.status === 202 ? 'PENDING' : 'FAILED')), 'every 202 stored pending, every 200 stored failed (sold out)')
  // Nothing half-stored: every pending booking has its job, and every job its booking.
  const halves = await sql<{ without_job: string, without_booking: string }>`SELECT
    (SELECT count(*) FROM bookings b WHERE b.event_id = ${eventId} AND b.status = 'PENDING'
       AND NOT EXISTS (SELECT 1 FROM ${JOBS} j WHERE j.name = ${PURCHASE_QUEUE} AND j.id = b.id)) AS without_job,
    (SELECT count(*) FROM ${JOBS} j WHERE j.name = ${PURCHASE_QUEUE}
       AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = j.id)) AS without_booking`.execute(db)
  t.same(halves.rows[0], { without_job: '0', without_booking: '0' }, 'no booking without its job, no job without its booking')

  // A client that got no answer sends the same request again, under the same key, to the new API.
  api = await startService(t, 'api', { DATABASE_URL: database.url, ADMIN_TOKEN })
  let replayed = 0
  const resent = await mapConcurrent(unanswered, 20, async ({ purchase }) => {
    const res = await request(api.base, 'POST', '/buy', { json: purchase.body, headers: { 'idempotency-key': purchase.key } })
    if (res.headers.get('idempotent-replayed') === 'true') replayed++
    return res.status
  })
  t.ok(resent.every((status) => status === 202 || status === 200), 'every resend is stored (or was)')
  const perKey = await sql<{ keys: string, bookings: string }>`SELECT count(DISTINCT idempotency_key) AS keys, count(*) AS bookings
    FROM bookings WHERE event_id = ${eventId}`.execute(db)
  t.same(perKey.rows[0], { keys: '1500', bookings: '1500' }, 'one booking per purchase: stored once whether its first answer was lost or not')

  await startService(t, 'worker', { DATABASE_URL: database.url })
  await waitFor(async () => (await books(db, eventId)).statuses.PENDING === undefined ? true : undefined, { timeoutMs: 60_000, what: 'every purchase decided' })
  const { sold, available, total } = await books(db, eventId)
  t.equal(sold + available, total, 'seats add up')
  t.equal(sold, total, 'the seats sold out, each once')
  const check = await request(api.base, 'GET', `/admin/invariants?event_id=${eventId}`, { headers: admin })
  t.equal(check.body.ok, true, 'the operators\' check agrees')
  t.comment(`API killed after ${got.length} answers; ${unanswered.length} requests lost their answer, ${replayed} of them had been stored before the kill (their resend was a replay)`)
})
