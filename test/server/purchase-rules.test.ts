import t from 'tap'
import { sql, type KyselyPlugin } from 'kysely'
import { expireOverdue } from '../../db/decisions.ts'
import type { Db } from '../../db/client.ts'
import { settlePurchaseBatch } from '../../worker/settle-batch.ts'
import { ADMIN_TOKEN, startTestApp, startTestWorker } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor, type HttpResponse } from '../fixtures/http.ts'
import { jobRows } from '../fixtures/jobs.ts'
import { silentLog } from '../fixtures/log.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

const buy = async (base: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<HttpResponse> =>
  await request(base, 'POST', '/buy', { json: body, headers })

/** Follows a purchase's Location (from its POST /buy answer, as a client would) until it is settled. */
async function settled (base: string, purchase: HttpResponse): Promise<any> {
  const location = purchase.headers.get('location')
  if (location === null) throw new Error(`no Location to follow (${purchase.status})`)
  return await waitFor(async () => {
    const res = await request(base, 'GET', location)
    if (res.status !== 200) throw new Error(`GET ${location}: ${res.status}`)
    return res.body.status === 'pending' || (res.body.cancel_requested_at !== null && res.body.status === 'success') ? undefined : res.body
  }, { what: `${location} to be settled` })
}

async function seats ({ db }: TestDatabase, eventId: string): Promise<{ available: number, held: number, total: number }> {
  const event = await db.selectFrom('events').select(['available_quota', 'total_quota']).where('id', '=', eventId).executeTakeFirstOrThrow()
  const row = await db.selectFrom('bookings').select((eb) => eb.fn.coalesce(eb.fn.sum<string>('quantity'), eb.lit(0)).as('n'))
    .where('event_id', '=', eventId).where('status', '=', 'SUCCESS').executeTakeFirstOrThrow()
  return { available: event.available_quota, held: Number(row.n), total: event.total_quota }
}

async function countBookings ({ db }: TestDatabase, eventId: string): Promise<number> {
  const row = await db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).where('event_id', '=', eventId).executeTakeFirstOrThrow()
  return Number(row.n)
}

t.test('idempotent purchase', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 100)

  t.test('50 concurrent sends of one key give one booking, and every answer names it', async (t) => {
    const userId = newUserId()
    const responses = await mapConcurrent(Array.from({ length: 50 }), 50, async () =>
      await buy(base, { event_id: eventId, user_id: userId, quantity: 2 }, { 'idempotency-key': 'order-1234' }))
    t.ok(responses.every((r) => r.status === 202 || r.status === 200), `all accepted (${[...new Set(responses.map((r) => r.status))].join(', ')})`)
    const ids = new Set(responses.map((r) => r.body.booking_id))
    t.equal(ids.size, 1, 'one booking id')
    t.equal(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 49, 'all but one are replays')
    const rows = await database.db.selectFrom('bookings').select(['id', 'quantity']).where('user_id', '=', userId).execute()
    t.same(rows, [{ id: [...ids][0], quantity: 2 }], 'one purchase stored')
    // A job's id is its booking's, so one booking can have had one job at most; the batched worker
    // deletes it with its decision, so it may be gone already.
    t.ok((await jobRows(database.db)).filter((job) => job.data.user_id === userId).length <= 1, 'one job at most')
    const final = await settled(base, responses[0] as HttpResponse)
    t.equal(final.status, 'success')
    t.equal((await seats(database, eventId)).held, 2, 'two seats taken, once')
    t.same((await jobRows(database.db)).filter((job) => job.data.user_id === userId && job.state !== 'completed'), [], 'its job settled with the decision: none left live')
  })

  t.test('a retry after the decision gets the outcome, 200, same booking', async (t) => {
    const userId = newUserId()
    const first = await buy(base, { event_id: eventId, user_id: userId }, { 'idempotency-key': 'k-after' })
    t.equal(first.status, 202)
    await settled(base, first)
    const again = await buy(base, { event_id: eventId, user_id: userId }, { 'idempotency-key': 'k-after' })
    t.equal(again.status, 200)
    t.match(again.body, { booking_id: first.body.booking_id, status: 'success', reason: null })
    t.equal(again.headers.get('idempotent-replayed'), 'true')
    t.equal(again.headers.get('location'), `/bookings/${first.body.booking_id}?user_id=${userId}`)
  })

  t.test('the same key with a different body is a 409 and stores nothing', async (t) => {
    const userId = newUserId()
    const first = await buy(base, { event_id: eventId, user_id: userId, quantity: 1 }, { 'idempotency-key': 'k-body' })
    t.equal(first.status, 202)
    for (const body of [{ quantity: 2 }, { max_wait_seconds: 30 }, { event_id: await createEvent(database.db, 5) }]) {
      const res = await buy(base, { event_id: eventId, user_id: userId, quantity: 1, ...body }, { 'idempotency-key': 'k-body' })
      t.equal(res.status, 409, JSON.stringify(body))
      t.equal(res.body.code, 'IDEMPOTENCY_KEY_REUSED')
      t.match(res.body.message, /different purchase/)
    }
    const rows = await database.db.selectFrom('bookings').select('id').where('user_id', '=', userId).execute()
    t.equal(rows.length, 1)
  })

  t.test('keys are scoped to the user', async (t) => {
    const a = await buy(base, { event_id: eventId, user_id: newUserId() }, { 'idempotency-key': 'shared-key' })
    const b = await buy(base, { event_id: eventId, user_id: newUserId() }, { 'idempotency-key': 'shared-key' })
    t.equal(a.status, 202)
    t.equal(b.status, 202)
    t.not(a.body.booking_id, b.body.booking_id)
  })

  t.test('a key that is empty, too long or not printable ASCII is a 400', async (t) => {
    for (const key of ['x'.repeat(256), '', 'caf\u00e9']) {
      const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() }, headers: { 'idempotency-key': key } })
      t.equal(res.status, 400, JSON.stringify(key))
      t.equal(res.body.code, 'VALIDATION_FAILED')
    }
    const longest = await buy(base, { event_id: eventId, user_id: newUserId() }, { 'idempotency-key': 'x'.repeat(255) })
    t.equal(longest.status, 202, '255 characters are fine')
  })
})

