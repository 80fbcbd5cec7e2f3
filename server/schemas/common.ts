import { Type } from '@sinclair/typebox'

export const Uuid = Type.String({ format: 'uuid', description: 'A UUID, e.g. 0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e' })

export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false })

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.Optional(Type.String()),
  message: Type.String()
}, { $id: 'ErrorResponse' })
