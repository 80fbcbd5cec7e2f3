import { sql } from 'kysely'
import type { Db } from './client.ts'
import { BOOKING_STATUS, FAILURE_REASON, type BookingRow, type BookingStatus, type FailureReason } from './database.ts'

export interface PendingBooking {
  id: string
  event_id: string
  user_id: string
  quantity: number
}

/**
 * Stores a batch of purchases being accepted, in one statement, and says what became of each:
 * - a purchase for an event that does not exist is not stored (absent from the result): no query
 *   per request for the unknown-event check, and nothing cached that could go stale;
 * - a purchase for an event with no seats left is stored already decided (FAILED, sold_out): the
 *   sold-out fast path. It reads the event's committed quota in this very statement, so it is
 *   right in every API process and the moment seats come back (any later batch sees them);
 * - every other purchase is stored PENDING and needs a job.
 * Called in the intake transaction, which inserts the jobs for the pending ones before it commits.
 */
export async function insertPurchases (trx: Db, purchases: readonly PendingBooking[]): Promise<Map<string, BookingStatus>> {
  if (purchases.length === 0) return new Map()
  const { rows } = await sql<{ id: string, status: BookingStatus }>`
    INSERT INTO bookings (id, event_id, user_id, quantity, status, reason, decided_at)
    SELECT p.id, p.event_id, p.user_id, p.quantity,
      CASE WHEN e.available_quota = 0 THEN ${BOOKING_STATUS.failed} ELSE ${BOOKING_STATUS.pending} END,
      CASE WHEN e.available_quota = 0 THEN ${FAILURE_REASON.soldOut} END,
      CASE WHEN e.available_quota = 0 THEN clock_timestamp() END
    FROM unnest(${purchases.map((p) => p.id)}::uuid[], ${purchases.map((p) => p.event_id)}::uuid[],
                ${purchases.map((p) => p.user_id)}::uuid[], ${purchases.map((p) => p.quantity)}::int[])
      AS p (id, event_id, user_id, quantity)
    JOIN events e ON e.id = p.event_id
    RETURNING id, status`.execute(trx)
  return new Map(rows.map((row) => [row.id, row.status]))
}

export async function findBookingById (db: Db, id: string): Promise<BookingRow | undefined> {
  return await db.selectFrom('bookings').selectAll().where('id', '=', id).executeTakeFirst()
}

/** The booking's current status, read inside the deciding transaction. */
export async function findBookingStatus (trx: Db, id: string): Promise<BookingRow['status'] | undefined> {
  const row = await trx.selectFrom('bookings').select('status').where('id', '=', id).executeTakeFirst()
  return row?.status
}

export type Decision =
  | { status: typeof BOOKING_STATUS.success }
  | { status: typeof BOOKING_STATUS.failed, reason: FailureReason | 'error' }

/** Records a final outcome; only a pending booking changes, so a decision is never overwritten. */
export async function recordDecision (trx: Db, id: string, decision: Decision): Promise<boolean> {
  const result = await trx.updateTable('bookings')
    .set({
      status: decision.status,
      reason: decision.status === BOOKING_STATUS.failed ? decision.reason : null,
      // The database's clock, like created_at: one clock orders every timestamp.
      decided_at: sql<Date>`clock_timestamp()`
    })
    .where('id', '=', id)
    .where('status', '=', BOOKING_STATUS.pending)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

export interface BookingDecision {
  id: string
  decision: Decision
}

/**
 * Records many final outcomes in one statement. Like recordDecision, only pending bookings change;
 * returns how many did, so the caller can tell a decision that was not written. The batch shares
 * one decision time, taken under the events' locks, so a later batch is always later; within a
 * batch, the ids (UUIDv7) give the order of decision.
 */
export async function recordDecisions (trx: Db, decisions: readonly BookingDecision[]): Promise<number> {
  if (decisions.length === 0) return 0
  const result = await sql`
    UPDATE bookings b
    SET status = d.status, reason = d.reason, decided_at = statement_timestamp()
    FROM unnest(${decisions.map((d) => d.id)}::uuid[], ${decisions.map((d) => d.decision.status)}::text[],
                ${decisions.map((d) => d.decision.status === BOOKING_STATUS.failed ? d.decision.reason : null)}::text[])
      AS d (id, status, reason)
    WHERE b.id = d.id AND b.status = ${BOOKING_STATUS.pending}`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

export async function countPendingBookings (db: Db): Promise<number> {
  const row = await db.selectFrom('bookings')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', BOOKING_STATUS.pending)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}