t.test('a purchase of N seats when N-1 remain fails whole', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 5)
  const first = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 2 })
  t.equal((await settled(base, first)).status, 'success')
  const whole = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 4 })
  t.match(await settled(base, whole), { status: 'failed', reason: 'insufficient_quota' })
  t.same(await seats(database, eventId), { available: 3, held: 2, total: 5 }, 'no seat of it was taken')
  const rest = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 3 })
  t.equal((await settled(base, rest)).status, 'success')
  const none = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 1 })
  t.equal(none.status, 200, 'then sold out at once')
  t.match(none.body, { status: 'failed', reason: 'sold_out' })
})

t.test('per-user cap', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })

  t.test('a user racing from many connections never passes the cap', async (t) => {
    const eventId = await createEvent(database.db, 1000, 'Capped', { max_per_user: 3 })
    const greedy = newUserId()
    const responses = await mapConcurrent(Array.from({ length: 40 }, (_v, i) => i), 40, async (i) =>
      await buy(base, { event_id: eventId, user_id: greedy, quantity: 1 + (i % 2) }))
    t.ok(responses.every((r) => r.status === 202))
    const outcomes = await Promise.all(responses.map(async (r) => await settled(base, r)))
    const held = outcomes.filter((o) => o.status === 'success').reduce((sum, o) => sum + (o.quantity as number), 0)
    t.ok(held <= 3 && held >= 2, `holds ${held} seats, the cap is 3`)
    const refused = outcomes.filter((o) => o.status !== 'success')
    // 40 purchases of 1 or 2 seats against a cap of 3: at least 37 are refused, not zero.
    t.ok(refused.length >= 37, `${refused.length} refused`)
    t.ok(refused.every((o) => o.status === 'failed' && o.reason === 'limit_exceeded'), 'the rest failed as limit_exceeded')
    const other = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 3 })
    t.equal((await settled(base, other)).status, 'success', 'another user is not affected')
    const s = await seats(database, eventId)
    t.equal(s.available + s.held, 1000, 'seats add up')
  })

  t.test('the cap counts successful bookings only: a cancelled one frees room', async (t) => {
    const eventId = await createEvent(database.db, 10, 'Cap and cancel', { max_per_user: 2 })
    const userId = newUserId()
    const first = await buy(base, { event_id: eventId, user_id: userId, quantity: 2 })
    t.equal((await settled(base, first)).status, 'success')
    const over = await buy(base, { event_id: eventId, user_id: userId, quantity: 1 })
    t.match(await settled(base, over), { status: 'failed', reason: 'limit_exceeded' })
    const cancel = await request(base, 'DELETE', `/bookings/${first.body.booking_id}?user_id=${userId}`)
    t.equal(cancel.status, 202)
    t.equal((await settled(base, first)).status, 'cancelled')
    const again = await buy(base, { event_id: eventId, user_id: userId, quantity: 2 })
    t.equal((await settled(base, again)).status, 'success')
  })
})

