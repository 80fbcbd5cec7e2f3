import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { BookingView } from '../../db/booking-views.ts'
import type { Db } from '../../db/client.ts'
import { confirmHold } from '../../db/holds.ts'
import type { Metrics } from '../../lib/metrics.ts'
import { requestCancellation } from '../../purchase/cancellation.ts'
import { bookingJson } from '../../purchase/booking-json.ts'
import { BOOKING_STATUS, isResolved } from '../../purchase/vocabulary.ts'
import { AdminHeaders, bookingAccess, requireAdmin } from '../auth.ts'
import type { BookingReader } from '../booking-reader.ts'
import type { BookingWaiter } from '../booking-waiter.ts'
import type { BuyerVerifier } from '../buyer-auth.ts'
import { AppError } from '../errors.ts'
import { Booking, BookingQuery, bookingLocation, CancelQuery, ConfirmBody } from '../schemas/bookings.ts'
import { ErrorResponse, IdParams } from '../schemas/common.ts'

/**
 * The booking, or BOOKING_NOT_FOUND. With `ownedBy`, another buyer's booking is not found either,
 * answered exactly as an unknown id (same body, from the same query), so that a user_id cannot
 * learn whether someone else's booking exists.
 */
async function findOrThrow (reader: BookingReader, id: string, ownedBy: string | null): Promise<BookingView> {
  const row = await reader.find(id, ownedBy)
  if (row === undefined) throw new AppError('BOOKING_NOT_FOUND')
  return row
}

// In OpenAPI: no credential (the buyer's ?user_id= is a query parameter), or the admin's bearer token.
const BUYER_OR_ADMIN: Array<Record<string, string[]>> = [{}, { admin: [] }]
// With buyer tokens: the buyer's token, or the admin's.
const BUYER_TOKEN_OR_ADMIN: Array<Record<string, string[]>> = [{ buyer: [] }, { admin: [] }]

export interface BookingRouteOptions {
  db: Db
  reader: BookingReader
  waiter: BookingWaiter
  adminToken: string | undefined
  /** Wakes the workers after a cancellation was queued. */
  onQueued: () => void
  metrics?: Metrics
  /** BUYER_AUTH=jwt: buyers prove who they are with a token instead of ?user_id=. */
  buyers?: BuyerVerifier
}

export const bookingRoutes: FastifyPluginAsyncTypebox<BookingRouteOptions> = async (app, { db, reader, waiter, adminToken, onQueued, metrics, buyers }) => {
  const askerOf = bookingAccess(adminToken, buyers)
  const security = buyers === undefined ? BUYER_OR_ADMIN : BUYER_TOKEN_OR_ADMIN

  app.get('/bookings/:id', {
    schema: {
      summary: 'A purchase and its outcome; ?wait=N holds the answer up to N seconds until it is settled',
      description: 'Only for its buyer (?user_id=, as in the Location of POST /buy) or the admin (Authorization: Bearer). 400 BOOKING_OWNER_REQUIRED: neither given. 401 UNAUTHORIZED: a token that is not the admin\'s. 404 BOOKING_NOT_FOUND: no such booking, or another user\'s: one answer for both, so a user_id cannot tell whether someone else\'s booking exists. With ?wait=, the owner is checked first: another user\'s request is answered at once.',
      params: IdParams,
      querystring: BookingQuery,
      headers: AdminHeaders,
      security,
      response: { 200: Booking, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const id = request.params.id
    // Before anything waits: a request for a booking that is not the asker's is answered at once.
    const asker = await askerOf(request, request.query.user_id)
    const ownedBy = asker.admin ? null : asker.userId
    let row = await findOrThrow(reader, id, ownedBy)
    const waitSeconds = Number(request.query.wait ?? 0)
    if (waitSeconds > 0 && !isResolved(row)) {
      // Ends early if the client goes away.
      const gone = new AbortController()
      const onClose = (): void => { gone.abort() }
      reply.raw.once('close', onClose)
      await waiter.until(id, waitSeconds * 1000, gone.signal)
      reply.raw.off('close', onClose)
      row = await findOrThrow(reader, id, ownedBy)
    }
    return bookingJson(row)
  })

  app.delete('/bookings/:id', {
    schema: {
      summary: 'Cancel a booking: a held or successful one gives its seats back, a pending one is withdrawn',
      description: 'By the buyer (?user_id=) or the admin (Authorization: Bearer); neither: 400 BOOKING_OWNER_REQUIRED; another user\'s booking: 404 BOOKING_NOT_FOUND, as an unknown id. 202: the cancellation is queued behind the purchases before it (follow the Location until status is cancelled); a held booking asked to cancel can no longer be confirmed. 200: already cancelled. 409 BOOKING_NOT_CANCELLABLE: the booking failed or its hold expired, there is nothing to cancel.',
      params: IdParams,
      querystring: CancelQuery,
      headers: AdminHeaders,
      security,
      response: {
        200: Booking, 202: Booking, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse
      }
    }
  }, async (request, reply) => {
    const id = request.params.id
    const asker = await askerOf(request, request.query.user_id)
    // Another user's booking is a 404 like an unknown id, as for GET: its existence is not told.
    const owner = asker.admin ? null : asker.userId
    let row = await findOrThrow(reader, id, owner)
    if (row.status === BOOKING_STATUS.failed || row.status === BOOKING_STATUS.expired) throw new AppError('BOOKING_NOT_CANCELLABLE')
    if (row.status !== BOOKING_STATUS.cancelled) {
      const queued = await requestCancellation(db, row)
      if (queued !== undefined) {
        onQueued()
        row = { ...row, ...queued }
      } else {
        // Requested already, or changed since it was read: answer with what it is now.
        row = await findOrThrow(reader, id, owner)
        // Decided while we looked (a pending purchase that failed, a hold that expired): nothing to cancel.
        if (row.status === BOOKING_STATUS.failed || row.status === BOOKING_STATUS.expired) throw new AppError('BOOKING_NOT_CANCELLABLE')
      }
    }
    return reply.code(row.status === BOOKING_STATUS.cancelled ? 200 : 202)
      .header('location', bookingLocation(id, row.user_id))
      .send(bookingJson(row))
  })

  app.post('/bookings/:id/confirm', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Confirm a held booking\'s payment (admin: the seller\'s payment backend): its seats are sold for good',
      description: 'Answered at once, not queued. 200: the booking, status success, confirmed_at set (payment_reference kept). Safe to retry: confirming a confirmed booking answers 200 again with the same booking (the first payment_reference stays). 409 HOLD_EXPIRED: the hold ran out first, its seats go back on sale and it is not sold: refund the payment. 409 BOOKING_NOT_CONFIRMABLE: not held (pending, failed, cancelled, sold without a hold, or its buyer asked to cancel). 404: no such booking. Exactly one of a confirmation and the expiry wins, however close they come.',
      headers: AdminHeaders,
      params: IdParams,
      body: ConfirmBody,
      security: [{ admin: [] }],
      response: { 200: Booking, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const result = await confirmHold(db, request.params.id, request.body?.payment_reference ?? null)
    if (result.outcome === 'not_found') throw new AppError('BOOKING_NOT_FOUND')
    if (result.outcome === 'expired') throw new AppError('HOLD_EXPIRED')
    if (result.outcome === 'not_confirmable') throw new AppError('BOOKING_NOT_CONFIRMABLE')
    if (result.outcome === 'confirmed') metrics?.holdsEnded.inc({ outcome: 'confirmed' })
    return bookingJson(result.booking)
  })
}
