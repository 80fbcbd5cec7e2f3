import type { ControlledTransaction } from 'kysely'
import { fromKysely, type JobWithMetadata, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import { findBookingStatus, recordDecision, recordDecisions, type BookingDecision, type Decision } from '../db/bookings.ts'
import { BOOKING_STATUS, FAILURE_REASON, type Database } from '../db/database.ts'
import { changeAvailableQuota, lockEventForUpdate, lockEventsForUpdate, takeSeats } from '../db/events.ts'
import { isPurchaseJobData, PURCHASE_QUEUE, type PurchaseJobData } from '../lib/purchase-queue.ts'

export interface SettleDeps {
  db: Db
  boss: PgBoss
  log: Logger
}

/** The rule itself, free of I/O: a purchase takes all of its seats or none. */
export function decidePurchase (available: number, quantity: number): Decision {
  if (available >= quantity) return { status: BOOKING_STATUS.success }
  return { status: BOOKING_STATUS.failed, reason: available === 0 ? FAILURE_REASON.soldOut : FAILURE_REASON.insufficientQuota }
}

export interface QueuedPurchase {
  /** The job id, which is the booking id: a UUIDv7, so ids sort in arrival order. */
  id: string
  data: unknown
}

export interface BatchDecisions {
  /** One per purchase, in arrival order. */
  decisions: BookingDecision[]
  /** Seats taken per event (events with none taken are left out). */
  sales: Array<{ eventId: string, seats: number }>
}

/**
 * The batch rule, free of I/O: decides purchases one by one in arrival order (by id), each against
 * the seats its event has left after the purchases before it. `available` holds the quota of every
 * event concerned, read under its row lock; a purchase whose payload is malformed or whose event
 * does not exist fails as invalid_request without touching seats.
 */
export function decidePurchases (purchases: readonly QueuedPurchase[], available: ReadonlyMap<string, number>): BatchDecisions {
  const left = new Map(available)
  const decisions: BookingDecision[] = []
  const ordered = [...purchases].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  for (const { id, data } of ordered) {
    const seats = isPurchaseJobData(data) ? left.get(data.event_id) : undefined
    if (seats === undefined || !isPurchaseJobData(data)) {
      decisions.push({ id, decision: { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.invalid } })
      continue
    }
    const decision = decidePurchase(seats, data.quantity)
    if (decision.status === BOOKING_STATUS.success) left.set(data.event_id, seats - data.quantity)
    decisions.push({ id, decision })
  }
  const sales = [...left].filter(([eventId, seats]) => seats !== available.get(eventId))
    .map(([eventId, seats]) => ({ eventId, seats: (available.get(eventId) as number) - seats }))
  return { decisions, sales }
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
 * Claims up to `batchSize` of the oldest purchase jobs and decides them all in one transaction,
 * with a fixed number of statements whatever the batch size: claim (pg-boss fetch), lock every
 * event concerned (once each, in id order), then, after deciding in memory in arrival order, take
 * the seats (one statement), record every outcome (one statement) and complete every job (one
 * statement). As in the serial worker, a crash at any line rolls all of it back, claims included.
 *
 * Every claimed purchase is expected to be pending (its job and its decision commit together, so
 * a decided purchase's job is never claimable again). If one is not (a job re-queued by hand, a
 * booking missing), fewer bookings change than were decided: the batch is rolled back and thrown,
 * like any other error, and the caller settles those purchases one at a time (settleNextPurchase),
 * which skips a decided one, and gives one that keeps failing its retries and the dead-letter queue.
 *
 * Returns the number of jobs claimed (0 when the queue is empty).
 */
export async function settlePurchaseBatch ({ db, boss }: SettleDeps, batchSize: number, claimGate: ClaimGate = async (claim) => await claim()): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    const queueDb = fromKysely(trx)
    const { jobs, available } = await claimGate(async () => {
      const jobs = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize, db: queueDb })
      const eventIds = [...new Set(jobs.flatMap((job) => isPurchaseJobData(job.data) ? [job.data.event_id] : []))]
      return { jobs, available: await lockEventsForUpdate(trx, eventIds) }
    })
    if (jobs.length === 0) return 0
    const { decisions, sales } = decidePurchases(jobs, available)
    await takeSeats(trx, sales)
    const recorded = await recordDecisions(trx, decisions)
    if (recorded !== decisions.length) throw new Error(`only ${recorded} of ${decisions.length} claimed purchases were pending`)
    const completed = await boss.complete(PURCHASE_QUEUE, jobs.map((job) => job.id), null, { db: queueDb }) as { affected?: number }
    if (completed.affected !== jobs.length) throw new Error(`completed ${completed.affected ?? 0} of ${jobs.length} purchase jobs (claims lapsed)`)
    return jobs.length
  })
}

