import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { withEveryPlan, type Db } from '../../db/client.ts'
import type { WebhookEndpointRow } from '../../db/database.ts'
import { deleteEndpoint, findDeliveries, findEndpoint, insertEndpoint, listEndpoints, MAX_WEBHOOK_ENDPOINTS } from '../../db/webhooks.ts'
import { RefusedAddressError, resolvePublicTarget } from '../../lib/network-guard.ts'
import { newWebhookSecret } from '../../lib/webhook-signature.ts'
import { WEBHOOK_EVENT_TYPES } from '../../purchase/webhook-messages.ts'
import { AdminHeaders, requireAdmin } from '../auth.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse, IdParams } from '../schemas/common.ts'
import { CreatedWebhook, DeliveriesQuery, DeliveryList, WebhookBody, WebhookList } from '../schemas/webhooks.ts'

// The seller's webhook endpoints (admin). Messages and their delivery: worker/webhooks.ts.

const toWebhook = (row: WebhookEndpointRow) => ({
  id: row.id,
  url: row.url,
  events: row.event_types as Array<typeof WEBHOOK_EVENT_TYPES[number]>,
  created_at: row.created_at.toISOString(),
  disabled_at: row.disabled_at?.toISOString() ?? null,
  disabled_reason: row.disabled_reason
})

/** The URL as it will be called, or WEBHOOK_URL_REFUSED saying why not. */
async function checkedUrl (raw: string, allowPrivate: boolean): Promise<string> {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new AppError('WEBHOOK_URL_REFUSED', { message: 'url is not an absolute URL, e.g. https://hooks.example.com/boxoffice' })
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:')) {
    throw new AppError('WEBHOOK_URL_REFUSED', { message: allowPrivate ? 'url must be https:// or http://' : 'url must be https:// (http:// only with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)' })
  }
  if (url.username !== '' || url.password !== '') {
    throw new AppError('WEBHOOK_URL_REFUSED', { message: 'url must not carry a user name or password: they would be shown to every admin; verify the signature instead' })
  }
  // A name that does not resolve (yet) is taken: every delivery checks again, and its log says why
  // one failed. One that resolves to an address it may not reach is refused now.
  try {
    await resolvePublicTarget(url.hostname, allowPrivate)
  } catch (err) {
    if (err instanceof RefusedAddressError) throw new AppError('WEBHOOK_URL_REFUSED', { message: `url refused: ${err.message}` })
  }
  return url.href
}

type Options = { db: Db, adminToken: string | undefined, allowPrivateNetworks: boolean }

export const webhookRoutes: FastifyPluginAsyncTypebox<Options> = async (app, { db, adminToken, allowPrivateNetworks }) => {
  app.post('/webhooks', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Register a webhook endpoint (admin): signed messages for each status a booking reaches',
      description: `Answers with the signing secret, shown only here. Messages follow the Standard Webhooks specification (docs/api.md, "Webhooks"). At most ${MAX_WEBHOOK_ENDPOINTS} endpoints.`,
      headers: AdminHeaders,
      body: WebhookBody,
      response: { 201: CreatedWebhook, 400: ErrorResponse, 401: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    const url = await checkedUrl(request.body.url, allowPrivateNetworks)
    const eventTypes = request.body.events ?? [...WEBHOOK_EVENT_TYPES]
    const secret = newWebhookSecret()
    const row = await withEveryPlan(db, async (trx) => await insertEndpoint(trx, { id: randomUUID(), url, eventTypes, secret }))
    if (row === undefined) throw new AppError('WEBHOOK_LIMIT_REACHED')
    const { disabled_at: _d, disabled_reason: _r, ...created } = toWebhook(row)
    return await reply.code(201).header('location', `/webhooks/${row.id}`).send({ ...created, secret })
  })

  app.get('/webhooks', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'The webhook endpoints (admin), oldest first; secrets are not shown',
      headers: AdminHeaders,
      response: { 200: WebhookList, 401: ErrorResponse, 503: ErrorResponse }
    }
  }, async () => {
    const rows = await withEveryPlan(db, async (trx) => await listEndpoints(trx))
    return { webhooks: rows.map(toWebhook) }
  })

  app.delete('/webhooks/:id', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Delete a webhook endpoint (admin): its queued messages are dropped and its delivery log goes with it',
      headers: AdminHeaders,
      params: IdParams,
      response: { 204: { type: 'null', description: 'Deleted' }, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request, reply) => {
    if (!await deleteEndpoint(db, request.params.id)) throw new AppError('WEBHOOK_NOT_FOUND')
    return await reply.code(204).send()
  })

  app.get('/webhooks/:id/deliveries', {
    preParsing: requireAdmin(adminToken),
    schema: {
      summary: 'Recent delivery attempts to one endpoint (admin), newest first: message id, type, answer or error, attempt, time',
      headers: AdminHeaders,
      params: IdParams,
      querystring: DeliveriesQuery,
      response: { 200: DeliveryList, 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 503: ErrorResponse }
    }
  }, async (request) => {
    const { id } = request.params
    const [endpoint, deliveries] = await Promise.all([findEndpoint(db, id), findDeliveries(db, id, Number(request.query.limit ?? '100'))])
    if (endpoint === undefined) throw new AppError('WEBHOOK_NOT_FOUND')
    return {
      deliveries: deliveries.map((d) => ({
        message_id: d.message_id,
        type: d.type as typeof WEBHOOK_EVENT_TYPES[number],
        attempt: d.attempt,
        status_code: d.status_code,
        error: d.error,
        response_excerpt: d.response_excerpt,
        duration_ms: d.duration_ms,
        attempted_at: d.attempted_at.toISOString()
      }))
    }
  })
}
