import t from 'tap'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { jobRows } from '../fixtures/jobs.ts'

async function countRows (db: Parameters<typeof createEvent>[0]): Promise<{ bookings: number, jobs: number }> {
  const bookings = await db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  return { bookings: Number(bookings.n), jobs: (await jobRows(db)).length }
}

t.test('POST /buy', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss })
  const eventId = await createEvent(db, 100)

  t.test('accepts a purchase with 202, a booking id and a Location, after storing it durably', async (t) => {
    const userId = newUserId()
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId } })
    t.equal(res.status, 202)
    t.equal(res.body.status, 'pending')
    t.equal(res.body.message, 'Request queued')
    t.match(res.body.booking_id, /^[0-9a-f-]{36}$/)
    t.equal(res.headers.get('location'), `/bookings/${res.body.booking_id}?user_id=${userId}`, 'a Location its buyer can follow')
    // Already committed when the 202 arrived: the booking row and its job exist, same id.
    const booking = await db.selectFrom('bookings').selectAll().where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
    t.match(booking, { event_id: eventId, user_id: userId, quantity: 1, status: 'PENDING', reason: null, decided_at: null })
    const [job] = await jobRows(db, { id: res.body.booking_id })
    t.same(job === undefined ? undefined : { state: job.state, data: job.data }, { state: 'created', data: { event_id: eventId, user_id: userId, quantity: 1, arrival: 1 } }, 'the job carries the purchase and its arrival number')
  })

  t.test('stores the requested quantity', async (t) => {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity: 4 } })
    t.equal(res.status, 202)
    const booking = await db.selectFrom('bookings').select('quantity').where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
    t.equal(booking.quantity, 4)
  })

  t.test('gives each purchase its own id, in arrival order', async (t) => {
    const first = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    const second = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    t.not(first.body.booking_id, second.body.booking_id)
    t.ok(first.body.booking_id < second.body.booking_id, 'time-ordered ids sort by arrival')
  })

  t.test('answers 404 for an unknown event and stores nothing', async (t) => {
    const before = await countRows(db)
    const res = await request(base, 'POST', '/buy', { json: { event_id: '00000000-0000-4000-8000-000000000000', user_id: newUserId() } })
    t.equal(res.status, 404)
    t.match(res.body, { statusCode: 404, error: 'Not Found', code: 'EVENT_NOT_FOUND', message: 'Event not found' })
    t.same(await countRows(db), before)
  })

  const badBodies: Array<[string, unknown]> = [
    ['a missing user_id', { event_id: eventId }],
    ['a missing event_id', { user_id: newUserId() }],
    ['an empty object', {}],
    ['a non-uuid event_id', { event_id: 'concert', user_id: newUserId() }],
    ['a non-uuid user_id', { event_id: eventId, user_id: '42' }],
    ['a urn:uuid event_id', { event_id: `urn:uuid:${eventId}`, user_id: newUserId() }],
    ['a urn:uuid user_id', { event_id: eventId, user_id: `urn:uuid:${newUserId()}` }],
    ['a user_id with a NUL byte', { event_id: eventId, user_id: `${newUserId()}\u0000` }],
    ['a numeric user_id', { event_id: eventId, user_id: 42 }],
    ['quantity 0', { event_id: eventId, user_id: newUserId(), quantity: 0 }],
    ['quantity 11', { event_id: eventId, user_id: newUserId(), quantity: 11 }],
    ['a negative quantity', { event_id: eventId, user_id: newUserId(), quantity: -1 }],
    ['a fractional quantity', { event_id: eventId, user_id: newUserId(), quantity: 1.5 }],
    ['a quantity given as a string', { event_id: eventId, user_id: newUserId(), quantity: '2' }],
    ['a quantity of null', { event_id: eventId, user_id: newUserId(), quantity: null }],
    ['an extra field', { event_id: eventId, user_id: newUserId(), price: 0 }],
    ['an array', [{ event_id: eventId, user_id: newUserId() }]],
    ['a bare string', 'buy'],
    ['null', null]
  ]
  for (const [what, body] of badBodies) {
    t.test(`rejects ${what} with 400 and a JSON message, storing nothing`, async (t) => {
      const before = await countRows(db)
      const res = await request(base, 'POST', '/buy', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
      t.equal(res.status, 400)
      t.equal(res.body.statusCode, 400)
      t.equal(res.body.error, 'Bad Request')
      t.type(res.body.message, 'string')
      t.ok(res.body.message.length > 0)
      t.same(await countRows(db), before)
    })
  }

  t.test('rejects malformed JSON with 400', async (t) => {
    const res = await request(base, 'POST', '/buy', { body: '{"event_id": ', headers: { 'content-type': 'application/json' } })
    t.equal(res.status, 400)
    t.match(res.body.message, /JSON/)
  })

  t.test('rejects an empty body with 400', async (t) => {
    const res = await request(base, 'POST', '/buy', { body: '', headers: { 'content-type': 'application/json' } })
    t.equal(res.status, 400)
    t.equal(res.body.statusCode, 400)
  })

  t.test('rejects a non-JSON content type with 415', async (t) => {
    for (const contentType of ['application/x-www-form-urlencoded', 'text/plain', 'application/xml']) {
      const res = await request(base, 'POST', '/buy', { body: JSON.stringify({ event_id: eventId, user_id: newUserId() }), headers: { 'content-type': contentType } })
      t.equal(res.status, 415, contentType)
      t.equal(res.body.statusCode, 415)
    }
  })

  t.test('rejects an oversized body with 413', async (t) => {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), padding: 'x'.repeat(100_000) } })
    t.equal(res.status, 413)
    t.equal(res.body.statusCode, 413)
  })

  t.test('rejects a prototype-poisoning body with 400', async (t) => {
    const res = await request(base, 'POST', '/buy', { body: `{"event_id":"${eventId}","user_id":"${newUserId()}","__proto__":{"quantity":5}}`, headers: { 'content-type': 'application/json' } })
    t.equal(res.status, 400)
  })

  t.test('answers unknown routes and methods with a JSON 404', async (t) => {
    const res = await request(base, 'GET', '/buy')
    t.equal(res.status, 404)
    t.equal(res.body.statusCode, 404)
    const other = await request(base, 'POST', '/nope', { json: {} })
    t.equal(other.status, 404)
    t.match(other.body.message, /not found/)
  })
})

