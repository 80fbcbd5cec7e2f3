import type { ControlledTransaction } from 'kysely'
import { fromKysely, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import { heldKey, readDecisionContext, recordCancellations, recordDecision, recordDecisions, type BookingDecision, type Decision, type DecisionContext } from '../db/bookings.ts'
import { BOOKING_STATUS, FAILURE_REASON, type Database } from '../db/database.ts'
import { applyEventChanges, findHeldEvents, LOCK_NOT_AVAILABLE, lockEventsForUpdate, type EventChange, type LockedEvent } from '../db/events.ts'
import type { Metrics } from '../lib/metrics.ts'
import { isCancelJobData, isPurchaseJobData, PURCHASE_QUEUE } from '../lib/purchase-queue.ts'

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
    const reason = decision.status === BOOKING_STATUS.failed ? decision.reason : ''
    const key = `${decision.status}:${reason}`
    const entry = counts.get(key)
    if (entry === undefined) counts.set(key, { status: decision.status.toLowerCase(), reason, n: 1 })
    else entry.n++
  }
  for (const { status, reason, n } of counts.values()) metrics.purchasesDecided.inc({ status, reason }, n)
  if (cancelled > 0) metrics.bookingsCancelled.inc(cancelled)
}

/** The rule for seats alone, free of I/O: a purchase takes all of its seats or none. */
export function decidePurchase (available: number, quantity: number): Decision {
  if (available >= quantity) return { status: BOOKING_STATUS.success }
  return { status: BOOKING_STATUS.failed, reason: available === 0 ? FAILURE_REASON.soldOut : FAILURE_REASON.insufficientQuota }
}

export interface QueuedJob {
  /** The job id: a UUIDv7, so ids sort in arrival order. For a purchase, it is the booking id. */
  id: string
  data: unknown
}

export interface JobsDecided {
  /** A final outcome for each purchase decided now, in arrival order. */
  decisions: BookingDecision[]
  /** Bookings cancelled now (successful ones give their seats back). */
  cancelled: string[]
  /** Per event concerned: seats and counters to change (events with nothing to change left out). */
  changes: EventChange[]
  /** What became of each job, for its completion record. */
  outcomes: Map<string, JobOutcome>
}

export type JobOutcome = Decision['status'] | 'cancelled' | 'skipped'

/**
 * The rules, free of I/O. Decides the claimed jobs one by one in arrival order (by id), each
 * against what its event has left after the jobs before it, all at the clock `context.now`:
 *
 * - a purchase whose payload is malformed, or whose event does not exist: failed, invalid_request;
 * - a purchase that is no longer pending (cancelled or expired while queued): skipped;
 * - the event's sale closed: failed, sale_closed;
 * - its deadline passed: failed, expired;
 * - fewer seats left than it asks for: failed, sold_out (none left) or insufficient_quota;
 * - the event's per-user cap would be passed by the seats this user holds plus these: failed,
 *   limit_exceeded;
 * - otherwise: success, and its seats are taken.
 *
 * A cancellation of a successful booking gives its seats back (to purchases after it in this very
 * batch too); of a pending one, withdraws it (its purchase is then skipped); of a failed or
 * cancelled one, does nothing.
 *
 * `events` holds every event concerned, read under its row lock; `context` is readDecisionContext's.
 */
