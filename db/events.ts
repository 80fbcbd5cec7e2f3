import { sql } from 'kysely'
import type { Db } from './client.ts'
import type { EventChange, LockedEvent } from '../purchase/rules.ts'
import type { EventRow, Trx } from './database.ts'

export type SaleStatus = 'scheduled' | 'open' | 'sold_out' | 'closed'

export interface EventSummary extends EventRow {
  /** Seats sold: taken by successful bookings now (total minus available minus held). */
  sold: number
  /** Seats held for purchases waiting for their confirmation. */
  held: number
  /** Purchases waiting for their decision. */
  pending: number
  sale_status: SaleStatus
}

export interface EventSettings {
  name: string
  total_quota: number
  max_per_user?: number | null
  sales_open_at?: Date | null
  sales_close_at?: Date | null
  hold_seconds?: number | null
}

// Closed wins over not-yet-open: an event closed before it ever opened is closed. (Unqualified,
// so that the same columns serve a SELECT, an INSERT and an UPDATE of events.)
const summaryColumns = [
  // Seats taken, held or sold: toSummary takes the held ones out.
  sql<number>`total_quota - available_quota`.as('sold'),
  sql<SaleStatus>`CASE WHEN sales_close_at <= now() THEN 'closed' WHEN sales_open_at > now() THEN 'scheduled'
    WHEN available_quota = 0 THEN 'sold_out' ELSE 'open' END`.as('sale_status')
] as const

/** Pending purchases of the event: an index-only count over the small pending-only index. */
const pendingCount = sql<string>`(SELECT count(*) FROM bookings b WHERE b.event_id = e.id AND b.status = 'PENDING')`.as('pending')
/** Held seats of the event: over the held-only index, which holds current holds alone. */
const heldSeats = sql<string>`(SELECT coalesce(sum(h.quantity), 0) FROM bookings h WHERE h.event_id = e.id AND h.status = 'HELD')`.as('held')

type Counted = { pending: string | number, held: string | number, sold: string | number }
const toSummary = <T extends Counted>(row: T): T & { pending: number, held: number, sold: number } =>
  ({ ...row, pending: Number(row.pending), held: Number(row.held), sold: Number(row.sold) - Number(row.held) })

export async function insertEvent (db: Db, event: EventSettings): Promise<EventSummary> {
  const row = await db.insertInto('events')
    .values({ ...event, available_quota: event.total_quota })
    .returningAll()
    .returning([...summaryColumns, sql<number>`0`.as('pending'), sql<number>`0`.as('held')])
    .executeTakeFirstOrThrow()
  return toSummary(row)
}

export async function findEventById (db: Db, id: string): Promise<EventSummary | undefined> {
  const row = await db.selectFrom('events as e').selectAll().select([...summaryColumns, pendingCount, heldSeats]).where('e.id', '=', id).executeTakeFirst()
  return row === undefined ? undefined : toSummary(row)
}

export async function listEvents (db: Db, { limit }: { limit: number }): Promise<EventSummary[]> {
  const rows = await db.selectFrom('events as e').selectAll().select([...summaryColumns, pendingCount, heldSeats])
    .orderBy('e.created_at', 'desc').orderBy('e.id').limit(limit).execute()
  return rows.map(toSummary)
}

export type EventUpdate = Partial<EventSettings>

/**
 * Changes an event's settings in one UPDATE, which waits for the row lock any decision holds, so
 * it never races one: a new total_quota moves available_quota by the same amount, and is refused
 * ('below_sold') if it would leave fewer seats than successful bookings have taken.
 */
export async function updateEvent (db: Db, id: string, update: EventUpdate): Promise<EventSummary | 'not_found' | 'below_sold'> {
  const row = await db.updateTable('events as e')
    .set((eb) => ({
      ...(update.name !== undefined ? { name: update.name } : {}),
      ...(update.total_quota !== undefined
        ? { total_quota: update.total_quota, available_quota: sql<number>`e.available_quota + ${update.total_quota}::int - e.total_quota` }
        : {}),
      ...('max_per_user' in update ? { max_per_user: update.max_per_user ?? null } : {}),
      ...('sales_open_at' in update ? { sales_open_at: update.sales_open_at ?? null } : {}),
      ...('sales_close_at' in update ? { sales_close_at: update.sales_close_at ?? null } : {}),
      ...('hold_seconds' in update ? { hold_seconds: update.hold_seconds ?? null } : {}),
      version: eb('e.version', '+', 1)
    }))
    .where('e.id', '=', id)
    .where((eb) => update.total_quota === undefined ? eb.lit(true) : eb(sql<number>`e.total_quota - e.available_quota`, '<=', update.total_quota))
    .returningAll()
    .returning([...summaryColumns, pendingCount, heldSeats])
    .executeTakeFirst()
  if (row !== undefined) return toSummary(row)
  return await db.selectFrom('events').select('id').where('id', '=', id).executeTakeFirst() === undefined ? 'not_found' : 'below_sold'
}

/**
 * Closes sales now (a sale already closed keeps its earlier closing time). A sale that had not
 * opened yet loses its opening time: it is closed, and the window must stay ordered.
 */
export async function closeSales (db: Db, id: string): Promise<EventSummary | undefined> {
  const row = await db.updateTable('events as e')
    .set((eb) => ({
      sales_close_at: sql<Date>`least(e.sales_close_at, now())`,
      sales_open_at: sql<Date | null>`CASE WHEN e.sales_open_at >= now() THEN NULL ELSE e.sales_open_at END`,
      version: eb('e.version', '+', 1)
    }))
    .where('e.id', '=', id)
    .returningAll()
    .returning([...summaryColumns, pendingCount, heldSeats])
    .executeTakeFirst()
  return row === undefined ? undefined : toSummary(row)
}

