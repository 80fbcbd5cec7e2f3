import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { storePurchases } from '../../db/purchases.ts'
import { timeOrderedId } from '../../lib/ids.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'

/** One purchase of one seat by a new user, as intake stores it. */
const purchaseOf = (eventId: string): Parameters<typeof storePurchases>[1][number] =>
  ({ id: timeOrderedId(), event_id: eventId, user_id: randomUUID(), quantity: 1, idempotency_key: null, max_wait_seconds: null })

// bookings.event_id has no foreign key (its check cost a quarter of every intake statement); what it
// guaranteed is kept by the database's triggers on events and by the intake statement itself.

t.test('an event is never deleted, truncated or renumbered, so no booking is left without its event', async (t) => {
  const { db } = await createTestDatabase(t)
  const eventId = await createEvent(db, 10)
  const [stored] = await storePurchases(db, [purchaseOf(eventId)])
  t.equal(stored?.verdict, 'pending', 'a booking refers to the event')

  const refused = async (statement: Promise<unknown>): Promise<{ code?: string, message?: string }> =>
    await statement.then(() => ({}), (err: unknown) => err as { code?: string, message?: string })
  for (const [what, statement] of [
    ['DELETE', sql`DELETE FROM events WHERE id = ${eventId}`],
    ['TRUNCATE', sql`TRUNCATE events CASCADE`],
    ['a new id', sql`UPDATE events SET id = ${randomUUID()} WHERE id = ${eventId}`]
  ] as const) {
    const err = await refused(statement.execute(db))
    t.equal(err.code, '23001', `${what} is refused (restrict_violation)`)
    t.match(err.message, /never deleted nor renumbered/, 'with a message that says why')
  }
  // An event without bookings is kept too: an id once handed out must always mean that event.
  const unsold = await createEvent(db, 10, 'Unsold')
  t.equal((await refused(sql`DELETE FROM events WHERE id = ${unsold}`.execute(db))).code, '23001', 'even one that sold nothing')

  const { rows: [counts] } = await sql<{ events: string, orphans: string }>`
    SELECT (SELECT count(*) FROM events) AS events,
      (SELECT count(*) FROM bookings b WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = b.event_id)) AS orphans`.execute(db)
  t.equal(Number(counts?.events), 2, 'both events are still there')
  t.equal(Number(counts?.orphans), 0, 'no booking without its event')
  t.same((await sql<{ name: string }>`UPDATE events SET name = 'Renamed' WHERE id = ${eventId} RETURNING name`.execute(db)).rows, [{ name: 'Renamed' }], 'other changes to an event still go through')
})

t.test('a purchase for an unknown event stores nothing', async (t) => {
  const { db } = await createTestDatabase(t)
  const unknown = randomUUID()
  const [result] = await storePurchases(db, [purchaseOf(unknown)])
  t.equal(result?.verdict, 'unknown_event')
  const { rows: [row] } = await sql<{ n: string }>`SELECT count(*) AS n FROM bookings WHERE event_id = ${unknown}`.execute(db)
  t.equal(Number(row?.n), 0, 'no booking row for it')
})
