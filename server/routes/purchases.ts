import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Intake } from '../intake.ts'
import { ErrorResponse } from '../schemas/common.ts'
import { BuyAccepted, BuyBody } from '../schemas/purchases.ts'

export const purchaseRoutes: FastifyPluginAsyncTypebox<{ intake: Intake }> = async (app, { intake }) => {
  app.post('/buy', {
    schema: {
      summary: 'Ask for seats; the answer is a booking id to follow',
      body: BuyBody,
      response: { 202: BuyAccepted, 400: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const { event_id, user_id, quantity = 1 } = request.body
    const bookingId = await intake.submit({ event_id, user_id, quantity })
    return reply.code(202).header('location', `/bookings/${bookingId}`)
      .send({ booking_id: bookingId, status: 'pending', message: 'Request queued' })
  })
}
