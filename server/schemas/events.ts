import { Type } from '@sinclair/typebox'
import { Text, Uuid } from './common.ts'

export const CreateEventBody = Type.Object({
  name: Text(200),
  total_quota: Type.Integer({ minimum: 1, maximum: 10_000_000 })
}, { additionalProperties: false })

export const Event = Type.Object({
  id: Uuid,
  name: Type.String(),
  total_quota: Type.Integer(),
  available_quota: Type.Integer(),
  sold: Type.Integer(),
  version: Type.Integer(),
  created_at: Type.String({ format: 'date-time' })
})

export const EventList = Type.Object({ events: Type.Array(Event) })
