import { Type } from '@sinclair/typebox'

// The canonical 8-4-4-4-12 form only: ajv's "uuid" format also accepts "urn:uuid:..." forms that
// PostgreSQL's uuid type rejects, which would turn a bad id into a database error.
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

export const Uuid = Type.String({ format: 'uuid', pattern: UUID_PATTERN, description: 'A UUID, e.g. 0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e' })

/** Human-readable text: not blank, no control characters (PostgreSQL text cannot hold NUL). */
export const Text = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^(?!\\s*$)[^\\u0000-\\u001f\\u007f]+$' })

export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false })

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.Optional(Type.String()),
  message: Type.String()
}, {
  $id: 'ErrorResponse',
  description: 'Every error: the HTTP status, its name, a stable code to branch on, and a message for people',
  examples: [
    { statusCode: 404, error: 'Not Found', code: 'EVENT_NOT_FOUND', message: 'Event not found' },
    { statusCode: 503, error: 'Service Unavailable', code: 'QUEUE_FULL', message: 'System is too busy' }
  ]
})
