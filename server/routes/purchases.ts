import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import type { Metrics } from '../../lib/metrics.ts'
import { API_STATUS, BOOKING_STATUS, FAILURE_REASON } from '../../purchase/vocabulary.ts'
import type { BuyerVerifier } from '../buyer-auth.ts'
import { AppError, rateLimited } from '../errors.ts'
import type { Intake } from '../intake/intake.ts'
import { ErrorResponse } from '../schemas/common.ts'
import { bookingLocation } from '../schemas/bookings.ts'
import { BuyAccepted, BuyBody, BuyBodyWithToken, BuyDecided, BuyHeaders } from '../schemas/purchases.ts'

const DECIDED_MESSAGE = {
  HELD: 'Seats held: confirm payment before the hold expires',
  SUCCESS: 'Purchase succeeded',
  FAILED: 'Purchase failed',
  CANCELLED: 'Booking cancelled',
  EXPIRED: 'Hold expired: the seats went back on sale'
} as const

export interface PurchaseRouteOptions {
  intake: Intake
  metrics: Metrics
  buyLimitPerUserPerMinute: number
  /** BUYER_AUTH=jwt: the buyer is the one a bearer token names. */
  buyers?: BuyerVerifier
}

export const purchaseRoutes: FastifyPluginAsyncTypebox<PurchaseRouteOptions> = async (app, { intake, metrics, buyLimitPerUserPerMinute, buyers }) => {
  // With buyer tokens, each request's buyer, verified before its body is read (after the
  // per-address limit, so guessing tokens is limited too).
  const buyerOf = new WeakMap<object, string>()
  const verifyBuyer = buyers === undefined
    ? []
    : [async (request: FastifyRequest) => { buyerOf.set(request, await buyers.verify(request.headers.authorization)) }]
  /** The purchase's buyer: the token's (a different user_id in the body is refused), else the body's user_id. */
  const buyerFor = (request: FastifyRequest): string => {
    const named = (request.body as { user_id?: string }).user_id?.toLowerCase()
    const proven = buyerOf.get(request)
    if (proven === undefined) return named as string
    if (named !== undefined && named !== proven) throw new AppError('BUYER_MISMATCH')
    return proven
  }
  // One user_id, however many addresses it comes from: checked after the body is validated. Its
  // own limiter (createRateLimit), not app.rateLimit(): that hook returns early on a request the
  // per-address limit has already counted, so it would never run when both are on.
  const userLimits: preHandlerAsyncHookHandler[] = []
  if (buyLimitPerUserPerMinute > 0) {
    const userLimit: RateLimitOptions = {
      max: buyLimitPerUserPerMinute,
      timeWindow: 60_000,
      cache: 100_000,
      keyGenerator: (request) => `buy:${buyerFor(request)}`
    }
    const limiter = app.createRateLimit(userLimit)
    userLimits.push(async (request) => {
      const limit = await limiter(request)
      // isAllowed means "on the allow list"; a counted request is over the limit when isExceeded.
      if (!limit.isAllowed && limit.isExceeded) throw rateLimited('purchases for this user_id', limit.max, limit.ttlInSeconds)
    })
  }
  app.post('/buy', {
    onRequest: verifyBuyer,
    preHandler: userLimits,
    schema: {
      summary: 'Ask for seats; the answer is a booking id to follow',
      description: '202: stored, waiting for its decision (follow the Location). 200: known at once: the event had no seats left (failed, sold_out), or a retry under an Idempotency-Key whose purchase is already decided. A retry under the same key answers with the same booking_id and the header Idempotent-Replayed: true.',
      headers: BuyHeaders,
      body: buyers === undefined ? BuyBody : BuyBodyWithToken,
      ...(buyers === undefined ? {} : { security: [{ buyer: [] }] }),
      response: {
        200: BuyDecided, 202: BuyAccepted,
        400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse
      }
    }
  }, async (request, reply) => {
    const { quantity = 1, max_wait_seconds } = request.body
    // PostgreSQL's uuid is case-blind, the job's payload and its group (the event) are not: one
    // spelling everywhere, as the database prints it.
    const eventId = request.body.event_id.toLowerCase()
    const userId = buyerFor(request)
    const submitted = await intake.submit({
      event_id: eventId,
      user_id: userId,
      quantity,
      idempotency_key: request.headers['idempotency-key'] ?? null,
      max_wait_seconds: max_wait_seconds ?? null
    })
    metrics.purchasesAccepted.inc({ outcome: submitted.replayed ? 'replayed' : submitted.status === BOOKING_STATUS.pending ? 'queued' : submitted.reason ?? API_STATUS[submitted.status] })
    void reply.header('location', bookingLocation(submitted.id, userId))
    if (submitted.replayed) void reply.header('idempotent-replayed', 'true')
    if (submitted.status === BOOKING_STATUS.pending) {
      return reply.code(202).send({ booking_id: submitted.id, status: API_STATUS[BOOKING_STATUS.pending], message: submitted.replayed ? 'Request already queued' : 'Request queued' })
    }
    const message = submitted.reason === FAILURE_REASON.soldOut ? 'Sold out' : DECIDED_MESSAGE[submitted.status]
    return reply.code(200).send({ booking_id: submitted.id, status: API_STATUS[submitted.status], reason: submitted.reason, message })
  })
}
