import { sql } from 'kysely'
import { PURCHASE_DEAD_LETTER_QUEUE, PURCHASE_QUEUE } from '../purchase/queue.ts'
import { BOOKING_STATUS } from '../purchase/vocabulary.ts'
import type { Db } from './client.ts'
import { JOB_STATE, JOBS, LIVE_JOB_STATES } from './pgboss-tables.ts'

/** One event's books, as the invariant check reads them (one snapshot for every event). */
export interface EventBooks {
  event_id: string
  name: string
  total_quota: number
  available_quota: number
  /** Seats of successful bookings. */
  sold_seats: number
  /** Seats of held bookings (waiting for their confirmation). */
  held_seats: number
  /** Held bookings whose hold ran out more than HOLD_EXPIRY_BOUND_S ago and are still held. */
  overdue_holds: number
  /** Purchases waiting for a decision, and the seats they ask for (they hold none yet). */
  pending_purchases: number
  pending_seats: number
  /** The event's counter of seats given back by cancellations. */
  cancelled_seats: number
  /** Seats of cancelled bookings (more than cancelled_seats when some were withdrawn while pending). */
  cancelled_booking_seats: number
  max_per_user: number | null
  /** Users whose held and successful seats exceed max_per_user. */
  users_over_cap: number
  /** Pending purchases with no live job (created, retry or active): nothing would ever decide them. */
  stranded_purchases: number
}

export interface EventInvariants extends EventBooks {
  ok: boolean
  /** Each broken rule, in words; empty when ok. */
  problems: string[]
}

/**
 * How long after its hold_expires_at a held booking may still be held: the expiry sweep runs every
 * half second (worker/expiry-sweep.ts) and expires within 2 s while the worker keeps up; this
 * leaves room for a busy machine and a burst (100,000 holds ending at once took 4-10 s, decision
 * 0012). A hold older than this means the sweep is not running.
 */
export const HOLD_EXPIRY_BOUND_S = 30

/** What must hold for every event, at every moment (the database's CHECKs guard some of it too). */
export function judgeEvent (books: EventBooks): EventInvariants {
  const problems: string[] = []
  const { total_quota: total, available_quota: available, sold_seats: sold, held_seats: held } = books
  if (available + held + sold !== total) problems.push(`total ${total} != available ${available} + held ${held} + sold ${sold}`)
  if (sold + held > total) problems.push(`oversold: ${sold} seats sold and ${held} held of ${total}`)
  if (books.overdue_holds > 0) problems.push(`${books.overdue_holds} holds still held more than ${HOLD_EXPIRY_BOUND_S} s after they expired`)
  if (available < 0) problems.push(`available is negative: ${available}`)
  if (books.cancelled_seats > books.cancelled_booking_seats) {
    problems.push(`${books.cancelled_seats} seats given back, but cancelled bookings held ${books.cancelled_booking_seats}`)
  }
  if (books.users_over_cap > 0) problems.push(`${books.users_over_cap} users hold more than ${books.max_per_user ?? 0} seats`)
  if (books.stranded_purchases > 0) problems.push(`${books.stranded_purchases} pending purchases have no job to decide them`)
  return { ...books, ok: problems.length === 0, problems }
}

/**
 * Reads the books of `eventId`, or of the newest `limit` events, in ONE statement: one snapshot,
 * so a decision committing meanwhile is seen whole or not at all (the worker changes an event's
 * seats and its bookings in one transaction), and the check is exact even during a sale.
 *
 * Cost: it sums the events' bookings (an index scan per event, or a scan of the bookings of every
 * listed event), so it is an operator's tool, not something to poll every second on a large sale.
 */
