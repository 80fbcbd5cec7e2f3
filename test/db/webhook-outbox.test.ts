import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import t from 'tap'
import type { Db } from '../../db/client.ts'
import { recordCancellations, recordDecisions } from '../../db/decisions.ts'
import { confirmHold, expireDueHolds } from '../../db/holds.ts'
import { BOOKING_STATUS, FAILURE_REASON } from '../../purchase/vocabulary.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

// The bookings table's triggers (db/migrations/2026-12-06-007-webhooks.ts) write one outbox row
// per status change, whichever statement makes it: here every kind of statement the service runs,
// checked row by row, and what is written when nobody listens (nothing).

async function outbox (db: Db): Promise<Array<{ booking_id: string, type: string, status: string }>> {
  const { rows } = await sql<{ booking_id: string, type: string, status: string }>`
    SELECT booking_id, 'booking.' || lower(status) AS type, status FROM webhook_outbox ORDER BY seq`.execute(db)
  return rows
}

async function clearOutbox (db: Db): Promise<void> {
  await sql`DELETE FROM webhook_outbox`.execute(db)
}

async function insertBookings (db: Db, eventId: string, statuses: string[]): Promise<string[]> {
  const ids = statuses.map(() => randomUUID())
  await sql`
    INSERT INTO bookings (id, event_id, user_id, quantity, status, reason, decided_at)
    SELECT id, ${eventId}, gen_random_uuid(), 1, status, CASE WHEN status = 'FAILED' THEN 'sold_out' END, CASE WHEN status <> 'PENDING' THEN clock_timestamp() END
    FROM unnest(${ids}::uuid[], ${statuses}::text[]) AS s (id, status)`.execute(db)
  return ids
}

async function subscribe (db: Db, types: string[]): Promise<void> {
  await sql`INSERT INTO webhook_endpoints (id, url, event_types, secret) VALUES (${randomUUID()}, 'https://example.com/', ${types}::text[], 'whsec_AAAA')`.execute(db)
}

t.test('nobody listening: no outbox row, whatever changes', async (t) => {
  const { db } = await createTestDatabase(t)
  const eventId = await createEvent(db, 100, 'Quiet')
  const ids = await insertBookings(db, eventId, ['PENDING', 'PENDING', 'FAILED'])
  const sold = ids.slice(0, 2).map((id) => ({ id, decision: { status: BOOKING_STATUS.success } }))
  await db.transaction().execute(async (trx) => await recordDecisions(trx, sold, null))
  await db.transaction().execute(async (trx) => await recordCancellations(trx, ids.slice(0, 1), null))
  t.same(await outbox(db), [])
})

