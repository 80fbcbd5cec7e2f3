import { setTimeout as sleep } from 'node:timers/promises'
import { createNotifier, listen } from '../db/client.ts'
import type { WorkerMode } from '../lib/config.ts'
import { BOOKINGS_DECIDED_CHANNEL, PURCHASES_QUEUED_CHANNEL } from '../purchase/queue.ts'
import type { SettleDeps, SettleResult } from './apply-jobs.ts'
import { createClaimGate } from './claim-gate.ts'
import { startExpirySweep } from './expiry-sweep.ts'
import { startPacePublisher } from './pace-publisher.ts'
import { EVENT_BUSY_PROBE_MS, SetAsideEvents } from './set-aside-events.ts'
import { settlePurchaseBatch } from './settle-batch.ts'
import { settleNextPurchase } from './settle-one.ts'

export interface WorkerOptions {
  /** batched: many purchases per transaction (the default); serial: one per transaction. */
  mode: WorkerMode
  /** Most purchases claimed and decided by one transaction in batched mode. */
  batchSize: number
  /** The safety net: how often an idle worker looks for work without being told. */
  idlePollMs: number
  /** Called after each transaction that claimed purchases (lib/activity.ts). */
  onSettled?: () => void
}

export interface PurchaseWorker {
  /** Look for work now (intake in the same process calls this after each commit). */
  wake: () => void
  /** Stops claiming, lets the transaction in hand commit, then resolves. */
  stop: () => Promise<void>
  /** Jobs claimed and settled so far. */
  readonly settled: number
}

// Transactions a batched worker runs at once. One: since a claim deletes its jobs, a second loop
// no longer pays (it decided no faster, and its claims waded through the first loop's locked rows:
// docs/decisions/0011-pg-boss-hot-path-in-sql.md). Several loops still take turns at the claim
// (ClaimGate). Each needs a connection (WORKER_POOL_SIZE).
export const BATCHED_LOOPS = 1
/** Connections the worker's pool needs: one per loop, and one spare. */
export const WORKER_POOL_SIZE = BATCHED_LOOPS + 1

// A database outage makes every attempt fail at once; back off rather than spin.
const ERROR_BACKOFF_MS = 1000
// How often to try again to LISTEN when the first attempt failed (the database was down).
const LISTEN_RETRY_MS = 5000

/**
 * Settles purchases until stopped. A backlog drains back to back: after a transaction that claimed
 * anything, the next starts at once. An idle worker wakes within milliseconds of new purchases:
 * at once through wake() when intake runs in this process, through a NOTIFY that intake sends with
 * each commit otherwise, and at worst at the next `idlePollMs` poll.
 *
 * In batched mode a batch that fails is rolled back whole, and its purchases are then settled one
 * per transaction (the serial path), which pins the failure on the purchase that causes it and
 * gives that one its retries and, at the end, the dead-letter queue.
 */
