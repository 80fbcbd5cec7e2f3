import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import type { Trx } from '../db/database.ts'
import { findBusyEvents, LOCK_NOT_AVAILABLE, lockEventsForUpdate } from '../db/events.ts'
import type { LockedEvent } from '../purchase/rules.ts'
import type { SettleResult } from './apply-jobs.ts'

// An event whose row another transaction keeps locked (a long admin or operator transaction) is
// busy: its purchases wait in the queue, in order, while the worker goes on with the other events.

// How long a worker waits for an event's row lock before it sets that event aside. Deciders of
// one event wait for each other for a batch's length (tens of milliseconds); far longer means
// something else has the row.
export const EVENT_LOCK_WAIT_MS = 1000
// How long a busy event's purchases are left in the queue before the worker tries its lock again.
export const EVENT_SET_ASIDE_MS = 5000
// Meanwhile, how often the worker looks (one statement, without waiting) whether the rows it set
// aside are free again, so a released event resumes within about this long.
export const EVENT_BUSY_PROBE_MS = 500

/**
 * The events a worker loop leaves alone for now because their row was locked elsewhere for longer
 * than EVENT_LOCK_WAIT_MS. Their jobs stay queued (every job carries its event as its pg-boss
 * group, and the loop fetches with ignoreGroups), so one busy event never stalls the others, and
 * its own purchases keep their order: all of them wait, none is decided out of turn. A probe every
 * EVENT_BUSY_PROBE_MS takes the event up again as soon as its row is free; while the probes find it
 * busy it stays aside (EVENT_SET_ASIDE_MS is the limit when no probe runs).
 */
export class SetAsideEvents {
  readonly #until = new Map<string, number>()
  readonly #setAsideMs: number
  #probedAt = 0

  constructor (setAsideMs = EVENT_SET_ASIDE_MS) {
    this.#setAsideMs = setAsideMs
  }

  /** At most every EVENT_BUSY_PROBE_MS: forgets the events set aside whose rows are free now. */
  async refresh (db: Db, now = performance.now()): Promise<void> {
    if (this.#until.size === 0 || now - this.#probedAt < EVENT_BUSY_PROBE_MS) return
    this.#probedAt = now
    const stillBusy = new Set(await findBusyEvents(db, [...this.#until.keys()]))
    // Free again: taken up at once. Still busy: left aside longer, so the loop does not wait on it
    // again (holding the claim gate) only to find it busy.
    for (const id of this.#until.keys()) {
      if (stillBusy.has(id)) this.#until.set(id, now + this.#setAsideMs)
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

/** Thrown inside a settle transaction when an event's lock was not had in time; it rolls back. */
export class EventsBusyError extends Error {
  readonly eventIds: readonly string[]
  constructor (eventIds: readonly string[], options: ErrorOptions) {
    super('an event row stayed locked past the lock wait', options)
    this.eventIds = eventIds
  }
}

/** Locks the events for a decision, or throws EventsBusyError after EVENT_LOCK_WAIT_MS. */
export async function lockOrSetAside (trx: Trx, eventIds: readonly string[]): Promise<Map<string, LockedEvent>> {
  try {
    // The shorter timeout then holds for the rest of the transaction: what a decider locks after its
    // events (its bookings' rows, its claimed jobs) no other decider has, so only a stray outside
    // lock could meet it, and that fails the batch, which is then settled one job at a time.
    return await lockEventsForUpdate(trx, eventIds, { waitAtMostMs: EVENT_LOCK_WAIT_MS })
  } catch (err) {
    if ((err as { code?: unknown }).code === LOCK_NOT_AVAILABLE) throw new EventsBusyError(eventIds, { cause: err })
    throw err
  }
}

/** After EventsBusyError rolled its transaction back: sets aside the events still busy. */
export async function setAsideBusy (db: Db, err: EventsBusyError, setAside: SetAsideEvents, log: Logger): Promise<SettleResult> {
  const ids = await findBusyEvents(db, err.eventIds)
  setAside.setAside(ids)
  if (ids.length > 0) log.warn({ eventIds: ids, retryInMs: EVENT_SET_ASIDE_MS }, 'event rows held by another transaction; their purchases wait, the others go on')
  // Released meanwhile (ids empty): nothing is set aside, and the caller tries again at once.
  return { claimed: 0, decided: 0, setAside: Math.max(ids.length, 1) }
}
