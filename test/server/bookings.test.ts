import t from 'tap'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'

t.test('GET /bookings/:id', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { worker: true })
  const eventId = await createEvent(db, 2)

  t.test('follows a purchase from pending to success', async (t) => {
    const userId = newUserId()
    const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId, quantity: 2 } })
    t.equal(accepted.status, 202)
    const first = await request(base, 'GET', accepted.headers.get('location') ?? '')
    t.equal(first.status, 200)
    t.ok(['pending', 'success'].includes(first.body.status))
    const final = await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${accepted.body.booking_id}`)
      return res.body.status === 'pending' ? undefined : res
    }, { what: 'the booking to be decided' })
    t.same(Object.keys(final.body).sort(), ['booking_id', 'cancel_requested_at', 'cancelled_at', 'created_at', 'decided_at', 'estimated_wait_ms',
      'event_id', 'expires_at', 'max_wait_seconds', 'position', 'quantity', 'reason', 'status', 'user_id'])
    t.match(final.body, {
      booking_id: accepted.body.booking_id, event_id: eventId, user_id: userId, quantity: 2, status: 'success', reason: null,
      position: null, estimated_wait_ms: null, max_wait_seconds: null, expires_at: null, cancel_requested_at: null, cancelled_at: null
    })
    t.ok(Date.parse(final.body.decided_at) >= Date.parse(final.body.created_at))
  })

  t.test('reports a sold-out failure with its reason', async (t) => {
    const accepted = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    const final = await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${accepted.body.booking_id}`)
      return res.body.status === 'pending' ? undefined : res
    }, { what: 'the booking to be decided' })
    t.match(final.body, { status: 'failed', reason: 'sold_out' })
    t.type(final.body.decided_at, 'string')
  })

  t.test('answers 404 for an unknown id', async (t) => {
    const res = await request(base, 'GET', '/bookings/0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e')
    t.equal(res.status, 404)
    t.match(res.body, { statusCode: 404, code: 'BOOKING_NOT_FOUND', message: 'Booking not found' })
  })

  t.test('answers 400 for an id that is not a uuid', async (t) => {
    for (const id of ['42', 'abc', '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5', "1' OR '1'='1", 'urn:uuid:0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e', '{0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e}']) {
      const res = await request(base, 'GET', `/bookings/${encodeURIComponent(id)}`)
      t.equal(res.status, 400, id)
      t.equal(res.body.statusCode, 400)
    }
  })
})
