import type { ControlledTransaction } from 'kysely'
import { fromKysely } from 'pg-boss'
import type { Logger } from 'pino'
import type { Database } from '../db/database.ts'
import { recordDecision } from '../db/decisions.ts'
import { PURCHASE_QUEUE } from '../purchase/queue.ts'
import { BOOKING_STATUS, GIVEN_UP, type BookingDecision } from '../purchase/vocabulary.ts'
import { applyJobs, countDecided, countOutcomes, eventsOf, type SettleDeps, type SettleResult } from './apply-jobs.ts'
import { EventsBusyError, lockOrSetAside, SetAsideEvents, setAsideBusy } from './set-aside-events.ts'

// The one-at-a-time path: the serial mode, and the recovery after a batch failed, which pins the
// failure on the purchase that causes it and gives that one its retries and the dead-letter queue.

/**
 * Claims the oldest job and decides it (applyJobs with one job), all in one transaction: the claim
 * (pg-boss fetch), the event lock, the quota change, the booking's status and the job's completion
 * commit together. If the process dies at any line, PostgreSQL rolls all of it back and the job is
 * immediately claimable again: no purchase is applied twice, none is lost, none waits for an
 * expiry. A decision that throws is rolled back to a savepoint and the attempt is recorded as
 * failed (pg-boss retries it with backoff); on the last attempt the booking is failed with
 * reason "error", so no buyer is left pending forever.
 *
 * A busy event is set aside as in settlePurchaseBatch, before the attempt counts.
 *
 * Returns the number of jobs claimed (0 when the queue is empty), the bookings decided, and the
 * events set aside.
 */
export async function settleNextPurchase ({ db, boss, log, metrics }: SettleDeps, setAside = new SetAsideEvents()): Promise<SettleResult> {
  await setAside.refresh(db)
  const trx = await db.startTransaction().execute()
  try {
    const queueDb = fromKysely(trx)
    const [job] = await boss.fetch<unknown>(PURCHASE_QUEUE, { batchSize: 1, includeMetadata: true, db: queueDb, ignoreGroups: setAside.current() })
    if (job === undefined) {
      await trx.commit().execute()
      return { claimed: 0, decided: 0, setAside: 0 }
    }
    // Locked before the savepoint: a busy event is set aside, not counted as this job's failure.
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
      if (lastAttempt && await recordGivenUp(trx, job.id, log)) {
        committed.decisions = [{ id: job.id, decision: { status: BOOKING_STATUS.failed, reason: GIVEN_UP } }]
      }
      await boss.fail(PURCHASE_QUEUE, attempt, { message: err instanceof Error ? err.message : String(err) }, { db: queueDb })
    }
    await trx.commit().execute()
    countOutcomes(metrics, committed.decisions, committed.cancelled)
    return { claimed: 1, decided: decidedCount, setAside: 0 }
  } catch (err) {
    await trx.rollback().execute().catch(() => {})
    if (err instanceof EventsBusyError) return await setAsideBusy(db, err, setAside, log)
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
    await recordDecision(giveUpTrx, bookingId, { status: BOOKING_STATUS.failed, reason: GIVEN_UP })
    return true
  } catch (err) {
    await giveUpTrx.rollbackToSavepoint('give_up').execute()
    log.error({ err, bookingId }, 'could not record the failure on the booking; it stays pending, its job is dead-lettered')
    return false
  }
}