export async function checkEventInvariants (db: Db, { eventId, limit }: { eventId?: string, limit: number }): Promise<EventInvariants[]> {
  const { rows } = await sql<Record<keyof EventBooks, string | number | null>>`
    WITH ev AS (
      SELECT id, name, total_quota, available_quota, cancelled_seats, max_per_user, created_at FROM events
      WHERE ${eventId ?? null}::uuid IS NULL OR id = ${eventId ?? null}::uuid
      ORDER BY created_at DESC, id
      LIMIT ${limit}
    ),
    books AS (
      SELECT b.event_id,
        coalesce(sum(b.quantity) FILTER (WHERE b.status = ${BOOKING_STATUS.success}), 0) AS sold_seats,
        coalesce(sum(b.quantity) FILTER (WHERE b.status = ${BOOKING_STATUS.held}), 0) AS held_seats,
        count(*) FILTER (WHERE b.status = ${BOOKING_STATUS.held} AND b.hold_expires_at < now() - make_interval(secs => ${HOLD_EXPIRY_BOUND_S})) AS overdue_holds,
        count(*) FILTER (WHERE b.status = ${BOOKING_STATUS.pending}) AS pending_purchases,
        coalesce(sum(b.quantity) FILTER (WHERE b.status = ${BOOKING_STATUS.pending}), 0) AS pending_seats,
        coalesce(sum(b.quantity) FILTER (WHERE b.status = ${BOOKING_STATUS.cancelled}), 0) AS cancelled_booking_seats
      FROM bookings b JOIN ev ON ev.id = b.event_id
      GROUP BY b.event_id
    ),
    over_cap AS (
      SELECT held.event_id, count(*) AS users_over_cap
      FROM (
        SELECT b.event_id, b.user_id, sum(b.quantity) AS seats
        FROM bookings b JOIN ev ON ev.id = b.event_id AND ev.max_per_user IS NOT NULL
        WHERE b.status IN (${BOOKING_STATUS.success}, ${BOOKING_STATUS.held})
        GROUP BY b.event_id, b.user_id
      ) held JOIN ev ON ev.id = held.event_id
      WHERE held.seats > ev.max_per_user
      GROUP BY held.event_id
    ),
    stranded AS (
      SELECT b.event_id, count(*) AS stranded_purchases
      FROM bookings b JOIN ev ON ev.id = b.event_id
      WHERE b.status = ${BOOKING_STATUS.pending}
        AND NOT EXISTS (
          SELECT 1 FROM ${JOBS} j
          WHERE j.name = ${PURCHASE_QUEUE} AND j.id = b.id AND j.state IN (${sql.join(LIVE_JOB_STATES.map((state) => sql.lit(state)))}))
      GROUP BY b.event_id
    )
    SELECT ev.id AS event_id, ev.name, ev.total_quota, ev.available_quota, ev.cancelled_seats, ev.max_per_user,
      coalesce(books.sold_seats, 0) AS sold_seats, coalesce(books.held_seats, 0) AS held_seats,
      coalesce(books.overdue_holds, 0) AS overdue_holds, coalesce(books.pending_purchases, 0) AS pending_purchases,
      coalesce(books.pending_seats, 0) AS pending_seats, coalesce(books.cancelled_booking_seats, 0) AS cancelled_booking_seats,
      coalesce(over_cap.users_over_cap, 0) AS users_over_cap, coalesce(stranded.stranded_purchases, 0) AS stranded_purchases
    FROM ev
    LEFT JOIN books ON books.event_id = ev.id
    LEFT JOIN over_cap ON over_cap.event_id = ev.id
    LEFT JOIN stranded ON stranded.event_id = ev.id
    ORDER BY ev.created_at DESC, ev.id`.execute(db)
  return rows.map((row) => judgeEvent({
    event_id: row.event_id as string,
    name: row.name as string,
    total_quota: Number(row.total_quota),
    available_quota: Number(row.available_quota),
    sold_seats: Number(row.sold_seats),
    held_seats: Number(row.held_seats),
    overdue_holds: Number(row.overdue_holds),
    pending_purchases: Number(row.pending_purchases),
    pending_seats: Number(row.pending_seats),
    cancelled_seats: Number(row.cancelled_seats),
    cancelled_booking_seats: Number(row.cancelled_booking_seats),
    max_per_user: row.max_per_user === null ? null : Number(row.max_per_user),
    users_over_cap: Number(row.users_over_cap),
    stranded_purchases: Number(row.stranded_purchases)
  }))
}

/** A purchase or cancellation whose decision kept failing until pg-boss gave up on it. */
export interface FailedJob {
  job_id: string
  kind: 'purchase' | 'cancellation'
  event_id: string | null
  /** The booking concerned (a purchase's own; the one a cancellation named). */
  booking_id: string | null
  booking_status: string | null
  booking_reason: string | null
  attempts: number
  failed_at: Date | null
  /** The last attempt's error, as pg-boss recorded it. */
  error: string | null
}

/**
 * The purchase queue's failed jobs, newest first (pg-boss keeps them a day), with their bookings,
 * and how many copies wait in the dead-letter queue: what an operator looks at after a batch
 * that kept failing. Read-only: the booking of a failed purchase is already failed ("error").
 */
export async function findFailedJobs (db: Db, limit: number): Promise<{ deadLettered: number, failed: FailedJob[] }> {
  // One after the other: `db` may be a transaction, which runs one statement at a time anyway.
  const { rows } = await sql<FailedJob>`
      SELECT j.id AS job_id,
        CASE WHEN j.data ? 'cancel_booking_id' THEN 'cancellation' ELSE 'purchase' END AS kind,
        j.data->>'event_id' AS event_id,
        b.id AS booking_id, b.status AS booking_status, b.reason AS booking_reason,
        j.retry_count AS attempts, j.completed_on AS failed_at,
        coalesce(j.output->>'message', j.output::text) AS error
      FROM ${JOBS} j
      LEFT JOIN bookings b ON b.id = CASE WHEN j.data ? 'cancel_booking_id' THEN (j.data->>'cancel_booking_id')::uuid ELSE j.id END
      WHERE j.name = ${PURCHASE_QUEUE} AND j.state = ${sql.lit(JOB_STATE.failed)}
      ORDER BY j.completed_on DESC NULLS LAST, j.id DESC
      LIMIT ${limit}`.execute(db)
  const dead = await sql<{ n: string }>`SELECT count(*) AS n FROM ${JOBS} WHERE name = ${PURCHASE_DEAD_LETTER_QUEUE}`.execute(db)
  return { deadLettered: Number(dead.rows[0]?.n), failed: rows.map((job) => ({ ...job, attempts: Number(job.attempts) })) }
}
