import type { PgBoss } from 'pg-boss'
import { markCancelRequested } from '../db/bookings.ts'
import type { Db } from '../db/client.ts'
import type { BookingRow } from '../db/database.ts'
import { enqueueCancellation } from './queue.ts'

/**
 * Asks for a booking's cancellation: marks the request on the booking and queues the cancellation
 * job in one transaction, so a request is never marked without its job, nor queued twice. The
 * worker decides it in arrival order under the event's lock (purchase/rules.ts).
 *
 * Returns the booking's status and request time if this call queued it; undefined if it was
 * requested already or the booking cannot be cancelled (failed, cancelled, or gone).
 */
export async function requestCancellation (db: Db, boss: PgBoss, booking: Pick<BookingRow, 'id' | 'event_id'>): Promise<Pick<BookingRow, 'status' | 'cancel_requested_at'> | undefined> {
  return await db.transaction().execute(async (trx) => {
    const marked = await markCancelRequested(trx, booking.id)
    if (marked !== undefined) await enqueueCancellation(trx, boss, { cancel_booking_id: booking.id, event_id: booking.event_id })
    return marked
  })
}
