import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import { expireOverdue } from '../db/decisions.ts'
import { expireDueHolds } from '../db/holds.ts'
import type { Metrics } from '../lib/metrics.ts'
import { API_STATUS, BOOKING_STATUS, FAILURE_REASON } from '../purchase/vocabulary.ts'

// How often overdue purchases (max_wait_seconds passed) are failed as expired, and holds whose
// time has come are expired (their seats back on sale): both kept to within about this much,
// even while the worker is far behind.
export const EXPIRY_SWEEP_MS = 500

export interface ExpirySweep {
  /** Ends the sweep after the pass in hand. */
  stop: () => Promise<void>
}

/**
 * Keeps deadlines when the queue is long: every EXPIRY_SWEEP_MS, purchases past their deadline fail
 * as expired without waiting for the worker to reach them (their jobs are settled, undecided,
 * when it does), and holds past hold_expires_at expire (db/holds.ts, expireDueHolds). `onExpired`
 * hears of each pass that expired any.
 */
export function startExpirySweep ({ db, log, metrics }: { db: Db, log: Logger, metrics?: Metrics }, onExpired: () => void): ExpirySweep {
  const stopped = new AbortController()
  const sweeping = (async () => {
    while (!stopped.signal.aborted) {
      try {
        const expired = await expireOverdue(db)
        metrics?.purchasesDecided.inc({ status: API_STATUS[BOOKING_STATUS.failed], reason: FAILURE_REASON.expired }, expired.length)
        if (expired.length > 0) log.info({ expired: expired.length }, 'purchases past their deadline failed as expired')
        const holds = await expireDueHolds(db)
        metrics?.holdsEnded.inc({ outcome: 'expired' }, holds)
        if (holds > 0) log.info({ expired: holds }, 'holds ran out unconfirmed; their seats are back on sale')
        if (expired.length > 0 || holds > 0) onExpired()
      } catch (err) {
        log.warn({ err }, 'could not expire overdue purchases; trying again')
      }
      await sleep(EXPIRY_SWEEP_MS, undefined, { signal: stopped.signal }).catch(() => {})
    }
  })()
  return {
    async stop () {
      stopped.abort()
      await sweeping
    }
  }
}
