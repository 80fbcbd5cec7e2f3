import t from 'tap'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor, type HttpResponse } from '../fixtures/http.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const UNKNOWN = '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e'

/** What a client could tell two answers apart by: status, body, and which headers (and how long). */
const visible = (res: HttpResponse): unknown => ({
  status: res.status,
  body: res.body,
  headers: [...res.headers.keys()].filter((name) => name !== 'date').sort(),
  length: res.headers.get('content-length')
})

t.test('GET /bookings/:id', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { worker: true })
  const eventId = await createEvent(db, 2)

  t.test('follows a purchase from pending to success through the Location of POST /buy', async (t) => {
    const userId = newUserId()
    const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId, quantity: 2 } })
    t.equal(accepted.status, 202)
    const location = accepted.headers.get('location') ?? ''
    t.equal(location, `/bookings/${accepted.body.booking_id}?user_id=${userId}`, 'the Location names the buyer')
    const first = await request(base, 'GET', location)
    t.equal(first.status, 200)
    t.ok(['pending', 'success'].includes(first.body.status))
    const final = await waitFor(async () => {
      const res = await request(base, 'GET', location)
      return res.body.status === 'pending' ? undefined : res
    }, { what: 'the booking to be decided' })
    t.same(Object.keys(final.body).sort(), ['booking_id', 'cancel_requested_at', 'cancelled_at', 'confirmed_at', 'created_at', 'decided_at', 'estimated_wait_ms',
      'event_id', 'expires_at', 'hold_expires_at', 'max_wait_seconds', 'payment_reference', 'position', 'quantity', 'reason', 'status', 'user_id'])
    t.match(final.body, {
      booking_id: accepted.body.booking_id, event_id: eventId, user_id: userId, quantity: 2, status: 'success', reason: null,
      position: null, estimated_wait_ms: null, max_wait_seconds: null, expires_at: null, cancel_requested_at: null, cancelled_at: null,
      hold_expires_at: null, confirmed_at: null, payment_reference: null
    })
    t.ok(Date.parse(final.body.decided_at) >= Date.parse(final.body.created_at))
  })

  t.test('reports a sold-out failure with its reason', async (t) => {
    const userId = newUserId()
    const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId } })
    const final = await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${accepted.body.booking_id}?user_id=${userId}`)
      return res.body.status === 'pending' ? undefined : res
    }, { what: 'the booking to be decided' })
    t.match(final.body, { status: 'failed', reason: 'sold_out' })
    t.type(final.body.decided_at, 'string')
  })

  t.test('only its buyer or the admin reads a booking; to anyone else it does not exist', async (t) => {
    const buyer = newUserId()
    const soldOut = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: buyer } })
    const id: string = soldOut.body.booking_id
    t.equal(soldOut.headers.get('location'), `/bookings/${id}?user_id=${buyer}`, 'an answer known at once (200) names the buyer too')
    const path = `/bookings/${id}`

    const mine = await request(base, 'GET', `${path}?user_id=${buyer}`)
    t.match(mine, { status: 200, body: { booking_id: id, user_id: buyer } }, 'the buyer: 200')
    t.match(await request(base, 'GET', `${path}?user_id=${buyer.toUpperCase()}`), { status: 200, body: { booking_id: id } }, 'the buyer, in upper case: 200')
    t.same((await request(base, 'GET', path, { headers: admin })).body, mine.body, 'the admin, without user_id: the same booking')
    t.same((await request(base, 'GET', `${path}?user_id=${newUserId()}`, { headers: admin })).body, mine.body, 'the admin whatever the user_id')

    const unknown = await request(base, 'GET', `/bookings/${UNKNOWN}?user_id=${newUserId()}`)
    t.match(unknown, { status: 404, body: { statusCode: 404, code: 'BOOKING_NOT_FOUND', message: 'Booking not found' } })
    const another = await request(base, 'GET', `${path}?user_id=${newUserId()}`)
    t.same(visible(another), visible(unknown), 'another user: the very answer of an unknown id')
    t.same(visible(await request(base, 'GET', `${path}?user_id=${newUserId()}&wait=0`)), visible(unknown), 'with ?wait=0 too')

    const none = await request(base, 'GET', path)
    t.match(none, { status: 400, body: { statusCode: 400, error: 'Bad Request', code: 'BOOKING_OWNER_REQUIRED', message: /user_id.*ADMIN_TOKEN/ } }, 'neither user_id nor token: 400')
    t.match(await request(base, 'GET', `/bookings/${UNKNOWN}`), { status: 400, body: { code: 'BOOKING_OWNER_REQUIRED' } }, 'whether the booking exists or not')
    t.match(await request(base, 'GET', `${path}?wait=5`), { status: 400, body: { code: 'BOOKING_OWNER_REQUIRED' } }, 'with ?wait= too')

    for (const authorization of ['Bearer not-the-admin-token-000', `Bearer ${ADMIN_TOKEN}x`, `Basic ${ADMIN_TOKEN}`]) {
      t.match(await request(base, 'GET', `${path}?user_id=${buyer}`, { headers: { authorization } }), { status: 401, body: { code: 'UNAUTHORIZED' } },
        `a wrong token is refused, even with the buyer's user_id (${authorization.slice(0, 10)}...)`)
    }
  })

  t.test('answers 404 for an unknown id', async (t) => {
    const res = await request(base, 'GET', `/bookings/${UNKNOWN}?user_id=${newUserId()}`)
    t.equal(res.status, 404)
    t.match(res.body, { statusCode: 404, code: 'BOOKING_NOT_FOUND', message: 'Booking not found' })
    t.match(await request(base, 'GET', `/bookings/${UNKNOWN}`, { headers: admin }), { status: 404, body: { code: 'BOOKING_NOT_FOUND' } }, 'to the admin too')
  })

  t.test('answers 400 for an id or a user_id that is not a uuid', async (t) => {
    for (const id of ['42', 'abc', '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5', "1' OR '1'='1", 'urn:uuid:0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', '{0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e}']) {
      const res = await request(base, 'GET', `/bookings/${encodeURIComponent(id)}?user_id=${newUserId()}`)
      t.equal(res.status, 400, id)
      t.equal(res.body.code, 'VALIDATION_FAILED')
      const user = await request(base, 'GET', `/bookings/${UNKNOWN}?user_id=${encodeURIComponent(id)}`)
      t.equal(user.status, 400, `user_id ${id}`)
      t.equal(user.body.code, 'VALIDATION_FAILED')
    }
  })
})

