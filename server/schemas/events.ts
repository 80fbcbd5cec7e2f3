import { Type } from '@sinclair/typebox'
import { Text, Uuid } from './common.ts'

const Quota = Type.Integer({ minimum: 1, maximum: 10_000_000 })
const MaxPerUser = Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'Most seats one user_id may hold for this event, across all of its successful bookings' })
const Instant = (description: string) => Type.String({ format: 'date-time', description: `${description} (ISO 8601 with a time zone, e.g. 2026-12-01T18:00:00Z)` })
const OpenAt = Instant('Purchases before this are refused with 409 SALE_NOT_OPEN')
const HoldSeconds = Type.Integer({
  minimum: 1,
  maximum: 86_400,
  description: 'Two-phase purchases: a purchase that gets its seats is held this many seconds (status held, hold_expires_at) until the seller confirms its payment (POST /bookings/{id}/confirm); unconfirmed, it expires and its seats go back on sale. null or absent: purchases are final at once'
})
const CloseAt = Instant('Purchases from this time on are refused with 409 SALE_CLOSED; queued ones still undecided then fail with reason sale_closed')

export const CreateEventBody = Type.Object({
  name: Text(200),
  total_quota: Quota,
  max_per_user: Type.Optional(MaxPerUser),
  sales_open_at: Type.Optional(OpenAt),
  sales_close_at: Type.Optional(CloseAt),
  hold_seconds: Type.Optional(Type.Union([HoldSeconds, Type.Null()]))
}, {
  additionalProperties: false,
  examples: [
    { name: 'Concert Event', total_quota: 100 },
    { name: 'Theatre, Saturday matinee', total_quota: 400, max_per_user: 6, hold_seconds: 900 },
    { name: 'Stadium tour, Friday', total_quota: 50000, max_per_user: 4, sales_open_at: '2026-12-01T10:00:00Z', sales_close_at: '2026-12-05T18:00:00Z' }
  ]
})

// null clears a setting (no cap, no opening time, no closing time).
export const UpdateEventBody = Type.Object({
  name: Type.Optional(Text(200)),
  total_quota: Type.Optional({ ...Quota, description: 'Never below the seats already sold or held (409 QUOTA_BELOW_SOLD)' }),
  max_per_user: Type.Optional(Type.Union([MaxPerUser, Type.Null()])),
  sales_open_at: Type.Optional(Type.Union([OpenAt, Type.Null()])),
  sales_close_at: Type.Optional(Type.Union([CloseAt, Type.Null()])),
  hold_seconds: Type.Optional(Type.Union([{ ...HoldSeconds, description: `${HoldSeconds.description as string}. A change applies to purchases decided after it; holds already running keep their expiry` }, Type.Null()]))
}, {
  additionalProperties: false,
  minProperties: 1,
  examples: [{ total_quota: 60000 }, { max_per_user: null, sales_close_at: '2026-12-06T18:00:00Z' }, { hold_seconds: 600 }]
})

const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(schema: T) => Type.Union([schema, Type.Null()])

export const Event = Type.Object({
  id: Uuid,
  name: Type.String(),
  total_quota: Type.Integer(),
  available_quota: Type.Integer({ description: 'Seats still on sale' }),
  sold: Type.Integer({ description: 'Seats taken by successful bookings (total_quota - available_quota - held)' }),
  held: Type.Integer({ description: 'Seats held for purchases waiting for the seller\'s confirmation (back on sale if their hold expires)' }),
  pending: Type.Integer({ description: 'Purchases waiting for their decision' }),
  cancelled: Type.Integer({ description: 'Seats given back by cancelled bookings (back on sale)' }),
  max_per_user: Nullable(Type.Integer()),
  hold_seconds: Nullable(Type.Integer()),
  sales_open_at: Nullable(Type.String({ format: 'date-time' })),
  sales_close_at: Nullable(Type.String({ format: 'date-time' })),
  sale_status: Type.Union([Type.Literal('scheduled'), Type.Literal('open'), Type.Literal('sold_out'), Type.Literal('closed')]),
  version: Type.Integer(),
  created_at: Type.String({ format: 'date-time' })
}, {
  examples: [{
    id: '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e',
    name: 'Concert Event',
    total_quota: 100,
    available_quota: 37,
    sold: 63,
    held: 0,
    pending: 12,
    cancelled: 2,
    max_per_user: 4,
    hold_seconds: null,
    sales_open_at: null,
    sales_close_at: null,
    sale_status: 'open',
    version: 3,
    created_at: '2026-11-25T09:00:00.000Z'
  }]
})

export const EventList = Type.Object({ events: Type.Array(Event) })