t.test('sale window', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const hour = 3600_000

  t.test('before opening: 409 SALE_NOT_OPEN with the time and a Retry-After, nothing stored', async (t) => {
    const opensAt = new Date(Date.now() + 90_000)
    const eventId = await createEvent(database.db, 10, 'Later', { sales_open_at: opensAt })
    const res = await buy(base, { event_id: eventId, user_id: newUserId() })
    t.equal(res.status, 409)
    t.equal(res.body.code, 'SALE_NOT_OPEN')
    t.match(res.body.message, opensAt.toISOString())
    const retryAfter = Number(res.headers.get('retry-after'))
    t.ok(retryAfter > 80 && retryAfter <= 90, `Retry-After ${retryAfter} s`)
    t.equal(await countBookings(database, eventId), 0)
  })

  t.test('after closing: 409 SALE_CLOSED, nothing stored', async (t) => {
    const eventId = await createEvent(database.db, 10, 'Over', { sales_open_at: new Date(Date.now() - 2 * hour), sales_close_at: new Date(Date.now() - hour) })
    const res = await buy(base, { event_id: eventId, user_id: newUserId() })
    t.equal(res.status, 409)
    t.equal(res.body.code, 'SALE_CLOSED')
    t.equal(await countBookings(database, eventId), 0)
  })

  t.test('inside the window: accepted', async (t) => {
    const eventId = await createEvent(database.db, 10, 'Now', { sales_open_at: new Date(Date.now() - hour), sales_close_at: new Date(Date.now() + hour) })
    t.equal((await buy(base, { event_id: eventId, user_id: newUserId() })).status, 202)
  })

  t.test('the worker re-checks the window: queued before closing, decided after, fails as sale_closed', async (t) => {
    const eventId = await createEvent(database.db, 10, 'Closing')
    const queued = await buy(base, { event_id: eventId, user_id: newUserId() })
    t.equal(queued.status, 202)
    const closed = await request(base, 'POST', `/events/${eventId}/close`, { headers: admin })
    t.equal(closed.status, 200)
    t.equal(closed.body.sale_status, 'closed')
    t.equal((await buy(base, { event_id: eventId, user_id: newUserId() })).status, 409, 'new purchases are refused at once')
    await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100)
    t.match(await settled(base, queued), { status: 'failed', reason: 'sale_closed' })
    t.equal((await seats(database, eventId)).available, 10, 'no seat was taken')
  })

  t.test('a window that closes before it opens is a 400', async (t) => {
    const res = await request(base, 'POST', '/events', { json: { name: 'Backwards', total_quota: 5, sales_open_at: '2026-12-02T00:00:00Z', sales_close_at: '2026-12-01T00:00:00Z' }, headers: admin })
    t.equal(res.status, 400)
    t.equal(res.body.code, 'INVALID_SALE_WINDOW')
  })
})

