// Usage: node bench/noop-server.ts   (PORT, HOST from the environment; started by flash-sale.ts)
//
// The ceiling: the same Fastify, the same POST /buy and GET /bookings/:id schema validation and
// the same JSON reply shapes as the real server, but no database and no queue. Whatever this
// answers per second on this machine, with the same load generator and concurrency, is what the
// real intake and reads are measured against.
import { randomUUID } from 'node:crypto'
import type { Static } from '@sinclair/typebox'
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Booking, BookingQuery, bookingLocation } from '../server/schemas/bookings.ts'
import { IdParams } from '../server/schemas/common.ts'
import { BuyAccepted, BuyBody, BuyBodyWithToken } from '../server/schemas/purchases.ts'

// With buyer tokens (BUYER_AUTH=jwt, bench --buyer-tokens) the real service takes bodies without
// user_id, and so does this; the token itself is ignored: checking it is the service's work, which
// the ceiling leaves out. The Location then names a stand-in of the same length.
const withTokens = process.env.BUYER_AUTH === 'jwt'

const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } })
  .withTypeProvider<TypeBoxTypeProvider>()
app.post('/buy', { schema: { body: withTokens ? BuyBodyWithToken : BuyBody, response: { 202: BuyAccepted } } }, async (request, reply) => {
  const bookingId = randomUUID()
  return reply.code(202).header('location', bookingLocation(bookingId, request.body.user_id ?? bookingId))
    .send({ booking_id: bookingId, status: 'pending', message: 'Request queued' })
})
// A decided booking, as the real server answers its buyer.
const decided = (id: string, userId: string): Static<typeof Booking> => ({
  booking_id: id, event_id: id, user_id: userId, quantity: 1, status: 'success', reason: null, position: null, estimated_wait_ms: null,
  max_wait_seconds: null, expires_at: null, created_at: new Date().toISOString(), decided_at: new Date().toISOString(),
  cancel_requested_at: null, cancelled_at: null, hold_expires_at: null, confirmed_at: null, payment_reference: null
})
app.get('/bookings/:id', { schema: { params: IdParams, querystring: BookingQuery, response: { 200: Booking } } }, async (request) =>
  decided(request.params.id, request.query.user_id ?? request.params.id))
await app.listen({ port: Number(process.env.PORT ?? 0), host: process.env.HOST ?? '127.0.0.1' })
process.stdout.write(`ready ${JSON.stringify(app.server.address())}\n`)
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
