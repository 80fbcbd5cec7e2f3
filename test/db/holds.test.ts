import t from 'tap'
import { sql } from 'kysely'
import { confirmHold, expireDueHolds, type ConfirmResult } from '../../db/holds.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'
import { mapConcurrent } from '../fixtures/http.ts'

// A hold's two ends meeting head on, at the statements themselves: confirmations fired around
// the instant every hold ends, while the sweep expires in a tight loop. Each hold ends once, by
// one of them; never an error (a CHECK broken by a clock read twice was a 500), never both.

t.test('confirmations and the sweep at the same instant: each hold confirmed or expired, once, seats back for the expired only', async (t) => {
  const HOLDS = 200
  const { db } = await createTestDatabase(t)
  const eventId = await createEvent(db, HOLDS, 'Head on', { hold_seconds: 60 })
  await sql`
    WITH taken AS (UPDATE events SET available_quota = 0 WHERE id = ${eventId})
    INSERT INTO bookings (id, event_id, user_id, quantity, status, decided_at, hold_expires_at)
    SELECT gen_random_uuid(), ${eventId}, gen_random_uuid(), 1, 'HELD', clock_timestamp(), clock_timestamp() + interval '1 hour'
    FROM generate_series(1, ${HOLDS})`.execute(db)
  // Then every hold is made to end at the same instant, 1.5 s from now on the database's clock.
  const { rows } = await sql<{ id: string, end: Date, now: Date }>`
    WITH clock AS (SELECT clock_timestamp() AS now)
    UPDATE bookings SET hold_expires_at = date_trunc('milliseconds', clock.now) + interval '1500 milliseconds'
    FROM clock WHERE event_id = ${eventId} RETURNING id, hold_expires_at AS end, clock.now AS now`.execute(db)
  const first = rows[0] as { end: Date, now: Date }
  const end = first.end
  const offset = first.now.getTime() - Date.now()
  let sweeping = true
  let swept = 0
  const sweep = (async () => {
    while (sweeping) swept += await expireDueHolds(db)
  })()
  t.ok(new Set(rows.map((r) => r.end.getTime())).size === 1, 'one end for all')
  // Every connection has its statement prepared before the moment comes (the first use costs a
  // parse), then the confirmations are sent each at its own time, spread over 100 ms around the end.
  await mapConcurrent(Array.from({ length: 10 }), 10, async () => await confirmHold(db, '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', null))
  const startAt = end.getTime() - offset - 50
  const answers = await Promise.all(rows.map(async ({ id }, i) => {
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt + (i * 100) / rows.length - Date.now())))
    return await confirmHold(db, id, `pay-${i}`)
  }))
  while ((await db.selectFrom('bookings').select('id').where('event_id', '=', eventId).where('status', '=', 'HELD').limit(1).execute()).length > 0) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  sweeping = false
  await sweep

  const outcomes = new Map<ConfirmResult['outcome'], number>()
  for (const answer of answers) outcomes.set(answer.outcome, (outcomes.get(answer.outcome) ?? 0) + 1)
  t.same([...outcomes.keys()].filter((o) => o !== 'confirmed' && o !== 'expired'), [], `only confirmed or expired: ${JSON.stringify([...outcomes])}`)
  const { rows: [books] } = await sql<{ sold: string, expired: string, late: string, available: number }>`
    SELECT count(*) FILTER (WHERE b.status = 'SUCCESS') AS sold, count(*) FILTER (WHERE b.status = 'EXPIRED') AS expired,
      count(*) FILTER (WHERE b.status = 'SUCCESS' AND NOT (b.confirmed_at < b.hold_expires_at)) AS late,
      (SELECT available_quota FROM events WHERE id = ${eventId}) AS available
    FROM bookings b WHERE b.event_id = ${eventId}`.execute(db)
  t.equal(Number(books?.sold), outcomes.get('confirmed') ?? 0, 'each 200 is a sold booking')
  t.equal(Number(books?.expired), outcomes.get('expired') ?? 0, 'each 409 is an expired booking')
  t.equal(Number(books?.sold) + Number(books?.expired), HOLDS, 'every hold ended')
  t.equal(Number(books?.late), 0, 'no confirmation at or after the end')
  t.equal(books?.available, Number(books?.expired), 'seats back for the expired ones, once each')
  t.equal(swept, Number(books?.expired), 'the sweep counted what it expired')
  t.comment(`${outcomes.get('confirmed') ?? 0} confirmed, ${outcomes.get('expired') ?? 0} expired`)
})
