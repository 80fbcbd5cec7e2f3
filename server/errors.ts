import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { DATABASE_BUSY } from '../db/client.ts'

// Every error a client can meet, with a stable code to branch on. Messages are for people.
export const ERRORS = {
  EVENT_NOT_FOUND: { statusCode: 404, message: 'Event not found' },
  BOOKING_NOT_FOUND: { statusCode: 404, message: 'Booking not found' },
  SALE_NOT_OPEN: { statusCode: 409, message: 'Sales for this event have not opened yet; nothing was stored' },
  SALE_CLOSED: { statusCode: 409, message: 'Sales for this event are closed; nothing was stored' },
  IDEMPOTENCY_KEY_REUSED: { statusCode: 409, message: 'This Idempotency-Key was already used by this user for a different purchase (event_id, quantity or max_wait_seconds differ); use a new key for a new purchase' },
  BOOKING_NOT_CANCELLABLE: { statusCode: 409, message: 'Only a pending, held or successful booking can be cancelled; this one failed or its hold expired' },
  HOLD_EXPIRED: { statusCode: 409, message: 'The hold ran out before this confirmation: its seats go back on sale and the booking is not sold; refund the payment' },
  BOOKING_NOT_CONFIRMABLE: { statusCode: 409, message: 'Only a held booking can be confirmed; this one is not held (pending, failed, cancelled, or its buyer asked to cancel it)' },
  BOOKING_OWNER_REQUIRED: { statusCode: 400, message: 'Say whose booking this is: ?user_id=<the buyer\'s user_id>, or Authorization: Bearer <ADMIN_TOKEN>' },
  QUOTA_BELOW_SOLD: { statusCode: 409, message: 'total_quota cannot go below the seats already sold or held' },
  INVALID_SALE_WINDOW: { statusCode: 400, message: 'sales_open_at must be before sales_close_at' },
  PURCHASE_NOT_STORED: { statusCode: 503, message: 'The purchase could not be stored and nothing was recorded; try again', retryAfterSeconds: 1 },
  QUEUE_FULL: { statusCode: 503, message: 'System is too busy', retryAfterSeconds: 1 },
  DATABASE_UNAVAILABLE: { statusCode: 503, message: 'Database unavailable, try again shortly', retryAfterSeconds: 2 },
  DATABASE_BUSY: { statusCode: 503, message: 'Every database connection of this server is busy; nothing was changed, try again shortly', retryAfterSeconds: 1 },
  OVERLOADED: { statusCode: 503, message: 'Server is overloaded; try again shortly', retryAfterSeconds: 1 },
  SHUTTING_DOWN: { statusCode: 503, message: 'Server is shutting down, try again shortly', retryAfterSeconds: 1 },
  DASHBOARD_FULL: { statusCode: 503, message: 'Too many dashboards are open on this server; try again shortly', retryAfterSeconds: 10 },
  ADMIN_DISABLED: { statusCode: 401, message: 'Admin routes are disabled: the server has no ADMIN_TOKEN configured' },
  RATE_LIMITED: { statusCode: 429, message: 'Too many requests; slow down and retry after the time in Retry-After' },
  UNAUTHORIZED: { statusCode: 401, message: 'Missing or invalid admin token (Authorization: Bearer <ADMIN_TOKEN>)' },
  BUYER_TOKEN_INVALID: { statusCode: 401, message: 'Invalid buyer token. Send Authorization: Bearer <a token from the identity provider>' },
  BUYER_MISMATCH: { statusCode: 403, message: 'user_id is not the buyer the token names; leave it out, or send the id the service derives from the token' },
  WEBHOOK_NOT_FOUND: { statusCode: 404, message: 'Webhook endpoint not found' },
  WEBHOOK_URL_REFUSED: { statusCode: 400, message: 'The webhook URL is refused' },
  WEBHOOK_LIMIT_REACHED: { statusCode: 409, message: 'Too many webhook endpoints: delete one first' },
  BUYER_KEYS_UNAVAILABLE: { statusCode: 503, message: 'The identity provider\'s keys could not be fetched to check the buyer token; try again shortly', retryAfterSeconds: 5 }
} as const satisfies Record<string, { statusCode: number, message: string, retryAfterSeconds?: number }>

export type ErrorCode = keyof typeof ERRORS

export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly retryAfterSeconds: number | undefined

  /** `message` and `retryAfterSeconds` replace the code's own when a case needs its details. */
  constructor (code: ErrorCode, options?: ErrorOptions & { message?: string, retryAfterSeconds?: number }) {
    const spec: { statusCode: number, message: string, retryAfterSeconds?: number } = ERRORS[code]
    super(options?.message ?? spec.message, options)
    this.name = 'AppError'
    this.code = code
    this.statusCode = spec.statusCode
    this.retryAfterSeconds = options?.retryAfterSeconds ?? spec.retryAfterSeconds
  }
}

/** 429 for a rate limit: what was limited, the limit a minute, and when to try again. */
export function rateLimited (what: string, perMinute: number, retryAfterSeconds: number): AppError {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds))
  return new AppError('RATE_LIMITED', { message: `Too many ${what}: at most ${perMinute} a minute; retry in ${seconds} s`, retryAfterSeconds: seconds })
}

