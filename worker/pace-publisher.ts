import { randomBytes } from 'node:crypto'
import os from 'node:os'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import { recordWorkerRate } from '../db/events.ts'

// How often the worker's pace is measured and published for estimated waits.
export const PACE_SAMPLE_MS = 1000

export interface PacePublisher {
  /** Counts decisions made since the last sample. */
  count: (decisions: number) => void
  stop: () => void
}

/**
 * Publishes this worker's pace for the estimated waits GET /bookings/:id shows: decisions per
 * second over busy seconds only (an idle second says nothing about how fast a queue would drain),
 * smoothed, in the worker_rates table, which every API process reads.
 */
export function startPacePublisher ({ db, log }: { db: Db, log: Logger }): PacePublisher {
  const workerId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  let decided = 0
  let pace: number | undefined
  let sampledAt = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    const sample = decided / ((now - sampledAt) / 1000)
    sampledAt = now
    decided = 0
    if (sample <= 0) return
    pace = pace === undefined ? sample : 0.5 * pace + 0.5 * sample
    recordWorkerRate(db, workerId, pace).catch((err: unknown) => { log.warn({ err }, 'could not record the worker pace') })
  }, PACE_SAMPLE_MS)
  return {
    count (decisions) { decided += decisions },
    stop () { clearInterval(timer) }
  }
}
