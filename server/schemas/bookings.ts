import { Type } from '@sinclair/typebox'
import { Uuid } from './common.ts'

export const Booking = Type.Object({
  booking_id: Uuid,
  event_id: Uuid,
  user_id: Uuid,
  quantity: Type.Integer(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('success'), Type.Literal('failed')]),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed: sold_out, insufficient_quota, invalid_request, error; null otherwise' }),
  created_at: Type.String({ format: 'date-time' }),
  decided_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})