/** 409 with the opening time, and a Retry-After for when it opens (at most an hour ahead). */
export function saleNotOpen (opensAt: Date): AppError {
  const seconds = Math.max(1, Math.ceil((opensAt.getTime() - Date.now()) / 1000))
  return new AppError('SALE_NOT_OPEN', {
    message: `Sales for this event open at ${opensAt.toISOString()}; nothing was stored`,
    retryAfterSeconds: Math.min(seconds, 3600)
  })
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

// A table constraint that a request can break with values each valid on its own (a PATCH of one
// end of a sale window against the other end already stored): the request's fault, a 4xx.
const CONSTRAINT_ERRORS: Readonly<Record<string, ErrorCode>> = {
  events_sale_window: 'INVALID_SALE_WINDOW'
}

function constraintError (err: unknown): AppError | undefined {
  const name = typeof err === 'object' && err !== null ? (err as { constraint_name?: unknown }).constraint_name : undefined
  const code = typeof name === 'string' ? CONSTRAINT_ERRORS[name] : undefined
  return code === undefined ? undefined : new AppError(code, { cause: err })
}

/** Whether `matches` holds for the error or anything it wraps (its cause, an AggregateError's errors). */
function anyCause (err: unknown, matches: (err: object & { code?: unknown }) => boolean, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  if (matches(err)) return true
  const { cause, errors } = err as { cause?: unknown, errors?: unknown }
  if (Array.isArray(errors) && errors.some((e) => anyCause(e, matches, depth + 1))) return true
  return anyCause(cause, matches, depth + 1)
}

/** The pool's wait for a connection ran out with every one in use (db/client.ts). */
export function isDatabaseBusy (err: unknown): boolean {
  return anyCause(err, ({ code }) => code === DATABASE_BUSY)
}

export function isDatabaseUnavailable (err: unknown): boolean {
  return anyCause(err, (e) => (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) ||
    (e instanceof Error && /Connection terminated|timeout exceeded when trying to connect/i.test(e.message)))
}

/** The error code to answer a database failure with: busy, unavailable, or neither (undefined). */
export function databaseFailure (err: unknown): 'DATABASE_BUSY' | 'DATABASE_UNAVAILABLE' | undefined {
  return isDatabaseBusy(err) ? 'DATABASE_BUSY' : isDatabaseUnavailable(err) ? 'DATABASE_UNAVAILABLE' : undefined
}

/**
 * One place maps errors to answers: our codes, Fastify's own 4xx (bad JSON, wrong content type,
 * body too large, schema validation), database outages as 503, and anything else as a 500 that
 * is logged with context and answered without internals.
 */
export function registerErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    err = constraintError(err) ?? err
    if (err instanceof AppError) {
      // Ours but not the client's fault (a dependency out of reach): the operator needs the cause.
      if (err.statusCode >= 500 && err.cause !== undefined) request.log.warn({ err }, err.message)
      if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds))
      return reply.code(err.statusCode).send({ statusCode: err.statusCode, error: STATUS_CODES[err.statusCode], code: err.code, message: err.message })
    }
    const failure = databaseFailure(err)
    if (failure !== undefined) {
      request.log.warn({ err }, failure === 'DATABASE_BUSY' ? 'every database connection busy' : 'database unavailable')
      const unavailable = new AppError(failure, { cause: err })
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

/**
 * Security headers for a JSON API, on every answer (errors too, those before routing included): no
 * sniffing, no framing, no scripts or loads from anywhere, no referrer, HTTPS-only once seen over
 * HTTPS. One frozen object instead of @fastify/helmet's middleware chain per request, which cost
 * intake pace and memory (docs/decisions/0004-security-headers-by-hand.md).
 */
export const SECURITY_HEADERS = Object.freeze({
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'cross-origin-resource-policy': 'same-origin'
})

/**
 * Requests Fastify refuses before routing (a malformed percent-encoding, a path parameter over
 * maxParamLength): the same JSON shape as every other error, without echoing the path back.
 */
export function frameworkErrors (err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const [statusCode, message] = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
    ? [414, 'A path parameter is too long']
    : err.code === 'FST_ERR_BAD_URL'
      ? [400, 'The URL is malformed (invalid percent-encoding)']
      : [400, 'The request cannot be routed']
  void reply.code(statusCode).headers(SECURITY_HEADERS).send({ statusCode, error: STATUS_CODES[statusCode], code: err.code, message })
}

/**
 * Requests Node's HTTP parser refuses (headers over 16 KB, a control byte in a header, request
 * smuggling): Fastify's default answer had no `code`; this one has the API's shape. The connection
 * is closed after it, as HTTP requires after a framing error.
 */
export function clientErrorHandler (err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const [statusCode, code, message] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'HEADERS_TOO_LARGE', 'The request headers are too large (16 KB in all at most)']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'The request took too long to arrive']
      : [400, 'MALFORMED_REQUEST', 'The request is not valid HTTP/1.1']
  const body = JSON.stringify({ statusCode, error: STATUS_CODES[statusCode], code, message })
  const headers = Object.entries(SECURITY_HEADERS).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.end(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}Connection: close\r\n\r\n${body}`)
}
