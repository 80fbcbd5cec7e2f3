import { fromKysely, type PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import { v7 as uuidv7 } from 'uuid'
import type { Db } from '../db/client.ts'
import { countPendingBookings, insertPendingBookings } from '../db/bookings.ts'
import { eventExists } from '../db/events.ts'
import { PURCHASE_QUEUE, type PurchaseJobData } from '../lib/purchase-queue.ts'
import { AppError } from './errors.ts'

export interface IntakeOptions {
  /** Purchases allowed to wait for a decision at once, across all processes; beyond it, 503. */
  queueCapacity: number
  /** How often the pending count is re-read from the database. */
  pendingRefreshMs?: number
}

export interface Intake {
  /** Stores the purchase durably (booking row + job, one commit) and returns its booking id. */
  submit: (purchase: PurchaseJobData) => Promise<string>
  close: () => void
}

// Event ids are never deleted, so an id seen once stays valid: cache hits are always correct and
// skip a query per request. Misses are always asked of the database (another process may have
// just created the event); the foreign key on bookings is the backstop either way.
const KNOWN_EVENTS_MAX = 100_000

export function createIntake ({ db, boss, log, onAccepted }: { db: Db, boss: PgBoss, log: Logger, onAccepted?: () => void }, options: IntakeOptions): Intake {
  const knownEvents = new Set<string>()
  // Pending purchases across all processes, as last counted, plus what this process has accepted
  // since and what it is storing right now. Counting per request would put a query on the hot
  // path; a count a second is enough, because this process's own purchases are tracked exactly:
  // a slot is reserved synchronously before the first await, so a burst cannot all pass the check.
  // (Other processes' purchases since the last count are seen at the next count.)
  let pendingCounted = 0
  let acceptedSinceCount = 0
  let storing = 0
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
  const timer = setInterval(() => { refreshing ??= refreshPending().finally(() => { refreshing = undefined }) }, options.pendingRefreshMs ?? 1000)
  refreshing = refreshPending().finally(() => { refreshing = undefined })

  async function ensureEventExists (eventId: string): Promise<void> {
    if (knownEvents.has(eventId)) return
    if (!await eventExists(db, eventId)) throw new AppError('EVENT_NOT_FOUND')
    if (knownEvents.size >= KNOWN_EVENTS_MAX) knownEvents.clear()
    knownEvents.add(eventId)
  }

  return {
    async submit (purchase) {
      await ensureEventExists(purchase.event_id)
      if (pendingCounted + acceptedSinceCount + storing >= options.queueCapacity) throw new AppError('QUEUE_FULL')
      storing += 1
      try {
        // Time-ordered ids: the booking id is the job id, and sorts in arrival order.
        const id = uuidv7()
        await db.transaction().execute(async (trx) => {
          await insertPendingBookings(trx, [{ id, ...purchase }])
          await boss.insert(PURCHASE_QUEUE, [{ id, data: purchase }], { db: fromKysely(trx) })
        })
        acceptedSinceCount += 1
        onAccepted?.()
        return id
      } finally {
        storing -= 1
      }
    },
    close () {
      clearInterval(timer)
    }
  }
}
