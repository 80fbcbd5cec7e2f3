import { sql } from 'kysely'
import type { DecisionContext } from '../purchase/rules.ts'
import { BOOKING_STATUS, buyerKey, DECISIONS, decisionKey, FAILURE_REASON, type BookingDecision, type BookingStatus, type FinalDecision } from '../purchase/vocabulary.ts'
import { HELD, PENDING, SUCCESS } from './bookings.ts'
import type { Db } from './client.ts'
import type { Trx } from './database.ts'
import { lockEventsForUpdate } from './events.ts'

// Reading what the rules need and writing what they decided, inside the deciding transaction and
// under the events' row locks (worker/apply-jobs.ts); and failing overdue purchases.

/** A row of readDecisionContext's statement, by kind. */
type ContextRow =
  | { kind: 'clock', now: Date }
  | { kind: 'booking', id: string, status: BookingStatus, quantity: number, user_id: string, event_id: string }
  | { kind: 'seats', quantity: number, user_id: string, event_id: string }

/**
 * What the deciding transaction reads once it holds the events' locks, in one statement: the clock,
 * the claimed purchases that are no longer pending (cancelled or expired while queued), the
 * bookings that claimed cancellations name, and the seats each buyer a cap applies to has.
 * Nothing of it can change until commit: every change to seats happens under the event's lock. The
 * one status change outside it, a hold's confirmation (db/holds.ts), moves no seat (held to sold,
 * which the cap counts alike) and is refused once a cancellation is asked, so a cancellation
 * target read here keeps the seats it had.
 */
export async function readDecisionContext (trx: Trx, { claimed, cancelTargets, capped }: {
  claimed: readonly string[]
  cancelTargets: readonly string[]
  capped: ReadonlyArray<{ event_id: string, user_id: string }>
}): Promise<DecisionContext> {
  const { rows } = await sql<ContextRow>`
    SELECT 'clock' AS kind, NULL::uuid AS id, NULL::text AS status, NULL::int AS quantity, NULL::uuid AS user_id, NULL::uuid AS event_id, clock_timestamp() AS now
    UNION ALL
    SELECT 'booking', b.id, b.status, b.quantity, b.user_id, b.event_id, NULL
    FROM bookings b
    WHERE (b.id = ANY(${claimed}::uuid[]) AND b.status <> ${BOOKING_STATUS.pending}) OR b.id = ANY(${cancelTargets}::uuid[])
    UNION ALL
    -- Two probes of (event_id, status, user_id) per buyer, their own held and successful bookings. A
    -- scalar subquery runs once per buyer with that buyer's ids by construction; written as a
    -- join, a plan made on stale statistics read every successful booking once and compared it
    -- with each buyer (test/db/statement-plans.test.ts).
    SELECT 'seats', NULL, NULL, owned.seats, owned.user_id, owned.event_id, NULL
    FROM (
      SELECT c.event_id, c.user_id,
        (SELECT sum(b.quantity)::int FROM bookings b WHERE b.event_id = c.event_id AND b.user_id = c.user_id AND b.status IN (${SUCCESS}, ${HELD})) AS seats
      FROM (SELECT DISTINCT * FROM unnest(${capped.map((c) => c.event_id)}::uuid[], ${capped.map((c) => c.user_id)}::uuid[]) AS c (event_id, user_id)) c
    ) owned
    WHERE owned.seats IS NOT NULL`.execute(trx)
  const context: DecisionContext = { now: null, bookings: new Map(), buyerSeats: new Map() }
  for (const row of rows) {
    if (row.kind === 'clock') context.now = row.now
    else if (row.kind === 'booking') context.bookings.set(row.id, { status: row.status, quantity: row.quantity, user_id: row.user_id, event_id: row.event_id })
    else context.buyerSeats.set(buyerKey(row.event_id, row.user_id), row.quantity)
  }
  return context
}

