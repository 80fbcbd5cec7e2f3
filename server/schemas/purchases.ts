import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

export const MAX_QUANTITY = 10
export const IDEMPOTENCY_KEY_MAX_LENGTH = 255
export const MAX_WAIT_SECONDS_LIMIT = 86_400

const BuyFields = {
  event_id: Uuid,
  user_id: Uuid,
  quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_QUANTITY, default: 1, description: 'Seats in this purchase; all or nothing' })),
  max_wait_seconds: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: MAX_WAIT_SECONDS_LIMIT,
    description: 'A deadline: if the purchase is still undecided this many seconds after it was stored, it fails with reason "expired" and never takes a seat afterwards'
  }))
}

export const BuyBody = Type.Object(BuyFields, {
  additionalProperties: false,
  examples: [
    { event_id: '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', user_id: '6f1c2b7e-8d4a-4f3b-9a2e-1c5d7e9f0a3b' },
    { event_id: '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', user_id: '6f1c2b7e-8d4a-4f3b-9a2e-1c5d7e9f0a3b', quantity: 2, max_wait_seconds: 120 }
  ]
})

/** With buyer tokens (BUYER_AUTH=jwt): the buyer is the token's, so user_id may be left out. */
export const BuyBodyWithToken = Type.Object({
  ...BuyFields,
  user_id: Type.Optional({ ...Uuid, description: 'Optional: the buyer is the one the bearer token names; if given, it must be that buyer\'s id as the service derives it (else 403 BUYER_MISMATCH)' })
}, {
  additionalProperties: false,
  examples: [{ event_id: '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', quantity: 2 }]
})

export const BuyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    minLength: 1,
    maxLength: IDEMPOTENCY_KEY_MAX_LENGTH,
    // Visible ASCII and spaces, not starting with a space: what survives every proxy unchanged.
    pattern: '^[!-~][ -~]*$',
    description: `Any string of up to ${IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters, chosen by the client, one per purchase. The same key from the same user_id with the same body answers with the same booking_id and creates one purchase only; with a different body, 409.`
  }))
})

export const BuyAccepted = Type.Object({
  booking_id: Uuid,
  status: Type.Literal('pending'),
  message: Type.String()
}, { examples: [{ booking_id: '019ab3f0-5c2d-7e41-8a6b-3d9e0f1a2b3c', status: 'pending', message: 'Request queued' }] })

export const BuyDecided = Type.Object({
  booking_id: Uuid,
  status: Type.Union([Type.Literal('held'), Type.Literal('success'), Type.Literal('failed'), Type.Literal('cancelled'), Type.Literal('expired')]),
  reason: Type.Union([Type.String(), Type.Null()]),
  message: Type.String()
}, {
  description: 'Known at once: the event had no seats left when the purchase was stored (failed, sold_out), or a retry with an Idempotency-Key whose purchase has been decided already (its outcome now).',
  examples: [
    { booking_id: '019ab3f0-5c2d-7e41-8a6b-3d9e0f1a2b3c', status: 'failed', reason: 'sold_out', message: 'Sold out' },
    { booking_id: '019ab3f0-5c2d-7e41-8a6b-3d9e0f1a2b3c', status: 'success', reason: null, message: 'Purchase succeeded' }
  ]
})
