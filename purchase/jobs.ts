import { FormatRegistry, Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'

// The one contract between the API and the worker: the payloads of the purchase queue's jobs
// (db/purchase-jobs.ts writes them with the bookings and cancellation requests they carry). A
// purchase job's id is its booking's id, chosen at intake, so the booking row and its job are the
// same purchase and a retried delivery is recognised by id.

/** The pg-boss queue that carries purchases and cancellations (purchase/queue.ts sets it up). */
export const PURCHASE_QUEUE = 'purchases'

// TypeBox's own checker knows no formats until told; this is the canonical form the HTTP schemas
// accept (server/schemas/common.ts), so a payload the API accepted is never rejected here.
const UUID = /^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (value) => UUID.test(value))

export const PurchaseJobData = Type.Object({
  event_id: Type.String({ format: 'uuid' }),
  user_id: Type.String({ format: 'uuid' }),
  quantity: Type.Integer({ minimum: 1, maximum: 10 }),
  /** The purchase's arrival number for its event (jobs stored before arrival numbers have none). */
  arrival: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Its deadline (ISO 8601): undecided then, it fails as expired. */
  expires_at: Type.Optional(Type.String({ minLength: 20, maxLength: 40 }))
}, { additionalProperties: false })
export type PurchaseJobData = Static<typeof PurchaseJobData>

// A cancellation travels the same queue as purchases: claimed in arrival order with them and
// decided under the same event lock, so a cancellation and a purchase of the seat it frees never race.
export const CancelJobData = Type.Object({
  cancel_booking_id: Type.String({ format: 'uuid' }),
  event_id: Type.String({ format: 'uuid' })
}, { additionalProperties: false })
export type CancelJobData = Static<typeof CancelJobData>

const purchaseJobCheck = TypeCompiler.Compile(PurchaseJobData)
export function isPurchaseJobData (data: unknown): data is PurchaseJobData {
  return purchaseJobCheck.Check(data) && (data.expires_at === undefined || !Number.isNaN(Date.parse(data.expires_at)))
}

const cancelJobCheck = TypeCompiler.Compile(CancelJobData)
export function isCancelJobData (data: unknown): data is CancelJobData {
  return cancelJobCheck.Check(data)
}

/** A job as the worker claims it. */
export interface QueuedJob {
  /** The job id: a UUIDv7, so ids sort in arrival order. For a purchase, it is the booking id. */
  id: string
  data: unknown
}
