import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

export const MAX_WAIT_QUERY_SECONDS = 30

const Instant = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])

export const Booking = Type.Object({
  booking_id: Uuid,
  event_id: Uuid,
  user_id: Uuid,
  quantity: Type.Integer(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('held'), Type.Literal('success'), Type.Literal('failed'), Type.Literal('cancelled'), Type.Literal('expired')], {
    description: 'pending: waiting for its decision. held: seats taken until hold_expires_at, waiting for the seller to confirm payment (events with hold_seconds). success: the seats are the buyer\'s. failed: see reason. cancelled: given back. expired: a hold that ran out unconfirmed; its seats went back on sale'
  }),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed: sold_out, insufficient_quota, limit_exceeded, sale_closed, expired, invalid_request, error; null otherwise' }),
  position: Type.Union([Type.Integer(), Type.Null()], { description: 'While pending: purchases for the same event stored before this one and not decided yet (an estimate: 0 means next). null otherwise' }),
  estimated_wait_ms: Type.Union([Type.Integer(), Type.Null()], { description: 'While pending: position / the workers\' recent pace. null otherwise, or when no pace was measured in the last minute' }),
  max_wait_seconds: Type.Union([Type.Integer(), Type.Null()]),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'The deadline from max_wait_seconds: undecided then, it fails as expired' }),
  created_at: Type.String({ format: 'date-time' }),
  decided_at: Instant,
  cancel_requested_at: Instant,
  cancelled_at: Instant,
  hold_expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Held (and expired, confirmed) bookings: when the hold ends. Unconfirmed then, it expires and its seats go back on sale' }),
  confirmed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When the seller confirmed payment of the hold (POST /bookings/{id}/confirm)' }),
  payment_reference: Type.Union([Type.String(), Type.Null()], { description: 'What the seller\'s confirmation named, e.g. its payment provider\'s id' })
})

export const ConfirmBody = Type.Union([
  Type.Object({
    payment_reference: Type.Optional(Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[!-~][ -~]*$',
      description: 'The payment it confirms, e.g. the payment provider\'s id (1-255 printable ASCII characters, not starting with a space): stored and shown with the booking. A retried confirmation keeps the first one'
    }))
  }, { additionalProperties: false, examples: [{ payment_reference: 'pi_3QfZ8t2eZvKYlo2C0a1b2c3d' }] }),
  Type.Null()
])

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
