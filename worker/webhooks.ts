import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fromKysely, type Job, type JobResult, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import { v5 as uuidv5 } from 'uuid'
import type { Db } from '../db/client.ts'
import { findActiveEndpoints, findEnabledEndpoints, pruneDeliveries, recordDeliveries, takeOutbox, disableEndpoint, type NewDelivery } from '../db/webhooks.ts'
import type { Metrics } from '../lib/metrics.ts'
import { RefusedAddressError, resolvePublicTarget } from '../lib/network-guard.ts'
import { webhookHeaders } from '../lib/webhook-signature.ts'
import { webhookMessage, webhookMessageId } from '../purchase/webhook-messages.ts'

// Webhook delivery (docs/decisions/0013-webhooks-outbox.md). Two loops in the worker process, on a
// pool of their own, apart from settlement:
// - the dispatcher takes the outbox rows the bookings table's triggers wrote, and queues one
//   pg-boss job per message and endpoint that wants it, in the transaction that deletes them: a
//   crash either side of its commit leaves the rows or the jobs, never neither, never both;
// - pg-boss workers deliver the jobs, signed, and retry failures with exponential backoff for at
//   least a day, then dead-letter them. A worker killed mid-delivery leaves its job active, and
//   pg-boss retries it once expireInSeconds has passed.

export const WEBHOOK_QUEUE = 'webhook_deliveries'
export const WEBHOOK_DEAD_LETTER_QUEUE = 'webhook_deliveries_dead'

/** A receiver has this long to answer, connection included. */
export const DELIVERY_TIMEOUT_MS = 5000
/** The longest wait between two attempts, and how long attempts go on at least. */
const RETRY_DELAY_MAX_S = 3600
const RETRY_SPAN_S = 24 * 3600
/** Bytes of a receiver's answer kept in the delivery log. */
const EXCERPT_BYTES = 256
/** Delivery attempts kept for the operator (GET /webhooks/:id/deliveries). */
const DELIVERY_LOG_DAYS = 7

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
    // A batch is delivered in parallel, each attempt at most DELIVERY_TIMEOUT_MS: past this, its
    // worker is taken for dead and the job is tried again.
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
          data: { endpoint_id: endpoint.id, message_id: messageId, type: body.type, body: json } satisfies DeliveryJob
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
  result: JobResult
  delivery: NewDelivery | undefined
  gone: boolean
}

/**
 * Starts the dispatcher and the delivery workers. Deliveries are fetched 50 at a time by each of
 * two pg-boss workers and sent in parallel; a full batch is followed at once by the next. While
 * the sale runs (`saleBusy`), the dispatcher queues a trickle, so delivery waits for quiet.
 */
