import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Db } from '../../db/client.ts'
import { findBookingById } from '../../db/bookings.ts'
import type { BookingRow } from '../../db/database.ts'
import { AppError } from '../errors.ts'
import { Booking } from '../schemas/bookings.ts'
import { ErrorResponse, IdParams } from '../schemas/common.ts'

const STATUS_FOR_CLIENTS = { PENDING: 'pending', SUCCESS: 'success', FAILED: 'failed' } as const

export function toBookingResponse (row: BookingRow) {
  return {
    booking_id: row.id,
    event_id: row.event_id,
    user_id: row.user_id,
    quantity: row.quantity,
    status: STATUS_FOR_CLIENTS[row.status],
    reason: row.reason,
    created_at: row.created_at.toISOString(),
    decided_at: row.decided_at?.toISOString() ?? null
  }
}

export const bookingRoutes: FastifyPluginAsyncTypebox<{ db: Db }> = async (app, { db }) => {
  app.get('/bookings/:id', {
    schema: {
      summary: 'A purchase and its outcome',
      params: IdParams,
      response: { 200: Booking, 400: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const row = await findBookingById(db, request.params.id)
    if (row === undefined) throw new AppError('BOOKING_NOT_FOUND')
    return toBookingResponse(row)
  })
}