t.test('GET /bookings/:id?wait= checks the owner before waiting', async (t) => {
  // No worker: the booking stays pending, so a request that waited would be held for all of it.
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const eventId = await createEvent(database.db, 5)
  const buyer = newUserId()
  const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: buyer } })
  t.equal(accepted.status, 202)
  const path = `/bookings/${accepted.body.booking_id}`

  const started = Date.now()
  const [stranger, nobody] = await Promise.all([
    request(base, 'GET', `${path}?user_id=${newUserId()}&wait=30`),
    request(base, 'GET', `${path}?wait=30`)
  ])
  const elapsed = Date.now() - started
  t.match(stranger, { status: 404, body: { code: 'BOOKING_NOT_FOUND' } }, 'another user: 404')
  t.match(nobody, { status: 400, body: { code: 'BOOKING_OWNER_REQUIRED' } }, 'no user_id: 400')
  // A held request would answer after 30 s; "at once" leaves room for a loaded machine.
  t.ok(elapsed < 5000, `both answered at once, not after the 30 s wait (${elapsed} ms)`)

  const ownerStarted = Date.now()
  const owner = await request(base, 'GET', `${accepted.headers.get('location') ?? ''}&wait=1`)
  t.match(owner, { status: 200, body: { status: 'pending' } })
  t.ok(Date.now() - ownerStarted >= 900, 'the buyer, following the Location with ?wait=1, is held while it is pending')
  const viaAdmin = await request(base, 'GET', `${path}?wait=1`, { headers: admin })
  t.match(viaAdmin, { status: 200, body: { status: 'pending', user_id: buyer } }, 'and so is the admin')
})
