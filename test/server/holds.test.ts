import t from 'tap'
import { sql } from 'kysely'
import type { Db } from '../../db/client.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'

// Two-phase purchases end to end, through the real HTTP server and its worker (expiry sweep
// included): held, confirmed, released, expired, and each of the races the contract settles.

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

async function createEvent (base: string, body: Record<string, unknown>): Promise<string> {
  const res = await request(base, 'POST', '/events', { json: { name: 'Holds', ...body }, headers: admin })
  if (res.status !== 201) throw new Error(`creating an event: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.id
}

async function buy (base: string, eventId: string, userId = newUserId(), quantity = 1): Promise<{ id: string, userId: string, status: number, body: any }> {
  const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId, quantity } })
  return { id: res.body.booking_id, userId, status: res.status, body: res.body }
}

/** The booking once its decision is made (?wait= returns on held too). */
async function decided (base: string, id: string): Promise<any> {
  return await waitFor(async () => {
    const res = await request(base, 'GET', `/bookings/${id}?wait=5`, { headers: admin })
    return res.body.status === 'pending' ? undefined : res.body
  }, { what: `booking ${id} decided` })
}

type Bought = Awaited<ReturnType<typeof buy>>

/** `n` purchases of one seat each on `eventId`, bought and decided `limit` at a time: the bookings as bought and as decided. */
async function buyAndDecide (base: string, eventId: string, n: number, limit = 20): Promise<{ bookings: Bought[], views: any[] }> {
  const bookings = await mapConcurrent(Array.from({ length: n }), limit, async () => await buy(base, eventId))
  return { bookings, views: await mapConcurrent(bookings, limit, async (b) => await decided(base, b.id)) }
}

async function event (base: string, id: string): Promise<any> {
  return (await request(base, 'GET', `/events/${id}`)).body
}

const confirm = async (base: string, id: string, body?: unknown) =>
  await request(base, 'POST', `/bookings/${id}/confirm`, { headers: admin, ...(body === undefined ? {} : { json: body }) })

async function invariantsOk (base: string, eventId: string): Promise<{ ok: boolean, problems: string[] }> {
  const res = await request(base, 'GET', `/admin/invariants?event_id=${eventId}`, { headers: admin })
  return { ok: res.body.ok, problems: res.body.events[0].problems }
}

/** The database's clock, in ms since the epoch (the holds' clock). */
async function dbNow (db: Db): Promise<number> {
  const { rows: [row] } = await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(db)
  return (row as { now: Date }).now.getTime()
}

t.test('holds', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { worker: true })

  t.test('a purchase is held, then confirmed: seats held, then sold; a retried confirmation answers the same', async (t) => {
    const eventId = await createEvent(base, { total_quota: 5, hold_seconds: 600 })
    t.equal((await event(base, eventId)).hold_seconds, 600)
    const { id } = await buy(base, eventId, newUserId(), 2)
    const held = await decided(base, id)
    t.equal(held.status, 'held')
    t.equal(Date.parse(held.hold_expires_at) - Date.parse(held.decided_at), 600_000, 'held until its decision + hold_seconds')
    t.match(held, { confirmed_at: null, payment_reference: null, reason: null })
    t.match(await event(base, eventId), { total_quota: 5, available_quota: 3, held: 2, sold: 0 })

    const first = await confirm(base, id, { payment_reference: 'pi_123 ABC' })
    t.equal(first.status, 200)
    t.match(first.body, { booking_id: id, status: 'success', payment_reference: 'pi_123 ABC', hold_expires_at: held.hold_expires_at })
    t.ok(Date.parse(first.body.confirmed_at) < Date.parse(held.hold_expires_at), 'confirmed before the hold ran out')
    t.match(await event(base, eventId), { available_quota: 3, held: 0, sold: 2 })

    const again = await confirm(base, id, { payment_reference: 'another' })
    t.equal(again.status, 200, 'confirming again is safe')
    t.same(again.body, first.body, 'the same booking, the first reference kept')
    t.same((await request(base, 'GET', `/bookings/${id}`, { headers: admin })).body, first.body, 'GET shows the confirmed booking')
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })

  t.test('a confirmation needs no body', async (t) => {
    const eventId = await createEvent(base, { total_quota: 1, hold_seconds: 600 })
    const { id } = await buy(base, eventId)
    await decided(base, id)
    const res = await request(base, 'POST', `/bookings/${id}/confirm`, { headers: admin })
    t.equal(res.status, 200)
    t.match(res.body, { status: 'success', payment_reference: null })
  })

  t.test('what cannot be confirmed, and bad requests', async (t) => {
    const plain = await createEvent(base, { total_quota: 1 })
    const sold = await buy(base, plain)
    t.equal((await decided(base, sold.id)).status, 'success')
    const soldOut = await buy(base, plain)
    t.equal(soldOut.body.reason, 'sold_out')
    for (const [what, id] of [['a purchase sold at once (no hold)', sold.id], ['a failed one', soldOut.id]] as const) {
      const res = await confirm(base, id)
      t.equal(res.status, 409, what)
      t.equal(res.body.code, 'BOOKING_NOT_CONFIRMABLE', what)
    }
    const unknown = await confirm(base, '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e')
    t.match(unknown, { status: 404, body: { code: 'BOOKING_NOT_FOUND' } })

    const holding = await createEvent(base, { total_quota: 1, hold_seconds: 600 })
    const { id } = await buy(base, holding)
    await decided(base, id)
    const noToken = await request(base, 'POST', `/bookings/${id}/confirm`)
    t.match(noToken, { status: 401, body: { code: 'UNAUTHORIZED' } }, 'the buyer cannot confirm their own hold')
    for (const body of [{ payment_reference: '' }, { payment_reference: 'x'.repeat(256) }, { payment_reference: 'tab\there' }, { payment_reference: 5 }, { other: 1 }, [1]]) {
      const res = await confirm(base, id, body)
      t.equal(res.status, 400, JSON.stringify(body))
      t.type(res.body.message, 'string')
    }
    t.equal((await decided(base, id)).status, 'held', 'still held after the refused requests')
    for (const hold of [0, 86_401, '60', 1.5]) {
      const res = await request(base, 'POST', '/events', { json: { name: 'x', total_quota: 1, hold_seconds: hold }, headers: admin })
      t.equal(res.status, 400, `hold_seconds ${JSON.stringify(hold)}`)
    }
  })

  t.test('hold_seconds is changed with PATCH, for purchases decided after it', async (t) => {
    const eventId = await createEvent(base, { total_quota: 10 })
    t.equal((await decided(base, (await buy(base, eventId)).id)).status, 'success')
    const patched = await request(base, 'PATCH', `/events/${eventId}`, { json: { hold_seconds: 30 }, headers: admin })
    t.match(patched, { status: 200, body: { hold_seconds: 30 } })
    const held = await decided(base, (await buy(base, eventId)).id)
    t.equal(held.status, 'held')
    t.equal(Date.parse(held.hold_expires_at) - Date.parse(held.decided_at), 30_000)
    t.match((await request(base, 'PATCH', `/events/${eventId}`, { json: { hold_seconds: null }, headers: admin })).body, { hold_seconds: null })
    t.equal((await decided(base, (await buy(base, eventId)).id)).status, 'success')
    t.equal((await decided(base, held.booking_id)).status, 'held', 'the hold already running keeps its expiry')
    t.match(await event(base, eventId), { available_quota: 7, held: 1, sold: 2 })
  })

  t.test('the per-user cap counts held seats', async (t) => {
    const eventId = await createEvent(base, { total_quota: 10, max_per_user: 2, hold_seconds: 600 })
    const userId = newUserId()
    t.equal((await decided(base, (await buy(base, eventId, userId, 2)).id)).status, 'held')
    const over = await decided(base, (await buy(base, eventId, userId, 1)).id)
    t.match(over, { status: 'failed', reason: 'limit_exceeded' })
  })

  t.test('the buyer releases a hold: cancelled, seats back, and the seller can no longer confirm it', async (t) => {
    const eventId = await createEvent(base, { total_quota: 3, hold_seconds: 600 })
    const { id, userId } = await buy(base, eventId, newUserId(), 3)
    await decided(base, id)
    const released = await request(base, 'DELETE', `/bookings/${id}?user_id=${userId}`)
    t.equal(released.status, 202)
    const late = await confirm(base, id)
    t.match(late, { status: 409, body: { code: 'BOOKING_NOT_CONFIRMABLE' } }, 'asked to cancel: not confirmable')
    const cancelled = await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${id}?user_id=${userId}`)
      return res.body.status === 'cancelled' ? res.body : undefined
    }, { what: 'the release' })
    t.equal(cancelled.confirmed_at, null)
    t.match(await event(base, eventId), { available_quota: 3, held: 0, sold: 0, cancelled: 3 })
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })

  t.test('an unconfirmed hold expires at its time, never before: seats back on sale, the sold-out fast path reopens', async (t) => {
    const eventId = await createEvent(base, { total_quota: 1, hold_seconds: 1 })
    const { id, userId } = await buy(base, eventId)
    const held = await decided(base, id)
    t.equal(held.status, 'held')
    const soldOut = await buy(base, eventId)
    t.match(soldOut, { status: 200, body: { status: 'failed', reason: 'sold_out' } }, 'while held, the seat is not for sale')
    // Watch it from the database, on the database's clock: held before its time, expired after.
    const expiresAt = Date.parse(held.hold_expires_at)
    let sawHeldAfterExpiry = false
    const expired = await waitFor(async () => {
      const { rows: [row] } = await sql<{ status: string, now: Date }>`SELECT status, clock_timestamp() AS now FROM bookings WHERE id = ${id}`.execute(db)
      if (row?.status === 'HELD') {
        if (row.now.getTime() >= expiresAt) sawHeldAfterExpiry = true
        return undefined
      }
      return row
    }, { intervalMs: 10, what: 'the hold to expire' })
    t.equal(expired.status, 'EXPIRED')
    t.ok(expired.now.getTime() >= expiresAt, 'not expired before hold_expires_at')
    t.comment(`held past its expiry for a while: ${String(sawHeldAfterExpiry)} (the sweep runs every 500 ms)`)
    t.match((await request(base, 'GET', `/bookings/${id}?user_id=${userId}`)).body, { status: 'expired', reason: null, confirmed_at: null })
    t.match(await event(base, eventId), { available_quota: 1, held: 0, sold: 0 })

    const late = await confirm(base, id, { payment_reference: 'too late' })
    t.match(late, { status: 409, body: { code: 'HOLD_EXPIRED' } })
    t.match(late.body.message, /go back on sale/)
    const cancel = await request(base, 'DELETE', `/bookings/${id}?user_id=${userId}`)
    t.match(cancel, { status: 409, body: { code: 'BOOKING_NOT_CANCELLABLE' } })
    const next = await buy(base, eventId)
    t.equal(next.status, 202, 'the seat is on sale again')
    t.equal((await decided(base, next.id)).status, 'held')
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })

  t.test('a confirmation after hold_expires_at is refused even before the sweep has released the seats', async (t) => {
    const eventId = await createEvent(base, { total_quota: 1, hold_seconds: 600 })
    const { id } = await buy(base, eventId)
    await decided(base, id)
    // The hold's end moved into the past, as if the sweep had not come round yet.
    await sql`UPDATE bookings SET hold_expires_at = clock_timestamp() - interval '1 millisecond', decided_at = clock_timestamp() - interval '2 milliseconds' WHERE id = ${id}`.execute(db)
    t.match(await confirm(base, id), { status: 409, body: { code: 'HOLD_EXPIRED' } })
    await waitFor(async () => (await decided(base, id)).status === 'expired' ? true : undefined, { what: 'the sweep' })
    t.match(await event(base, eventId), { available_quota: 1, held: 0, sold: 0 })
  })

  t.test('GET ?wait= returns when a booking is held', async (t) => {
    const eventId = await createEvent(base, { total_quota: 1, hold_seconds: 600 })
    const { id, userId } = await buy(base, eventId)
    const res = await request(base, 'GET', `/bookings/${id}?user_id=${userId}&wait=10`)
    t.equal(res.body.status, 'held')
  })
})

