import { setTimeout as sleep } from 'node:timers/promises'
import type { Job, JobAttempt, PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import type { WebhookEndpointRow } from '../db/database.ts'
import { disableEndpoint, findEnabledEndpoints, pruneDeliveries, recordDeliveries, type NewDelivery } from '../db/webhooks.ts'
import type { Metrics } from '../lib/metrics.ts'
import { dispatchOutbox, WEBHOOK_QUEUE, type DeliveryJob } from './webhook-queue.ts'
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

/** Delivery attempts kept for the operator (GET /webhooks/:id/deliveries). */
const DELIVERY_LOG_DAYS = 7
/**
 * Requests open at once in a process, and about this many at most to one endpoint (pg-boss's group
 * concurrency, the endpoint being the job's group; two processes fetching at the same instant can
 * each take up to it): up to three receivers that never answer hold their shares for 5 s at a
 * time, and the other endpoints' messages go on in the rest.
 */
export const DELIVERIES_IN_FLIGHT = 400
export const DELIVERIES_IN_FLIGHT_PER_ENDPOINT = 100

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
  // The dispatcher's is rung by wake() (purchases decided); the delivery loop's when an attempt
  // ends or messages were queued.
  const dispatchAlarm = alarm()
  const deliveryAlarm = alarm()

  const dispatching = (async () => {
    let prunedAt = 0
    while (!stopping) {
      try {
        const busy = deps.saleBusy?.() ?? false
        const n = await dispatchOutbox(deps.db, deps.boss, busy ? { limit: WHILE_SALE_BUSY, once: true } : {})
        if (n > 0) {
          log.debug({ messages: n }, 'webhook messages queued')
          deliveryAlarm.ring()
        }
        if (Date.now() - prunedAt > PRUNE_INTERVAL_MS) {
          prunedAt = Date.now()
          await pruneDeliveries(deps.db, DELIVERY_LOG_DAYS)
        }
      } catch (err) {
        log.warn({ err }, 'could not queue webhook messages; trying again')
        await sleep(ERROR_BACKOFF_MS)
      }
      if (!stopping) await dispatchAlarm.rest(DISPATCH_INTERVAL_MS)
    }
  })()

  /** One attempt at one job; never throws. */
  async function attempt (job: Job<DeliveryJob>, endpoint: WebhookEndpointRow | undefined): Promise<Attempt> {
    const fence = { id: job.id, retryCount: job.retryCount }
    // Deleted or disabled since it was queued: nothing to send, nothing to retry.
    if (endpoint === undefined) return { job: fence, delivery: undefined, delivered: true, gone: false }
    const started = performance.now()
    const outcome = await send(endpoint.url, endpoint.secret, job.data, deps.allowPrivateNetworks)
      .catch((err: unknown) => ({ statusCode: undefined, excerpt: undefined, error: `internal: ${String(err)}` }))
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

  /**
   * Completes the delivered (and 410) jobs and fails the rest, fenced to the attempt fetched, each
   * failure with its outcome as the job's output; then logs the attempts. Throws only when the
   * queue cannot be written; the log is the operator's view and never holds delivery up.
   */
  async function settle (ended: Attempt[]): Promise<void> {
    const completed = ended.filter((a) => a.delivered || a.gone).map((a) => a.job)
    if (completed.length > 0) await deps.boss.complete(WEBHOOK_QUEUE, completed)
    const failures = new Map<string, { output: object, jobs: JobAttempt[] }>()
    for (const a of ended.filter((a) => !a.delivered && !a.gone)) {
      const output = { status_code: a.delivery?.status_code ?? null, error: a.delivery?.error ?? null }
      const key = JSON.stringify(output)
      const group = failures.get(key)
      if (group === undefined) failures.set(key, { output, jobs: [a.job] })
      else group.jobs.push(a.job)
    }
    for (const { output, jobs } of failures.values()) await deps.boss.fail(WEBHOOK_QUEUE, jobs, output)
    try {
      await recordDeliveries(deps.db, ended.flatMap((a) => a.delivery === undefined ? [] : [a.delivery]))
    } catch (err) {
      // An endpoint deleted while its attempts were open (its log rows go with it), or a database
      // hiccup: the attempts are settled all the same.
      log.warn({ err, attempts: ended.length }, 'webhook delivery: could not log these attempts')
    }
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
            // Settling again is harmless (the fence skips what already settled). Once stopping,
            // the jobs are left to expire and be tried again.
            if (!stopping) ended.unshift(...batch)
            throw err
          })
        }
        wanted = stopping ? 0 : DELIVERIES_IN_FLIGHT - inFlight.size
        if (wanted > 0) {
          // The endpoints first (at most MAX_WEBHOOK_ENDPOINTS): a job is never fetched and then left unstarted.
          const endpoints = new Map((await findEnabledEndpoints(deps.db)).map((e) => [e.id, e]))
          const jobs = await deps.boss.fetch<DeliveryJob>(WEBHOOK_QUEUE, { batchSize: wanted, groupConcurrency: DELIVERIES_IN_FLIGHT_PER_ENDPOINT })
          fetched = jobs.length
          for (const job of jobs) {
            const running: Promise<void> = attempt(job, endpoints.get(job.data.endpoint_id)).then((a) => {
              ended.push(a)
            }).finally(() => {
              inFlight.delete(running)
              deliveryAlarm.ring()
            })
            inFlight.add(running)
          }
        }
      } catch (err) {
        log.warn({ err }, 'webhook delivery: could not fetch or settle; trying again')
        await sleep(ERROR_BACKOFF_MS)
        continue
      }
      // At once when the fetch got all it asked for (more may be queued); else until an attempt
      // ends, messages are queued, or the poll for retries come due.
      if (!(fetched > 0 && fetched === wanted) && ended.length === 0) await deliveryAlarm.rest(inFlight.size > 0 ? DELIVERY_POLL_MS : DELIVERY_IDLE_POLL_MS)
      // An attempt ended: the others are given until they all end, or DELIVERY_TURN_MS, to be
      // settled with it in one turn, not one statement each.
      if (ended.length > 0 && inFlight.size > 0) await Promise.race([Promise.allSettled(inFlight), sleep(DELIVERY_TURN_MS)])
    }
  })()
  log.info('webhook dispatcher and delivery started')

  return {
    wake () {
      dispatchAlarm.ring()
    },
    async stop () {
      stopping = true
      dispatchAlarm.ring()
      deliveryAlarm.ring()
      await dispatching
      // Attempts under way are let finish (5 s at most) and settled.
      await delivering
    }
  }
}

/**
 * A loop's rest between turns: ring() ends it early, and a ring while the loop was working makes
 * its next rest return at once, so no wake-up is lost.
 */
function alarm (): { ring: () => void, rest: (ms: number) => Promise<void> } {
  let rung = false
  let resting: AbortController | undefined
  return {
    ring () {
      rung = true
      resting?.abort()
    },
    async rest (ms) {
      if (!rung) {
        resting = new AbortController()
        await sleep(ms, undefined, { signal: resting.signal }).catch(() => {})
        resting = undefined
      }
      rung = false
    }
  }
}