export function decideJobs (jobs: readonly QueuedJob[], events: ReadonlyMap<string, LockedEvent>, context: DecisionContext): JobsDecided {
  const held = new Map(context.held)
  // Bookings whose status changes in this batch, over what the database said.
  const states = new Map(context.bookings)
  const changes = new Map<string, EventChange>()
  const change = (eventId: string): EventChange => {
    let c = changes.get(eventId)
    if (c === undefined) {
      c = { eventId, seats: 0, cancelledSeats: 0, decidedThrough: 0 }
      changes.set(eventId, c)
    }
    return c
  }
  const seatsLeft = (eventId: string): number => (events.get(eventId)?.available_quota ?? 0) + (changes.get(eventId)?.seats ?? 0)
  const clock = (): Date => {
    if (context.now === null) throw new Error('a decision needs the clock, but none was read')
    return context.now
  }
  const decisions: BookingDecision[] = []
  const cancelled: string[] = []
  const outcomes = new Map<string, JobOutcome>()
  const ordered = [...jobs].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

  for (const { id, data } of ordered) {
    if (isCancelJobData(data)) {
      const target = states.get(data.cancel_booking_id)
      if (target === undefined || (target.status !== BOOKING_STATUS.success && target.status !== BOOKING_STATUS.pending)) {
        outcomes.set(id, 'skipped')
        continue
      }
      if (target.status === BOOKING_STATUS.success) {
        const c = change(target.event_id)
        c.seats += target.quantity
        c.cancelledSeats += target.quantity
        const key = heldKey(target.event_id, target.user_id)
        if (held.has(key)) held.set(key, (held.get(key) ?? 0) - target.quantity)
      }
      states.set(data.cancel_booking_id, { ...target, status: BOOKING_STATUS.cancelled })
      cancelled.push(data.cancel_booking_id)
      outcomes.set(id, 'cancelled')
      continue
    }

    if (!isPurchaseJobData(data) || !events.has(data.event_id)) {
      decisions.push({ id, decision: { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.invalid } })
      outcomes.set(id, BOOKING_STATUS.failed)
      continue
    }
    const event = events.get(data.event_id) as LockedEvent
    if ((states.get(id)?.status ?? BOOKING_STATUS.pending) !== BOOKING_STATUS.pending) {
      // Decided already (withdrawn or expired while queued, or a job delivered twice).
      outcomes.set(id, 'skipped')
      continue
    }
    const c = change(data.event_id)
    if (data.arrival !== undefined) c.decidedThrough = Math.max(c.decidedThrough, data.arrival)
    const seats = seatsLeft(data.event_id)
    const key = heldKey(data.event_id, data.user_id)
    let decision: Decision
    if (event.sales_close_at !== null && event.sales_close_at <= clock()) {
      decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.saleClosed }
    } else if (data.expires_at !== undefined && Date.parse(data.expires_at) <= clock().getTime()) {
      decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.expired }
    } else {
      decision = decidePurchase(seats, data.quantity)
      if (decision.status === BOOKING_STATUS.success && event.max_per_user !== null && (held.get(key) ?? 0) + data.quantity > event.max_per_user) {
        decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.limitExceeded }
      }
    }
    if (decision.status === BOOKING_STATUS.success) {
      c.seats -= data.quantity
      if (event.max_per_user !== null) held.set(key, (held.get(key) ?? 0) + data.quantity)
      states.set(id, { status: BOOKING_STATUS.success, quantity: data.quantity, user_id: data.user_id, event_id: data.event_id })
    } else {
      states.set(id, { status: BOOKING_STATUS.failed, quantity: data.quantity, user_id: data.user_id, event_id: data.event_id })
    }
    decisions.push({ id, decision })
    outcomes.set(id, decision.status)
  }

  // A purchase cancelled in the batch that decided it is recorded as decided, then cancelled.
  return { decisions, cancelled, changes: [...changes.values()], outcomes }
}

/**
 * Decides claimed jobs inside the caller's transaction, with a fixed number of statements whatever
 * their number: lock every event concerned (once each, in id order), read what the rules need
 * (readDecisionContext), decide in memory (decideJobs), then write the events' changes, the
 * purchases' outcomes and the cancellations (one statement each). The caller completes the jobs.
 *
 * A purchase that is not pending any more is skipped; a decision that finds its booking changed
 * anyway (which the locks rule out) throws, and the caller's transaction rolls back.
 */
export async function applyJobs (trx: Db, jobs: readonly QueuedJob[], { locked, verifyAll = false }: { locked?: Map<string, LockedEvent>, verifyAll?: boolean } = {}): Promise<JobsDecided> {
  const events = locked ?? await lockEventsForUpdate(trx, eventsOf(jobs))
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
  // The clock is needed only by a closing time or a deadline; without one, nor anything else to
  // read, the round trip is saved and the database stamps the decisions itself.
  const needed = claimed.length > 0 || cancelTargets.length > 0 || capped.length > 0 ||
    [...events.values()].some((event) => event.sales_close_at !== null)
  const context: DecisionContext = needed
    ? await readDecisionContext(trx, { claimed, cancelTargets, capped })
    : { now: null, bookings: new Map(), held: new Map() }
  const decided = decideJobs(jobs, events, context)
  await applyEventChanges(trx, decided.changes)
  const recorded = await recordDecisions(trx, decided.decisions, context.now)
  if (recorded !== decided.decisions.length) throw new Error(`only ${recorded} of ${decided.decisions.length} claimed purchases were pending`)
  const cancelled = await recordCancellations(trx, decided.cancelled, context.now)
  if (cancelled !== decided.cancelled.length) throw new Error(`only ${cancelled} of ${decided.cancelled.length} bookings to cancel could be`)
  return decided
}

