import { randomUUID } from 'node:crypto'
import t from 'tap'
import { closeDb, createDb, observeAcquireWaits } from '../../db/client.ts'
import { storePurchases } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { createBookingReader } from '../../server/booking-reader.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

t.test('reads that arrive together share one query, and each gets its own booking, its owner\'s only', async (t) => {
  const database = await createTestDatabase(t)
  const eventId = await createEvent(database.db, 100)
  const purchases = Array.from({ length: 50 }, () =>
    ({ id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null }))
  await storePurchases(database.db, purchases)
  const db = createDb({ url: database.url, poolMax: 4, connectTimeoutSeconds: 5, statementTimeoutMs: 10_000, applicationName: 'boxoffice-test' })
  t.teardown(async () => { await closeDb(db) })
  let queries = 0
  observeAcquireWaits(db, () => { queries++ })
  const reader = createBookingReader(db)

  const read = await Promise.all(purchases.map(async (p) => await reader.find(p.id, p.user_id)))
  t.same(read.map((view) => view?.id), purchases.map((p) => p.id), 'every buyer got its own booking')
  t.ok(read.every((view) => view?.status === 'PENDING' && view.position !== null), 'pending, with a position')
  t.equal(queries, 1, 'fifty reads in one query')

  const [mine, another, unknown, upper, asAdmin] = await Promise.all([
    reader.find(purchases[0]?.id as string, purchases[0]?.user_id as string),
    reader.find(purchases[0]?.id as string, randomUUID()),
    reader.find(randomUUID(), purchases[0]?.user_id as string),
    reader.find((purchases[1]?.id as string).toUpperCase(), (purchases[1]?.user_id as string).toUpperCase()),
    reader.find(purchases[2]?.id as string, null)
  ])
  t.equal(mine?.id, purchases[0]?.id)
  t.equal(another, undefined, 'another user\'s booking is not found')
  t.equal(unknown, undefined, 'nor is an unknown one: the same answer')
  t.equal(upper?.id, purchases[1]?.id, 'ids and user ids in upper case are the same uuids')
  t.equal(asAdmin?.id, purchases[2]?.id, 'without an owner (the admin), any booking')
  t.equal(queries, 2, 'one more query for the five')

  // More than a query takes at once (1,000): the rest go in the next.
  const many = Array.from({ length: 1500 }, (_, i) => purchases[i % purchases.length] as { id: string, user_id: string })
  const before = queries
  const readMany = await Promise.all(many.map(async (p) => await reader.find(p.id, p.user_id)))
  t.ok(readMany.every((view, i) => view?.id === many[i]?.id), '1,500 reads, each its own booking')
  t.equal(queries - before, 2, 'in two queries')

  // A query that fails rejects every read that shared it.
  const gone = createDb({ url: database.url, poolMax: 1, connectTimeoutSeconds: 1, statementTimeoutMs: 10_000, applicationName: 'boxoffice-test' })
  await closeDb(gone)
  const failing = createBookingReader(gone)
  const failed = await Promise.allSettled([failing.find(purchases[0]?.id as string, null), failing.find(purchases[1]?.id as string, null)])
  t.same(failed.map((r) => r.status), ['rejected', 'rejected'], 'both reads of the failed query are rejected')
})
