import type { Logger } from 'pino'
import { countPendingBookings } from '../../db/bookings.ts'
import type { Db } from '../../db/client.ts'
import { findByIdempotencyKeys, storePurchases, type NewPurchase } from '../../db/purchases.ts'
import { GroupCommit } from '../../lib/group-commit.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { BOOKING_STATUS } from '../../purchase/vocabulary.ts'
import { AppError, databaseFailure } from '../errors.ts'
import { CapacityGate } from './capacity.ts'
import { answerOf, followerAnswer, replayOf, splitByKey, type Answer, type Submitted } from './verdicts.ts'

export type { Submitted } from './verdicts.ts'

export interface IntakeOptions {
  /** Purchases allowed to wait for a decision at once, across all processes; beyond it, 503. */
  queueCapacity: number
  /** Most purchases stored by one statement. */
  batchMax: number
  /** Longest a purchase waits for others to share its statement (0: only those already parsed). */
  batchWaitMs: number
  /** Statements storing batches at once; the pool needs a connection for each. */
  batchesInFlight: number
  /** How often the pending count is re-read from the database. */
  pendingRefreshMs?: number
}

/** A purchase as the API received it (its id is given at intake). */
export type PurchaseRequest = Omit<NewPurchase, 'id'>

export interface Intake {
  /** Stores the purchase durably (booking row, and its job unless decided at once) and says how. */
  submit: (purchase: PurchaseRequest) => Promise<Submitted>
  close: () => void
}

const isNewlyQueued = (answer: Answer | undefined): boolean =>
  answer !== undefined && !(answer instanceof AppError) && answer.status === BOOKING_STATUS.pending && !answer.replayed

/**
 * Group-committed intake: concurrent purchases share one statement (lib/group-commit.ts), which
 * stores their booking rows and their jobs (db/purchases.ts, storePurchases) and commits once; then
 * `onQueued` wakes the workers. Each request is answered when that commit returns, so a 202 still means "stored". A
 * failed batch fails only its own requests, with a 503, and stores none of them.
 *
 * No query per request, and nothing about events cached: the unknown-event check, the sale window
 * and the sold-out fast path are read by the batch's own statement.
 */
export interface IntakeDeps {
  db: Db
  log: Logger
  /** After a commit that queued purchases: wake the workers. */
  onQueued: () => void
  /** After every committed batch (lib/activity.ts). */
  onStored?: () => void
}

export function createIntake ({ db, log, onQueued, onStored }: IntakeDeps, options: IntakeOptions): Intake {
  const countPending = async (): Promise<number> => await countPendingBookings(db)
  const capacity = new CapacityGate({ capacity: options.queueCapacity, countPending, refreshMs: options.pendingRefreshMs, log })

  /** Stores one batch and answers each of its purchases. */
  async function commit (batch: NewPurchase[]): Promise<Answer[]> {
    // Requests repeating an idempotency key already in this batch follow the first one's fate.
    const { leaders, followers } = splitByKey(batch)
    const answers = new Map<NewPurchase, Answer>()
    const raced: NewPurchase[] = []
    try {
      const results = await storePurchases(db, leaders)
      leaders.forEach((purchase, i) => {
        const result = results[i]
        if (result?.verdict === 'not_stored') raced.push(purchase)
        else answers.set(purchase, result === undefined ? new AppError('PURCHASE_NOT_STORED') : answerOf(purchase, result))
      })
    } catch (err) {
      const database = databaseFailure(err)
      log[database !== undefined ? 'warn' : 'error']({ err, purchases: batch.length }, 'storing a batch of purchases failed; none of them was stored')
      throw new AppError(database ?? 'PURCHASE_NOT_STORED', { cause: err })
    }
    if (raced.length > 0) for (const [purchase, answer] of await answerRaced(raced)) answers.set(purchase, answer)
    for (const [follower, leader] of followers) answers.set(follower, followerAnswer(follower, leader, answers.get(leader) as Answer))

    const queued = leaders.filter((p) => isNewlyQueued(answers.get(p))).length
    capacity.queued(queued)
    onStored?.()
    if (queued > 0) onQueued()
    return batch.map((purchase) => answers.get(purchase) as Answer)
  }

  /** Their keys were taken by purchases committed while the statement ran: those are theirs. */
  async function answerRaced (raced: readonly NewPurchase[]): Promise<Map<NewPurchase, Answer>> {
    const answers = new Map<NewPurchase, Answer>()
    try {
      const existing = await findByIdempotencyKeys(db, raced.map((p) => ({ user_id: p.user_id, idempotency_key: p.idempotency_key as string })))
      for (const purchase of raced) {
        const found = existing.find((e) => e.user_id === purchase.user_id && e.idempotency_key === purchase.idempotency_key)
        answers.set(purchase, found === undefined ? new AppError('PURCHASE_NOT_STORED') : replayOf(purchase, found))
      }
    } catch (err) {
      // Only these fail: the rest of the batch is committed. Their keys make a retry safe.
      log.warn({ err, purchases: raced.length }, 'could not read the purchases stored under these idempotency keys')
      for (const purchase of raced) answers.set(purchase, new AppError(databaseFailure(err) ?? 'DATABASE_UNAVAILABLE', { cause: err }))
    }
    return answers
  }

  const batcher = new GroupCommit<NewPurchase, Submitted>({
    maxBatch: options.batchMax,
    waitMs: options.batchWaitMs,
    concurrency: options.batchesInFlight,
    commit
  })

  return {
    async submit (request) {
      if (!capacity.enter()) throw new AppError('QUEUE_FULL')
      try {
        // Time-ordered ids: the booking id is the job id, and sorts in arrival order.
        return await batcher.submit({ id: timeOrderedId(), ...request })
      } finally {
        capacity.leave()
      }
    },
    close () {
      capacity.close()
    }
  }
}