/** Every event the jobs concern: a purchase's, a cancellation's booking's. */
function eventsOf (jobs: readonly QueuedJob[]): string[] {
  return [...new Set(jobs.flatMap(({ data }) => isPurchaseJobData(data) || isCancelJobData(data) ? [data.event_id] : []))]
}

/** How many of the jobs decided or cancelled a booking (for the worker's measured pace). */
export function countDecided (decided: JobsDecided): number {
  return decided.decisions.length + decided.cancelled.length
}

// How long a worker waits for an event's row lock before it sets that event aside. Deciders of
// one event wait for each other for a batch's length (tens of milliseconds); far longer means
// something else holds the row (a long admin or operator transaction).
export const EVENT_LOCK_WAIT_MS = 1000
// How long a held event's purchases are left in the queue before the worker tries its lock again.
export const EVENT_SET_ASIDE_MS = 5000
// Meanwhile, how often the worker looks (one statement, without waiting) whether the rows it set
// aside are free again, so a released event resumes within about this long.
export const EVENT_HELD_PROBE_MS = 500

/**
 * The events a worker loop leaves alone for now because their row was held elsewhere for longer
 * than EVENT_LOCK_WAIT_MS. Their jobs stay queued (every job carries its event as its pg-boss
 * group, and the loop fetches with ignoreGroups), so one held event never stalls the others, and
 * its own purchases keep their order: all of them wait, none is decided out of turn. A probe every
 * EVENT_HELD_PROBE_MS takes the event up again as soon as its row is free; while the probes find it
 * held it stays aside (EVENT_SET_ASIDE_MS is the limit when no probe runs).
 */
export class HeldEvents {
  readonly #until = new Map<string, number>()
  readonly #setAsideMs: number
  #probedAt = 0

  constructor (setAsideMs = EVENT_SET_ASIDE_MS) {
    this.#setAsideMs = setAsideMs
  }