t.test('POST /buy beyond QUEUE_CAPACITY answers 503 with Retry-After and stores nothing', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { queueCapacity: 3 })
  const eventId = await createEvent(db, 100)
  for (let i = 0; i < 3; i++) {
    t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })).status, 202)
  }
  const before = await countRows(db)
  const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
  t.equal(res.status, 503)
  t.match(res.body, { statusCode: 503, code: 'QUEUE_FULL', message: 'System is too busy' })
  t.ok(Number(res.headers.get('retry-after')) >= 1, 'Retry-After is set')
  t.same(await countRows(db), before)
})

t.test('QUEUE_CAPACITY holds under a concurrent burst', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { queueCapacity: 5 })
  const eventId = await createEvent(db, 100)
  const responses = await Promise.all(Array.from({ length: 100 }, async () =>
    await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })))
  t.equal(responses.filter((r) => r.status === 202).length, 5, 'exactly the capacity is accepted')
  t.equal(responses.filter((r) => r.status === 503).length, 95, 'the rest are told to come back')
  t.equal((await countRows(db)).bookings, 5)
})

t.test('ids in upper case: the purchase is decided like any other, its job grouped under the event as stored', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: true })
  const eventId = await createEvent(database.db, 10)
  const userId = newUserId()
  const res = await request(base, 'POST', '/buy', { json: { event_id: eventId.toUpperCase(), user_id: userId.toUpperCase() } })
  t.equal(res.status, 202)
  t.equal(res.headers.get('location'), `/bookings/${res.body.booking_id}?user_id=${userId}`, 'the Location names the user as stored')
  const [job] = await jobRows(database.db, { id: res.body.booking_id })
  t.match(job, { group_id: eventId, data: { event_id: eventId, user_id: userId } }, 'the job names the event and user as the database does')
  const decided = await waitFor(async () => {
    const row = await database.db.selectFrom('bookings').select(['status', 'reason']).where('id', '=', res.body.booking_id).executeTakeFirstOrThrow()
    return row.status === 'PENDING' ? undefined : row
  }, { what: 'the purchase to be decided' })
  t.same(decided, { status: 'SUCCESS', reason: null }, 'a seat, not invalid_request')
})