export function startPurchaseWorker (deps: SettleDeps, options: WorkerOptions): PurchaseWorker {
  const log = deps.log.child({ component: 'worker' })
  let stopping = false
  const stopped = new AbortController()
  const pause = async (ms: number): Promise<void> => { await sleep(ms, undefined, { signal: stopped.signal }).catch(() => {}) }
  let settled = 0
  // Purchases still to settle one at a time after a failed batch.
  let serialAfterFailure = 0
  const claimGate = createClaimGate()
  const loops = options.mode === 'batched' ? BATCHED_LOOPS : 1
  // Per loop: set by wake() while its transaction runs, so a wake-up that arrives then is not lost.
  const woken: boolean[] = Array.from({ length: loops }, () => false)
  const idle: Array<AbortController | undefined> = Array.from({ length: loops }, () => undefined)

  const wake = (): void => {
    woken.fill(true)
    for (const controller of idle) controller?.abort()
  }

  async function rest (loop: number, ms: number): Promise<void> {
    if (woken[loop] === true) return
    const controller = new AbortController()
    idle[loop] = controller
    await sleep(ms, undefined, { signal: controller.signal }).catch(() => {})
    idle[loop] = undefined
  }

  let unlisten: (() => Promise<void>) | undefined
  const listening = (async () => {
    while (!stopping) {
      try {
        unlisten = await listen(deps.db, PURCHASES_QUEUED_CHANNEL, wake, wake)
        return
      } catch (err) {
        log.warn({ err }, `could not listen for new purchases; polling every ${options.idlePollMs} ms until it can`)
        await pause(LISTEN_RETRY_MS)
      }
    }
  })()

  // Clients waiting on GET /bookings/:id?wait= hear of decisions through this (in any API process).
  const notifyDecided = createNotifier(deps.db, BOOKINGS_DECIDED_CHANNEL, (err) => { log.warn({ err }, 'could not notify waiting clients of decisions; they will see them at their next check') })

  // Per loop: the events whose row was locked elsewhere, left alone for a while (with several loops,
  // one that waited too long behind another's batch must not stop the other).
  const setAside = Array.from({ length: loops }, () => new SetAsideEvents())

  async function settleOnce (loop: number): Promise<SettleResult> {
    const started = performance.now()
    let result: SettleResult
    if (options.mode === 'serial' || serialAfterFailure > 0) {
      // Through the gate: one serial transaction at a time, so recovery keeps arrival order too.
      result = await claimGate(async () => await settleNextPurchase({ ...deps, log }, setAside[loop]))
      if (result.setAside === 0) serialAfterFailure = result.claimed === 0 ? 0 : Math.max(0, serialAfterFailure - result.claimed)
    } else {
      try {
        result = await settlePurchaseBatch({ ...deps, log }, options.batchSize, claimGate, setAside[loop])
      } catch (err) {
        log.warn({ err }, 'a batch of purchases failed and was rolled back; settling them one at a time')
        serialAfterFailure = options.batchSize
        return { claimed: 0, decided: 0, setAside: 0 }
      }
    }
    if (result.claimed > 0) {
      deps.metrics?.settleBatchSize.observe(result.claimed)
      deps.metrics?.settleBatchDuration.observe((performance.now() - started) / 1000)
    }
    if (result.decided > 0) {
      pace.count(result.decided)
      notifyDecided()
    }
    return result
  }

  const pace = startPacePublisher({ db: deps.db, log })
  const sweep = startExpirySweep({ db: deps.db, log, metrics: deps.metrics }, notifyDecided)

  /** How long an idle loop rests: until the next poll, or sooner if it has events set aside to probe. */
  const idleMs = (aside: SetAsideEvents | undefined): number =>
    Math.min(options.idlePollMs, aside?.nextRetryInMs() ?? Infinity, aside?.current().length === 0 ? Infinity : EVENT_BUSY_PROBE_MS)

  async function run (loop: number): Promise<void> {
    while (!stopping) {
      woken[loop] = false
      try {
        const { claimed, setAside: setAsideNow } = await settleOnce(loop)
        settled += claimed
        if (claimed > 0) options.onSettled?.()
        // Idle: rest until woken, the next poll, or the moment an event set aside is due to be tried again.
        if (claimed === 0 && setAsideNow === 0 && serialAfterFailure === 0 && !stopping) await rest(loop, idleMs(setAside[loop]))
      } catch (err) {
        log.error({ err }, 'purchase worker could not settle; retrying')
        await pause(ERROR_BACKOFF_MS)
      }
    }
  }

  log.info({ mode: options.mode, batchSize: options.mode === 'batched' ? options.batchSize : 1, loops }, 'purchase worker started')
  const running = Promise.all(Array.from({ length: loops }, async (_v, loop) => { await run(loop) }))
    .then(() => { log.info({ settled }, 'purchase worker stopped') })

  return {
    wake,
    get settled () { return settled },
    async stop () {
      stopping = true
      stopped.abort()
      pace.stop()
      const sweepStopped = sweep.stop()
      wake()
      await running
      await sweepStopped
      await listening
      await unlisten?.()
    }
  }
}
