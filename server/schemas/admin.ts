import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

const LIST_MAX = 1000

// Query strings are strings (the API never coerces types): 1-1000 written out.
const ListLimit = (what: string) => Type.String({ pattern: '^([1-9][0-9]{0,2}|1000)$', description: `The newest this many ${what} (1-${LIST_MAX}, default 100)` })

export const InvariantsQuery = Type.Object({
  event_id: Type.Optional({ ...Uuid, description: 'Check this event only' }),
  limit: Type.Optional(ListLimit('events, when no event_id is given'))
}, { additionalProperties: false })

const Count = (description: string) => Type.Integer({ minimum: 0, description })

export const EventInvariants = Type.Object({
  event_id: Uuid,
  name: Type.String(),
  ok: Type.Boolean({ description: 'Every rule below holds' }),
  problems: Type.Array(Type.String(), { description: 'Each broken rule, in words' }),
  total_quota: Count('Seats of the event'),
  available_quota: Type.Integer({ description: 'Seats left: must equal total_quota - held_seats - sold_seats' }),
  sold_seats: Count('Seats of successful bookings: with held_seats, never more than total_quota'),
  held_seats: Count('Seats of held bookings, waiting for their confirmation'),
  overdue_holds: Count('Held bookings still held more than 30 s after their hold_expires_at: must be 0 (the expiry sweep releases them within about 2 s)'),
  pending_purchases: Count('Purchases waiting for their decision (they hold no seat yet)'),
  pending_seats: Count('Seats those purchases ask for'),
  cancelled_seats: Count('Seats given back by cancellations (the event\'s counter)'),
  cancelled_booking_seats: Count('Seats of cancelled bookings: never fewer than cancelled_seats (more when some were withdrawn while pending)'),
  max_per_user: Type.Union([Type.Integer(), Type.Null()]),
  users_over_cap: Count('Users holding more held and successful seats than max_per_user: must be 0'),
  stranded_purchases: Count('Pending purchases without a live job to decide them: must be 0')
})

export const InvariantsReport = Type.Object({
  ok: Type.Boolean({ description: 'Every checked event is ok' }),
  checked_at: Type.String({ format: 'date-time' }),
  events: Type.Array(EventInvariants)
})

export const FailedJobsQuery = Type.Object({
  limit: Type.Optional(ListLimit('failed jobs'))
}, { additionalProperties: false })

export const FailedJobsReport = Type.Object({
  dead_lettered: Count('Copies waiting in the dead-letter queue (purchases_dead)'),
  failed: Type.Array(Type.Object({
    job_id: Uuid,
    kind: Type.Union([Type.Literal('purchase'), Type.Literal('cancellation')]),
    event_id: Type.Union([Type.String(), Type.Null()]),
    booking_id: Type.Union([Uuid, Type.Null()]),
    booking_status: Type.Union([Type.String(), Type.Null()], { description: 'A failed purchase\'s booking is failed, reason "error"' }),
    booking_reason: Type.Union([Type.String(), Type.Null()]),
    attempts: Count('Retries pg-boss made before giving up'),
    failed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()], { description: 'The last attempt\'s error' })
  }))
})
