import { setTimeout as sleep } from 'node:timers/promises'
import { fromKysely, type Job, type JobAttempt, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import { v5 as uuidv5 } from 'uuid'
import type { Db } from '../db/client.ts'
import type { WebhookEndpointRow } from '../db/database.ts'
import { findActiveEndpoints, findEnabledEndpoints, pruneDeliveries, recordDeliveries, takeOutbox, disableEndpoint, type NewDelivery } from '../db/webhooks.ts'
import type { Metrics } from '../lib/metrics.ts'
import { webhookMessage, webhookMessageId } from '../purchase/webhook-messages.ts'
import { send } from './webhook-send.ts'

// Webhook delivery (docs/decisions/0013-webhooks-outbox.md). Two loops in the worker process, on a
// pool of their own, apart from settlement:
// - the dispatcher takes the outbox rows the bookings table's triggers wrote, and queues one
//   pg-boss job per message and endpoint that wants it, in the transaction that deletes them: a
//   crash either side of its commit leaves the rows or the jobs, never neither, never both;
// - the delivery loop fetches the jobs, sends each signed, and settles each when its own attempt
//   ends; pg-boss retries failures with exponential backoff for at least a day, then dead-letters
//   them. A worker killed mid-delivery leaves its job active, and pg-boss retries it once
//   expireInSeconds has passed.

export const WEBHOOK_QUEUE = 'webhook_deliveries'
export const WEBHOOK_DEAD_LETTER_QUEUE = 'webhook_deliveries_dead'

/** The longest wait between two attempts, and how long attempts go on at least. */
const RETRY_DELAY_MAX_S = 3600
const RETRY_SPAN_S = 24 * 3600
/** Delivery attempts kept for the operator (GET /webhooks/:id/deliveries). */
const DELIVERY_LOG_DAYS = 7
/**
 * Requests open at once in a process, and at most this many to one endpoint across processes
 * (pg-boss's group concurrency, the endpoint being the job's group): a receiver that never answers
 * holds its share for 5 s at a time, and the other endpoints' messages go on in the rest.
 */
export const DELIVERIES_IN_FLIGHT = 200
export const DELIVERIES_IN_FLIGHT_PER_ENDPOINT = 100

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
    expireInSeconds: 15,
    // Waiting for a retry longer than the span is impossible; this only bounds a queue nobody works.
    retentionSeconds: 14 * 24 * 3600,
    deleteAfterSeconds: 24 * 3600,
    deadLetter: WEBHOOK_DEAD_LETTER_QUEUE
  }
  if (await boss.getQueue(WEBHOOK_QUEUE) === null) await boss.createQueue(WEBHOOK_QUEUE, { policy: 'standard', ...options })
  else await boss.updateQueue(WEBHOOK_QUEUE, options)
}

export interface WebhookDeps {
  db: Db
  boss: PgBoss
  log: Logger
  metrics?: Metrics
  allowPrivateNetworks: boolean
  /** Whether the sale is running in this process: messages are then queued at a trickle (WHILE_SALE_BUSY). */
  saleBusy?: () => boolean
}

export interface WebhookLoops {
  /** Look at the outbox now. */
  wake: () => void
  stop: () => Promise<void>
}

const DISPATCH_INTERVAL_MS = 250
const DISPATCH_BATCH = 1000
// While the sale runs, messages are queued at most this many per tick (100 a second): delivery
// then costs the sale a few percent, and catches up at full speed once the sale is quiet.
const WHILE_SALE_BUSY = 25
const PRUNE_INTERVAL_MS = 10 * 60_000
// The delivery loop looks for jobs that came due (retries) this often when it has nothing to do,
// and at least this often while attempts are under way.
const DELIVERY_IDLE_POLL_MS = 1000
const DELIVERY_POLL_MS = 250
const DELIVERY_TURN_MS = 20
const ERROR_BACKOFF_MS = 1000

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

interface Attempt {
  job: JobAttempt
  delivery: NewDelivery | undefined
  delivered: boolean
  gone: boolean
}

/**
 * Starts the dispatcher and the delivery loop. The loop keeps up to DELIVERIES_IN_FLIGHT requests
 * open, fetching more as attempts end, and settles the ended ones together every turn: one slow
 * receiver delays nobody else's messages. While the sale runs (`saleBusy`), the dispatcher queues a
 * trickle, so delivery waits for quiet.
 */