t.test('races', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { worker: true })

  t.test('confirmations fired at the expiry instant: each ends confirmed with a 200 or expired with a 409, never both, seats add up', async (t) => {
    const n = 60
    const eventId = await createEvent(base, { total_quota: n, hold_seconds: 2 })
    const { views: held } = await buyAndDecide(base, eventId, n)
    t.ok(held.every((b) => b.status === 'held'), 'all held')
    // Fire each confirmation at its hold's end on the database's clock, spread over +-40 ms.
    const offset = await dbNow(db) - Date.now()
    const answers = await Promise.all(held.map(async (b, i) => {
      const at = Date.parse(b.hold_expires_at) - offset + (i % 9 - 4) * 10
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())))
      return { id: b.booking_id as string, res: await confirm(base, b.booking_id) }
    }))
    await waitFor(async () => (await event(base, eventId)).held === 0 ? true : undefined, { what: 'every hold ended' })
    const { rows } = await sql<{ id: string, status: string, confirmed_at: Date | null, hold_expires_at: Date }>`
      SELECT id, status, confirmed_at, hold_expires_at FROM bookings WHERE event_id = ${eventId}`.execute(db)
    const byId = new Map(rows.map((r) => [r.id, r]))
    let confirmed = 0
    for (const { id, res } of answers) {
      const row = byId.get(id)
      if (res.status === 200) {
        confirmed++
        t.ok(row?.status === 'SUCCESS' && row.confirmed_at !== null && row.confirmed_at < row.hold_expires_at, `${id}: 200 and sold`)
      } else {
        t.ok(res.status === 409 && res.body.code === 'HOLD_EXPIRED' && row?.status === 'EXPIRED', `${id}: 409 HOLD_EXPIRED and expired (${res.status} ${row?.status})`)
      }
    }
    t.comment(`${confirmed} of ${n} confirmed, ${n - confirmed} expired`)
    t.match(await event(base, eventId), { total_quota: n, held: 0, sold: confirmed, available_quota: n - confirmed })
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })

  t.test('a confirmation racing the buyer\'s release: the booking ends released, and a 200 only if the confirmation came first', async (t) => {
    const n = 30
    const eventId = await createEvent(base, { total_quota: n, hold_seconds: 600 })
    const { bookings } = await buyAndDecide(base, eventId, n, 15)
    const answers = await mapConcurrent(bookings, 15, async (b) => {
      const [released, confirmed] = await Promise.all([
        request(base, 'DELETE', `/bookings/${b.id}?user_id=${b.userId}`),
        confirm(base, b.id, { payment_reference: `race ${b.id}` })
      ])
      return { id: b.id, released, confirmed }
    })
    await waitFor(async () => (await event(base, eventId)).available_quota === n ? true : undefined, { what: 'every seat back' })
    const { rows } = await sql<{ id: string, status: string, confirmed_at: Date | null }>`
      SELECT id, status, confirmed_at FROM bookings WHERE event_id = ${eventId}`.execute(db)
    const byId = new Map(rows.map((r) => [r.id, r]))
    for (const { id, released, confirmed } of answers) {
      const row = byId.get(id)
      t.equal(released.status, 202, `${id}: release accepted`)
      t.equal(row?.status, 'CANCELLED', `${id}: released`)
      if (confirmed.status === 200) t.not(row?.confirmed_at, null, `${id}: confirmed first, then released`)
      else t.ok(confirmed.body.code === 'BOOKING_NOT_CONFIRMABLE' && row?.confirmed_at === null, `${id}: released first, the confirmation refused`)
    }
    t.match(await event(base, eventId), { available_quota: n, held: 0, sold: 0, cancelled: n })
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })

  t.test('purchases racing the seats expiries return: never more seats taken than the event has', async (t) => {
    const seats = 20
    const eventId = await createEvent(base, { total_quota: seats, hold_seconds: 1 })
    await buyAndDecide(base, eventId, seats)
    t.match(await event(base, eventId), { available_quota: 0, held: seats })
    // Buyers keep coming while the holds run out and their seats come back.
    const deadline = Date.now() + 3000
    const later: Bought[] = []
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (Date.now() < deadline) later.push(await buy(base, eventId))
    }))
    const outcomes = await mapConcurrent(later.filter((b) => b.status === 202), 20, async (b) => await decided(base, b.id))
    const heldLater = outcomes.filter((b) => b.status === 'held').length
    t.ok(heldLater > 0 && heldLater <= seats, `${heldLater} later purchases got seats`)
    const books = await event(base, eventId)
    t.ok(books.available_quota + books.held + books.sold === seats && books.held + books.sold <= seats, JSON.stringify(books))
    t.same(await invariantsOk(base, eventId), { ok: true, problems: [] })
  })
})