t.test('cancellation', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })

  t.test('the buyer cancels a successful booking: seats return, counted, and the sold-out fast path reopens', async (t) => {
    const eventId = await createEvent(database.db, 2)
    const userId = newUserId()
    const mine = await buy(base, { event_id: eventId, user_id: userId, quantity: 2 })
    t.equal((await settled(base, mine)).status, 'success')
    const turnedAway = await buy(base, { event_id: eventId, user_id: newUserId() })
    t.match(turnedAway, { status: 200, body: { status: 'failed', reason: 'sold_out' } }, 'sold out at once')

    const res = await request(base, 'DELETE', `/bookings/${mine.body.booking_id}?user_id=${userId}`)
    t.equal(res.status, 202)
    t.equal(res.headers.get('location'), `/bookings/${mine.body.booking_id}?user_id=${userId}`, 'a Location the buyer can follow')
    t.ok(res.body.cancel_requested_at !== null)
    const final = await settled(base, mine)
    t.equal(final.status, 'cancelled')
    t.ok(Date.parse(final.cancelled_at) >= Date.parse(final.decided_at))
    const event = await request(base, 'GET', `/events/${eventId}`)
    t.match(event.body, { available_quota: 2, sold: 0, cancelled: 2, pending: 0, sale_status: 'open' })

    const later = await buy(base, { event_id: eventId, user_id: newUserId() })
    t.equal(later.status, 202, 'queued again, not turned away')
    t.equal((await settled(base, later)).status, 'success', 'and wins a returned seat')

    const again = await request(base, 'DELETE', `/bookings/${mine.body.booking_id}?user_id=${userId}`)
    t.equal(again.status, 200, 'cancelling again: 200, already cancelled')
    t.equal(again.body.status, 'cancelled')
    t.equal((await seats(database, eventId)).available, 1, 'seats came back once')
  })

  t.test('only the buyer or the admin may cancel', async (t) => {
    const eventId = await createEvent(database.db, 5)
    const userId = newUserId()
    const mine = await buy(base, { event_id: eventId, user_id: userId })
    await settled(base, mine)
    const path = `/bookings/${mine.body.booking_id}`
    t.match(await request(base, 'DELETE', path), { status: 400, body: { code: 'BOOKING_OWNER_REQUIRED' } })
    t.match(await request(base, 'DELETE', `${path}?user_id=${newUserId()}`), { status: 404, body: { code: 'BOOKING_NOT_FOUND' } })
    t.match(await request(base, 'DELETE', path, { headers: { authorization: 'Bearer not-the-admin-token-000' } }), { status: 401, body: { code: 'UNAUTHORIZED' } })
    t.match(await request(base, 'DELETE', `/bookings/${newUserId()}?user_id=${userId}`), { status: 404, body: { code: 'BOOKING_NOT_FOUND' } })
    t.equal((await settled(base, mine)).status, 'success', 'none of those cancelled it')
    const byAdmin = await request(base, 'DELETE', path, { headers: admin })
    t.equal(byAdmin.status, 202)
    t.equal(byAdmin.headers.get('location'), `${path}?user_id=${userId}`, 'cancelled by the admin, the Location still names the buyer')
    t.equal((await settled(base, mine)).status, 'cancelled')
  })

  t.test('a failed booking has nothing to cancel: 409', async (t) => {
    const eventId = await createEvent(database.db, 1)
    const big = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 2 })
    await settled(base, big)
    const res = await request(base, 'DELETE', `/bookings/${big.body.booking_id}`, { headers: admin })
    t.equal(res.status, 409)
    t.equal(res.body.code, 'BOOKING_NOT_CANCELLABLE')
  })

  t.test('a cancellation racing purchases of the last seat never sells it twice', async (t) => {
    for (let round = 0; round < 5; round++) {
      const eventId = await createEvent(database.db, 1)
      const holder = newUserId()
      const held = await buy(base, { event_id: eventId, user_id: holder })
      t.equal((await settled(base, held)).status, 'success')
      const racers = Array.from({ length: 20 }, (_v, i) => i)
      const [cancel, ...purchases] = await Promise.all([
        request(base, 'DELETE', `/bookings/${held.body.booking_id}?user_id=${holder}`),
        ...racers.map(async () => await buy(base, { event_id: eventId, user_id: newUserId() }))
      ])
      t.equal(cancel?.status, 202)
      await settled(base, held)
      for (const p of purchases) if (p.status === 202) await settled(base, p)
      const s = await seats(database, eventId)
      t.ok(s.held <= 1, `round ${round}: ${s.held} seat(s) held of 1`)
      t.equal(s.available + s.held, 1, `round ${round}: seats add up`)
    }
  })
})

t.test('a pending purchase can be withdrawn; it keeps no seat, and arrival order still holds', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 1)
  const userId = newUserId()
  const mine = await buy(base, { event_id: eventId, user_id: userId })
  const behind = await buy(base, { event_id: eventId, user_id: newUserId() })
  const res = await request(base, 'DELETE', `/bookings/${mine.body.booking_id}?user_id=${userId}`)
  t.equal(res.status, 202)
  t.equal(res.body.status, 'pending')
  t.ok(res.body.cancel_requested_at !== null)
  const after = await buy(base, { event_id: eventId, user_id: newUserId() })
  startTestWorker(t, database)
  t.equal((await settled(base, mine)).status, 'cancelled', 'withdrawn')
  // Its turn came before its withdrawal's: the purchase queued behind it met no seat, the one
  // that arrived after the withdrawal gets the seat it gave back.
  t.match(await settled(base, behind), { status: 'failed', reason: 'sold_out' })
  t.equal((await settled(base, after)).status, 'success')
  t.same(await seats(database, eventId), { available: 0, held: 1, total: 1 })
  const event = await request(base, 'GET', `/events/${eventId}`)
  t.match(event.body, { sold: 1, cancelled: 1, pending: 0 })
})

