import { fromKysely, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import { timeOrderedId } from '../lib/ids.ts'
import type { Db } from '../db/client.ts'
import { countPendingBookings, findByIdempotencyKeys, storePurchases, type ExistingPurchase, type NewPurchase, type StoredPurchase, type StoreVerdict } from '../db/bookings.ts'
import { BOOKING_STATUS, FAILURE_REASON, type BookingStatus } from '../db/database.ts'
import { PURCHASE_QUEUE, type PurchaseJobData } from '../lib/purchase-queue.ts'
import { AppError, databaseFailure, saleNotOpen } from './errors.ts'

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

/** A purchase as the API received it (its id is given at intake). */
export type PurchaseRequest = Omit<NewPurchase, 'id'>

/**
 * What became of a purchase: queued for the worker (202), or known at once (200): sold out when
 * stored, or, for a retry under an idempotency key, whatever the first request's purchase has
 * become by now. `replayed` says the purchase was stored by an earlier request with the same key.
 */
export type Submitted =
  | { id: string, status: typeof BOOKING_STATUS.pending, reason: null, replayed: boolean }
  | { id: string, status: Exclude<BookingStatus, typeof BOOKING_STATUS.pending>, reason: string | null, replayed: boolean }

export interface Intake {
  /** Stores the purchase durably (booking row, and its job unless decided at once) and says how. */
  submit: (purchase: PurchaseRequest) => Promise<Submitted>
  close: () => void
}

interface Waiting {
  purchase: NewPurchase
  resolve: (submitted: Submitted) => void
  reject: (err: unknown) => void
}

/** A retry must ask for the same thing as the purchase its key already names. */
function sameRequest (a: Pick<NewPurchase, 'event_id' | 'quantity' | 'max_wait_seconds'>, b: Pick<NewPurchase, 'event_id' | 'quantity' | 'max_wait_seconds'>): boolean {
  return a.event_id === b.event_id && a.quantity === b.quantity && (a.max_wait_seconds ?? null) === (b.max_wait_seconds ?? null)
}

function replayOf (existing: ExistingPurchase): Submitted {
  return existing.status === BOOKING_STATUS.pending
    ? { id: existing.id, status: existing.status, reason: null, replayed: true }
    : { id: existing.id, status: existing.status, reason: existing.reason, replayed: true }
}

// Events whose last purchases were all answered at once: sold out, closed, not open yet. A batch
// only for such events is first tried as one statement outside a transaction (see storeBatch).
// Bounded: it is a guess that saves a round trip, never a source of truth.
const ANSWERED_AT_ONCE_MAX = 10_000

/**
 * Group-committed intake. Concurrent purchases are gathered for at most `batchWaitMs` (or until
 * `batchMax` wait) and stored by one transaction: one statement for the booking rows
 * (storePurchases: the event checks, the sold-out fast path and the idempotency keys are in it),
 * one pg-boss insert() of their jobs, one commit (then `onQueued`: wake the workers).
 * Each request is answered when that commit returns, so a 202 still means "stored". A failed batch
 * fails only its own requests, with a 503, and stores none of them (one transaction).
 *
 * While `batchesInFlight` transactions are busy, arrivals keep gathering: the busier the database,
 * the bigger the next batch, which is what keeps the commits per second low under a flood.
 *
 * No query per request, and nothing about events cached: the unknown-event check, the sale
 * window and the sold-out fast path are read by the batch's own statement.
 */
export function createIntake ({ db, boss, log, onQueued }: { db: Db, boss: PgBoss, log: Logger, onQueued: () => void }, options: IntakeOptions): Intake {
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
  const answeredAtOnce = new Set<string>()

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

  /**
   * Stores the batch's purchases: as one autocommitted statement when every one of them is for an
   * event that answered its last purchases at once (one round trip instead of two: it stores them
   * only if none of them queues, so no job is ever missing), else in a transaction with their jobs.
   */
  async function store (purchases: NewPurchase[]): Promise<StoredPurchase[]> {
    if (purchases.every((p) => answeredAtOnce.has(p.event_id))) {
      const results = await storePurchases(db, purchases, { onlyIfNoneQueue: true })
      if (results !== 'would_queue') return results
    }
    return await db.transaction().execute(async (trx) => {
      const results = await storePurchases(trx, purchases)
      const byId = new Map(purchases.map((p) => [p.id, p]))
      const jobs = results.filter((r) => r.verdict === 'pending').map((r) => {
        const { event_id, user_id, quantity } = byId.get(r.id) as NewPurchase
        const data: PurchaseJobData = { event_id, user_id, quantity, arrival: Number(r.arrival) }
        if (r.expires_at !== null) data.expires_at = r.expires_at.toISOString()
        // The event is the job's group: a worker that finds the event's row held leaves all its jobs
        // queued (ignoreGroups) and goes on with the other events.
        return { id: r.id, data, group: { id: event_id } }
      })
      if (jobs.length > 0) {
        const ids = await boss.insert(PURCHASE_QUEUE, jobs, { db: fromKysely(trx), returnId: true })
        // insert() skips a duplicate id silently; a purchase without its job must not be answered 202.
        if (ids?.length !== jobs.length) throw new Error(`stored ${ids?.length ?? 0} of ${jobs.length} purchase jobs`)
      }
      return results
    })
  }

  async function storeBatch (batch: readonly Waiting[]): Promise<void> {
    // Requests repeating an idempotency key already in this batch follow the first one's fate.
    const leaders = new Map<string, Waiting>()
    const followers: Array<{ follower: Waiting, leader: Waiting }> = []
    const storing: Waiting[] = []
    for (const w of batch) {
      const { user_id: userId, idempotency_key: key } = w.purchase
      const leader = key === null ? undefined : leaders.get(`${userId}\n${key}`)
      if (leader !== undefined) {
        followers.push({ follower: w, leader })
        continue
      }
      if (key !== null) leaders.set(`${userId}\n${key}`, w)
      storing.push(w)
    }

    let results: StoredPurchase[]
    try {
      results = await store(storing.map((w) => w.purchase))
    } catch (err) {
      const database = databaseFailure(err)
      log[database !== undefined ? 'warn' : 'error']({ err, purchases: batch.length }, 'storing a batch of purchases failed; none of them was stored')
      const failure = new AppError(database ?? 'PURCHASE_NOT_STORED', { cause: err })
      for (const w of batch) w.reject(failure)
      return
    }

    const outcomes = new Map<Waiting, Submitted | AppError>()
    const raced: Waiting[] = []
    const byId = new Map(results.map((r) => [r.id, r]))
    for (const w of storing) {
      const result = byId.get(w.purchase.id) as StoredPurchase
      rememberVerdict(w.purchase.event_id, result.verdict)
      if (result.verdict === 'not_stored') raced.push(w)
      else outcomes.set(w, outcomeOf(w.purchase, result))
    }
    if (raced.length > 0) {
      // Their keys were taken by purchases committed while the statement ran: those are theirs.
      try {
        const existing = await findByIdempotencyKeys(db, raced.map((w) => ({ user_id: w.purchase.user_id, idempotency_key: w.purchase.idempotency_key as string })))
        for (const w of raced) {
          const found = existing.find((e) => e.user_id === w.purchase.user_id && e.idempotency_key === w.purchase.idempotency_key)
          outcomes.set(w, found === undefined ? new AppError('PURCHASE_NOT_STORED') : replayOutcome(w.purchase, found))
        }
      } catch (err) {
        // Only these fail: the rest of the batch is committed. Their keys make a retry safe.
        log.warn({ err, purchases: raced.length }, 'could not read the purchases stored under these idempotency keys')
        for (const w of raced) outcomes.set(w, new AppError(databaseFailure(err) ?? 'DATABASE_UNAVAILABLE', { cause: err }))
      }
    }
    for (const { follower, leader } of followers) {
      const led = outcomes.get(leader) as Submitted | AppError
      outcomes.set(follower, !sameRequest(follower.purchase, leader.purchase)
        ? new AppError('IDEMPOTENCY_KEY_REUSED')
        : led instanceof AppError ? led : { ...led, replayed: true })
    }

    let queued = 0
    for (const w of batch) {
      const outcome = outcomes.get(w) as Submitted | AppError
      if (outcome instanceof AppError) {
        w.reject(outcome)
        continue
      }
      if (outcome.status === BOOKING_STATUS.pending && !outcome.replayed) queued += 1
      w.resolve(outcome)
    }
    acceptedSinceCount += queued
    if (queued > 0) onQueued()
  }

  function rememberVerdict (eventId: string, verdict: StoreVerdict): void {
    if (verdict === 'pending') answeredAtOnce.delete(eventId)
    else if (verdict === 'sold_out' || verdict === 'closed' || verdict === 'not_open') {
      if (answeredAtOnce.size >= ANSWERED_AT_ONCE_MAX) answeredAtOnce.clear()
      answeredAtOnce.add(eventId)
    }
  }

  function replayOutcome (purchase: NewPurchase, existing: ExistingPurchase): Submitted | AppError {
    return sameRequest(purchase, existing) ? replayOf(existing) : new AppError('IDEMPOTENCY_KEY_REUSED')
  }

  function outcomeOf (purchase: NewPurchase, result: StoredPurchase): Submitted | AppError {
    switch (result.verdict) {
      case 'pending': return { id: result.id, status: BOOKING_STATUS.pending, reason: null, replayed: false }
      case 'sold_out': return { id: result.id, status: BOOKING_STATUS.failed, reason: FAILURE_REASON.soldOut, replayed: false }
      case 'replay': return replayOutcome(purchase, result.existing as ExistingPurchase)
      case 'unknown_event': return new AppError('EVENT_NOT_FOUND')
      case 'closed': return new AppError('SALE_CLOSED')
      case 'not_open': return saleNotOpen(result.sales_open_at as Date)
      case 'not_stored': return new AppError('PURCHASE_NOT_STORED')
    }
  }

  return {
    async submit (request) {
      if (pendingCounted + acceptedSinceCount + holding >= options.queueCapacity) throw new AppError('QUEUE_FULL')
      holding += 1
      // Time-ordered ids: the booking id is the job id, and sorts in arrival order.
      const purchase: NewPurchase = { id: timeOrderedId(), ...request }
      return await new Promise<Submitted>((resolve, reject) => {
        waiting.push({ purchase, resolve, reject })
        if (waiting.length === 1 && windowTimer === undefined && !windowElapsed) openWindow()
        pump()
      })
    },
    close () {
      clearInterval(refreshTimer)
    }
  }
}
