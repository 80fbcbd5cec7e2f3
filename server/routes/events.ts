import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Db } from '../../db/client.ts'
import { closeSales, findEventById, insertEvent, listEvents, updateEvent, type EventSummary, type EventUpdate } from '../../db/events.ts'
import { AdminHeaders, requireAdmin } from '../auth.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse, IdParams } from '../schemas/common.ts'
import { CreateEventBody, Event, EventList, UpdateEventBody } from '../schemas/events.ts'

const LIST_LIMIT = 1000

function toEventResponse ({ cancelled_seats: cancelled, decided_through: _decidedThrough, ...event }: EventSummary) {
  return {
    ...event,
    sold: Number(event.sold),
    cancelled,
    sales_open_at: event.sales_open_at?.toISOString() ?? null,
    sales_close_at: event.sales_close_at?.toISOString() ?? null,
    created_at: event.created_at.toISOString()
  }
}

const toDate = (value: string | null | undefined): Date | null | undefined => value === undefined || value === null ? value : new Date(value)

// A window that closes before it opens is refused by the table's CHECK (events_sale_window),
// which errors.ts answers with 400 INVALID_SALE_WINDOW, whether both ends come in the request or
// one is already stored.

export const eventRoutes: FastifyPluginAsyncTypebox<{ db: Db, adminToken: string | undefined }> = async (app, { db, adminToken }) => {
  app.post('/events', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Create an event with a fixed number of seats, and optionally a per-user cap and a sale window (admin)',
      headers: AdminHeaders,
      body: CreateEventBody,
      response: { 201: Event, 400: ErrorResponse, 401: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const { sales_open_at: openAt, sales_close_at: closeAt, ...rest } = request.body
    const event = await insertEvent(db, { ...rest, sales_open_at: toDate(openAt), sales_close_at: toDate(closeAt) })
    return reply.code(201).header('location', `/events/${event.id}`).send(toEventResponse(event))
  })

  app.patch('/events/:id', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Change an event: name, seats (never below those sold), cap, sale window (admin). null clears a setting.',
      headers: AdminHeaders,
      params: IdParams,
      body: UpdateEventBody,
      response: { 200: Event, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const { sales_open_at: openAt, sales_close_at: closeAt, ...rest } = request.body
    const update: EventUpdate = { ...rest }
    if (openAt !== undefined) update.sales_open_at = toDate(openAt)
    if (closeAt !== undefined) update.sales_close_at = toDate(closeAt)
    const result = await updateEvent(db, request.params.id, update)
    if (result === 'not_found') throw new AppError('EVENT_NOT_FOUND')
    if (result === 'below_sold') throw new AppError('QUOTA_BELOW_SOLD')
    return toEventResponse(result)
  })

  app.post('/events/:id/close', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Close sales now (admin): new purchases get 409 SALE_CLOSED, queued ones fail with reason sale_closed',
      headers: AdminHeaders,
      params: IdParams,
      response: { 200: Event, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const event = await closeSales(db, request.params.id)
    if (event === undefined) throw new AppError('EVENT_NOT_FOUND')
    return toEventResponse(event)
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
      summary: 'One event: its seats (available, sold, pending, cancelled), cap and sale window',
      params: IdParams,
      response: { 200: Event, 400: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const event = await findEventById(db, request.params.id)
    if (event === undefined) throw new AppError('EVENT_NOT_FOUND')
    return toEventResponse(event)
  })
}