t.test('while pending: position, estimated wait, and ?wait= without a query per waiting client', async (t) => {
  const database = await createTestDatabase(t)
  // Every query the API sends is counted: a real connection, watched.
  let queries = 0
  const counting: KyselyPlugin = {
    transformQuery: (args) => { queries++; return args.node },
    transformResult: async (args) => args.result
  }
  const apiDb: Db = database.db.withPlugin(counting)
  const { base } = await startTestApp(t, { db: apiDb, boss: database.boss })
  const eventId = await createEvent(database.db, 100)
  // Each purchase's Location, which names its buyer: what a client follows.
  const locations: string[] = []
  for (let i = 0; i < 5; i++) locations.push((await buy(base, { event_id: eventId, user_id: newUserId() })).headers.get('location') ?? '')

  const fifth = await request(base, 'GET', locations[4] as string)
  t.match(fifth.body, { status: 'pending', position: 4, estimated_wait_ms: null }, 'four ahead; no pace measured yet')
  await sql`INSERT INTO worker_rates (worker_id, decisions_per_second, measured_at) VALUES ('test', 100, now())`.execute(database.db)
  const timed = await request(base, 'GET', locations[4] as string)
  t.match(timed.body, { position: 4, estimated_wait_ms: 50 }, '(4 + 1) / 100 per second')

  // 40 clients wait on the same few bookings for about 2 s; nothing is decided meanwhile.
  const before = queries
  const started = Date.now()
  const waiting = mapConcurrent(Array.from({ length: 40 }, (_v, i) => locations[i % 5] as string), 40, async (location) => await request(base, 'GET', `${location}&wait=2`))
  const held = await waiting
  const elapsed = Date.now() - started
  t.ok(held.every((r) => r.status === 200 && r.body.status === 'pending'), 'answered with the pending booking when the time was up')
  t.ok(elapsed >= 1900, `held about 2 s (${elapsed} ms)`)
  // Each request reads its booking twice (before and after waiting); the checks meanwhile are shared:
  // one query for all waiting clients, at most one in flight, run when a client starts waiting, on
  // a notification or each second (plus intake's own count of pending purchases each second). So
  // they grow with arrivals and seconds, never with clients x ticks: typically ~20 here, at most
  // one per arrival when the 40 arrive spread out on a loaded machine (CI once counted 26).
  const spent = queries - before
  t.ok(spent <= 2 * 40 + 40 + 10, `${spent} queries for 40 clients waiting 2 s (polling every 100 ms would be 800+)`)

  // Now a worker decides them: the waiting clients are answered at once, not at the end of their wait.
  const answer = request(base, 'GET', `${locations[0] as string}&wait=20`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const decidingAt = Date.now()
  startTestWorker(t, database, { idlePollMs: 60_000 })
  const decided = await answer
  t.equal(decided.body.status, 'success')
  t.ok(Date.now() - decidingAt < 5000, 'answered when decided, well before 20 s')
  // The worker publishes its pace once it has a busy second behind it: one row, its own.
  const rate = await waitFor(async () => {
    const rows = await database.db.selectFrom('worker_rates').select('decisions_per_second').where('worker_id', '<>', 'test').execute()
    return rows.length > 0 ? rows : undefined
  }, { timeoutMs: 10_000, what: 'the worker to publish its pace' })
  t.equal(rate.length, 1, 'a worker publishes its pace, in one row')
  t.ok(Number(rate[0]?.decisions_per_second) > 0, 'a pace above zero')

  const bad = await request(base, 'GET', `${locations[0] as string}&wait=31`)
  t.equal(bad.status, 400, 'wait is bounded to 30 s')
})

/** Resolves once the database's clock has passed the booking's expires_at (its deadline). */
async function untilOverdue (db: Db, bookingId: string): Promise<void> {
  await waitFor(async () => {
    const { rows: [row] } = await sql<{ overdue: boolean }>`SELECT now() > expires_at AS overdue FROM bookings WHERE id = ${bookingId}`.execute(db)
    return row?.overdue === true ? true : undefined
  }, { what: `booking ${bookingId} to pass its deadline` })
}

t.test('deadline: an undecided purchase past max_wait_seconds fails as expired and never takes a seat', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 5)
  const late = await buy(base, { event_id: eventId, user_id: newUserId(), max_wait_seconds: 1 })
  const patient = await buy(base, { event_id: eventId, user_id: newUserId(), max_wait_seconds: 3600 })
  t.equal(late.status, 202)
  const pending = await request(base, 'GET', late.headers.get('location') ?? '')
  t.equal(Date.parse(pending.body.expires_at) - Date.parse(pending.body.created_at), 1000, 'expires_at is created_at + max_wait_seconds')
  await untilOverdue(database.db, late.body.booking_id)
  // The sweep fails it without the worker reaching it...
  t.same(await expireOverdue(database.db), [late.body.booking_id])
  t.match((await request(base, 'GET', late.headers.get('location') ?? '')).body, { status: 'failed', reason: 'expired' })
  // ...and the worker, reaching its job later, leaves it alone.
  t.same(await settlePurchaseBatch({ db: database.db, boss: database.boss, log: silentLog }, 100), { claimed: 2, decided: 1, setAside: 0 })
  t.match((await request(base, 'GET', late.headers.get('location') ?? '')).body, { status: 'failed', reason: 'expired' })
  t.equal((await request(base, 'GET', patient.headers.get('location') ?? '')).body.status, 'success')
  t.same(await seats(database, eventId), { available: 4, held: 1, total: 5 })

  // The worker in the service sweeps on its own.
  const unlucky = await buy(base, { event_id: eventId, user_id: newUserId(), max_wait_seconds: 1 })
  await untilOverdue(database.db, unlucky.body.booking_id)
  startTestWorker(t, database)
  t.match(await settled(base, unlucky), { status: 'failed', reason: 'expired' })
  t.equal((await seats(database, eventId)).available, 4)
})