/** The newest event with this name, else the newest event of all; undefined when there are none. */
export async function findEventIdPreferringName (db: Db, name: string): Promise<string | undefined> {
  const row = await db.selectFrom('events').select('id')
    .orderBy(sql`name = ${name}`, 'desc').orderBy('created_at', 'desc').limit(1).executeTakeFirst()
  return row?.id
}

/**
 * How many events there are, the sum of their decided_through (the arrival numbers the workers
 * have decided, over every event), and the purchases pending over all events, in one statement.
 * decided only grows, by one per queued purchase decided, so the difference between two readings
 * is the decisions made in between, whichever process made them. One pass over the events table
 * and an index-only count over the pending-only index, however many purchases there are.
 */
export async function readEventTotals (db: Db): Promise<{ events: number, decided: number, pending: number }> {
  const row = await db.selectFrom('events')
    .select((eb) => [
      eb.fn.countAll<string>().as('events'),
      sql<string>`coalesce(sum(decided_through), 0)`.as('decided'),
      sql<string>`(SELECT count(*) FROM bookings WHERE status = 'PENDING')`.as('pending')
    ])
    .executeTakeFirstOrThrow()
  return { events: Number(row.events), decided: Number(row.decided), pending: Number(row.pending) }
}

export async function countEvents (db: Db): Promise<number> {
  const row = await db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
  return Number(row.n)
}

/**
 * Takes the row lock of every listed event, in id order, for the rest of the transaction: every
 * change to an event's seats and to its bookings' statuses happens under it, so two deciders can
 * never both spend the same seat, nor decide the same booking. A fixed order is what keeps two
 * deciders from deadlocking: each waits only for locks ordered before its own. (The rows are
 * locked as the sorted scan returns them: LockRows sits above the Sort.)
 *
 * FOR UPDATE: intake takes no lock on the event row (bookings have no foreign key to it, migration
 * 2026-11-25-004), so accepting purchases never waits behind a decision on the same hot event.
 */
export async function lockEventsForUpdate (
  trx: Trx,
  ids: readonly string[],
  { skipLocked = false, waitAtMostMs }: { skipLocked?: boolean, waitAtMostMs?: number } = {}
): Promise<Map<string, LockedEvent>> {
  if (ids.length === 0) return new Map()
  let query = trx.selectFrom('events').select(['id', 'available_quota', 'max_per_user', 'sales_close_at', 'hold_seconds'])
    .where('id', '=', sql<string>`ANY(${ids}::uuid[])`)
  // The timeout is set by the statement itself, before its first lock wait (the rows are filtered,
  // then sorted, then locked), and lasts to the end of the transaction: no round trip of its own.
  if (waitAtMostMs !== undefined) query = query.where(sql<boolean>`set_config('lock_timeout', ${`${Math.max(1, Math.round(waitAtMostMs))}ms`}, true) IS NOT NULL`)
  const locking = query.orderBy('id').forUpdate()
  const rows = await (skipLocked ? locking.skipLocked() : locking).execute()
  return new Map(rows.map(({ id, ...event }) => [id, event]))
}

/** PostgreSQL's lock_not_available: a lock wait ran past lock_timeout (or NOWAIT found it taken). */
export const LOCK_NOT_AVAILABLE = '55P03'

/**
 * Of the listed events, those whose row another transaction has locked right now: busy (one
 * statement, in autocommit: the locks it tries are released as it ends). Unknown ids are not busy.
 */
export async function findBusyEvents (db: Db, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return []
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM events WHERE id = ANY(${ids}::uuid[])
    EXCEPT
    SELECT id FROM (SELECT id FROM events WHERE id = ANY(${ids}::uuid[]) FOR NO KEY UPDATE SKIP LOCKED) AS free`.execute(db)
  return rows.map((row) => row.id)
}

/**
 * Applies a batch's changes to many events in one statement. The table's CHECKs refuse any
 * oversell. The events are found by their ids (= ANY), so a plan reads only the batch's, whatever
 * it guesses of the join (db/driver/session.ts, PLANNING).
 */
export async function applyEventChanges (trx: Trx, changes: readonly EventChange[]): Promise<void> {
  if (changes.length === 0) return
  const ids = changes.map((c) => c.eventId)
  await sql`
    UPDATE events e
    SET available_quota = e.available_quota + c.seats,
        cancelled_seats = e.cancelled_seats + c.cancelled,
        decided_through = greatest(e.decided_through, c.through),
        version = e.version + 1
    FROM unnest(${ids}::uuid[], ${changes.map((c) => c.seats)}::int[],
                ${changes.map((c) => c.cancelledSeats)}::int[], ${changes.map((c) => c.decidedThrough)}::bigint[])
      AS c (id, seats, cancelled, through)
    WHERE e.id = ANY(${ids}::uuid[]) AND e.id = c.id`.execute(trx)
}

/** Publishes a worker's recent pace; rows of workers silent for an hour are cleared on the way. */
export async function recordWorkerRate (db: Db, workerId: string, decisionsPerSecond: number): Promise<void> {
  await sql`
    WITH gone AS (DELETE FROM worker_rates WHERE measured_at < now() - interval '1 hour' AND worker_id <> ${workerId})
    INSERT INTO worker_rates (worker_id, decisions_per_second, measured_at) VALUES (${workerId}, ${decisionsPerSecond}, now())
    ON CONFLICT (worker_id) DO UPDATE SET decisions_per_second = excluded.decisions_per_second, measured_at = excluded.measured_at`.execute(db)
}
