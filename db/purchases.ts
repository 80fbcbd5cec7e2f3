import { sql } from 'kysely'
import { BOOKING_STATUS, FAILURE_REASON, type BookingStatus } from '../purchase/vocabulary.ts'
import type { Db } from './client.ts'
import { PENDING } from './bookings.ts'
import { insertQueueJobs, purchaseJobData } from './purchase-jobs.ts'
import type { BookingRow } from './database.ts'

// Storing purchases as intake accepts them, and finding them again by idempotency key.

export interface NewPurchase {
  id: string
  event_id: string
  user_id: string
  quantity: number
  idempotency_key: string | null
  max_wait_seconds: number | null
}

/**
 * What the storing statement made of a purchase:
 * - unknown_event, not_open, closed: refused, nothing stored;
 * - sold_out: stored already decided (FAILED, sold_out), no job needed;
 * - pending: stored PENDING with its arrival number (and deadline); it needs its job;
 * - replay: the user already has a purchase under this idempotency key (`existing`); nothing stored;
 * - not_stored: it would have been stored, but its key was taken by a purchase committed while
 *   this statement ran (look that one up).
 */
export type StoredPurchase =
  | { id: string, verdict: 'pending', arrival: string, expires_at: Date | null }
  | { id: string, verdict: 'sold_out' | 'unknown_event' | 'closed' | 'not_stored' }
  | { id: string, verdict: 'not_open', sales_open_at: Date }
  | { id: string, verdict: 'replay', existing: ExistingPurchase }
export type StoreVerdict = StoredPurchase['verdict']

export type ExistingPurchase = Pick<BookingRow, 'id' | 'event_id' | 'quantity' | 'max_wait_seconds' | 'status' | 'reason'>

/** A row of the storing statement: which columns are set depends on the verdict (see toStored). */
interface StoreRow {
  id: string
  verdict: Exclude<StoreVerdict, 'not_stored'>
  arrival: string | null
  expires_at: Date | null
  sales_open_at: Date | null
  existing_id: string | null
  existing_event_id: string | null
  existing_quantity: number | null
  existing_max_wait_seconds: number | null
  existing_status: BookingStatus | null
  existing_reason: string | null
}

/** The statement's row as its verdict's variant; a row missing what its verdict promises throws. */
function toStored (row: StoreRow): StoredPurchase {
  const missing = (what: string): never => { throw new Error(`the storing statement gave ${row.verdict} without ${what} for ${row.id}`) }
  switch (row.verdict) {
    case 'pending': return { id: row.id, verdict: 'pending', arrival: row.arrival ?? missing('an arrival'), expires_at: row.expires_at }
    case 'not_open': return { id: row.id, verdict: 'not_open', sales_open_at: row.sales_open_at ?? missing('an opening time') }
    case 'replay': return {
      id: row.id,
      verdict: 'replay',
      existing: {
        id: row.existing_id ?? missing('the existing purchase'),
        event_id: row.existing_event_id ?? missing('its event'),
        quantity: row.existing_quantity ?? missing('its quantity'),
        max_wait_seconds: row.existing_max_wait_seconds,
        status: row.existing_status ?? missing('its status'),
        reason: row.existing_reason
      }
    }
    default: return { id: row.id, verdict: row.verdict }
  }
}

/**
 * Stores a batch of purchases being accepted, in one statement, and says what became of each
 * (StoreVerdict: one result per purchase, in their order). Everything about the event is read in
 * this very statement, from its committed row: nothing is cached in the API, so every API process
 * is right the moment a sale opens, closes, sells out or gets seats back, and the unknown-event
 * check costs no query of its own.
 *
 * Queued purchases get an arrival number from their event's own sequence, in id (arrival) order;
 * a pending purchase's position is that number minus the event's decided_through. The same
 * statement inserts each pending purchase's job into pg-boss's job table (insertQueueJobs), so
 * a booking and its job commit together with no transaction of their own: one round trip per batch
 * (docs/decisions/0011-pg-boss-hot-path-in-sql.md).
 *
 * Without an idempotency key in the batch, the statement has no key lookup and no ON CONFLICT
 * (PostgreSQL's slower insert path, which checks the unique index before each row).
 */
