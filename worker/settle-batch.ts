import { claimPurchaseJobs } from '../db/purchase-jobs.ts'
import { applyJobs, countDecided, countOutcomes, eventsOf, type SettleDeps, type SettleResult } from './apply-jobs.ts'
import type { ClaimGate } from './claim-gate.ts'
import { EventsBusyError, lockOrSetAside, SetAsideEvents, setAsideBusy } from './set-aside-events.ts'

/**
 * Claims up to `batchSize` of the oldest jobs and decides them all in one transaction (applyJobs),
 * with a fixed number of statements whatever the batch size: claim, lock, read, write. The claim
 * deletes the jobs (db/purchase-jobs.ts, claimPurchaseJobs): committed with the decisions, a
 * decided purchase leaves no job behind; rolled back, the jobs are queued again as they were. As in
 * the serial worker, a crash at any line rolls all of it back, claims included.
 *
 * If anything throws, the batch is rolled back and thrown, and the caller settles those jobs one at
 * a time (settle-one.ts, settleNextPurchase), which pins the failure on the job that causes it and gives that one
 * its retries and, at the end, the dead-letter queue.
 *
 * An event whose row stays locked elsewhere past EVENT_LOCK_WAIT_MS is set aside (the whole
 * batch rolls back, and the next fetch leaves that event's jobs in the queue).
 *
 * Returns the number of jobs claimed (0 when the queue is empty), the bookings decided, and the
 * events set aside.
 */
export async function settlePurchaseBatch (
  { db, log, metrics }: SettleDeps,
  batchSize: number,
  claimGate: ClaimGate = async (claim) => await claim(),
  setAside = new SetAsideEvents()
): Promise<SettleResult> {
  await setAside.refresh(db)
  try {
    const { result, decided } = await db.transaction().execute(async (trx) => {
      const { jobs, events } = await claimGate(async () => {
        const jobs = await claimPurchaseJobs(trx, { db, limit: batchSize, ignoreGroups: setAside.current() })
        return { jobs, events: await lockOrSetAside(trx, eventsOf(jobs)) }
      })
      if (jobs.length === 0) return { result: { claimed: 0, decided: 0, setAside: 0 }, decided: undefined }
      const decided = await applyJobs(trx, jobs, { locked: events })
      return { result: { claimed: jobs.length, decided: countDecided(decided), setAside: 0 }, decided }
    })
    if (decided !== undefined) countOutcomes(metrics, decided.decisions, decided.cancelled.length)
    return result
  } catch (err) {
    if (err instanceof EventsBusyError) return await setAsideBusy(db, err, setAside, log)
    throw err
  }
}

