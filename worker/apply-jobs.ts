import type { PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import type { Trx } from '../db/database.ts'
import { readDecisionContext, recordCancellations, recordDecisions } from '../db/decisions.ts'
import { applyEventChanges } from '../db/events.ts'
import type { Metrics } from '../lib/metrics.ts'
import { isCancelJobData, isPurchaseJobData, type QueuedJob } from '../purchase/jobs.ts'
import { decideJobs, type DecisionContext, type JobsDecided, type LockedEvent } from '../purchase/rules.ts'
import { API_STATUS, BOOKING_STATUS, decisionKey, type BookingDecision } from '../purchase/vocabulary.ts'

// Deciding claimed jobs in the caller's transaction: read what the rules need, decide
// (purchase/rules.ts), write the result. Both ways of settling use it: a batch per transaction
// (settle-batch.ts) and one job per transaction (settle-one.ts).

export interface SettleDeps {
  db: Db
  boss: PgBoss
  log: Logger
  /** Counts the outcomes once their transaction has committed. */
  metrics?: Metrics
}

/** Counts committed outcomes: decisions by status and reason, and cancellations. */
export function countOutcomes (metrics: Metrics | undefined, decisions: readonly BookingDecision[], cancelled = 0): void {
  if (metrics === undefined) return
  const counts = new Map<string, { status: string, reason: string, n: number }>()
  for (const { decision } of decisions) {
    const key = decisionKey(decision)
    const entry = counts.get(key)
    if (entry === undefined) counts.set(key, { status: API_STATUS[decision.status], reason: decision.status === BOOKING_STATUS.failed ? decision.reason : '', n: 1 })
    else entry.n++
  }
  for (const { status, reason, n } of counts.values()) metrics.purchasesDecided.inc({ status, reason }, n)
  if (cancelled > 0) metrics.bookingsCancelled.inc(cancelled)
}

/**
 * Decides claimed jobs inside the caller's transaction, with a fixed number of statements whatever
 * their number, under the locks of every event concerned (`locked`: the caller took them, once each,
 * in id order, through lockOrSetAside): read what the rules need (readDecisionContext), decide in memory (decideJobs), then write the events' changes, the
 * purchases' outcomes and the cancellations (one statement each). The caller settles the jobs: a
 * batch claimed them by deletion, and one at a time pg-boss completes each.
 *
 * A purchase that is not pending any more is skipped; a decision that finds its booking changed
 * anyway (which the locks rule out) throws, and the caller's transaction rolls back.
 */
export async function applyJobs (
  trx: Trx,
  jobs: readonly QueuedJob[],
  { locked: events, verifyAll = false }: { locked: Map<string, LockedEvent>, verifyAll?: boolean }
): Promise<JobsDecided> {
  const cancelTargets: string[] = []
  const claimed: string[] = []
  const capped: Array<{ event_id: string, user_id: string }> = []
  for (const { id, data } of jobs) {
    if (isCancelJobData(data)) cancelTargets.push(data.cancel_booking_id)
    else if (isPurchaseJobData(data)) {
      // Only purchases with a deadline are read here (the sweep may have expired them while
      // queued): they are the common case. Any other that is not pending any more (withdrawn by
      // a cancellation claimed before it, as when its own job was waiting for a retry, or a job
      // re-queued by hand) makes recordDecisions come up short: the batch is rolled back and
      // settled one job at a time, which checks every purchase (verifyAll). Rare, and correct.
      if (verifyAll || data.expires_at !== undefined) claimed.push(id)
      if (events.get(data.event_id)?.max_per_user != null) capped.push({ event_id: data.event_id, user_id: data.user_id })
    }
  }
  // The clock is needed only by a closing time, a deadline or a hold; without one, nor anything
  // else to read, the round trip is saved and the database stamps the decisions itself.
  const needed = claimed.length > 0 || cancelTargets.length > 0 || capped.length > 0 ||
    [...events.values()].some((event) => event.sales_close_at !== null || event.hold_seconds !== null)
  const context: DecisionContext = needed
    ? await readDecisionContext(trx, { claimed, cancelTargets, capped })
    : { now: null, bookings: new Map(), buyerSeats: new Map() }
  const decided = decideJobs(jobs, events, context)
  await applyEventChanges(trx, decided.changes)
  const recorded = await recordDecisions(trx, decided.decisions, context.now)
  if (recorded !== decided.decisions.length) throw new Error(`only ${recorded} of ${decided.decisions.length} claimed purchases were pending`)
  const cancelled = await recordCancellations(trx, decided.cancelled, context.now)
  if (cancelled !== decided.cancelled.length) throw new Error(`only ${cancelled} of ${decided.cancelled.length} bookings to cancel could be`)
  return decided
}

/** Every event the jobs concern: a purchase's, a cancellation's booking's. */
export function eventsOf (jobs: readonly QueuedJob[]): string[] {
  return [...new Set(jobs.flatMap(({ data }) => isPurchaseJobData(data) || isCancelJobData(data) ? [data.event_id] : []))]
}

/** How many of the jobs decided or cancelled a booking (for the worker's measured pace). */
export function countDecided (decided: JobsDecided): number {
  return decided.decisions.length + decided.cancelled.length
}

/** What one settle step did: jobs claimed and decided, and events it found busy and set aside. */
export interface SettleResult {
  claimed: number
  decided: number
  /** Events set aside (SetAsideEvents) by this step: the caller should look for other work at once. */
  setAside: number
}

