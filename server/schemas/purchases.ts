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

export const BuyDecided = Type.Object({
  booking_id: Uuid,
  status: Type.Literal('failed'),
  reason: Type.Literal('sold_out'),
  message: Type.Literal('Sold out')
}, { description: 'Decided at once: the event had no seats left. The booking is stored like any other.' })
