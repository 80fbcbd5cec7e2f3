import { sql } from 'kysely'
import type { Db } from './client.ts'
import { lockEventsForUpdate } from './events.ts'
import { BOOKING_STATUS, FAILURE_REASON, type BookingRow, type BookingStatus, type FailureReason } from './database.ts'

// The partial indexes (migrations) name a status in their WHERE. A query meant to use one names
// that status as a literal, never as a parameter: a prepared statement's generic plan, which
// PostgreSQL switches to after a few runs, must hold for any parameter value, so it cannot use an
// index that covers one status only, and scans every booking of the event instead (seconds per
// statement in a big sale, enough to time a batch out).
const PENDING = sql.lit(BOOKING_STATUS.pending)
const SUCCESS = sql.lit(BOOKING_STATUS.success)

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
export type StoreVerdict = 'unknown_event' | 'not_open' | 'closed' | 'sold_out' | 'pending' | 'replay' | 'not_stored'

export interface StoredPurchase {
  id: string
  verdict: StoreVerdict
  /** pending: the job's payload needs these. */
  arrival: string | null
  expires_at: Date | null
  /** not_open: when it opens. */
  sales_open_at: Date | null
  /** replay: the purchase stored earlier under the same key. */
  existing: ExistingPurchase | null
}

export type ExistingPurchase = Pick<BookingRow, 'id' | 'event_id' | 'quantity' | 'max_wait_seconds' | 'status' | 'reason'>

/**
 * Stores a batch of purchases being accepted, in one statement, and says what became of each
 * (StoreVerdict). Everything about the event is read in this very statement, from its committed
 * row: nothing is cached in the API, so every API process is right the moment a sale opens,
 * closes, sells out or gets seats back, and the unknown-event check costs no query of its own.
 *
 * Queued purchases get an arrival number from their event's own sequence, in id (arrival) order;
 * a pending purchase's position is that number minus the event's decided_through.
 *
 * With `onlyIfNoneQueue`, the statement stores nothing at all if any purchase would queue, and says
 * so ('would_queue'): intake uses it to store a
 * batch that is all answered at once (a sold-out or closed event under a flood) in one round trip,
 * outside a transaction, since none of it needs a job.
 */
export async function storePurchases (db: Db, purchases: readonly NewPurchase[]): Promise<StoredPurchase[]>
export async function storePurchases (db: Db, purchases: readonly NewPurchase[], options: { onlyIfNoneQueue: true }): Promise<StoredPurchase[] | 'would_queue'>
export async function storePurchases (db: Db, purchases: readonly NewPurchase[], { onlyIfNoneQueue = false } = {}): Promise<StoredPurchase[] | 'would_queue'> {
  if (purchases.length === 0) return []
  const { rows } = await sql<{
    id: string, verdict: Exclude<StoreVerdict, 'not_stored'>, arrival: string | null, expires_at: Date | null,
    sales_open_at: Date | null, existing_id: string | null, existing_event_id: string | null, existing_quantity: number | null,
    existing_max_wait_seconds: number | null, existing_status: BookingStatus | null, existing_reason: string | null
  }>`
    WITH judged AS (
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
      -- The event and the key's purchase, each looked up by key for each purchase (OFFSET 0 keeps
      -- the subquery per row): no plan can turn them into a scan of the table (db/client.ts, PLANNING).
      LEFT JOIN LATERAL (SELECT e.* FROM events e WHERE e.id = p.event_id OFFSET 0) e ON true
      LEFT JOIN LATERAL (
        SELECT k.* FROM bookings k WHERE k.user_id = p.user_id AND k.idempotency_key = p.idempotency_key AND p.idempotency_key IS NOT NULL OFFSET 0
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
      FROM (
        SELECT * FROM judged
        WHERE verdict IN ('pending', 'sold_out')
          AND NOT (${onlyIfNoneQueue}::boolean AND EXISTS (SELECT 1 FROM judged WHERE verdict = 'pending'))
        ORDER BY id
        OFFSET 0
      ) AS arriving
      ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING id, status, arrival, expires_at
    )
    -- One row per purchase, and no join (whose only plan on a pool without hash joins would
    -- rescan the stored rows once per purchase): the verdicts of those not stored, then the rows
    -- stored. A purchase in neither lost its key to a concurrent one (ON CONFLICT): not_stored.
    -- (With onlyIfNoneQueue, pending verdicts are listed too: then nothing was stored.)
    SELECT j.id, j.verdict, NULL::bigint AS arrival, NULL::timestamptz AS expires_at, j.sales_open_at,
      j.existing_id, j.existing_event_id, j.existing_quantity, j.existing_max_wait_seconds, j.existing_status, j.existing_reason
    FROM judged j WHERE j.verdict NOT IN ('pending', 'sold_out') OR (${onlyIfNoneQueue}::boolean AND j.verdict = 'pending')
    UNION ALL
    SELECT s.id, CASE s.status WHEN ${PENDING} THEN 'pending' ELSE 'sold_out' END, s.arrival, s.expires_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM stored s`.execute(db)
  if (onlyIfNoneQueue && rows.some((row) => row.verdict === 'pending')) return 'would_queue'
  const byId = new Map(rows.map((row) => [row.id, row]))
  return purchases.map(({ id }) => {
    const row = byId.get(id)
    if (row === undefined) return { id, verdict: 'not_stored', arrival: null, expires_at: null, sales_open_at: null, existing: null }
    return {
      id,
      verdict: row.verdict,
      arrival: row.arrival,
      expires_at: row.expires_at,
      sales_open_at: row.sales_open_at,
      existing: row.existing_id === null
        ? null
        : {
            id: row.existing_id,
            event_id: row.existing_event_id as string,
            quantity: row.existing_quantity as number,
            max_wait_seconds: row.existing_max_wait_seconds,
            status: row.existing_status as BookingStatus,
            reason: row.existing_reason
          }
    }
  })
}

