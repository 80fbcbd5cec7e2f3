import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance } from 'fastify'

// Every error a client can meet, with a stable code to branch on. Messages are for people.
export const ERRORS = {
  EVENT_NOT_FOUND: { statusCode: 404, message: 'Event not found' },
  BOOKING_NOT_FOUND: { statusCode: 404, message: 'Booking not found' },
  PURCHASE_NOT_STORED: { statusCode: 503, message: 'The purchase could not be stored and nothing was recorded; try again', retryAfterSeconds: 1 },
  QUEUE_FULL: { statusCode: 503, message: 'System is too busy', retryAfterSeconds: 1 },
  DATABASE_UNAVAILABLE: { statusCode: 503, message: 'Database unavailable, try again shortly', retryAfterSeconds: 2 },
  SHUTTING_DOWN: { statusCode: 503, message: 'Server is shutting down, try again shortly', retryAfterSeconds: 1 },
  ADMIN_DISABLED: { statusCode: 401, message: 'Admin routes are disabled: the server has no ADMIN_TOKEN configured' },
  UNAUTHORIZED: { statusCode: 401, message: 'Missing or invalid admin token (Authorization: Bearer <ADMIN_TOKEN>)' }
} as const satisfies Record<string, { statusCode: number, message: string, retryAfterSeconds?: number }>

export type ErrorCode = keyof typeof ERRORS

export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly retryAfterSeconds: number | undefined

  constructor (code: ErrorCode, options?: ErrorOptions) {
    const spec: { statusCode: number, message: string, retryAfterSeconds?: number } = ERRORS[code]
    super(spec.message, options)
    this.name = 'AppError'
    this.code = code
    this.statusCode = spec.statusCode
    this.retryAfterSeconds = spec.retryAfterSeconds
  }
}

// Connection-level failures from postgres.js and node-postgres, and PostgreSQL's own codes for
// "cannot serve you right now": all mean retry later (503), never a bug in the request (4xx/500).
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  '57P01', '57P02', '57P03', // admin shutdown, crash shutdown, cannot connect now
  '53300', // too many connections
  '57014', // statement timeout
  '55P03', // lock timeout
  '08000', '08001', '08003', '08004', '08006'
])

// PostgreSQL refusing a value the schemas let through (a malformed uuid, a NUL byte, text too
// long): the request's fault, so a 400, never a 500. The schemas should catch these first.
const BAD_INPUT_CODES = new Set(['22P02', '22021', '22P05', '22001', '22003'])

export function isDatabaseUnavailable (err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  const { code, cause, errors } = err as { code?: unknown, cause?: unknown, errors?: unknown }
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true
  if (err instanceof Error && /Connection terminated|timeout exceeded when trying to connect/i.test(err.message)) return true
  if (Array.isArray(errors) && errors.some((e) => isDatabaseUnavailable(e, depth + 1))) return true
  return isDatabaseUnavailable(cause, depth + 1)
}

/**
 * One place maps errors to answers: our codes, Fastify's own 4xx (bad JSON, wrong content type,
 * body too large, schema validation), database outages as 503, and anything else as a 500 that
 * is logged with context and answered without internals.
 */
export function registerErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    if (err instanceof AppError) {
      if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds))
      return reply.code(err.statusCode).send({ statusCode: err.statusCode, error: STATUS_CODES[err.statusCode], code: err.code, message: err.message })
    }
    if (isDatabaseUnavailable(err)) {
      request.log.warn({ err }, 'database unavailable')
      const unavailable = new AppError('DATABASE_UNAVAILABLE', { cause: err })
      return reply.code(503).header('retry-after', String(unavailable.retryAfterSeconds))
        .send({ statusCode: 503, error: STATUS_CODES[503], code: unavailable.code, message: unavailable.message })
    }
    if (typeof err.code === 'string' && BAD_INPUT_CODES.has(err.code)) {
      request.log.warn({ err }, 'database refused a value from the request')
      return reply.code(400).send({ statusCode: 400, error: STATUS_CODES[400], code: 'INVALID_INPUT', message: 'The request contains a value the database cannot store' })
    }
    const statusCode = err.statusCode ?? 500
    if (statusCode >= 400 && statusCode < 500) {
      const code = err.validation !== undefined ? 'VALIDATION_FAILED' : err.code
      return reply.code(statusCode).send({ statusCode, error: STATUS_CODES[statusCode], code, message: err.message })
    }
    request.log.error({ err }, 'unhandled error')
    return reply.code(500).send({ statusCode: 500, error: STATUS_CODES[500], code: 'INTERNAL', message: 'Internal Server Error' })
  })

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send({ statusCode: 404, error: STATUS_CODES[404], code: 'ROUTE_NOT_FOUND', message: `Route ${request.method} ${request.url.split('?')[0]} not found` })
  })
}
