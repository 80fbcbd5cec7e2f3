import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

export const MAX_WAIT_QUERY_SECONDS = 30

const Instant = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])

export const Booking = Type.Object({
  booking_id: Uuid,
  event_id: Uuid,
  user_id: Uuid,
  quantity: Type.Integer(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('success'), Type.Literal('failed'), Type.Literal('cancelled')]),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed: sold_out, insufficient_quota, limit_exceeded, sale_closed, expired, invalid_request, error; null otherwise' }),
  position: Type.Union([Type.Integer(), Type.Null()], { description: 'While pending: purchases for the same event stored before this one and not decided yet (an estimate: 0 means next). null otherwise' }),
  estimated_wait_ms: Type.Union([Type.Integer(), Type.Null()], { description: 'While pending: position / the workers\' recent pace. null otherwise, or when no pace was measured in the last minute' }),
  max_wait_seconds: Type.Union([Type.Integer(), Type.Null()]),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'The deadline from max_wait_seconds: undecided then, it fails as expired' }),
  created_at: Type.String({ format: 'date-time' }),
  decided_at: Instant,
  cancel_requested_at: Instant,
  cancelled_at: Instant
})

// Proof of whose booking it is: what its buyer knows, the user_id it was bought with (the admin
// token does instead; see bookingAccess in server/auth.ts).
const OwnerQuery = { ...Uuid, description: 'The buyer\'s user_id, as proof the booking is theirs (or send the admin token instead)' }

export const BookingQuery = Type.Object({
  user_id: Type.Optional({ ...OwnerQuery, description: `${OwnerQuery.description}. Any other user_id is answered 404, exactly as an unknown booking id` }),
  wait: Type.Optional(Type.String({
    pattern: '^([0-9]|[12][0-9]|30)$',
    description: `Hold the request up to this many seconds (0-${MAX_WAIT_QUERY_SECONDS}) until the booking is settled (decided, and no cancellation waiting), then answer`
  }))
}, { additionalProperties: false })

export const CancelQuery = Type.Object({
  user_id: Type.Optional(OwnerQuery)
}, { additionalProperties: false })

/** Where a buyer reads their booking: the Location that POST /buy and DELETE /bookings/:id give. */
export function bookingLocation (bookingId: string, userId: string): string {
  return `/bookings/${encodeURIComponent(bookingId)}?user_id=${encodeURIComponent(userId.toLowerCase())}`
}