t.test('each status change, one row, by every kind of statement', async (t) => {
  const { db } = await createTestDatabase(t)
  await subscribe(db, ['booking.success', 'booking.failed', 'booking.held', 'booking.expired', 'booking.cancelled'])
  const eventId = await createEvent(db, 100, 'Loud')
  const holdEventId = await createEvent(db, 100, 'Holding', { hold_seconds: 60 })

  // Intake's insert: pending purchases are not news; a sold-out answer is.
  const [p1, p2, p3, p4, soldOut] = await insertBookings(db, eventId, ['PENDING', 'PENDING', 'PENDING', 'PENDING', 'FAILED']) as [string, string, string, string, string]
  t.same(await outbox(db), [{ booking_id: soldOut, type: 'booking.failed', status: 'FAILED' }], 'insert: the sold-out answer only')
  await clearOutbox(db)

  // The batched worker's one statement of many UPDATEs: each booking once, with its own outcome.
  const [h1, h2] = await insertBookings(db, holdEventId, ['PENDING', 'PENDING']) as [string, string]
  const until = new Date(Date.now() + 60_000)
  await db.transaction().execute(async (trx) => await recordDecisions(trx, [
    { id: p1, decision: { status: BOOKING_STATUS.success } },
    { id: p2, decision: { status: BOOKING_STATUS.success } },
    { id: p3, decision: { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.limitExceeded } },
    { id: h1, decision: { status: BOOKING_STATUS.held, hold_expires_at: until } },
    { id: h2, decision: { status: BOOKING_STATUS.held, hold_expires_at: until } }
  ], new Date()))
  // The seats the holds took, as the worker's applyEventChanges takes them (the sweep gives them back).
  await sql`UPDATE events SET available_quota = available_quota - 2 WHERE id = ${holdEventId}`.execute(db)
  const decided = await outbox(db)
  t.same(decided.map((r) => `${r.booking_id} ${r.type}`).sort(),
    [`${p1} booking.success`, `${p2} booking.success`, `${p3} booking.failed`, `${h1} booking.held`, `${h2} booking.held`].sort(), 'decisions: one row each')
  const { rows: holds } = await sql<{ hold_expires_at: Date | null, decided_at: Date | null }>`
    SELECT hold_expires_at, decided_at FROM webhook_outbox WHERE status = 'HELD'`.execute(db)
  t.ok(holds.length === 2 && holds.every((r) => r.hold_expires_at?.getTime() === until.getTime() && r.decided_at !== null), 'each row holds what the change set')
  await clearOutbox(db)

  // A change that is not a status change writes nothing; a statement that changes nothing neither.
  await sql`UPDATE bookings SET cancel_requested_at = clock_timestamp() WHERE id = ${p4}`.execute(db)
  await db.transaction().execute(async (trx) => await recordDecisions(trx, [{ id: p1, decision: { status: BOOKING_STATUS.success } }], null))
  t.same(await outbox(db), [], 'no status change, no row')

  await db.transaction().execute(async (trx) => await recordCancellations(trx, [p1, p4], null))
  t.same((await outbox(db)).map((r) => `${r.booking_id} ${r.type}`).sort(), [`${p1} booking.cancelled`, `${p4} booking.cancelled`].sort(), 'cancellations: sold and pending alike')
  await clearOutbox(db)

  // Holds' two ends: the seller's confirmation, and the sweep.
  t.equal((await confirmHold(db, h1, 'pay')).outcome, 'confirmed')
  await sql`UPDATE bookings SET hold_expires_at = clock_timestamp() WHERE id = ${h2}`.execute(db)
  t.equal(await expireDueHolds(db), 1)
  t.same((await outbox(db)).map((r) => `${r.booking_id} ${r.type}`), [`${h1} booking.success`, `${h2} booking.expired`], 'confirmation and expiry')
  await clearOutbox(db)

  // A statement of thousands of rows: each once (the old and new rows are joined by hash).
  const many = await insertBookings(db, eventId, Array.from({ length: 5000 }, () => 'PENDING'))
  const refused = many.map((id) => ({ id, decision: { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.soldOut } }))
  await db.transaction().execute(async (trx) => await recordDecisions(trx, refused, null))
  const rows = await outbox(db)
  t.equal(rows.length, 5000)
  t.equal(new Set(rows.map((r) => r.booking_id)).size, 5000, 'each booking once')
})

t.test('only the types some endpoint wants are recorded', async (t) => {
  const { db } = await createTestDatabase(t)
  await subscribe(db, ['booking.held'])
  const eventId = await createEvent(db, 100, 'Picky')
  const [a, b] = await insertBookings(db, eventId, ['PENDING', 'PENDING', 'FAILED']) as [string, string]
  await db.transaction().execute(async (trx) => await recordDecisions(trx, [
    { id: a, decision: { status: BOOKING_STATUS.held, hold_expires_at: new Date(Date.now() + 60_000) } },
    { id: b, decision: { status: BOOKING_STATUS.success } }
  ], new Date()))
  t.same((await outbox(db)).map((r) => `${r.booking_id} ${r.type}`), [`${a} booking.held`])
  // A disabled endpoint wants nothing.
  await sql`UPDATE webhook_endpoints SET disabled_at = clock_timestamp(), disabled_reason = 'gone'`.execute(db)
  await clearOutbox(db)
  await db.transaction().execute(async (trx) => await recordCancellations(trx, [a], null))
  t.same(await outbox(db), [])
})
