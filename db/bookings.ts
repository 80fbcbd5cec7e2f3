import { sql } from 'kysely'
import type { Db } from './client.ts'
import { BOOKING_STATUS, type BookingRow, type FailureReason } from './database.ts'

export interface PendingBooking {
  id: string
  event_id: string
  user_id: string
  quantity: number
}

/** Writes the pending rows for purchases being accepted; called in the intake transaction. */
export async function insertPendingBookings (trx: Db, bookings: readonly PendingBooking[]): Promise<void> {
  if (bookings.length === 0) return
  await trx.insertInto('bookings')
    .values(bookings.map((b) => ({ ...b, status: BOOKING_STATUS.pending, reason: null, decided_at: null })))
    .execute()
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

export async function countPendingBookings (db: Db): Promise<number> {
  const row = await db.selectFrom('bookings')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', BOOKING_STATUS.pending)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}
