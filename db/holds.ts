import { sql } from 'kysely'
import { BOOKING_STATUS } from '../purchase/vocabulary.ts'
import { HELD } from './bookings.ts'
import type { Db } from './client.ts'
import type { BookingRow } from './database.ts'
import { lockEventsForUpdate, LOCK_NOT_AVAILABLE } from './events.ts'

// The end of a hold (docs/decisions/0012-holds.md): the seller's confirmation, or its expiry. Both
// change the booking only where it is still HELD, each in one statement, so PostgreSQL's row lock
// on the booking decides which comes first and the other then finds it changed: exactly one wins.
// A confirmation is allowed strictly before hold_expires_at and an expiry from it on, both by the
// database's clock, so no moment allows both.

export type ConfirmResult =
  | { outcome: 'confirmed' | 'already_confirmed', booking: BookingRow }
  | { outcome: 'expired' | 'not_confirmable', booking: BookingRow }
  | { outcome: 'not_found' }

/**
 * Confirms a held booking: SUCCESS, confirmed_at now, the payment reference kept. It takes no
 * event lock and moves no seats: held seats are already out of available_quota, and a confirmed
 * hold only changes which of held and sold counts them. Refused once the hold has run out (even
 * before the sweep has released it: the sweep always will), and once its buyer asked to cancel.
 */
export async function confirmHold (db: Db, id: string, paymentReference: string | null): Promise<ConfirmResult> {
  // The clock read once: the instant compared with the expiry is the one recorded as confirmed_at
  // (read twice, an expiry falling between the reads broke the table's CHECK: a 500).
  const { rows: [confirmed] } = await sql<BookingRow>`
    WITH clock AS (SELECT clock_timestamp() AS now)
    UPDATE bookings b SET status = ${BOOKING_STATUS.success}, confirmed_at = clock.now, payment_reference = ${paymentReference}
    FROM clock
    WHERE b.id = ${id} AND b.status = ${HELD} AND b.hold_expires_at > clock.now AND b.cancel_requested_at IS NULL
    RETURNING b.*`.execute(db)
  if (confirmed !== undefined) return { outcome: 'confirmed', booking: confirmed }
  // Not confirmed now: read what it is (a statement of its own, so it sees whatever won).
  const { rows: [booking] } = await sql<BookingRow & { lapsed: boolean }>`
    SELECT *, hold_expires_at <= clock_timestamp() AS lapsed FROM bookings WHERE id = ${id}`.execute(db)
  if (booking === undefined) return { outcome: 'not_found' }
  const { lapsed, ...row } = booking
  if (row.status === BOOKING_STATUS.success && row.confirmed_at !== null) return { outcome: 'already_confirmed', booking: row }
  if (row.status === BOOKING_STATUS.expired || (row.status === BOOKING_STATUS.held && lapsed)) return { outcome: 'expired', booking: row }
  return { outcome: 'not_confirmable', booking: row }
}

/** Most holds one transaction expires: bounds how long it keeps its events locked. */
export const EXPIRE_HOLDS_BATCH = 5_000
// How long the sweep waits for an event's lock (a worker's batch holds it for milliseconds);
// past it, that event is left for the next pass rather than stalling the others.
const EVENT_LOCK_WAIT_MS = 250

/**
 * Expires the holds whose time has come, event by event, under each event's row lock like every
 * change to its seats: EXPIRED, and their seats back in available_quota, in one statement per batch
 * (so a crash at any line leaves them held, to be expired by the next pass, never released twice).
 * Reads only the holds that are due, through the partial indexes of held bookings, at most
 * `EXPIRE_HOLDS_BATCH` per transaction and `limit` per call. An event whose lock stays taken past
 * EVENT_LOCK_WAIT_MS is left for the next pass, and the others' due holds are looked for without it.
 * Returns how many expired.
 */
export async function expireDueHolds (db: Db, limit = 100_000): Promise<number> {
  // "(SELECT clock_timestamp())": computed once, so the index can be bounded by it (a volatile
  // function compared row by row cannot: every live hold would be read).
  const now = sql`(SELECT clock_timestamp())`
  const skipped: string[] = []
  let expired = 0
  for (;;) {
    const due = await sql<{ event_id: string }>`
      SELECT DISTINCT event_id FROM (
        SELECT event_id FROM bookings WHERE status = ${HELD} AND hold_expires_at <= ${now} AND event_id <> ALL(${skipped}::uuid[])
        ORDER BY hold_expires_at LIMIT ${EXPIRE_HOLDS_BATCH}) due`.execute(db)
    if (due.rows.length === 0) return expired
    const before = expired
    for (const { event_id: eventId } of due.rows) {
      for (;;) {
        const n = await expireEventHolds(db, eventId, Math.min(EXPIRE_HOLDS_BATCH, limit - expired))
        if (n === undefined) {
          skipped.push(eventId)
          break
        }
        expired += n
        if (expired >= limit) return expired
        if (n < EXPIRE_HOLDS_BATCH) break
      }
    }
    // Nothing expired this round (each due event skipped or changed meanwhile): the next pass.
    if (expired === before && skipped.length === 0) return expired
  }
}

/** Expires up to `batch` due holds of one event in one transaction; undefined when its lock stayed taken. */
async function expireEventHolds (db: Db, eventId: string, batch: number): Promise<number | undefined> {
  try {
    return await db.transaction().execute(async (trx) => {
      const locked = await lockEventsForUpdate(trx, [eventId], { waitAtMostMs: EVENT_LOCK_WAIT_MS })
      if (!locked.has(eventId)) return 0
      const { rows: [row] } = await sql<{ n: number }>`
        WITH expired AS (
          UPDATE bookings SET status = ${BOOKING_STATUS.expired}
          WHERE id = ANY(ARRAY(
            SELECT id FROM bookings WHERE event_id = ${eventId} AND status = ${HELD} AND hold_expires_at <= (SELECT clock_timestamp())
            ORDER BY event_id, hold_expires_at LIMIT ${batch}))
            AND status = ${HELD}
          RETURNING quantity
        ),
        released AS (
          UPDATE events SET available_quota = available_quota + (SELECT coalesce(sum(quantity), 0) FROM expired), version = version + 1
          WHERE id = ${eventId} AND EXISTS (SELECT 1 FROM expired)
        )
        SELECT count(*)::int AS n FROM expired`.execute(trx)
      return row?.n ?? 0
    })
  } catch (err) {
    // Locked elsewhere for longer than we wait: the next pass tries again.
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) return undefined
    throw err
  }
}
