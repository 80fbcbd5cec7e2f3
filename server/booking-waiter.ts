import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import { coalesced, listen } from '../db/client.ts'
import { findResolved } from '../db/booking-views.ts'
import { BOOKINGS_DECIDED_CHANNEL } from '../purchase/queue.ts'

export interface BookingWaiter {
  /**
   * Resolves when the booking is resolved (decided, and no cancellation waiting), after `timeoutMs`,
   * or when `signal` aborts, whichever comes first. Never rejects.
   */
  until: (id: string, timeoutMs: number, signal: AbortSignal) => Promise<void>
  /** Releases every waiting request (they answer with what they have) and stops listening. */
  close: () => Promise<void>
}

// The safety net when a notification is missed (the LISTEN connection was down): waiting
// requests are checked this often, all of them in one query.
const CHECK_EVERY_MS = 1000

/**
 * Holds GET /bookings/:id?wait= requests without a query per waiting request: when a worker
 * commits decisions it notifies BOOKINGS_DECIDED_CHANNEL, and this process then checks every
 * booking being waited on with one query (findResolved), at most one at a time: notifications that
 * arrive during a check are covered by one more check after it. A new waiter joins the next check,
 * so one decided between its first read and its registration is not missed.
 */
export function createBookingWaiter ({ db, log }: { db: Db, log: Logger }): BookingWaiter {
  const waiters = new Map<string, Set<() => void>>()
  let closed = false

  const check = coalesced(async () => {
    if (waiters.size === 0 || closed) return
    try {
      const resolved = await findResolved(db, [...waiters.keys()])
      for (const id of resolved) for (const release of waiters.get(id) ?? []) release()
    } catch (err) {
      log.warn({ err }, 'could not check the bookings clients wait on; checking again shortly')
    }
  })

  const timer = setInterval(check, CHECK_EVERY_MS)
  timer.unref()
  let unlisten: (() => Promise<void>) | undefined
  const listening = listen(db, BOOKINGS_DECIDED_CHANNEL, check, check)
    .then((stop) => { unlisten = stop })
    .catch((err: unknown) => { log.warn({ err }, `could not listen for decisions; waiting requests are checked every ${CHECK_EVERY_MS} ms`) })

  return {
    async until (id, timeoutMs, signal) {
      if (closed || signal.aborted) return
      await new Promise<void>((resolve) => {
        const release = (): void => {
          clearTimeout(timeout)
          signal.removeEventListener('abort', release)
          const set = waiters.get(id)
          set?.delete(release)
          if (set?.size === 0) waiters.delete(id)
          resolve()
        }
        const timeout = setTimeout(release, timeoutMs)
        signal.addEventListener('abort', release, { once: true })
        let set = waiters.get(id)
        if (set === undefined) {
          set = new Set()
          waiters.set(id, set)
        }
        set.add(release)
        check()
      })
    },
    async close () {
      closed = true
      clearInterval(timer)
      for (const set of [...waiters.values()]) for (const release of [...set]) release()
      await listening
      await unlisten?.().catch(() => {})
    }
  }
}