export type SettleOutcome = Decision['status'] | 'skipped'

/**
 * Decides one purchase under its event's row lock. Runs inside the caller's transaction; the
 * quota change and the booking's final status commit together or not at all.
 */
async function settlePurchase (trx: Db, bookingId: string, data: PurchaseJobData): Promise<SettleOutcome> {
  const event = await lockEventForUpdate(trx, data.event_id)
  const status = await findBookingStatus(trx, bookingId)
  // Already decided (or never written): a redelivered job must not spend seats twice.
  if (status !== BOOKING_STATUS.pending) return 'skipped'
  const decision = event === undefined
    ? { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.invalid } as const
    : decidePurchase(event.available_quota, data.quantity)
  if (decision.status === BOOKING_STATUS.success) await changeAvailableQuota(trx, data.event_id, -data.quantity)
  await recordDecision(trx, bookingId, decision)
  return decision.status
}

/**
 * Claims the oldest purchase job and decides it, all in one transaction: the claim (pg-boss
 * fetch), the event lock, the quota change, the booking's status and the job's completion commit
 * together. If the process dies at any line, PostgreSQL rolls all of it back and the job is
 * immediately claimable again: no purchase is applied twice, none is lost, none waits for an
 * expiry. A decision that throws is rolled back to a savepoint and the attempt is recorded as
 * failed (pg-boss retries it with backoff); on the last attempt the booking is failed with
 * reason "error", so no buyer is left pending forever.
 *
 * Returns the number of jobs claimed (0 when the queue is empty).
 */
export async function settleNextPurchase ({ db, boss, log }: SettleDeps): Promise<number> {
  const trx = await db.startTransaction().execute()
  try {
    const queueDb = fromKysely(trx)
    const [job] = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize: 1, includeMetadata: true, db: queueDb })
    if (job === undefined) {
      await trx.commit().execute()
      return 0
    }
    const attempt = { id: job.id, retryCount: job.retryCount }
    const decideTrx = await trx.savepoint('decide').execute()
    try {
      const outcome = isPurchaseJobData(job.data)
        ? await settlePurchase(decideTrx, job.id, job.data)
        : await recordInvalid(decideTrx, job)
      // pg-boss's typings declare the response empty; at run time it reports { requested, affected }.
      const completed = await boss.complete(PURCHASE_QUEUE, attempt, { outcome }, { db: queueDb }) as { affected?: number }
      if (completed.affected !== 1) throw new Error(`purchase job ${job.id} was not completable (claim lapsed)`)
      await decideTrx.releaseSavepoint('decide').execute()
      log.debug({ bookingId: job.id, outcome }, 'purchase decided')
    } catch (err) {
      // Everything since the savepoint (decision and completion) is undone; the claim stays, so
      // the failure below is recorded against this attempt and the retry count goes up.
      await decideTrx.rollbackToSavepoint('decide').execute()
      const lastAttempt = job.retryCount >= job.retryLimit
      log.error({ err, bookingId: job.id, attempt: job.retryCount, lastAttempt }, 'deciding a purchase failed')
      if (lastAttempt) await recordGivenUp(trx, job.id, log)
      await boss.fail(PURCHASE_QUEUE, attempt, { message: err instanceof Error ? err.message : String(err) }, { db: queueDb })
    }
    await trx.commit().execute()
    return 1
  } catch (err) {
    await trx.rollback().execute().catch(() => {})
    throw err
  }
}

/**
 * The last attempt failed: tell the buyer (failed, reason "error"). If even that cannot be
 * written, the job is still failed (and dead-lettered) so it cannot block the queue forever.
 */
async function recordGivenUp (trx: ControlledTransaction<Database>, bookingId: string, log: Logger): Promise<void> {
  const giveUpTrx = await trx.savepoint('give_up').execute()
  try {
    await recordDecision(giveUpTrx, bookingId, { status: BOOKING_STATUS.failed, reason: 'error' })
  } catch (err) {
    await giveUpTrx.rollbackToSavepoint('give_up').execute()
    log.error({ err, bookingId }, 'could not record the failure on the booking; it stays pending, its job is dead-lettered')
  }
}

async function recordInvalid (trx: Db, job: JobWithMetadata<unknown>): Promise<SettleOutcome> {
  await recordDecision(trx, job.id, { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.invalid })
  return BOOKING_STATUS.failed
}
