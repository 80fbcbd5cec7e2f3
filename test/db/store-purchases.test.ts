import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { storePurchases, type NewPurchase, type StoredPurchase, type StoreVerdict } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { JOBS } from '../../db/pgboss-tables.ts'
import { PURCHASE_QUEUE } from '../../purchase/jobs.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

const purchase = (eventId: string, extra: Partial<NewPurchase> = {}): NewPurchase =>
  ({ id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null, ...extra })

/** The result as its verdict's variant, or a thrown error naming the verdict it had. */
function verdictOf<V extends StoreVerdict> (result: StoredPurchase | undefined, verdict: V): Extract<StoredPurchase, { verdict: V }> {
  if (result?.verdict !== verdict) throw new Error(`expected ${verdict}, got ${result?.verdict}`)
  return result as Extract<StoredPurchase, { verdict: V }>
}

t.test('one statement gives every purchase its verdict, in the order asked, and stores only what it says', async (t) => {
  const { db } = await createTestDatabase(t)
  const open = await createEvent(db, 10, 'Open')
  const soldOut = await createEvent(db, 1, 'Sold out')
  await sql`UPDATE events SET available_quota = 0 WHERE id = ${soldOut}`.execute(db)
  const keyed = purchase(open, { idempotency_key: 'k-1' })
  const first = await storePurchases(db, [keyed])
  t.equal(first[0]?.verdict, 'pending')

  const batch = [
    purchase(randomUUID()), // unknown event
    purchase(open),
    purchase(soldOut),
    { ...keyed, id: timeOrderedId() }, // the same user and key again
    purchase(open, { max_wait_seconds: 30 })
  ]
  const results = await storePurchases(db, batch)
  t.same(results.map((r) => r.id), batch.map((p) => p.id), 'one result per purchase, in order')
  t.same(results.map((r) => r.verdict), ['unknown_event', 'pending', 'sold_out', 'replay', 'pending'])
  const [earlier, later] = [verdictOf(results[1], 'pending'), verdictOf(results[4], 'pending')]
  t.ok(Number(later.arrival) > Number(earlier.arrival), 'queued purchases get arrival numbers in order')
  t.equal(earlier.expires_at, null, 'no deadline asked, none set')
  t.ok(later.expires_at instanceof Date, 'a deadline asked is set')
  t.equal(verdictOf(results[3], 'replay').existing.id, keyed.id, 'the replay names the purchase stored under the key')

  const { rows } = await sql<{ id: string, status: string, reason: string | null }>`SELECT id, status, reason FROM bookings WHERE id = ANY(${batch.map((p) => p.id)}::uuid[]) ORDER BY id`.execute(db)
  t.same(rows.map((r) => [r.id, r.status, r.reason]), [
    [batch[1]?.id, 'PENDING', null],
    [batch[2]?.id, 'FAILED', 'sold_out'],
    [batch[4]?.id, 'PENDING', null]
  ], 'stored: the queued and the sold-out ones; not the unknown event\'s nor the replay')
})

t.test('a closed or not yet open sale stores nothing; a key taken twice in one batch stores one purchase', async (t) => {
  const { db } = await createTestDatabase(t)
  const closed = await createEvent(db, 10, 'Closed')
  await sql`UPDATE events SET sales_close_at = now() - interval '1 minute' WHERE id = ${closed}`.execute(db)
  const later = await createEvent(db, 10, 'Later')
  await sql`UPDATE events SET sales_open_at = now() + interval '1 hour' WHERE id = ${later}`.execute(db)
  const open = await createEvent(db, 10, 'Open')
  const userId = randomUUID()
  const batch = [
    purchase(closed),
    purchase(later),
    purchase(open, { user_id: userId, idempotency_key: 'same' }),
    purchase(open, { user_id: userId, idempotency_key: 'same' })
  ]
  const results = await storePurchases(db, batch)
  t.same(results.map((r) => r.verdict), ['closed', 'not_open', 'pending', 'not_stored'], 'the second of two purchases under one key is not stored')
  t.ok(verdictOf(results[1], 'not_open').sales_open_at instanceof Date, 'not_open says when the sale opens')
  const { rows } = await sql<{ id: string }>`SELECT id FROM bookings WHERE id = ANY(${batch.map((p) => p.id)}::uuid[])`.execute(db)
  t.same(rows.map((r) => r.id), [batch[2]?.id], 'only the first purchase under the key is stored')
})

t.test('each purchase that queues gets its job in the same statement; nothing else does', async (t) => {
  const { db } = await createTestDatabase(t)
  const open = await createEvent(db, 10, 'Open')
  const soldOut = await createEvent(db, 1, 'Sold out')
  await sql`UPDATE events SET available_quota = 0 WHERE id = ${soldOut}`.execute(db)
  const batch = [purchase(open), purchase(soldOut), purchase(randomUUID()), purchase(open, { max_wait_seconds: 60 })]
  const results = await storePurchases(db, batch)
  t.same(results.map((r) => r.verdict), ['pending', 'sold_out', 'unknown_event', 'pending'])
  const { rows } = await sql<{ id: string, state: string, group_id: string }>`
    SELECT id, state, group_id FROM ${JOBS} WHERE id = ANY(${batch.map((p) => p.id)}::uuid[]) ORDER BY id`.execute(db)
  t.same(rows, [{ id: batch[0]?.id, state: 'created', group_id: open }, { id: batch[3]?.id, state: 'created', group_id: open }],
    'a created job for each pending purchase, grouped by its event; none for the sold-out or the unknown event')
})

t.test('a job id taken already fails the whole statement: no booking is stored without its job', async (t) => {
  const { db } = await createTestDatabase(t)
  const open = await createEvent(db, 10, 'Open')
  const taken = purchase(open)
  await sql`INSERT INTO ${JOBS} (id, name, data) VALUES (${taken.id}, ${PURCHASE_QUEUE}, '{}')`.execute(db)
  const other = purchase(open)
  await t.rejects(storePurchases(db, [other, taken]), /duplicate key/)
  const { rows: [none] } = await sql<{ n: string }>`SELECT count(*) AS n FROM bookings WHERE id = ANY(${[other.id, taken.id]}::uuid[])`.execute(db)
  t.equal(Number(none?.n), 0, 'neither purchase stored')
})
