import { fromKysely, type PgBoss } from 'pg-boss'
import { v5 as uuidv5 } from 'uuid'
import type { Db } from '../db/client.ts'
import { findEnabledEndpoints, takeOutbox } from '../db/webhooks.ts'
import { webhookMessage, webhookMessageId } from '../purchase/webhook-messages.ts'
import { DELIVERY_TIMEOUT_MS } from './webhook-send.ts'

// The webhook delivery queue (docs/decisions/0013-webhooks-outbox.md): its options, and the
// dispatcher's step that turns outbox rows into its jobs. The loops that run them are
// worker/webhooks.ts.

export const WEBHOOK_QUEUE = 'webhook_deliveries'
export const WEBHOOK_DEAD_LETTER_QUEUE = 'webhook_deliveries_dead'

/** The longest wait between two attempts, and how long attempts go on at least. */
const RETRY_DELAY_MAX_S = 3600
const RETRY_SPAN_S = 24 * 3600
// Job ids are derived (UUIDv5 of endpoint and message), so a message is queued once per endpoint.
const JOB_ID_NAMESPACE = '6d1f3c0e-2a7b-4f5e-8c9d-0b1a2c3d4e5f'

export interface DeliveryJob {
  endpoint_id: string
  message_id: string
  type: string
  /** The body, as sent: every attempt signs the same bytes. */
  body: string
}

/**
 * Attempts (retries after the first) for the waits to add up to RETRY_SPAN_S at least: pg-boss waits
 * between delay * 2^(n-1) and delay * 2^n before retry n, at most RETRY_DELAY_MAX_S; the shortest
 * waits are summed, so the span holds whatever the jitter draws.
 */
export function webhookRetryLimit (retryDelayS: number): number {
  let total = 0
  let retries = 0
  while (total < RETRY_SPAN_S) {
    retries += 1
    total += Math.min(RETRY_DELAY_MAX_S, retryDelayS * 2 ** (retries - 1))
  }
  return retries
}

/** Creates the delivery queue and its dead-letter queue, or brings their options up to date. */
export async function ensureWebhookQueues (boss: PgBoss, retryDelayS: number): Promise<void> {
  if (await boss.getQueue(WEBHOOK_DEAD_LETTER_QUEUE) === null) {
    await boss.createQueue(WEBHOOK_DEAD_LETTER_QUEUE, { retentionSeconds: 30 * 24 * 3600 })
  }
  const options = {
    retryLimit: webhookRetryLimit(retryDelayS),
    retryDelay: retryDelayS,
    retryBackoff: true,
    retryDelayMax: RETRY_DELAY_MAX_S,
    // Each attempt takes at most DELIVERY_TIMEOUT_MS (webhook-send.ts): past this, the process
    // that fetched the job is taken for dead and the job is tried again.
    expireInSeconds: Math.ceil(3 * DELIVERY_TIMEOUT_MS / 1000),
    // Waiting for a retry longer than the span is impossible; this only bounds a queue nobody works.
    retentionSeconds: 14 * 24 * 3600,
    deleteAfterSeconds: 24 * 3600,
    deadLetter: WEBHOOK_DEAD_LETTER_QUEUE
  }
  if (await boss.getQueue(WEBHOOK_QUEUE) === null) await boss.createQueue(WEBHOOK_QUEUE, { policy: 'standard', ...options })
  else await boss.updateQueue(WEBHOOK_QUEUE, options)
}

const DISPATCH_BATCH = 1000

/**
 * Queues the outbox's messages, one job per endpoint that wants each, `limit` per transaction until
 * the outbox is empty, or once only with `once`. Returns how many messages.
 */
export async function dispatchOutbox (db: Db, boss: PgBoss, { limit = DISPATCH_BATCH, once = false } = {}): Promise<number> {
  let taken = 0
  for (;;) {
    const n = await db.transaction().execute(async (trx) => {
      const messages = await takeOutbox(trx, limit)
      if (messages.length === 0) return 0
      const endpoints = await findEnabledEndpoints(trx)
      const jobs = messages.flatMap((message) => {
        const messageId = webhookMessageId(message.booking.id, message.booking.status)
        const body = webhookMessage(message.booking, message.changed_at)
        const json = JSON.stringify(body)
        return endpoints.filter((endpoint) => endpoint.event_types.includes(body.type)).map((endpoint) => ({
          id: uuidv5(`${endpoint.id}\n${messageId}`, JOB_ID_NAMESPACE),
          data: { endpoint_id: endpoint.id, message_id: messageId, type: body.type, body: json } satisfies DeliveryJob,
          // The endpoint is the job's group: DELIVERIES_IN_FLIGHT_PER_ENDPOINT bounds each.
          group: { id: endpoint.id }
        }))
      })
      if (jobs.length > 0) await boss.insert(WEBHOOK_QUEUE, jobs, { db: fromKysely(trx) })
      return messages.length
    })
    taken += n
    if (n < limit || once) return taken
  }
}

