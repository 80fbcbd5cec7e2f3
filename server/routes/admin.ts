import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { withEveryPlan, type Db } from '../../db/client.ts'
import { checkEventInvariants, findFailedJobs } from '../../db/invariants.ts'
import { AdminHeaders, requireAdmin } from '../auth.ts'
import { AppError } from '../errors.ts'
import { FailedJobsQuery, FailedJobsReport, InvariantsQuery, InvariantsReport } from '../schemas/admin.ts'
import { ErrorResponse } from '../schemas/common.ts'

export const adminRoutes: FastifyPluginAsyncTypebox<{ db: Db, adminToken: string | undefined }> = async (app, { db, adminToken }) => {
  app.get('/admin/invariants', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Check the books of each event (admin): total = available + held + sold, nothing oversold, nobody over the cap, no pending purchase without its job, no hold left long past its expiry',
      description: 'Always 200 when the check could run: `ok` says whether every rule held, and each event lists what broke. Read in one snapshot, so it is exact during a sale too. It sums the events\' bookings: an operator\'s check, not a per-second probe.',
      headers: AdminHeaders,
      querystring: InvariantsQuery,
      response: { 200: InvariantsReport, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const { event_id: eventId, limit = '100' } = request.query
    // Sums whole events: planned with scans and hash joins, which the API's pool otherwise avoids.
    const events = await withEveryPlan(db, async (trx) => await checkEventInvariants(trx, { eventId, limit: Number(limit) }))
    if (eventId !== undefined && events.length === 0) throw new AppError('EVENT_NOT_FOUND')
    return { ok: events.every((event) => event.ok), checked_at: new Date().toISOString(), events }
  })

  app.get('/admin/failed-purchases', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Purchases and cancellations whose decision kept failing until given up on (admin), newest first, with their bookings and errors, and the dead-letter queue\'s size',
      headers: AdminHeaders,
      querystring: FailedJobsQuery,
      response: { 200: FailedJobsReport, 400: ErrorResponse, 401: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const { deadLettered, failed } = await withEveryPlan(db, async (trx) => await findFailedJobs(trx, Number(request.query.limit ?? '100')))
    return { dead_lettered: deadLettered, failed: failed.map((job) => ({ ...job, failed_at: job.failed_at?.toISOString() ?? null })) }
  })
}