/** Records a final outcome; only a pending booking changes, so a decision is never overwritten. */
export async function recordDecision (trx: Trx, id: string, decision: FinalDecision): Promise<boolean> {
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

/**
 * Records many final outcomes in one statement, all at `at` (the clock the decisions were made
 * against). Like recordDecision, only pending bookings change; returns how many did, so the caller
 * can tell a decision that was not written. Within a batch, the ids (UUIDv7) give the order.
 *
 * One UPDATE per outcome, each of the bookings given that outcome by id (= ANY), all in one
 * statement: no join between the batch and the table, so whatever a plan guesses it can only probe
 * the batch's ids (db/driver/session.ts, PLANNING). "Pending" is asked as "not decided yet"
 * (decided_at IS NULL, which the table's CHECK ties to PENDING): a status of PENDING would let a
 * plan start from the pending-only index, which stale statistics say is nearly empty while it
 * holds the whole queue.
 */
export async function recordDecisions (trx: Trx, decisions: readonly BookingDecision[], at: Date | null): Promise<number> {
  if (decisions.length === 0) return 0
  const idsByOutcome = new Map(DECISIONS.map((outcome) => [decisionKey(outcome), [] as string[]]))
  // Holds, by when they end: one end per event with holds in the batch (its hold_seconds).
  const heldUntil = new Map<string, string[]>()
  for (const { id, decision } of decisions) {
    if (decision.status === BOOKING_STATUS.held) {
      const until = decision.hold_expires_at.toISOString()
      heldUntil.set(until, [...heldUntil.get(until) ?? [], id])
      continue
    }
    const ids = idsByOutcome.get(decisionKey(decision))
    if (ids === undefined) throw new Error(`no outcome ${decisionKey(decision)}`)
    ids.push(id)
  }
  if (heldUntil.size > 0 && at === null) throw new Error('a hold needs the clock it was decided at')
  const decidedAt = sql`coalesce(${at}::timestamptz, statement_timestamp())`
  const updates = DECISIONS.map((outcome, i) => sql`${sql.raw(`o${i}`)} AS (
      UPDATE bookings SET status = ${outcome.status}, reason = ${outcome.status === BOOKING_STATUS.failed ? outcome.reason : null}, decided_at = ${decidedAt}
      WHERE id = ANY(${idsByOutcome.get(decisionKey(outcome))}::uuid[]) AND decided_at IS NULL
      RETURNING 1)`)
  // One more UPDATE per end, found by id like the others (a join of the ids with their ends would
  // compare every booking updated with every end: test/db/statement-plans.test.ts).
  const holds = [...heldUntil].map(([until, ids], i) => ({ name: sql.raw(`h${i}`), until, ids }))
  for (const { name, until, ids } of holds) {
    updates.push(sql`${name} AS (
      UPDATE bookings SET status = ${BOOKING_STATUS.held}, reason = NULL, decided_at = ${decidedAt}, hold_expires_at = ${until}::timestamptz
      WHERE id = ANY(${ids}::uuid[]) AND decided_at IS NULL
      RETURNING 1)`)
  }
  const { rows: [row] } = await sql<{ n: number }>`
    WITH ${sql.join(updates)}
    SELECT (${sql.join([...DECISIONS.map((_outcome, i) => sql`(SELECT count(*) FROM ${sql.raw(`o${i}`)})`), ...holds.map(({ name }) => sql`(SELECT count(*) FROM ${name})`)], sql` + `)})::int AS n`.execute(trx)
  return row?.n ?? 0
}

/**
 * Cancels bookings (held and successful ones give their seats back through applyEventChanges;
 * pending ones are withdrawn before their decision, which is then `at` too). Returns how many changed.
 */
export async function recordCancellations (trx: Trx, ids: readonly string[], at: Date | null): Promise<number> {
  if (ids.length === 0) return 0
  const result = await sql`
    UPDATE bookings
    SET status = ${BOOKING_STATUS.cancelled}, cancelled_at = coalesce(${at}::timestamptz, statement_timestamp()),
        decided_at = coalesce(decided_at, ${at}::timestamptz, statement_timestamp())
    WHERE id = ANY(${ids}::uuid[]) AND status IN (${BOOKING_STATUS.success}, ${BOOKING_STATUS.held}, ${BOOKING_STATUS.pending})`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/**
 * Fails pending purchases whose deadline has passed (reason "expired"), under their events' locks
 * like any decision, so one can never take a seat afterwards. Their jobs stay queued; the worker
 * settles them without a decision when it reaches them. Returns the expired ids.
 *
 * Events whose row is locked right now (a batch deciding them, or a transaction outside the
 * service holding one) are skipped and swept on a later pass: waiting for one would hold the
 * others' locks meanwhile and stall every event behind one busy row.
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

