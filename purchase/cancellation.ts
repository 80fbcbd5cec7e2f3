import { requestCancellationOf } from '../db/bookings.ts'
import type { Db } from '../db/client.ts'
import type { BookingRow } from '../db/database.ts'
import { timeOrderedId } from '../lib/ids.ts'
import type { CancelJobData } from './jobs.ts'

/**
 * Asks for a booking's cancellation: marks the request on the booking and queues the cancellation
 * job in one statement, so a request is never marked without its job, nor queued twice. The job's
 * id is time-ordered, so the worker decides it in arrival order with the purchases, under the
 * event's lock (purchase/rules.ts).
 *
 * Returns the booking's status and request time if this call queued it; undefined if it was
 * requested already or the booking cannot be cancelled (failed, cancelled, or gone).
 */
export async function requestCancellation (db: Db, booking: Pick<BookingRow, 'id' | 'event_id'>): Promise<Pick<BookingRow, 'status' | 'cancel_requested_at'> | undefined> {
  const data: CancelJobData = { cancel_booking_id: booking.id, event_id: booking.event_id }
  return await requestCancellationOf(db, booking.id, { id: timeOrderedId(), data })
}