export async function startWebhookLoops (deps: WebhookDeps): Promise<WebhookLoops> {
  const log = deps.log.child({ component: 'webhooks' })
  let stopping = false
  let wakeUp: AbortController | undefined
  let woken = false
  // Aborted to end the delivery loop's wait: an attempt ended, or messages were queued.
  let deliveryTurn: AbortController | undefined

  const dispatching = (async () => {
    let prunedAt = 0
    while (!stopping) {
      woken = false
      try {
        const busy = deps.saleBusy?.() ?? false
        const n = await dispatchOutbox(deps.db, deps.boss, busy ? { limit: WHILE_SALE_BUSY, once: true } : {})
        if (n > 0) {
          log.debug({ messages: n }, 'webhook messages queued')
          deliveryTurn?.abort()
        }
        if (Date.now() - prunedAt > PRUNE_INTERVAL_MS) {
          prunedAt = Date.now()
          await pruneDeliveries(deps.db, DELIVERY_LOG_DAYS)
        }
      } catch (err) {
        log.warn({ err }, 'could not queue webhook messages; trying again')
        await sleep(ERROR_BACKOFF_MS)
      }
      if (stopping || woken) continue
      wakeUp = new AbortController()
      await sleep(DISPATCH_INTERVAL_MS, undefined, { signal: wakeUp.signal }).catch(() => {})
      wakeUp = undefined
    }
  })()

  /** One attempt at one job; never throws. */
  async function attempt (job: Job<DeliveryJob>, endpoint: WebhookEndpointRow | undefined): Promise<Attempt> {
    const fence = { id: job.id, retryCount: job.retryCount }
    // Deleted or disabled since it was queued: nothing to send, nothing to retry.
    if (endpoint === undefined) return { job: fence, delivery: undefined, delivered: true, gone: false }
    const started = performance.now()
    const outcome = await send(endpoint.url, endpoint.secret, job.data, deps.allowPrivateNetworks)
    const delivered = outcome.statusCode !== undefined && outcome.statusCode >= 200 && outcome.statusCode < 300
    const gone = outcome.statusCode === 410
    deps.metrics?.webhookDeliveries.inc({ outcome: delivered ? 'delivered' : gone ? 'gone' : 'failed' })
    const delivery: NewDelivery = {
      endpoint_id: endpoint.id,
      message_id: job.data.message_id,
      type: job.data.type,
      attempt: job.retryCount + 1,
      status_code: outcome.statusCode ?? null,
      error: outcome.error ?? null,
      response_excerpt: outcome.excerpt ?? null,
      duration_ms: Math.round(performance.now() - started)
    }
    return { job: fence, delivery, delivered, gone }
  }

  /** Logs the ended attempts, completes the delivered (and 410) jobs and fails the rest, fenced to the attempt fetched. */
  async function settle (ended: Attempt[]): Promise<void> {
    await recordDeliveries(deps.db, ended.flatMap((a) => a.delivery === undefined ? [] : [a.delivery]))
    const completed = ended.filter((a) => a.delivered || a.gone).map((a) => a.job)
    const failed = ended.filter((a) => !a.delivered && !a.gone).map((a) => a.job)
    if (completed.length > 0) await deps.boss.complete(WEBHOOK_QUEUE, completed)
    if (failed.length > 0) await deps.boss.fail(WEBHOOK_QUEUE, failed)
    for (const endpointId of new Set(ended.filter((a) => a.gone && a.delivery !== undefined).map((a) => a.delivery?.endpoint_id as string))) {
      await disableEndpoint(deps.db, endpointId, 'the receiver answered 410 Gone')
      log.warn({ endpointId }, 'webhook endpoint disabled: its receiver answered 410 Gone')
    }
  }

  const inFlight = new Set<Promise<void>>()
  const ended: Attempt[] = []
  const delivering = (async () => {
    while (!stopping || inFlight.size > 0 || ended.length > 0) {
      let wanted: number
      let fetched = 0
      try {
        if (ended.length > 0) {
          const batch = ended.splice(0)
          await settle(batch).catch((err: unknown) => {
            ended.unshift(...batch)
            throw err
          })
        }
        wanted = stopping ? 0 : DELIVERIES_IN_FLIGHT - inFlight.size
        if (wanted > 0) {
          const jobs = await deps.boss.fetch<DeliveryJob>(WEBHOOK_QUEUE, { batchSize: wanted, groupConcurrency: DELIVERIES_IN_FLIGHT_PER_ENDPOINT })
          fetched = jobs.length
          if (fetched > 0) {
            const endpoints = new Map((await findActiveEndpoints(deps.db, [...new Set(jobs.map((job) => job.data.endpoint_id))])).map((e) => [e.id, e]))
            for (const job of jobs) {
              const running: Promise<void> = attempt(job, endpoints.get(job.data.endpoint_id)).then((a) => {
                ended.push(a)
                inFlight.delete(running)
                deliveryTurn?.abort()
              })
              inFlight.add(running)
            }
          }
        }
      } catch (err) {
        // Jobs fetched but not started expire and are tried again (expireInSeconds).
        log.warn({ err }, 'webhook delivery: could not fetch or settle; trying again')
        await sleep(ERROR_BACKOFF_MS)
        continue
      }
      // At once when the fetch got all it asked for (more may be queued); else until an attempt
      // ends, messages are queued, or the poll for retries come due.
      if (!(fetched > 0 && fetched === wanted) && ended.length === 0) {
        deliveryTurn = new AbortController()
        await sleep(inFlight.size > 0 ? DELIVERY_POLL_MS : DELIVERY_IDLE_POLL_MS, undefined, { signal: deliveryTurn.signal }).catch(() => {})
        deliveryTurn = undefined
      }
      // An attempt ended: the others are given until they all end, or DELIVERY_TURN_MS, to be
      // settled with it in one turn, not one statement each.
      if (ended.length > 0 && inFlight.size > 0) await Promise.race([Promise.all(inFlight), sleep(DELIVERY_TURN_MS)])
    }
  })()
  log.info('webhook dispatcher and delivery started')

  return {
    wake () {
      woken = true
      wakeUp?.abort()
    },
    async stop () {
      stopping = true
      wakeUp?.abort()
      deliveryTurn?.abort()
      await dispatching
      // Attempts under way are let finish (5 s at most) and settled.
      await delivering
    }
  }
}