t.test('event management', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const created = await request(base, 'POST', '/events', { json: { name: 'Managed', total_quota: 5, max_per_user: 4 }, headers: admin })
  t.equal(created.status, 201)
  t.match(created.body, { total_quota: 5, available_quota: 5, sold: 0, pending: 0, cancelled: 0, max_per_user: 4, sales_open_at: null, sales_close_at: null, sale_status: 'open' })
  const eventId = created.body.id as string
  const bought = await buy(base, { event_id: eventId, user_id: newUserId(), quantity: 3 })
  await settled(base, bought)
  const path = `/events/${eventId}`

  t.match(await request(base, 'PATCH', path, { json: { total_quota: 2 }, headers: admin }), { status: 409, body: { code: 'QUOTA_BELOW_SOLD' } })
  t.match(await request(base, 'PATCH', path, { json: { total_quota: 3 }, headers: admin }), { status: 200, body: { total_quota: 3, available_quota: 0, sold: 3, sale_status: 'sold_out' } }, 'down to what is sold')
  t.match(await request(base, 'PATCH', path, { json: { total_quota: 10, name: 'Bigger', max_per_user: null }, headers: admin }), { status: 200, body: { name: 'Bigger', total_quota: 10, available_quota: 7, max_per_user: null } })
  const opensAt = new Date(Date.now() + 3600_000).toISOString()
  t.match(await request(base, 'PATCH', path, { json: { sales_open_at: opensAt }, headers: admin }), { status: 200, body: { sales_open_at: opensAt, sale_status: 'scheduled' } })
  t.match(await request(base, 'PATCH', path, { json: { sales_close_at: new Date(Date.now() + 60_000).toISOString() }, headers: admin }), { status: 400, body: { code: 'INVALID_SALE_WINDOW' } }, 'closing before it opens, against the stored opening')
  t.match(await request(base, 'PATCH', path, { json: { sales_open_at: null }, headers: admin }), { status: 200, body: { sale_status: 'open' } })
  t.match(await request(base, 'PATCH', path, { json: {}, headers: admin }), { status: 400 }, 'an empty change is a 400')
  t.match(await request(base, 'PATCH', path, { json: { total_quota: 11 } }), { status: 401 }, 'admin only')
  t.match(await request(base, 'PATCH', `/events/${newUserId()}`, { json: { total_quota: 11 }, headers: admin }), { status: 404 })
  t.match(await request(base, 'POST', `${path}/close`, { headers: admin }), { status: 200, body: { sale_status: 'closed' } })
  const stats = await request(base, 'GET', path)
  t.match(stats.body, { total_quota: 10, available_quota: 7, sold: 3, pending: 0, cancelled: 0, sale_status: 'closed' })
})