export async function storePurchases (db: Db, purchases: readonly NewPurchase[]): Promise<StoredPurchase[]> {
  if (purchases.length === 0) return []
  const keyed = purchases.some((p) => p.idempotency_key !== null)
  const { rows } = await sql<StoreRow>`
    -- The batch's events (a flood is for one or a few), read once each by id, not once per purchase.
    WITH batch_events AS MATERIALIZED (
      SELECT e.id, e.sales_open_at, e.sales_close_at, e.available_quota
      FROM events e WHERE e.id = ANY(${[...new Set(purchases.map((p) => p.event_id))]}::uuid[])
    ),
    judged AS (
      SELECT p.*, e.sales_open_at, k.id AS existing_id, k.event_id AS existing_event_id, k.quantity AS existing_quantity,
        k.max_wait_seconds AS existing_max_wait_seconds, k.status AS existing_status, k.reason AS existing_reason,
        CASE
          WHEN k.id IS NOT NULL THEN 'replay'
          WHEN e.id IS NULL THEN 'unknown_event'
          WHEN e.sales_close_at <= now() THEN 'closed'
          WHEN e.sales_open_at > now() THEN 'not_open'
          WHEN e.available_quota = 0 THEN 'sold_out'
          ELSE 'pending'
        END AS verdict
      FROM unnest(${purchases.map((p) => p.id)}::uuid[], ${purchases.map((p) => p.event_id)}::uuid[],
                  ${purchases.map((p) => p.user_id)}::uuid[], ${purchases.map((p) => p.quantity)}::int[],
                  ${purchases.map((p) => p.idempotency_key)}::text[], ${purchases.map((p) => p.max_wait_seconds)}::int[])
        AS p (id, event_id, user_id, quantity, idempotency_key, max_wait_seconds)
      LEFT JOIN batch_events e ON e.id = p.event_id
      -- The key's purchase, looked up by key for each purchase (OFFSET 0 keeps the subquery per
      -- row): no plan can turn it into a scan of the table (db/driver/session.ts, PLANNING). A batch
      -- without keys looks nothing up.
      LEFT JOIN LATERAL (
        ${keyed
          ? sql`SELECT k.* FROM bookings k WHERE k.user_id = p.user_id AND k.idempotency_key = p.idempotency_key AND p.idempotency_key IS NOT NULL OFFSET 0`
          : sql`SELECT NULL::uuid AS id, NULL::uuid AS event_id, NULL::int AS quantity, NULL::int AS max_wait_seconds, NULL::text AS status, NULL::text AS reason`}
      ) k ON true
    ),
    stored AS (
      INSERT INTO bookings (id, event_id, user_id, quantity, status, reason, decided_at, idempotency_key, max_wait_seconds, expires_at, arrival)
      SELECT id, event_id, user_id, quantity,
        CASE verdict WHEN 'pending' THEN ${BOOKING_STATUS.pending} ELSE ${BOOKING_STATUS.failed} END,
        CASE verdict WHEN 'sold_out' THEN ${FAILURE_REASON.soldOut} END,
        CASE verdict WHEN 'sold_out' THEN clock_timestamp() END,
        idempotency_key, max_wait_seconds,
        now() + max_wait_seconds * interval '1 second',
        CASE verdict WHEN 'pending' THEN nextval(event_arrivals_sequence(event_id)) END
      FROM (SELECT * FROM judged WHERE verdict IN ('pending', 'sold_out') ORDER BY id OFFSET 0) AS arriving
      ${keyed ? sql`ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING` : sql``}
      RETURNING id, event_id, user_id, quantity, status, arrival, expires_at
    ),
    ${insertQueueJobs(sql`SELECT s.id, s.event_id::text AS group_id, ${purchaseJobData('s')} AS data FROM stored s WHERE s.status = ${PENDING}`)}
    -- One row per purchase, and no join (whose only plan on a pool without hash joins would
    -- rescan the stored rows once per purchase): the verdicts of those not stored, then the rows
    -- stored. A purchase in neither lost its key to a concurrent one (ON CONFLICT): not_stored.
    SELECT j.id, j.verdict, NULL::bigint AS arrival, NULL::timestamptz AS expires_at, j.sales_open_at,
      j.existing_id, j.existing_event_id, j.existing_quantity, j.existing_max_wait_seconds, j.existing_status, j.existing_reason
    FROM judged j WHERE j.verdict NOT IN ('pending', 'sold_out')
    UNION ALL
    SELECT s.id, CASE s.status WHEN ${PENDING} THEN 'pending' ELSE 'sold_out' END, s.arrival, s.expires_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM stored s`.execute(db)
  const byId = new Map(rows.map((row) => [row.id, row]))
  return purchases.map(({ id }) => {
    const row = byId.get(id)
    return row === undefined ? { id, verdict: 'not_stored' } : toStored(row)
  })
}

/** The purchases stored under these (user, idempotency key) pairs. */
type IdempotencyKey = Pick<BookingRow, 'user_id'> & { idempotency_key: string }

export async function findByIdempotencyKeys (db: Db, keys: readonly IdempotencyKey[]): Promise<Array<ExistingPurchase & IdempotencyKey>> {
  if (keys.length === 0) return []
  const { rows } = await sql<ExistingPurchase & IdempotencyKey>`
    SELECT b.id, b.event_id, b.user_id, b.idempotency_key, b.quantity, b.max_wait_seconds, b.status, b.reason
    FROM unnest(${keys.map((k) => k.user_id)}::uuid[], ${keys.map((k) => k.idempotency_key)}::text[]) AS k (user_id, idempotency_key)
    CROSS JOIN LATERAL (SELECT * FROM bookings b WHERE b.user_id = k.user_id AND b.idempotency_key = k.idempotency_key OFFSET 0) b`.execute(db)
  return rows
}

