import { sql } from 'kysely'
import type { Db } from './client.ts'
import type { BookingRow, Trx, WebhookDeliveryRow, WebhookEndpointRow } from './database.ts'

// Webhook endpoints, the outbox the bookings table's triggers fill, and the log of delivery
// attempts (docs/decisions/0013-webhooks-outbox.md). Every statement finds its rows by key or
// through an index, on pools that plan with probes only (db/driver/session.ts); the admin
// routes' counts and lists run under withEveryPlan.

/** Most endpoints the service keeps: each status change is queued once per endpoint that wants it. */
export const MAX_WEBHOOK_ENDPOINTS = 20

export interface NewEndpoint { id: string, url: string, eventTypes: readonly string[], secret: string }

/**
 * Registers an endpoint; undefined when MAX_WEBHOOK_ENDPOINTS are registered already. Run it in a
 * transaction (withEveryPlan: it counts the table): it locks the table until that commits, so
 * concurrent registrations cannot pass the limit together.
 */
export async function insertEndpoint (trx: Db, endpoint: NewEndpoint): Promise<WebhookEndpointRow | undefined> {
  await sql`LOCK TABLE webhook_endpoints IN SHARE ROW EXCLUSIVE MODE`.execute(trx)
  const { rows: [row] } = await sql<WebhookEndpointRow>`
    INSERT INTO webhook_endpoints (id, url, event_types, secret)
    SELECT ${endpoint.id}, ${endpoint.url}, ${[...endpoint.eventTypes]}::text[], ${endpoint.secret}
    WHERE (SELECT count(*) FROM webhook_endpoints) < ${MAX_WEBHOOK_ENDPOINTS}
    RETURNING *`.execute(trx)
  return row
}

export async function listEndpoints (db: Db): Promise<WebhookEndpointRow[]> {
  return await db.selectFrom('webhook_endpoints').selectAll().orderBy('created_at').orderBy('id').execute()
}

export async function findEndpoint (db: Db, id: string): Promise<WebhookEndpointRow | undefined> {
  return await db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst()
}

/** Deletes an endpoint and its delivery log; deliveries still queued for it are then dropped. */
export async function deleteEndpoint (db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst()
  return result.numDeletedRows === 1n
}

/** Stops deliveries to an endpoint (its receiver said 410 Gone); kept, with why, for the operator. */
export async function disableEndpoint (db: Db, id: string, reason: string): Promise<void> {
  await db.updateTable('webhook_endpoints')
    .set({ disabled_at: sql<Date>`clock_timestamp()`, disabled_reason: reason })
    .where('id', '=', id).where('disabled_at', 'is', null)
    .execute()
}

/** Every endpoint that takes deliveries (at most MAX_WEBHOOK_ENDPOINTS; read through its key's index). */
export async function findEnabledEndpoints (db: Db): Promise<WebhookEndpointRow[]> {
  return await db.selectFrom('webhook_endpoints').selectAll().where('disabled_at', 'is', null).orderBy('id').execute()
}

/** A status change the triggers recorded: the booking as it was right after it. */
export interface OutboxMessage {
  seq: string
  booking: BookingRow
  changed_at: Date
}

// The columns a status change can set, as the outbox keeps them; every other column of a booking
// is set once, when it is stored.
const CHANGING = ['status', 'reason', 'decided_at', 'cancel_requested_at', 'cancelled_at', 'hold_expires_at', 'confirmed_at', 'payment_reference'] as const

/**
 * Takes (deletes) up to `limit` of the oldest outbox rows in `trx`, each with its booking as it was
 * then (the changing columns from the outbox, the rest from the booking): gone only if `trx` commits.
 * Each booking is probed by its key (a LATERAL per row): joined, a plan made on stale statistics
 * read every booking (test/db/statement-plans.test.ts).
 */
export async function takeOutbox (trx: Trx, limit: number): Promise<OutboxMessage[]> {
  const { rows } = await sql<BookingRow & { seq: string, changed_at: Date }>`
    WITH taken AS (
      DELETE FROM webhook_outbox
      WHERE seq = ANY(ARRAY(SELECT seq FROM webhook_outbox ORDER BY seq LIMIT ${limit} FOR UPDATE SKIP LOCKED))
      RETURNING *
    )
    SELECT b.*, ${sql.join(CHANGING.map((column) => sql`t.${sql.ref(column)}`))}, t.seq, t.changed_at
    FROM taken t CROSS JOIN LATERAL (SELECT * FROM bookings b WHERE b.id = t.booking_id OFFSET 0) b
    ORDER BY t.seq`.execute(trx)
  return rows.map(({ seq, changed_at: changedAt, ...booking }) => ({ seq, changed_at: changedAt, booking }))
}

export type NewDelivery = Omit<WebhookDeliveryRow, 'id' | 'attempted_at'>

/** Records delivery attempts (one statement per batch). */
export async function recordDeliveries (db: Db, deliveries: readonly NewDelivery[]): Promise<void> {
  if (deliveries.length === 0) return
  await db.insertInto('webhook_deliveries').values([...deliveries]).execute()
}

/** An endpoint's most recent delivery attempts, newest first. */
export async function findDeliveries (db: Db, endpointId: string, limit: number): Promise<WebhookDeliveryRow[]> {
  return await db.selectFrom('webhook_deliveries').selectAll()
    .where('endpoint_id', '=', endpointId)
    .orderBy('endpoint_id', 'desc').orderBy('id', 'desc')
    .limit(limit)
    .execute()
}

/** Forgets delivery attempts older than `days`; returns how many. */
export async function pruneDeliveries (db: Db, days: number): Promise<number> {
  // now(), not clock_timestamp(): a volatile bound cannot use the index on attempted_at.
  const result = await sql`DELETE FROM webhook_deliveries WHERE attempted_at < now() - make_interval(days => ${days})`.execute(db)
  return Number(result.numAffectedRows ?? 0n)
}
