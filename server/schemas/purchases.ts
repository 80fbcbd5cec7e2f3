import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

export const MAX_QUANTITY = 10

export const BuyBody = Type.Object({
  event_id: Uuid,
  user_id: Uuid,
  quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_QUANTITY, default: 1, description: 'Seats in this purchase; all or nothing' }))
}, { additionalProperties: false })

export const BuyAccepted = Type.Object({
  booking_id: Uuid,
  status: Type.Literal('pending'),
  message: Type.Literal('Request queued')
})
