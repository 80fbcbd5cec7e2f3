import { sql } from 'kysely'
import { BOOKING_STATUS } from '../purchase/vocabulary.ts'
import type { Db } from './client.ts'
import type { BookingRow } from './database.ts'
import { insertQueueJobs } from './purchase-jobs.ts'

// Bookings' own bookkeeping: cancellation requests and the pending counts. (Storing purchases:
// purchases.ts; deciding them: decisions.ts; reading them: booking-views.ts.)

// The partial indexes (migrations) name a status in their WHERE. A query meant to use one names
// that status as a literal, never as a parameter: a prepared statement's generic plan must hold
// for any parameter value, so it cannot use an index that covers one status only
// (docs/decisions/0001-plans-that-hold-as-tables-grow.md).
export const PENDING = sql.lit(BOOKING_STATUS.pending)
export const SUCCESS = sql.lit(BOOKING_STATUS.success)
export const HELD = sql.lit(BOOKING_STATUS.held)

/**
 * Marks a booking's cancellation as requested and queues its cancellation job (`job`: its id and
 * payload) in the same statement, so a request is never marked without its job, nor queued twice.
 * Returns the booking's status and request time; undefined if it was requested already or cannot
 * be cancelled (failed, cancelled, expired, or gone), and then nothing is queued.
 */
export async function requestCancellationOf (db: Db, id: string, job: { id: string, data: object }): Promise<Pick<BookingRow, 'status' | 'cancel_requested_at'> | undefined> {
  const { rows: [marked] } = await sql<Pick<BookingRow, 'status' | 'cancel_requested_at'>>`
    WITH marked AS (
      UPDATE bookings SET cancel_requested_at = now()
      WHERE id = ${id} AND status IN (${BOOKING_STATUS.pending}, ${BOOKING_STATUS.held}, ${BOOKING_STATUS.success}) AND cancel_requested_at IS NULL
      RETURNING status, cancel_requested_at, event_id
    ),
    ${insertQueueJobs(sql`SELECT ${job.id}::uuid AS id, m.event_id::text AS group_id, ${JSON.stringify(job.data)}::text::jsonb AS data FROM marked m`)}
    SELECT status, cancel_requested_at FROM marked`.execute(db)
  return marked
}

export async function countPendingBookings (db: Db): Promise<number> {
  const row = await db.selectFrom('bookings')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', PENDING)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Pending purchases per event that has any (an index-only scan of the pending-only index). */
export async function countPendingByEvent (db: Db): Promise<Array<{ event_id: string, pending: number }>> {
  const rows = await db.selectFrom('bookings').select(['event_id', (eb) => eb.fn.countAll<string>().as('pending')])
    .where('status', '=', PENDING).groupBy('event_id').execute()
  return rows.map((row) => ({ event_id: row.event_id, pending: Number(row.pending) }))
}
