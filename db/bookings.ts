import { sql } from 'kysely'
import { BOOKING_STATUS } from '../purchase/vocabulary.ts'
import type { Db } from './client.ts'
import type { BookingRow, Trx } from './database.ts'

// Bookings' own bookkeeping: cancellation requests and the pending counts. (Storing purchases:
// purchases.ts; deciding them: decisions.ts; reading them: booking-views.ts.)

// The partial indexes (migrations) name a status in their WHERE. A query meant to use one names
// that status as a literal, never as a parameter: a prepared statement's generic plan must hold
// for any parameter value, so it cannot use an index that covers one status only
// (docs/decisions/0001-plans-that-hold-as-tables-grow.md).
export const PENDING = sql.lit(BOOKING_STATUS.pending)
export const SUCCESS = sql.lit(BOOKING_STATUS.success)

/**
 * Marks a successful or pending booking as having a cancellation requested, once: its status and
 * request time if this call did (the caller then queues the cancellation in the same
 * transaction), undefined if it was requested already or the booking cannot be cancelled.
 */
export async function markCancelRequested (trx: Trx, id: string): Promise<Pick<BookingRow, 'status' | 'cancel_requested_at'> | undefined> {
  return await trx.updateTable('bookings')
    .set({ cancel_requested_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', 'in', [BOOKING_STATUS.pending, BOOKING_STATUS.success])
    .where('cancel_requested_at', 'is', null)
    .returning(['status', 'cancel_requested_at'])
    .executeTakeFirst()
}

export async function countPendingBookings (db: Db): Promise<number> {
  const row = await db.selectFrom('bookings')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', PENDING)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Pending purchases per event that has any (an index-only scan of the pending-only index). */
export async function countPendingByEvent (db: Db): Promise<Array<{ event_id: string, pending: number }>> {
  const rows = await db.selectFrom('bookings').select(['event_id', (eb) => eb.fn.countAll<string>().as('pending')])
    .where('status', '=', PENDING).groupBy('event_id').execute()
  return rows.map((row) => ({ event_id: row.event_id, pending: Number(row.pending) }))
}
