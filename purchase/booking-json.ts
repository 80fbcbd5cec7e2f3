import type { BookingView } from '../db/booking-views.ts'
import { API_STATUS, BOOKING_STATUS } from './vocabulary.ts'

/**
 * A booking as its buyer reads it: GET /bookings/:id's body, and the `data` of a webhook message
 * (which adds its change number). Position and wait estimate only while pending.
 */
export function bookingJson (row: Omit<BookingView, 'position' | 'pace'> & Partial<Pick<BookingView, 'position' | 'pace'>>) {
  const pending = row.status === BOOKING_STATUS.pending
  return {
    booking_id: row.id,
    event_id: row.event_id,
    user_id: row.user_id,
    quantity: row.quantity,
    status: API_STATUS[row.status],
    reason: row.reason,
    position: pending ? row.position ?? null : null,
    estimated_wait_ms: pending && row.position != null && row.pace != null && row.pace > 0 ? Math.round((row.position + 1) / row.pace * 1000) : null,
    max_wait_seconds: row.max_wait_seconds,
    expires_at: row.expires_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    decided_at: row.decided_at?.toISOString() ?? null,
    cancel_requested_at: row.cancel_requested_at?.toISOString() ?? null,
    cancelled_at: row.cancelled_at?.toISOString() ?? null,
    hold_expires_at: row.hold_expires_at?.toISOString() ?? null,
    confirmed_at: row.confirmed_at?.toISOString() ?? null,
    payment_reference: row.payment_reference
  }
}
