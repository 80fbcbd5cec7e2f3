import { fromKysely, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import { v7 as uuidv7 } from 'uuid'
import type { Db } from '../db/client.ts'
import { notify } from '../db/client.ts'
import { countPendingBookings, insertPurchases, type PendingBooking } from '../db/bookings.ts'
import { BOOKING_STATUS, FAILURE_REASON, type BookingStatus } from '../db/database.ts'
import { PURCHASE_QUEUE, PURCHASES_QUEUED_CHANNEL, type PurchaseJobData } from '../lib/purchase-queue.ts'
import { AppError, isDatabaseUnavailable } from './errors.ts'

export interface IntakeOptions {
  /** Purchases allowed to wait for a decision at once, across all processes; beyond it, 503. */
  queueCapacity: number
  /** Most purchases stored by one transaction. */
  batchMax: number
  /** Longest a purchase waits for others to share its transaction (0: only those already parsed). */
  batchWaitMs: number
  /** Transactions storing batches at once; the pool needs a connection for each. */
  batchesInFlight: number
  /** How often the pending count is re-read from the database. */
  pendingRefreshMs?: number
}

/** What became of a purchase once stored: waiting for the worker, or decided at once. */
export type Submitted =
  | { id: string, status: typeof BOOKING_STATUS.pending }
  | { id: string, status: typeof BOOKING_STATUS.failed, reason: typeof FAILURE_REASON.soldOut }

export interface Intake {
  /** Stores the purchase durably (booking row, and its job unless decided at once) and says how. */
  submit: (purchase: PurchaseJobData) => Promise<Submitted>
  close: () => void
}

interface Waiting {
  purchase: PendingBooking
  resolve: (submitted: Submitted) => void
  reject: (err: unknown) => void
}

/**
 * Group-committed intake. Concurrent purchases are gathered for at most `batchWaitMs` (or until
 * `batchMax` wait) and stored by one transaction: one multi-row insert of booking rows, one
 * pg-boss insert() of their jobs, one commit (then a NOTIFY for workers in other processes). Each
 * request is answered when that commit returns, so a 202 still means "stored". A failed batch
 * fails only its own requests, with a 503, and stores none of them (one transaction).
 *
 * While `batchesInFlight` transactions are busy, arrivals keep gathering: the busier the database,
 * the bigger the next batch, which is what keeps the commits per second low under a flood.
 *
 * No query per request: the unknown-event check and the sold-out fast path are part of the batch's
 * insert (see insertPurchases), so nothing about events is cached and nothing can go stale.
 */
export function createIntake ({ db, boss, log, onAccepted }: { db: Db, boss: PgBoss, log: Logger, onAccepted?: () => void }, options: IntakeOptions): Intake {
  // Pending purchases across all processes, as last counted, plus what this process has accepted
  // since and what it holds right now (gathering or storing). Counting per request would put a
  // query on the hot path; a count a second is enough, because this process's own purchases are
  // tracked exactly: a slot is reserved synchronously in submit(), so a burst cannot all pass the
  // check. (Other processes' purchases since the last count are seen at the next count.)
  let pendingCounted = 0
  let acceptedSinceCount = 0
  let holding = 0
  let refreshing: Promise<void> | undefined

  async function refreshPending (): Promise<void> {
    const before = acceptedSinceCount
    try {
      pendingCounted = await countPendingBookings(db)
      acceptedSinceCount -= before
    } catch (err) {
      log.warn({ err }, 'could not count pending purchases; keeping the last count')
    }
  }
  const refreshTimer = setInterval(() => { refreshing ??= refreshPending().finally(() => { refreshing = undefined }) }, options.pendingRefreshMs ?? 1000)
  refreshing = refreshPending().finally(() => { refreshing = undefined })

  const waiting: Waiting[] = []
  let windowTimer: NodeJS.Timeout | NodeJS.Immediate | undefined
  let windowElapsed = false
  let inFlight = 0

  function openWindow (): void {
    const elapse = (): void => { windowTimer = undefined; windowElapsed = true; pump() }
    windowTimer = options.batchWaitMs === 0 ? setImmediate(elapse) : setTimeout(elapse, options.batchWaitMs)
  }

  function closeWindow (): void {
    if (windowTimer !== undefined) {
      clearTimeout(windowTimer as NodeJS.Timeout)
      clearImmediate(windowTimer as NodeJS.Immediate)
    }
    windowTimer = undefined
    windowElapsed = false
  }

  /** Starts a transaction for each batch that is due (full, or its window elapsed) and has a slot. */
  function pump (): void {
    while (inFlight < options.batchesInFlight && waiting.length > 0 && (windowElapsed || waiting.length >= options.batchMax)) {
      const batch = waiting.splice(0, options.batchMax)
      if (waiting.length === 0) closeWindow()
      inFlight += 1
      void storeBatch(batch).finally(() => {
        inFlight -= 1
        holding -= batch.length
        pump()
      })
    }
  }

  async function storeBatch (batch: readonly Waiting[]): Promise<void> {
    let stored: Map<string, BookingStatus>
    try {
      stored = await db.transaction().execute(async (trx) => {
        const statuses = await insertPurchases(trx, batch.map((w) => w.purchase))
        const jobs = batch.filter((w) => statuses.get(w.purchase.id) === BOOKING_STATUS.pending)
          .map(({ purchase: { id, event_id, user_id, quantity } }) => ({ id, data: { event_id, user_id, quantity } }))
        if (jobs.length > 0) {
          const ids = await boss.insert(PURCHASE_QUEUE, jobs, { db: fromKysely(trx), returnId: true })
          // insert() skips a duplicate id silently; a purchase without its job must not be answered 202.
          if (ids?.length !== jobs.length) throw new Error(`stored ${ids?.length ?? 0} of ${jobs.length} purchase jobs`)
        }
        return statuses
      })
    } catch (err) {
      const unavailable = isDatabaseUnavailable(err)
      log[unavailable ? 'warn' : 'error']({ err, purchases: batch.length }, 'storing a batch of purchases failed; none of them was stored')
      const failure = new AppError(unavailable ? 'DATABASE_UNAVAILABLE' : 'PURCHASE_NOT_STORED', { cause: err })
      for (const w of batch) w.reject(failure)
      return
    }
    let pending = 0
    for (const w of batch) {
      const status = stored.get(w.purchase.id)
      if (status === BOOKING_STATUS.pending) {
        pending += 1
        w.resolve({ id: w.purchase.id, status })
      } else if (status === BOOKING_STATUS.failed) {
        w.resolve({ id: w.purchase.id, status, reason: FAILURE_REASON.soldOut })
      } else {
        w.reject(new AppError('EVENT_NOT_FOUND'))
      }
    }
    acceptedSinceCount += pending
    if (pending > 0) {
      onAccepted?.()
      notifyWorkers()
    }
  }

  // Workers in other processes learn of new purchases by NOTIFY, sent after the commit rather than
  // inside it: a NOTIFY in the transaction would serialise every intake commit on PostgreSQL's
  // notification queue lock, and nobody waits for this one. At most one is in flight; arrivals
  // meanwhile are covered by one more after it. If it fails, workers still poll.
  let notifying = false
  let notifyAgain = false
  function notifyWorkers (): void {
    if (notifying) {
      notifyAgain = true
      return
    }
    notifying = true
    notifyAgain = false
    notify(db, PURCHASES_QUEUED_CHANNEL)
      .catch((err: unknown) => { log.warn({ err }, 'could not notify workers of new purchases; they will find them at their next poll') })
      .finally(() => {
        notifying = false
        if (notifyAgain) notifyWorkers()
      })
  }

  return {
    async submit (purchase) {
      if (pendingCounted + acceptedSinceCount + holding >= options.queueCapacity) throw new AppError('QUEUE_FULL')
      holding += 1
      // Time-ordered ids: the booking id is the job id, and sorts in arrival order.
      const id = uuidv7()
      return await new Promise<Submitted>((resolve, reject) => {
        waiting.push({ purchase: { id, ...purchase }, resolve, reject })
        if (waiting.length === 1 && windowTimer === undefined && !windowElapsed) openWindow()
        pump()
      })
    },
    close () {
      clearInterval(refreshTimer)
    }
  }
}