  /** At most every EVENT_HELD_PROBE_MS: forgets the events set aside whose rows are free now. */
  async refresh (db: Db, now = performance.now()): Promise<void> {
    if (this.#until.size === 0 || now - this.#probedAt < EVENT_HELD_PROBE_MS) return
    this.#probedAt = now
    const stillHeld = new Set(await findHeldEvents(db, [...this.#until.keys()]))
    // Free again: taken up at once. Still held: left aside longer, so the loop does not wait on it
    // again (holding the claim gate) only to find it held.
    for (const id of this.#until.keys()) {
      if (stillHeld.has(id)) this.#until.set(id, now + this.#setAsideMs)
      else this.#until.delete(id)
    }
  }

  /** The events set aside now. */
  current (now = performance.now()): string[] {
    for (const [id, until] of this.#until) if (until <= now) this.#until.delete(id)
    return [...this.#until.keys()]
  }

  setAside (ids: readonly string[], now = performance.now()): void {
    for (const id of ids) this.#until.set(id, now + this.#setAsideMs)
  }

  /** Milliseconds until the first event set aside is tried again (undefined: none is). */
  nextRetryInMs (now = performance.now()): number | undefined {
    const times = [...this.#until.values()]
    return times.length === 0 ? undefined : Math.max(0, Math.min(...times) - now)
  }
}

/** What one settle step did: jobs claimed and decided, and events it found held and set aside. */
export interface SettleResult {
  claimed: number
  decided: number
  /** Events set aside (HeldEvents) by this step: the caller should look for other work at once. */
  setAside: number
}

/** Thrown inside a settle transaction when an event's lock was not had in time; it rolls back. */
class EventsHeldError extends Error {
  readonly eventIds: readonly string[]
  constructor (eventIds: readonly string[], options: ErrorOptions) {
    super('an event row was held past the lock wait', options)
    this.eventIds = eventIds
  }
}

async function lockOrSetAside (trx: Db, eventIds: readonly string[]): Promise<Map<string, LockedEvent>> {
  try {
    // The shorter timeout then holds for the rest of the transaction: what a decider locks after its
    // events (its bookings' rows, its claimed jobs) no other decider holds, so only a stray outside
    // lock could meet it, and that fails the batch, which is then settled one job at a time.
    return await lockEventsForUpdate(trx, eventIds, { waitAtMostMs: EVENT_LOCK_WAIT_MS })
  } catch (err) {
    if ((err as { code?: unknown }).code === LOCK_NOT_AVAILABLE) throw new EventsHeldError(eventIds, { cause: err })
    throw err
  }
}

/** After EventsHeldError rolled its transaction back: sets aside the events still held. */
async function setAsideHeld (db: Db, err: EventsHeldError, held: HeldEvents, log: Logger): Promise<SettleResult> {
  const ids = await findHeldEvents(db, err.eventIds)
  held.setAside(ids)
  if (ids.length > 0) log.warn({ eventIds: ids, retryInMs: EVENT_SET_ASIDE_MS }, 'event rows held by another transaction; their purchases wait, the others go on')
  // Released meanwhile (ids empty): nothing is set aside, and the caller tries again at once.
  return { claimed: 0, decided: 0, setAside: Math.max(ids.length, 1) }
}

/**
 * Runs the claim-and-lock step of one batch. Several batched loops in one process share one, so
 * that the loop that claimed the older purchases also queues first for their events' locks: batches
 * of one event are then decided in the order they were claimed, and a loop's claim overlaps the
 * other loop's writes instead of waiting for them.
 */
export type ClaimGate = <T>(claim: () => Promise<T>) => Promise<T>

export function createClaimGate (): ClaimGate {
  let tail: Promise<unknown> = Promise.resolve()
  return async (claim) => {
    const turn = tail.then(claim)
    tail = turn.catch(() => {})
    return await turn
  }
}

/**
 * Claims up to `batchSize` of the oldest jobs and decides them all in one transaction (applyJobs),
 * with a fixed number of statements whatever the batch size: claim (pg-boss fetch), lock, read,
 * write, then complete every job (one statement). As in the serial worker, a crash at any line
 * rolls all of it back, claims included.
 *
 * If anything throws, the batch is rolled back and thrown, and the caller settles those jobs one at
 * a time (settleNextPurchase), which pins the failure on the job that causes it and gives that one
 * its retries and, at the end, the dead-letter queue.
 *
 * An event whose row stays held elsewhere past EVENT_LOCK_WAIT_MS is set aside in `held` (the whole
 * batch rolls back, and the next fetch leaves that event's jobs in the queue).
 *
 * Returns the number of jobs claimed (0 when the queue is empty), the bookings decided, and the
 * events set aside.
 */
export async function settlePurchaseBatch ({ db, boss, log, metrics }: SettleDeps, batchSize: number, claimGate: ClaimGate = async (claim) => await claim(), held = new HeldEvents()): Promise<SettleResult> {
  await held.refresh(db)
  try {
    const { result, decided } = await db.transaction().execute(async (trx) => {
      const queueDb = fromKysely(trx)
      const { jobs, events } = await claimGate(async () => {
        const jobs = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize, db: queueDb, ignoreGroups: held.current() })
        return { jobs, events: await lockOrSetAside(trx, eventsOf(jobs)) }
      })
      if (jobs.length === 0) return { result: { claimed: 0, decided: 0, setAside: 0 }, decided: undefined }
      const decided = await applyJobs(trx, jobs, { locked: events })
      const completed = await boss.complete(PURCHASE_QUEUE, jobs.map((job) => job.id), null, { db: queueDb }) as { affected?: number }
      if (completed.affected !== jobs.length) throw new Error(`completed ${completed.affected ?? 0} of ${jobs.length} purchase jobs (claims lapsed)`)
      return { result: { claimed: jobs.length, decided: countDecided(decided), setAside: 0 }, decided }
    })
    if (decided !== undefined) countOutcomes(metrics, decided.decisions, decided.cancelled.length)
    return result
  } catch (err) {
    if (err instanceof EventsHeldError) return await setAsideHeld(db, err, held, log)
    throw err
  }
}

/**
 * Claims the oldest job and decides it (applyJobs with one job), all in one transaction: the claim
 * (pg-boss fetch), the event lock, the quota change, the booking's status and the job's completion
 * commit together. If the process dies at any line, PostgreSQL rolls all of it back and the job is
 * immediately claimable again: no purchase is applied twice, none is lost, none waits for an
 * expiry. A decision that throws is rolled back to a savepoint and the attempt is recorded as
 * failed (pg-boss retries it with backoff); on the last attempt the booking is failed with
 * reason "error", so no buyer is left pending forever.
 *
 * A held event is set aside as in settlePurchaseBatch, before the attempt counts.
 *
 * Returns the number of jobs claimed (0 when the queue is empty), the bookings decided, and the
 * events set aside.
 */
export async function settleNextPurchase ({ db, boss, log, metrics }: SettleDeps, held = new HeldEvents()): Promise<SettleResult> {
  await held.refresh(db)
  const trx = await db.startTransaction().execute()
  try {
    const queueDb = fromKysely(trx)
    const [job] = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize: 1, includeMetadata: true, db: queueDb, ignoreGroups: held.current() })
    if (job === undefined) {
      await trx.commit().execute()
      return { claimed: 0, decided: 0, setAside: 0 }
    }
    // Locked before the savepoint: a held event is set aside, not counted as this job's failure.
    const locked = await lockOrSetAside(trx, eventsOf([job]))
    const attempt = { id: job.id, retryCount: job.retryCount }
    let decidedCount = 0
    let committed: { decisions: readonly BookingDecision[], cancelled: number } = { decisions: [], cancelled: 0 }
    const decideTrx = await trx.savepoint('decide').execute()
    try {
      const decided = await applyJobs(decideTrx, [job], { verifyAll: true, locked })
      committed = { decisions: decided.decisions, cancelled: decided.cancelled.length }
      const outcome = decided.outcomes.get(job.id)
      // pg-boss's typings declare the response empty; at run time it reports { requested, affected }.
      const completed = await boss.complete(PURCHASE_QUEUE, attempt, { outcome }, { db: queueDb }) as { affected?: number }
      if (completed.affected !== 1) throw new Error(`purchase job ${job.id} was not completable (claim lapsed)`)
      await decideTrx.releaseSavepoint('decide').execute()
      decidedCount = countDecided(decided)
      log.debug({ jobId: job.id, outcome }, 'job decided')
    } catch (err) {
      // Everything since the savepoint (decision and completion) is undone; the claim stays, so
      // the failure below is recorded against this attempt and the retry count goes up.
      await decideTrx.rollbackToSavepoint('decide').execute()
      const lastAttempt = job.retryCount >= job.retryLimit
      log.error({ err, jobId: job.id, attempt: job.retryCount, lastAttempt }, 'deciding a job failed')
      committed = { decisions: [], cancelled: 0 }
      if (lastAttempt && await recordGivenUp(trx, job.id, log)) committed.decisions = [{ id: job.id, decision: { status: BOOKING_STATUS.failed, reason: 'error' } }]
      await boss.fail(PURCHASE_QUEUE, attempt, { message: err instanceof Error ? err.message : String(err) }, { db: queueDb })
    }
    await trx.commit().execute()
    countOutcomes(metrics, committed.decisions, committed.cancelled)
    return { claimed: 1, decided: decidedCount, setAside: 0 }
  } catch (err) {
    await trx.rollback().execute().catch(() => {})
    if (err instanceof EventsHeldError) return await setAsideHeld(db, err, held, log)
    throw err
  }
}

/**
 * The last attempt failed: tell the buyer (failed, reason "error"). If even that cannot be
 * written, the job is still failed (and dead-lettered) so it cannot block the queue forever.
 */
async function recordGivenUp (trx: ControlledTransaction<Database>, bookingId: string, log: Logger): Promise<boolean> {
  const giveUpTrx = await trx.savepoint('give_up').execute()
  try {
    await recordDecision(giveUpTrx, bookingId, { status: BOOKING_STATUS.failed, reason: 'error' })
    return true
  } catch (err) {
    await giveUpTrx.rollbackToSavepoint('give_up').execute()
    log.error({ err, bookingId }, 'could not record the failure on the booking; it stays pending, its job is dead-lettered')
    return false
  }
}
