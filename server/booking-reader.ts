import type { Db } from '../db/client.ts'
import { findBookingViews, type BookingView } from '../db/bookings.ts'

export interface BookingReader {
  /**
   * The booking, as its buyer sees it; undefined when there is none, or (with `ownedBy`) when
   * another user bought it: both come from the same query and are answered the same.
   */
  find: (id: string, ownedBy: string | null) => Promise<BookingView | undefined>
}

interface Waiting {
  id: string
  ownedBy: string | null
  resolve: (view: BookingView | undefined) => void
  reject: (err: unknown) => void
}

// Most bookings one query reads: a bound on the statement's size, far above what a turn of the
// event loop gathers.
const BATCH_MAX = 1000

/**
 * Reads bookings for GET and DELETE /bookings/:id the way intake stores them: the reads that
 * arrive in one turn of the event loop share one query (findBookingViews, by key), so a crowd
 * following its bookings costs a statement per turn, not one per request (measured: ten times the
 * reads a second from the same pool; README, "Reads"). Nothing is cached: every read is answered
 * from a query that started after it arrived.
 */
export function createBookingReader (db: Db): BookingReader {
  const waiting: Waiting[] = []

  async function flush (): Promise<void> {
    const batch = waiting.splice(0, BATCH_MAX)
    if (waiting.length > 0) setImmediate(() => { void flush() })
    let views: BookingView[]
    try {
      views = await findBookingViews(db, [...new Set(batch.map((w) => w.id))])
    } catch (err) {
      for (const w of batch) w.reject(err)
      return
    }
    const byId = new Map(views.map((view) => [view.id, view]))
    for (const w of batch) {
      const view = byId.get(w.id)
      w.resolve(view !== undefined && (w.ownedBy === null || view.user_id === w.ownedBy) ? view : undefined)
    }
  }

  return {
    async find (id, ownedBy) {
      return await new Promise((resolve, reject) => {
        // PostgreSQL prints uuids in lower case; the request may not (the schema accepts either).
        waiting.push({ id: id.toLowerCase(), ownedBy: ownedBy?.toLowerCase() ?? null, resolve, reject })
        if (waiting.length === 1) setImmediate(() => { void flush() })
      })
    }
  }
}
