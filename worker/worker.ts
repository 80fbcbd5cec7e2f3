import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { settleNextPurchase, type SettleDeps } from './settle.ts'

export interface WorkerOptions {
  /** How long an idle worker waits before looking for new purchases again. */
  idlePollMs: number
}

export interface PurchaseWorker {
  /** Look for work now (intake in the same process calls this after each commit). */
  wake: () => void
  /** Stops claiming, lets the purchase in hand commit, then resolves. */
  stop: () => Promise<void>
  readonly settled: number
}

// A database outage makes every attempt fail at once; back off rather than spin.
const ERROR_BACKOFF_MS = 1000

/**
 * The serial worker of the original design: one purchase per transaction, strictly in queue
 * order. A backlog drains back to back (no wait between jobs); an empty queue is re-checked every
 * `idlePollMs` or as soon as `wake()` is called.
 */
export function startPurchaseWorker (deps: SettleDeps & { log: Logger }, options: WorkerOptions): PurchaseWorker {
  const log = deps.log.child({ component: 'worker' })
  let stopping = false
  let settled = 0
  let idle: AbortController | undefined

  const wake = (): void => { idle?.abort() }

  async function rest (ms: number): Promise<void> {
    idle = new AbortController()
    await sleep(ms, undefined, { signal: idle.signal }).catch(() => {})
    idle = undefined
  }

  const loop = (async () => {
    log.info({ mode: 'serial' }, 'purchase worker started')
    while (!stopping) {
      try {
        const claimed = await settleNextPurchase({ ...deps, log })
        settled += claimed
        if (claimed === 0 && !stopping) await rest(options.idlePollMs)
      } catch (err) {
        log.error({ err }, 'purchase worker could not settle; retrying')
        if (!stopping) await rest(ERROR_BACKOFF_MS)
      }
    }
    log.info({ settled }, 'purchase worker stopped')
  })()

  return {
    wake,
    get settled () { return settled },
    async stop () {
      stopping = true
      wake()
      await loop
    }
  }
}
