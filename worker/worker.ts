import { setTimeout as sleep } from 'node:timers/promises'
import { listen } from '../db/client.ts'
import { PURCHASES_QUEUED_CHANNEL } from '../lib/purchase-queue.ts'
import { settleNextPurchase, settlePurchaseBatch, type SettleDeps } from './settle.ts'

export const WORKER_MODES = ['batched', 'serial'] as const
export type WorkerMode = typeof WORKER_MODES[number]

export interface WorkerOptions {
  /** batched: many purchases per transaction (the default); serial: one per transaction. */
  mode: WorkerMode
  /** Most purchases claimed and decided by one transaction in batched mode. */
  batchSize: number
  /** The safety net: how often an idle worker looks for work without being told. */
  idlePollMs: number
}

export interface PurchaseWorker {
  /** Look for work now (intake in the same process calls this after each commit). */
  wake: () => void
  /** Stops claiming, lets the transaction in hand commit, then resolves. */
  stop: () => Promise<void>
  readonly settled: number
}

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
  let idle: AbortController | undefined
  // Set by wake() while a transaction is running, so a wake-up that arrives then is not lost.
  let woken = false
  // Purchases still to settle one at a time after a failed batch.
  let serialAfterFailure = 0

  const wake = (): void => {
    woken = true
    idle?.abort()
  }

  async function rest (ms: number): Promise<void> {
    if (woken) return
    idle = new AbortController()
    await sleep(ms, undefined, { signal: idle.signal }).catch(() => {})
    idle = undefined
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

  async function settleOnce (): Promise<number> {
    if (options.mode === 'serial' || serialAfterFailure > 0) {
      const claimed = await settleNextPurchase({ ...deps, log })
      serialAfterFailure = claimed === 0 ? 0 : Math.max(0, serialAfterFailure - claimed)
      return claimed
    }
    try {
      return await settlePurchaseBatch({ ...deps, log }, options.batchSize)
    } catch (err) {
      log.warn({ err }, 'a batch of purchases failed and was rolled back; settling them one at a time')
      serialAfterFailure = options.batchSize
      return 0
    }
  }

  const loop = (async () => {
    log.info({ mode: options.mode, batchSize: options.mode === 'batched' ? options.batchSize : 1 }, 'purchase worker started')
    while (!stopping) {
      woken = false
      try {
        const claimed = await settleOnce()
        settled += claimed
        if (claimed === 0 && serialAfterFailure === 0 && !stopping) await rest(options.idlePollMs)
      } catch (err) {
        log.error({ err }, 'purchase worker could not settle; retrying')
        await pause(ERROR_BACKOFF_MS)
      }
    }
    log.info({ settled }, 'purchase worker stopped')
  })()

  return {
    wake,
    get settled () { return settled },
    async stop () {
      stopping = true
      stopped.abort()
      wake()
      await loop
      await listening
      await unlisten?.()
    }
  }
}
