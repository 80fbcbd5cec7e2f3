import type { BookingRow } from '../db/database.ts'
import { bookingJson } from './booking-json.ts'
import { API_STATUS, BOOKING_STATUS, type BookingStatus } from './vocabulary.ts'

// What a webhook says (docs/api.md, "Webhooks"): one message per status a booking reaches.

/** The message types, one per status a booking can reach after pending. */
export const WEBHOOK_EVENT_TYPES = ['booking.success', 'booking.failed', 'booking.held', 'booking.expired', 'booking.cancelled'] as const
export type WebhookEventType = typeof WEBHOOK_EVENT_TYPES[number]

/**
 * A booking's change number: larger for every later status it can reach (pending, then held, then
 * success or failed, then expired, then cancelled: each path through the statuses climbs), so a
 * receiver that keeps the highest it has seen per booking drops stale and repeated messages.
 */
export const CHANGE_NUMBER: Record<BookingStatus, number> = {
  [BOOKING_STATUS.pending]: 0,
  [BOOKING_STATUS.held]: 1,
  [BOOKING_STATUS.success]: 2,
  [BOOKING_STATUS.failed]: 2,
  [BOOKING_STATUS.expired]: 3,
  [BOOKING_STATUS.cancelled]: 4
}

/**
 * The message's id, the `webhook-id` header: the same for every attempt and every endpoint, and
 * unique, since a booking reaches each status at most once.
 */
export const webhookMessageId = (bookingId: string, status: BookingStatus): string => `msg_${bookingId}_${API_STATUS[status]}`

export interface WebhookMessage { type: string, timestamp: string, data: ReturnType<typeof bookingJson> & { change_number: number } }

/** The body of the message that reports `booking` reaching its status at `changedAt`. */
export function webhookMessage (booking: BookingRow, changedAt: Date): WebhookMessage {
  return {
    type: `booking.${API_STATUS[booking.status]}`,
    timestamp: changedAt.toISOString(),
    data: { ...bookingJson(booking), change_number: CHANGE_NUMBER[booking.status] }
  }
}
