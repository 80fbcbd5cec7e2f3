import type { Db } from '../db/client.ts'
import { findBookingViews, type BookingLookup, type BookingView } from '../db/booking-views.ts'

export interface BookingReader {
  /**
   * The booking, as its buyer sees it; undefined when there is none, or (with `ownedBy`) when
   * another user bought it: both stop at the same point of the same query (findBookingViews).
   */
  find: (id: string, ownedBy: string | null) => Promise<BookingView | undefined>
}

interface Waiting extends BookingLookup {
  resolve: (view: BookingView | undefined) => void
  reject: (err: unknown) => void
}

// Most bookings one query reads: a bound on the statement's size, far above what a turn of the
// event loop gathers.
const BATCH_MAX = 1000

/**
 * Reads bookings for GET and DELETE /bookings/:id the way intake stores them: the reads that
 * arrive in one turn of the event loop share one query (findBookingViews, by key), so a crowd
 * following its bookings costs a statement per turn, not one per request
 * (docs/decisions/0009-fewer-round-trips.md).
 * Nothing is cached: every read is answered from a query that started after it arrived.
 */
export function createBookingReader (db: Db): BookingReader {
  const waiting: Waiting[] = []

  async function flush (): Promise<void> {
    const batch = waiting.splice(0, BATCH_MAX)
    if (waiting.length > 0) setImmediate(() => { void flush() })
    let views: Array<BookingView | undefined>
    try {
      views = await findBookingViews(db, batch)
    } catch (err) {
      for (const w of batch) w.reject(err)
      return
    }
    batch.forEach((w, i) => { w.resolve(views[i]) })
  }

  return {
    async find (id, ownedBy) {
      return await new Promise((resolve, reject) => {
        waiting.push({ id, ownedBy, resolve, reject })
        if (waiting.length === 1) setImmediate(() => { void flush() })
      })
    }
  }
}
