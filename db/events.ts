import { sql } from 'kysely'
import type { Db } from './client.ts'
import type { EventRow } from './database.ts'

export interface EventSummary extends EventRow {
  sold: number
}

const withSold = sql<number>`total_quota - available_quota`.as('sold')

export async function insertEvent (db: Db, event: { name: string, total_quota: number }): Promise<EventSummary> {
  return await db.insertInto('events')
    .values({ name: event.name, total_quota: event.total_quota, available_quota: event.total_quota })
    .returningAll()
    .returning(withSold)
    .executeTakeFirstOrThrow()
}

export async function findEventById (db: Db, id: string): Promise<EventSummary | undefined> {
  return await db.selectFrom('events').selectAll().select(withSold).where('id', '=', id).executeTakeFirst()
}

export async function listEvents (db: Db, { limit }: { limit: number }): Promise<EventSummary[]> {
  return await db.selectFrom('events').selectAll().select(withSold)
    .orderBy('created_at', 'desc').orderBy('id').limit(limit).execute()
}

/** The newest event with this name, else the newest event of all; undefined when there are none. */
export async function findEventIdPreferringName (db: Db, name: string): Promise<string | undefined> {
  const row = await db.selectFrom('events').select('id')
    .orderBy(sql`name = ${name}`, 'desc').orderBy('created_at', 'desc').limit(1).executeTakeFirst()
  return row?.id
}

export async function countEvents (db: Db): Promise<number> {
  const row = await db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
  return Number(row.n)
}

/**
 * Takes the event's row lock for the rest of the transaction: every decision about the event's
 * seats happens under it, so two deciders can never both spend the same seat.
 *
 * FOR NO KEY UPDATE, the row lock PostgreSQL's own UPDATE of a non-key column takes: it excludes
 * every other decider exactly as FOR UPDATE would, but not the FOR KEY SHARE lock that the
 * bookings foreign key takes when intake inserts a purchase, so accepting purchases never
 * waits behind a decision on the same hot event.
 */
export async function lockEventForUpdate (trx: Db, id: string): Promise<Pick<EventRow, 'id' | 'available_quota'> | undefined> {
  return await trx.selectFrom('events').select(['id', 'available_quota']).where('id', '=', id).forNoKeyUpdate().executeTakeFirst()
}

/** Moves seats; `delta` is negative for a sale. The table's CHECK refuses any oversell. */
export async function changeAvailableQuota (trx: Db, id: string, delta: number): Promise<void> {
  await trx.updateTable('events')
    .set((eb) => ({ available_quota: eb('available_quota', '+', delta), version: eb('version', '+', 1) }))
    .where('id', '=', id)
    .execute()
}

/**
 * The batched form of lockEventForUpdate: locks every listed event, in id order. A fixed order is
 * what keeps two deciders from deadlocking: each waits only for locks ordered before its own.
 * (The rows are locked as the sorted scan returns them: LockRows sits above the Sort.)
 */
export async function lockEventsForUpdate (trx: Db, ids: readonly string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map()
  const rows = await trx.selectFrom('events').select(['id', 'available_quota'])
    .where('id', '=', sql<string>`ANY(${ids}::uuid[])`)
    .orderBy('id')
    .forNoKeyUpdate()
    .execute()
  return new Map(rows.map((row) => [row.id, row.available_quota]))
}

/** Takes seats from many events in one statement (`seats` > 0 each). The CHECK refuses any oversell. */
export async function takeSeats (trx: Db, sales: ReadonlyArray<{ eventId: string, seats: number }>): Promise<void> {
  if (sales.length === 0) return
  await sql`
    UPDATE events e
    SET available_quota = e.available_quota - s.seats, version = e.version + 1
    FROM unnest(${sales.map((s) => s.eventId)}::uuid[], ${sales.map((s) => s.seats)}::int[]) AS s (id, seats)
    WHERE e.id = s.id`.execute(trx)
}
