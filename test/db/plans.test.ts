import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { closeDb, createDb, type Db } from '../../db/client.ts'
import { readDecisionContext } from '../../db/decisions.ts'
import { storePurchases, type NewPurchase } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

// In a sale the bookings table grows from empty to many thousands of rows within seconds, long
// before autovacuum re-analyses it, and a prepared statement keeps the plan it was given while
// the table was small. These tests grow the table under a statement's feet and count the rows
// the statement then reads (the transaction's own counters, pg_stat_xact_user_tables): a plan
// that scans every booking fails them, however fast the machine is.

interface BookingReads { seq_tup_read: number, idx_tup_fetch: number }

async function bookingReads (db: Db): Promise<BookingReads> {
  const { rows: [row] } = await sql<{ seq_tup_read: string, idx_tup_fetch: string }>`
    SELECT coalesce(seq_tup_read, 0) AS seq_tup_read, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch
    FROM pg_stat_xact_user_tables WHERE relname = 'bookings'`.execute(db)
  return { seq_tup_read: Number(row?.seq_tup_read ?? 0), idx_tup_fetch: Number(row?.idx_tup_fetch ?? 0) }
}

/** Adds `count` bookings to the event in one statement, `status` each, spread over `users`. */
async function addBookings (db: Db, eventId: string, users: readonly string[], count: number, status: 'SUCCESS' | 'FAILED'): Promise<void> {
  await sql`
    INSERT INTO bookings (id, event_id, user_id, quantity, status, reason, decided_at)
    SELECT gen_random_uuid(), ${eventId}::uuid, (${users}::uuid[])[1 + i % ${users.length}], 1, ${status},
      CASE WHEN ${status} = 'FAILED' THEN 'sold_out' END, now()
    FROM generate_series(1, ${count}) AS i`.execute(db)
}

t.test('the per-user cap reads only the buyers\' own bookings, even on a generic plan with stale statistics', async (t) => {
  const database = await createTestDatabase(t)
  const eventId = await createEvent(database.db, 100_000, 'Capped', { max_per_user: 50 })
  const buyers = Array.from({ length: 200 }, () => randomUUID())
  const others = Array.from({ length: 2000 }, () => randomUUID())
  // 30,000 successful bookings of other users, and 5 of each buyer's; never analysed.
  await addBookings(database.db, eventId, others, 30_000, 'SUCCESS')
  await addBookings(database.db, eventId, buyers, buyers.length * 5, 'SUCCESS')

  const { owned, reads } = await database.db.transaction().execute(async (trx) => {
    // The plan PostgreSQL would switch to after a few runs on a connection (the worker's pool
    // keeps generic plans).
    await sql`SET LOCAL plan_cache_mode = force_generic_plan`.execute(trx)
    const before = await bookingReads(trx)
    const context = await readDecisionContext(trx, { claimed: [], cancelTargets: [], capped: buyers.map((user_id) => ({ event_id: eventId, user_id })) })
    const after = await bookingReads(trx)
    const reads = { seq_tup_read: after.seq_tup_read - before.seq_tup_read, idx_tup_fetch: after.idx_tup_fetch - before.idx_tup_fetch }
    return { owned: context.buyerSeats, reads }
  })
  t.equal(owned.size, buyers.length, 'every buyer\'s seats were read')
  t.ok([...owned.values()].every((seats) => seats === 5), 'each buyer has their 5 seats')
  t.equal(reads.seq_tup_read, 0, 'no sequential scan of bookings')
  t.ok(reads.idx_tup_fetch <= buyers.length * 5 * 2, `bookings read through an index: ${reads.idx_tup_fetch}, for ${buyers.length * 5} of the buyers' own (31,000 in the event)`)
})

t.test('the intake statement reads no more bookings after the table has grown than before', async (t) => {
  const database = await createTestDatabase(t)
  // The API's pool, as the service makes it, with one connection so every run shares its plans.
  const api = createDb({ url: database.url, poolMax: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30_000, applicationName: 'boxoffice-plans-test', planning: 'probesOnly' })
  t.teardown(async () => { await closeDb(api) })
  const eventId = await createEvent(database.db, 1_000_000, 'Growing')
  const purchases = (n: number): NewPurchase[] => Array.from({ length: n }, (_, i) => ({
    id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: `key-${i}`, max_wait_seconds: null
  }))
  // Past the runs after which PostgreSQL would otherwise keep a generic plan, on a small table.
  for (let run = 0; run < 8; run++) await storePurchases(api, purchases(20))
  await addBookings(database.db, eventId, Array.from({ length: 5000 }, () => randomUUID()), 60_000, 'FAILED')

  const { results, reads } = await api.transaction().execute(async (trx) => {
    const before = await bookingReads(trx)
    const results = await storePurchases(trx, purchases(40))
    const after = await bookingReads(trx)
    return { results, reads: { seq_tup_read: after.seq_tup_read - before.seq_tup_read, idx_tup_fetch: after.idx_tup_fetch - before.idx_tup_fetch } }
  })
  t.equal(results.filter((r) => r.verdict === 'pending').length, 40, 'the batch was stored')
  t.equal(reads.seq_tup_read, 0, 'no sequential scan of the 60,000 bookings')
  // Nor a full index scan in its place: the keys are looked up one by one (none is found).
  t.ok(reads.idx_tup_fetch <= 40 * 4, `bookings read through an index: ${reads.idx_tup_fetch}, for 40 keys looked up`)
})
