// Usage: node bench/noop-server.ts   (PORT, HOST from the environment; started by flash-sale.ts)
//
// The ceiling: the same Fastify, the same POST /buy schema validation and the same JSON reply
// shape as the real server, but no database and no queue. Whatever this answers per second on
// this machine, with the same load generator and concurrency, is what the real intake is
// measured against.
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { bookingLocation } from '../server/schemas/bookings.ts'
import { BuyAccepted, BuyBody } from '../server/schemas/purchases.ts'

const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } })
  .withTypeProvider<TypeBoxTypeProvider>()
app.post('/buy', { schema: { body: BuyBody, response: { 202: BuyAccepted } } }, async (request, reply) => {
  const bookingId = randomUUID()
  return reply.code(202).header('location', bookingLocation(bookingId, request.body.user_id))
    .send({ booking_id: bookingId, status: 'pending', message: 'Request queued' })
})
await app.listen({ port: Number(process.env.PORT ?? 0), host: process.env.HOST ?? '127.0.0.1' })
process.stdout.write(`ready ${JSON.stringify(app.server.address())}\n`)
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
