import t from 'tap'
import { sql } from 'kysely'
import { JOB_STATE, JOBS } from '../../db/pgboss-tables.ts'
import { PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { timeOrderedId } from '../../lib/ids.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

async function invariants (base: string, query = ''): Promise<any> {
  const res = await request(base, 'GET', `/admin/invariants${query}`, { headers: admin })
  if (res.status !== 200) throw new Error(`GET /admin/invariants${query}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

t.test('GET /admin/invariants', async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const { base } = await startTestApp(t, database, { worker: true })
  const plain = await createEvent(db, 30, 'Plain')
  const capped = await createEvent(db, 30, 'Capped', { max_per_user: 2 })

  // A small sale on both: more asked than there are seats, some users over the cap, one cancellation.
  const users = Array.from({ length: 10 }, newUserId)
  const answers = await mapConcurrent(Array.from({ length: 80 }, (_v, i) => i), 20, async (i) =>
    await request(base, 'POST', '/buy', { json: { event_id: i % 2 === 0 ? plain : capped, user_id: users[i % users.length], quantity: 1 + (i % 2) } }))
  t.ok(answers.every((a) => a.status === 202 || a.status === 200), 'every purchase stored')
  const ids = answers.map((a) => a.body.booking_id as string)
  await waitFor(async () => {
    const [row] = (await sql<{ n: string }>`SELECT count(*) AS n FROM bookings WHERE id = ANY(${ids}::uuid[]) AND status = 'PENDING'`.execute(db)).rows
    return row?.n === '0' ? true : undefined
  }, { what: 'every purchase decided' })
  const won = (await db.selectFrom('bookings').select('id').where('event_id', '=', plain).where('status', '=', 'SUCCESS').limit(1).executeTakeFirstOrThrow()).id
  t.equal((await request(base, 'DELETE', `/bookings/${won}`, { headers: admin })).status, 202, 'a cancellation queued')
  await waitFor(async () => (await db.selectFrom('bookings').select('status').where('id', '=', won).executeTakeFirstOrThrow()).status === 'CANCELLED' ? true : undefined, { what: 'the cancellation' })

  t.test('after a sale with caps and a cancellation, every event is ok, and the numbers are the database\'s', async (t) => {
    const report = await invariants(base)
    t.equal(report.ok, true, JSON.stringify(report.events.flatMap((e: any) => e.problems)))
    t.ok(!Number.isNaN(Date.parse(report.checked_at)), 'checked_at is a time')
    for (const id of [plain, capped]) {
      const event = report.events.find((e: any) => e.event_id === id)
      const [row] = (await sql<{ sold: string, available: number, cancelled: number }>`
        SELECT (SELECT coalesce(sum(quantity), 0) FROM bookings WHERE event_id = ${id} AND status = 'SUCCESS') AS sold,
          available_quota AS available, cancelled_seats AS cancelled FROM events WHERE id = ${id}`.execute(db)).rows
      t.match(event, {
        ok: true, problems: [], total_quota: 30, sold_seats: Number(row?.sold), available_quota: row?.available, cancelled_seats: row?.cancelled,
        held_seats: 0, overdue_holds: 0, pending_purchases: 0, users_over_cap: 0, stranded_purchases: 0
      })
    }
    t.equal(report.events.find((e: any) => e.event_id === plain).cancelled_seats, 1, 'the cancellation gave its seat back')
    t.equal(report.events.find((e: any) => e.event_id === capped).max_per_user, 2)
  })

  t.test('?event_id= checks one event; an unknown one is a 404, a malformed one a 400', async (t) => {
    const report = await invariants(base, `?event_id=${capped}`)
    t.same(report.events.map((e: any) => e.event_id), [capped])
    t.equal((await request(base, 'GET', `/admin/invariants?event_id=${newUserId()}`, { headers: admin })).status, 404)
    for (const query of ['?event_id=nope', '?limit=0', '?limit=1001', '?other=1']) {
      const res = await request(base, 'GET', `/admin/invariants${query}`, { headers: admin })
      t.equal(res.status, 400, query)
      t.type(res.body.message, 'string')
    }
    t.equal((await invariants(base, '?limit=1')).events.length, 1, 'limit')
  })

  t.test('admin only: no token or a wrong one is a 401', async (t) => {
    t.equal((await request(base, 'GET', '/admin/invariants')).status, 401)
    t.equal((await request(base, 'GET', '/admin/invariants', { headers: { authorization: 'Bearer not-the-token-at-all' } })).status, 401)
  })

  t.test('flags a seat count that does not add up, on that event only', async (t) => {
    await sql`UPDATE events SET available_quota = available_quota - 1 WHERE id = ${plain}`.execute(db)
    t.teardown(async () => { await sql`UPDATE events SET available_quota = available_quota + 1 WHERE id = ${plain}`.execute(db) })
    const report = await invariants(base)
    t.equal(report.ok, false)
    const event = report.events.find((e: any) => e.event_id === plain)
    t.equal(event.ok, false)
    t.match(event.problems, [/^total 30 != available \d+ \+ held 0 \+ sold \d+$/])
    t.equal(report.events.find((e: any) => e.event_id === capped).ok, true, 'the other event is still ok')
  })

  t.test('flags a user over the cap', async (t) => {
    const user = newUserId()
    const id = timeOrderedId()
    await sql`UPDATE events SET available_quota = available_quota - 3 WHERE id = ${capped}`.execute(db)
    await sql`INSERT INTO bookings (id, event_id, user_id, quantity, status, decided_at) VALUES (${id}, ${capped}, ${user}, 3, 'SUCCESS', now())`.execute(db)
    t.teardown(async () => {
      await sql`DELETE FROM bookings WHERE id = ${id}`.execute(db)
      await sql`UPDATE events SET available_quota = available_quota + 3 WHERE id = ${capped}`.execute(db)
    })
    const event = (await invariants(base, `?event_id=${capped}`)).events[0]
    t.match(event, { ok: false, users_over_cap: 1, problems: ['1 users hold more than 2 seats'] })
  })
})

t.test('flags a pending purchase that has no job to decide it, not one that has', async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  // No worker: purchases stay pending, with their jobs queued.
  const { base } = await startTestApp(t, database, { worker: false })
  const event = await createEvent(db, 5, 'Queue check')
  const queued = await request(base, 'POST', '/buy', { json: { event_id: event, user_id: newUserId() } })
  t.equal(queued.status, 202)
  t.match((await invariants(base)).events[0], { ok: true, pending_purchases: 1, pending_seats: 1, stranded_purchases: 0 }, 'pending with its job: fine')

  const orphan = timeOrderedId()
  await sql`INSERT INTO bookings (id, event_id, user_id, quantity, status) VALUES (${orphan}, ${event}, ${newUserId()}, 1, 'PENDING')`.execute(db)
  t.match((await invariants(base)).events[0], { ok: false, pending_purchases: 2, stranded_purchases: 1, problems: ['1 pending purchases have no job to decide them'] })

  // A job that ended (here: completed by hand) leaves its purchase stranded too.
  await sql`DELETE FROM bookings WHERE id = ${orphan}`.execute(db)
  await sql`UPDATE ${JOBS} SET state = ${sql.lit(JOB_STATE.completed)}, completed_on = now() WHERE name = ${PURCHASE_QUEUE} AND id = ${queued.body.booking_id as string}`.execute(db)
  t.match((await invariants(base)).events[0], { ok: false, pending_purchases: 1, stranded_purchases: 1 })
})