/** The purchases stored under these (user, idempotency key) pairs. */
export async function findByIdempotencyKeys (db: Db, keys: ReadonlyArray<{ user_id: string, idempotency_key: string }>): Promise<Array<ExistingPurchase & { user_id: string, idempotency_key: string }>> {
  if (keys.length === 0) return []
  const { rows } = await sql<ExistingPurchase & { user_id: string, idempotency_key: string }>`
    SELECT b.id, b.event_id, b.user_id, b.idempotency_key, b.quantity, b.max_wait_seconds, b.status, b.reason
    FROM unnest(${keys.map((k) => k.user_id)}::uuid[], ${keys.map((k) => k.idempotency_key)}::text[]) AS k (user_id, idempotency_key)
    CROSS JOIN LATERAL (SELECT * FROM bookings b WHERE b.user_id = k.user_id AND b.idempotency_key = k.idempotency_key OFFSET 0) b`.execute(db)
  return rows
}

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
 * plan has nothing to choose (db/client.ts, PLANNING).
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

/** Settled: decided, and not waiting for a cancellation (findSettled says the same in SQL). */
export const isSettled = (row: Pick<BookingRow, 'status' | 'cancel_requested_at'>): boolean => row.status !== BOOKING_STATUS.pending &&
  (row.cancel_requested_at === null || row.status === BOOKING_STATUS.cancelled || row.status === BOOKING_STATUS.failed)

