import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Db } from '../../db/client.ts'
import { findEventById, insertEvent, listEvents, type EventSummary } from '../../db/events.ts'
import { requireAdmin } from '../auth.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse, IdParams } from '../schemas/common.ts'
import { CreateEventBody, Event, EventList } from '../schemas/events.ts'

const LIST_LIMIT = 1000

function toEventResponse (event: EventSummary) {
  return { ...event, sold: Number(event.sold), created_at: event.created_at.toISOString() }
}

export const eventRoutes: FastifyPluginAsyncTypebox<{ db: Db, adminToken: string | undefined }> = async (app, { db, adminToken }) => {
  app.post('/events', {
    preHandler: requireAdmin(adminToken),
    schema: {
      summary: 'Create an event with a fixed number of seats (admin)',
      headers: { type: 'object', properties: { authorization: { type: 'string' } } },
      body: CreateEventBody,
      response: { 201: Event, 400: ErrorResponse, 401: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const event = await insertEvent(db, request.body)
    return reply.code(201).header('location', `/events/${event.id}`).send(toEventResponse(event))
  })

  app.get('/events', {
    schema: {
      summary: `Events, newest first (at most ${LIST_LIMIT})`,
      response: { 200: EventList, 503: ErrorResponse }
    }
  }, async () => {
    const events = await listEvents(db, { limit: LIST_LIMIT })
    return { events: events.map(toEventResponse) }
  })

  app.get('/events/:id', {
    schema: {
      summary: 'One event and its seats',
      params: IdParams,
      response: { 200: Event, 400: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const event = await findEventById(db, request.params.id)
    if (event === undefined) throw new AppError('EVENT_NOT_FOUND')
    return toEventResponse(event)
  })
}