export async function startWebhookLoops (deps: WebhookDeps): Promise<WebhookLoops> {
  const log = deps.log.child({ component: 'webhooks' })
  let stopping = false
  let wakeUp: AbortController | undefined
  let woken = false

  const dispatching = (async () => {
    let prunedAt = 0
    while (!stopping) {
      woken = false
      try {
        const busy = deps.saleBusy?.() ?? false
        const n = await dispatchOutbox(deps.db, deps.boss, busy ? { limit: WHILE_SALE_BUSY, once: true } : {})
        if (n > 0) log.debug({ messages: n }, 'webhook messages queued')
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

  async function deliverBatch (jobs: Array<Job<DeliveryJob>>): Promise<JobResult[]> {
    const endpoints = new Map((await findActiveEndpoints(deps.db, [...new Set(jobs.map((job) => job.data.endpoint_id))])).map((e) => [e.id, e]))
    const attempts = await Promise.all(jobs.map(async (job): Promise<Attempt> => {
      const endpoint = endpoints.get(job.data.endpoint_id)
      // Deleted or disabled since it was queued: nothing to send, nothing to retry.
      if (endpoint === undefined) return { result: { id: job.id, status: 'completed', output: { skipped: 'endpoint deleted or disabled' } }, delivery: undefined, gone: false }
      const started = performance.now()
      const outcome = await send(endpoint.url, endpoint.secret, job.data, deps.allowPrivateNetworks, job.signal)
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
      const delivered = outcome.statusCode !== undefined && outcome.statusCode >= 200 && outcome.statusCode < 300
      const gone = outcome.statusCode === 410
      deps.metrics?.webhookDeliveries.inc({ outcome: delivered ? 'delivered' : gone ? 'gone' : 'failed' })
      const status = delivered || gone ? 'completed' : 'failed'
      return { result: { id: job.id, status, output: { status_code: delivery.status_code, error: delivery.error } }, delivery, gone }
    }))
    await recordDeliveries(deps.db, attempts.flatMap((a) => a.delivery === undefined ? [] : [a.delivery]))
    for (const attempt of attempts) {
      if (attempt.gone && attempt.delivery !== undefined) {
        await disableEndpoint(deps.db, attempt.delivery.endpoint_id, 'the receiver answered 410 Gone')
        log.warn({ endpointId: attempt.delivery.endpoint_id }, 'webhook endpoint disabled: its receiver answered 410 Gone')
      }
    }
    return attempts.map((a) => a.result)
  }

  const workOptions = { batchSize: 50, localConcurrency: 2, pollingIntervalSeconds: 1, burstWhenBatchFull: true, perJobResults: true } as const
  await deps.boss.work<DeliveryJob, unknown, typeof workOptions>(WEBHOOK_QUEUE, workOptions, deliverBatch)
  log.info('webhook dispatcher and delivery started')

  return {
    wake () {
      woken = true
      wakeUp?.abort()
    },
    async stop () {
      stopping = true
      wakeUp?.abort()
      await dispatching
      await deps.boss.offWork(WEBHOOK_QUEUE, { wait: true })
    }
  }
}

// Connections to receivers are kept open between deliveries. A new one is made to the address
// checked for the delivery that needs it (the pinned lookup).
const agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 64 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 64 }) }

interface SendOutcome {
  statusCode?: number
  error?: string
  excerpt?: string
}

/**
 * One attempt: the address checked (lib/network-guard.ts), then a POST to that address with the
 * signed headers, DELIVERY_TIMEOUT_MS for all of it, no redirect followed, at most EXCERPT_BYTES of
 * the answer read. Never throws: what went wrong is the outcome's error.
 */
async function send (url: string, secret: string, job: DeliveryJob, allowPrivate: boolean, cancelled: AbortSignal): Promise<SendOutcome> {
  const signal = AbortSignal.any([cancelled, AbortSignal.timeout(DELIVERY_TIMEOUT_MS)])
  try {
    const target = new URL(url)
    if (target.protocol !== 'https:' && !(allowPrivate && target.protocol === 'http:')) {
      return { error: `refused: ${target.protocol} URLs need WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` }
    }
    const resolved = await resolvePublicTarget(target.hostname, allowPrivate)
    // Connect to the address just checked, whatever the name resolves to a moment later.
    const pinned: LookupFunction = (_hostname, options, callback) => {
      type AllCallback = (err: null, addresses: Array<{ address: string, family: number }>) => void
      if ((options as { all?: boolean }).all === true) (callback as AllCallback)(null, [resolved])
      else callback(null, resolved.address, resolved.family)
    }
    const headers = {
      ...webhookHeaders(secret, job.message_id, new Date(), job.body),
      'content-type': 'application/json',
      'user-agent': 'boxoffice-webhooks'
    }
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const https = target.protocol === 'https:'
      const req = (https ? httpsRequest : httpRequest)(target, { method: 'POST', headers, lookup: pinned, signal, agent: https ? agents.https : agents.http }, resolve)
      req.on('error', reject)
      req.end(job.body)
    })
    const excerpt = await readExcerpt(response, signal)
    return { statusCode: response.statusCode ?? 0, excerpt }
  } catch (err) {
    if (err instanceof RefusedAddressError) return { error: `refused: ${err.message}` }
    if (signal.aborted && !cancelled.aborted) return { error: `no answer within ${DELIVERY_TIMEOUT_MS} ms` }
    const { code, message } = err as { code?: string, message?: string }
    return { error: [code, message].filter((part) => part !== undefined).join(': ') || String(err) }
  }
}

/** The first EXCERPT_BYTES of a response body, the rest discarded unread. */
async function readExcerpt (response: IncomingMessage, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  // Leaving the loop early destroys the response (and its connection); one read to its end keeps
  // the connection for the next delivery.
  for await (const chunk of response) {
    chunks.push(chunk as Buffer)
    size += (chunk as Buffer).length
    if (size >= EXCERPT_BYTES || signal.aborted) break
  }
  return Buffer.concat(chunks).subarray(0, EXCERPT_BYTES).toString('utf8')
}