/** Of these bookings, those that are settled (isSettled). */
export async function findSettled (db: Db, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return []
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM bookings
    WHERE id = ANY(${ids}::uuid[]) AND status <> ${BOOKING_STATUS.pending}
      AND (cancel_requested_at IS NULL OR status IN (${BOOKING_STATUS.cancelled}, ${BOOKING_STATUS.failed}))`.execute(db)
  return rows.map((row) => row.id)
}

/**
 * Marks a successful or pending booking as having a cancellation requested, once: its status and
 * request time if this call did (the caller then queues the cancellation in the same
 * transaction), undefined if it was requested already or the booking cannot be cancelled.
 */
export async function markCancelRequested (trx: Db, id: string): Promise<Pick<BookingRow, 'status' | 'cancel_requested_at'> | undefined> {
  return await trx.updateTable('bookings')
    .set({ cancel_requested_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', 'in', [BOOKING_STATUS.pending, BOOKING_STATUS.success])
    .where('cancel_requested_at', 'is', null)
    .returning(['status', 'cancel_requested_at'])
    .executeTakeFirst()
}

/** A booking as a decision needs it. */
export type BookingState = Pick<BookingRow, 'status' | 'quantity' | 'user_id' | 'event_id'>

export interface DecisionContext {
  /**
   * The database's clock, read after the events' locks were taken: the time of every decision.
   * null when no rule needed it (no closing time, no deadline, no cancellation): the statements
   * recording the decisions then take the database's clock themselves.
   */
  now: Date | null
  /** Of `claimed`, those no longer pending; and every one of `cancelTargets`. */
  bookings: Map<string, BookingState>
  /** Seats each (event, user) of `capped` holds now: `${event_id}\n${user_id}` -> seats. */
  held: Map<string, number>
}

export const heldKey = (eventId: string, userId: string): string => `${eventId}\n${userId}`

/**
 * What the deciding transaction reads once it holds the events' locks, in one statement: the clock,
 * the claimed purchases that are no longer pending (cancelled or expired while queued), the
 * bookings that claimed cancellations name, and the seats held by each user a cap applies to.
 * Nothing of it can change until commit: every status change happens under the event's lock.
 */
export async function readDecisionContext (trx: Db, { claimed, cancelTargets, capped }: {
  claimed: readonly string[]
  cancelTargets: readonly string[]
  capped: ReadonlyArray<{ event_id: string, user_id: string }>
}): Promise<DecisionContext> {
  const { rows } = await sql<{ kind: 'clock' | 'booking' | 'held', id: string | null, status: BookingStatus | null, quantity: number | null, user_id: string | null, event_id: string | null, now: Date | null }>`
    SELECT 'clock' AS kind, NULL::uuid AS id, NULL::text AS status, NULL::int AS quantity, NULL::uuid AS user_id, NULL::uuid AS event_id, clock_timestamp() AS now
    UNION ALL
    SELECT 'booking', b.id, b.status, b.quantity, b.user_id, b.event_id, NULL
    FROM bookings b
    WHERE (b.id = ANY(${claimed}::uuid[]) AND b.status <> ${BOOKING_STATUS.pending}) OR b.id = ANY(${cancelTargets}::uuid[])
    UNION ALL
    -- One probe of (event_id, status, user_id) per buyer, their own successful bookings only. A
    -- scalar subquery runs once per buyer with that buyer's ids by construction; written as a
    -- join, a plan made on stale statistics read every successful booking once and compared it
    -- with each buyer (test/db/statement-plans.test.ts).
    SELECT 'held', NULL, NULL, held.seats, held.user_id, held.event_id, NULL
    FROM (
      SELECT c.event_id, c.user_id,
        (SELECT sum(b.quantity)::int FROM bookings b WHERE b.event_id = c.event_id AND b.user_id = c.user_id AND b.status = ${SUCCESS}) AS seats
      FROM (SELECT DISTINCT * FROM unnest(${capped.map((c) => c.event_id)}::uuid[], ${capped.map((c) => c.user_id)}::uuid[]) AS c (event_id, user_id)) c
    ) held
    WHERE held.seats IS NOT NULL`.execute(trx)
  const context: DecisionContext = { now: null, bookings: new Map(), held: new Map() }
  for (const row of rows) {
    if (row.kind === 'clock') context.now = row.now
    else if (row.kind === 'booking') context.bookings.set(row.id as string, { status: row.status as BookingStatus, quantity: row.quantity as number, user_id: row.user_id as string, event_id: row.event_id as string })
    else context.held.set(heldKey(row.event_id as string, row.user_id as string), row.quantity as number)
  }
  return context
}

export type Decision =
  | { status: typeof BOOKING_STATUS.success }
  | { status: typeof BOOKING_STATUS.failed, reason: FailureReason | 'error' }

/** Records a final outcome; only a pending booking changes, so a decision is never overwritten. */
export async function recordDecision (trx: Db, id: string, decision: Decision): Promise<boolean> {
  const result = await trx.updateTable('bookings')
    .set({
      status: decision.status,
      reason: decision.status === BOOKING_STATUS.failed ? decision.reason : null,
      // The database's clock, like created_at: one clock orders every timestamp.
      decided_at: sql<Date>`clock_timestamp()`
    })
    .where('id', '=', id)
    .where('status', '=', BOOKING_STATUS.pending)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

export interface BookingDecision {
  id: string
  decision: Decision
}

// Every outcome a decision can have: a batch's bookings are written one outcome at a time.
const OUTCOMES: ReadonlyArray<Decision> = [
  { status: BOOKING_STATUS.success },
  ...[...Object.values(FAILURE_REASON), 'error' as const].map((reason) => ({ status: BOOKING_STATUS.failed, reason }))
]
const outcomeKey = (decision: Decision): string => decision.status === BOOKING_STATUS.failed ? `${decision.status}:${decision.reason}` : decision.status

/**
 * Records many final outcomes in one statement, all at `at` (the clock the decisions were made
 * against). Like recordDecision, only pending bookings change; returns how many did, so the caller
 * can tell a decision that was not written. Within a batch, the ids (UUIDv7) give the order.
 *
 * One UPDATE per outcome, each of the bookings given that outcome by id (= ANY), all in one
 * statement: no join between the batch and the table, so whatever a plan guesses it can only probe
 * the batch's ids (db/client.ts, PLANNING). "Pending" is asked as "not decided yet"
 * (decided_at IS NULL, which the table's CHECK ties to PENDING): a status of PENDING would let a
 * plan start from the pending-only index, which stale statistics say is nearly empty while it
 * holds the whole queue.
 */
export async function recordDecisions (trx: Db, decisions: readonly BookingDecision[], at: Date | null): Promise<number> {
  if (decisions.length === 0) return 0
  const idsByOutcome = new Map(OUTCOMES.map((outcome) => [outcomeKey(outcome), [] as string[]]))
  for (const { id, decision } of decisions) {
    const ids = idsByOutcome.get(outcomeKey(decision))
    if (ids === undefined) throw new Error(`no outcome ${outcomeKey(decision)}`)
    ids.push(id)
  }
  const decidedAt = sql`coalesce(${at}::timestamptz, statement_timestamp())`
  const updates = OUTCOMES.map((outcome, i) => sql`${sql.raw(`o${i}`)} AS (
      UPDATE bookings SET status = ${outcome.status}, reason = ${outcome.status === BOOKING_STATUS.failed ? outcome.reason : null}, decided_at = ${decidedAt}
      WHERE id = ANY(${idsByOutcome.get(outcomeKey(outcome))}::uuid[]) AND decided_at IS NULL
      RETURNING 1)`)
  const { rows: [row] } = await sql<{ n: number }>`
    WITH ${sql.join(updates)}
    SELECT (${sql.join(OUTCOMES.map((_outcome, i) => sql`(SELECT count(*) FROM ${sql.raw(`o${i}`)})`), sql` + `)})::int AS n`.execute(trx)
  return row?.n ?? 0
}

/**
 * Cancels bookings (successful ones give their seats back through applyEventChanges; pending ones
 * are withdrawn before their decision, which is then `at` too). Returns how many changed.
 */
export async function recordCancellations (trx: Db, ids: readonly string[], at: Date | null): Promise<number> {
  if (ids.length === 0) return 0
  const result = await sql`
    UPDATE bookings
    SET status = ${BOOKING_STATUS.cancelled}, cancelled_at = coalesce(${at}::timestamptz, statement_timestamp()),
        decided_at = coalesce(decided_at, ${at}::timestamptz, statement_timestamp())
    WHERE id = ANY(${ids}::uuid[]) AND status IN (${BOOKING_STATUS.success}, ${BOOKING_STATUS.pending})`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/**
 * Fails pending purchases whose deadline has passed (reason "expired"), under their events' locks
 * like any decision, so one can never take a seat afterwards. Their jobs stay queued; the worker
 * completes them without a decision when it reaches them. Returns the expired ids.
 *
 * Events whose row is locked right now (a batch deciding them, or a transaction outside the
 * service holding one) are skipped and swept on a later pass: waiting for one would hold the
 * others' locks meanwhile and stall every event behind one held row.
 */
export async function expireOverdue (db: Db, limit = 10_000): Promise<string[]> {
  const due = await db.selectFrom('bookings').select('event_id').distinct()
    .where('status', '=', PENDING)
    .where('expires_at', '<=', sql<Date>`clock_timestamp()`)
    .limit(limit)
    .execute()
  if (due.length === 0) return []
  return await db.transaction().execute(async (trx) => {
    const locked = await lockEventsForUpdate(trx, due.map((d) => d.event_id), { skipLocked: true })
    if (locked.size === 0) return []
    const { rows } = await sql<{ id: string }>`
      UPDATE bookings SET status = ${BOOKING_STATUS.failed}, reason = ${FAILURE_REASON.expired}, decided_at = clock_timestamp()
      WHERE status = ${PENDING} AND expires_at <= clock_timestamp()
        AND event_id = ANY(${[...locked.keys()]}::uuid[])
      RETURNING id`.execute(trx)
    return rows.map((row) => row.id)
  })
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
