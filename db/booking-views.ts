import { sql } from 'kysely'
import { BOOKING_STATUS } from '../purchase/vocabulary.ts'
import type { Db } from './client.ts'
import type { BookingRow } from './database.ts'

// Bookings as their buyers read them.

export interface BookingView extends BookingRow {
  /** While pending: purchases of the same event stored before it and not yet decided. */
  position: number | null
  /** The workers' recent pace, decisions per second (null when none was measured lately). */
  pace: number | null
}

/** A booking asked for: by id, and with `ownedBy`, only if that user bought it. */
export interface BookingLookup {
  id: string
  ownedBy: string | null
}

/**
 * Bookings as clients see them, for many lookups in one query, each by primary key: the answer
 * to each lookup (in their order), undefined where there is no such booking or, with `ownedBy`,
 * another user bought it: both stop at the same point (the row by its id, nothing computed for
 * it). A pending booking's position is its arrival number minus the event's decided_through (no
 * count over the queue), and the pace is what the workers published in the last minute. Each
 * booking is probed by its key per lookup, then (while pending) its event by its key, so the
 * plan has nothing to choose (db/driver/session.ts, PLANNING).
 */
export async function findBookingViews (db: Db, lookups: readonly BookingLookup[]): Promise<Array<BookingView | undefined>> {
  if (lookups.length === 0) return []
  const { rows } = await sql<BookingRow & { lookup: string, position: string | null, pace: string | number | null }>`
    SELECT q.lookup, b.*,
      CASE WHEN b.status = 'PENDING' AND b.arrival IS NOT NULL
        THEN greatest(b.arrival - (SELECT e.decided_through FROM events e WHERE e.id = b.event_id) - 1, 0) END AS position,
      CASE WHEN b.status = 'PENDING'
        THEN (SELECT sum(r.decisions_per_second) FROM worker_rates r WHERE r.measured_at > now() - interval '1 minute') END AS pace
    FROM unnest(${lookups.map((l) => l.id)}::uuid[], ${lookups.map((l) => l.ownedBy)}::uuid[]) WITH ORDINALITY AS q (id, owner, lookup)
    CROSS JOIN LATERAL (SELECT * FROM bookings b WHERE b.id = q.id AND (q.owner IS NULL OR b.user_id = q.owner) OFFSET 0) b`.execute(db)
  const answers = new Array<BookingView | undefined>(lookups.length).fill(undefined)
  for (const { lookup, position, pace, ...row } of rows) {
    answers[Number(lookup) - 1] = { ...row, position: position === null ? null : Number(position), pace: pace === null ? null : Number(pace) }
  }
  return answers
}

/** Of these bookings, those resolved for their buyers (purchase/vocabulary.ts, isResolved). */
export async function findResolved (db: Db, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return []
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM bookings
    WHERE id = ANY(${ids}::uuid[]) AND status <> ${BOOKING_STATUS.pending}
      AND (cancel_requested_at IS NULL OR status IN (${BOOKING_STATUS.cancelled}, ${BOOKING_STATUS.failed}, ${BOOKING_STATUS.expired}))`.execute(db)
  return rows.map((row) => row.id)
}

