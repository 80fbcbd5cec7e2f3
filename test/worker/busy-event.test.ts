import t from 'tap'
import postgres from 'postgres'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'

// One slow or failing event never blocks another: a transaction outside the service (an
// operator's psql session, say) holds one event's row; the worker must go on deciding the other
// events' purchases while it does, and decide the busy event's, in arrival order, once it is free.

async function statuses ({ db }: TestDatabase, ids: readonly string[]): Promise<Array<{ status: string, reason: string | null }>> {
  const rows = await db.selectFrom('bookings').select(['id', 'status', 'reason']).where('id', 'in', ids).execute()
  const byId = new Map(rows.map((row) => [row.id, { status: row.status, reason: row.reason }]))
  return ids.map((id) => byId.get(id) ?? { status: 'MISSING', reason: null })
}

/** Buys one seat each, one request after the other, so the ids are in arrival order. */
async function buyInTurn (base: string, eventId: string, n: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    if (res.status !== 202) throw new Error(`expected 202, got ${res.status} ${JSON.stringify(res.body)}`)
    ids.push(res.body.booking_id as string)
  }
  return ids
}

for (const mode of ['batched', 'serial'] as const) {
  t.test(`${mode} worker: an event whose row is locked elsewhere stalls only its own purchases`, async (t) => {
    const database = await createTestDatabase(t)
    const { base } = await startTestApp(t, database, { worker: { mode } })
    const heldEvent = await createEvent(database.db, 2, 'Held')
    const freeEvent = await createEvent(database.db, 100, 'Free')

    // The outside transaction updates the busy event's row and keeps it until told to let go.
    const outsider = postgres(database.url, { max: 1, onnotice: () => {} })
    t.teardown(async () => { await outsider.end() })
    let letGo = (): void => {}
    const released = new Promise<void>((resolve) => { letGo = resolve })
    let holding = (): void => {}
    const holds = new Promise<void>((resolve) => { holding = resolve })
    const outside = outsider.begin(async (sql) => {
      // An UPDATE holds the row until commit; intake still stores purchases for it (it locks nothing there).
      await sql`UPDATE events SET name = 'Held (being edited)' WHERE id = ${heldEvent}`
      holding()
      await released
    })
    t.teardown(async () => { letGo(); await outside.catch(() => {}) })
    await holds

    // The busy event's purchases arrive first: they are the oldest jobs in the queue.
    const heldIds = await buyInTurn(base, heldEvent, 5)
    const freeIds = await buyInTurn(base, freeEvent, 5)
    const boughtAt = performance.now()

    // The test database's lock_timeout is 30 s: before the fix, the worker waited that long on the
    // held row with the free event's purchases in the same batch (or behind it, serially).
    await waitFor(async () => (await statuses(database, freeIds)).every((s) => s.status === 'SUCCESS') ? true : undefined,
      { timeoutMs: 20_000, what: 'the free event\'s purchases to be decided while the other row is held' })
    const freeDecidedMs = Math.round(performance.now() - boughtAt)
    t.same((await statuses(database, heldIds)).map((s) => s.status), ['PENDING', 'PENDING', 'PENDING', 'PENDING', 'PENDING'],
      'the busy event\'s purchases wait: none is decided out of turn')
    const free = await database.db.selectFrom('events').select('available_quota').where('id', '=', freeEvent).executeTakeFirstOrThrow()
    t.equal(free.available_quota, 95, 'the free event\'s seats were taken')

    letGo()
    await outside
    const releasedAt = performance.now()
    await waitFor(async () => (await statuses(database, heldIds)).every((s) => s.status !== 'PENDING') ? true : undefined,
      { timeoutMs: 30_000, what: 'the busy event\'s purchases to be decided once its row is free' })
    t.same(await statuses(database, heldIds), [
      { status: 'SUCCESS', reason: null },
      { status: 'SUCCESS', reason: null },
      { status: 'FAILED', reason: 'sold_out' },
      { status: 'FAILED', reason: 'sold_out' },
      { status: 'FAILED', reason: 'sold_out' }
    ], 'decided in arrival order: the first two got the two seats')
    const held = await database.db.selectFrom('events').select(['available_quota', 'total_quota']).where('id', '=', heldEvent).executeTakeFirstOrThrow()
    t.equal(held.available_quota, 0, 'no seat sold twice, none lost')
    t.comment(`${mode}: the free event's purchases were decided ${freeDecidedMs} ms after they were stored, with the other row locked; the busy event's ${Math.round(performance.now() - releasedAt)} ms after its release`)
  })
}
