import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Intake } from '../intake.ts'
import { ErrorResponse } from '../schemas/common.ts'
import { BuyAccepted, BuyBody, BuyDecided } from '../schemas/purchases.ts'

export const purchaseRoutes: FastifyPluginAsyncTypebox<{ intake: Intake }> = async (app, { intake }) => {
  app.post('/buy', {
    schema: {
      summary: 'Ask for seats; the answer is a booking id to follow',
      description: '202: stored, waiting for its decision (poll the Location). 200: decided at once, because the event had no seats left when the purchase was stored (status failed, reason sold_out).',
      body: BuyBody,
      response: { 200: BuyDecided, 202: BuyAccepted, 400: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const { event_id, user_id, quantity = 1 } = request.body
    const submitted = await intake.submit({ event_id, user_id, quantity })
    void reply.header('location', `/bookings/${submitted.id}`)
    if (submitted.status === 'FAILED') {
      return reply.code(200).send({ booking_id: submitted.id, status: 'failed', reason: submitted.reason, message: 'Sold out' })
    }
    return reply.code(202).send({ booking_id: submitted.id, status: 'pending', message: 'Request queued' })
  })
}
