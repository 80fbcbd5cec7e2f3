import t from 'tap'
import { ADMIN_TOKEN } from './fixtures/app.ts'
import { createTestDatabase } from './fixtures/database.ts'
import { createEvent, newUserId } from './fixtures/events.ts'
import { mapConcurrent, request, waitFor, type HttpResponse } from './fixtures/http.ts'
import { startService } from './fixtures/service.ts'

t.test('npm start on an empty database serves a demo event that a purchase can buy', async (t) => {
  const { url, db } = await createTestDatabase(t)
  const service = await startService(t, 'all', { DATABASE_URL: url, DEMO_EVENT: 'true' })
  const events = await request(service.base, 'GET', '/events')
  t.equal(events.body.events.length, 1)
  const demo = events.body.events[0]
  t.match(demo, { name: 'Concert Event', total_quota: 100, available_quota: 100 })
  const hint = service.lines.find((line) => line.includes('curl'))
  t.ok(hint?.includes(demo.id), 'the log names the event id in a ready-to-paste curl line')
  t.ok(hint?.includes(`${service.base}/buy`), 'the curl line targets this server')
  // The body's user_id (quoted, and escaped once more in a JSON log line), then the read as that buyer.
  const hintUser = /user_id\W+([0-9a-f-]{36})/.exec(hint ?? '')?.[1]
  t.ok(hintUser !== undefined && hint?.includes(`${service.base}/bookings/<booking_id>?user_id=${hintUser}`), 'and reads the booking back as its buyer')

  const accepted = await request(service.base, 'POST', '/buy', { json: { event_id: demo.id, user_id: newUserId() } })
  t.equal(accepted.status, 202)
  const final = await waitFor(async () => {
    const res = await request(service.base, 'GET', accepted.headers.get('location') ?? '')
    return res.body.status === 'pending' ? undefined : res
  }, { what: 'the purchase to be decided' })
  t.equal(final.body.status, 'success')

  service.child.kill('SIGTERM')
  t.equal((await service.exited).code, 0)
  const again = await startService(t, 'all', { DATABASE_URL: url, DEMO_EVENT: 'true' })
  t.equal((await request(again.base, 'GET', '/events')).body.events.length, 1, 'a restart does not add a second demo event')
  const rows = await db.selectFrom('events').select('id').execute()
  t.equal(rows.length, 1)
})

t.test('SIGTERM under load answers requests in flight, exits 0, and loses nothing accepted', async (t) => {
  const database = await createTestDatabase(t)
  const { db, url } = database
  const eventId = await createEvent(db, 150)
  const service = await startService(t, 'all', { DATABASE_URL: url, ADMIN_TOKEN })

  let accepted = 0
  let terminated = false
  const outcomes = await mapConcurrent(Array.from({ length: 600 }, newUserId), 40, async (userId): Promise<HttpResponse | Error> => {
    try {
      const res = await request(service.base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId } })
      if (res.status === 202 && ++accepted === 150 && !terminated) {
        terminated = true
        service.child.kill('SIGTERM')
      }
      return res
    } catch (err) {
      return err as Error // after the listener closes, new connections are refused
    }
  })
  const { code } = await service.exited
  t.equal(code, 0, 'a graceful close exits 0')
  const responses = outcomes.filter((o): o is HttpResponse => !(o instanceof Error))
  // 200 is a stored answer too: once the worker has sold the 150 seats, purchases are answered
  // at once as sold out (and stored so), which can happen before the SIGTERM lands.
  t.ok(responses.every((r) => r.status === 202 || r.status === 200 || r.status === 503), 'every answer was 202, 200 or 503, never a 500', { statuses: [...new Set(responses.map((r) => r.status))] })
  t.ok(responses.filter((r) => r.status === 200).every((r) => r.body.status === 'failed' && r.body.reason === 'sold_out'), 'a 200 is a purchase sold out at once')
  const acceptedIds = responses.filter((r) => r.status === 202).map((r) => r.body.booking_id as string)
  t.ok(acceptedIds.length >= 150, `${acceptedIds.length} accepted before and during the close`)
  const storedIds = responses.filter((r) => r.status === 202 || r.status === 200).map((r) => r.body.booking_id as string)

  const stored = await db.selectFrom('bookings').select('id').execute()
  t.same(stored.map((s) => s.id).sort(), [...storedIds].sort(), 'exactly the purchases answered 202 or 200 are stored')

  // A restart decides whatever the first process left pending.
  await startService(t, 'all', { DATABASE_URL: url })
  await waitFor(async () => {
    const pending = await db.selectFrom('bookings').select('id').where('status', '=', 'PENDING').execute()
    return pending.length === 0 ? true : undefined
  }, { timeoutMs: 60_000, what: 'every accepted purchase to be decided after the restart' })
  const event = await db.selectFrom('events').selectAll().where('id', '=', eventId).executeTakeFirstOrThrow()
  const sold = await db.selectFrom('bookings').select((eb) => eb.fn.sum<string>('quantity').as('n')).where('status', '=', 'SUCCESS').executeTakeFirstOrThrow()
  t.equal(event.total_quota - event.available_quota, Number(sold.n ?? 0), 'quota used == seats sold')
  t.ok(Number(sold.n ?? 0) <= 150, 'never more than the quota')
})

t.test('the API and the worker run as separate processes against one DATABASE_URL', async (t) => {
  const { url, db } = await createTestDatabase(t)
  const eventId = await createEvent(db, 3)
  const api = await startService(t, 'api', { DATABASE_URL: url })
  t.notOk(api.lines.some((line) => line.includes('purchase worker started')), 'the API process runs no worker')
  const accepted = await Promise.all([1, 2, 3, 4].map(async () =>
    await request(api.base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })))
  t.ok(accepted.every((r) => r.status === 202))
  await startService(t, 'worker', { DATABASE_URL: url })
  await waitFor(async () => {
    const pending = await db.selectFrom('bookings').select('id').where('status', '=', 'PENDING').execute()
    return pending.length === 0 ? true : undefined
  }, { what: 'the worker process to decide every purchase' })
  const statuses = await db.selectFrom('bookings').select('status').execute()
  t.equal(statuses.filter((s) => s.status === 'SUCCESS').length, 3)
  t.equal(statuses.filter((s) => s.status === 'FAILED').length, 1)
})

t.test('npm run server without DATABASE_URL stops with a clear message and exit 1', async (t) => {
  await t.rejects(startService(t, 'api', { DATABASE_URL: '' }), /DATABASE_URL is required/)
})

t.test('an invalid configuration stops start-up listing every problem', async (t) => {
  await t.rejects(startService(t, 'all', { PORT: 'eighty', QUEUE_CAPACITY: '0', ADMIN_TOKEN: 'short' }), /PORT must be integer.*ADMIN_TOKEN must NOT have fewer than 16 characters.*QUEUE_CAPACITY must be >= 1/)
})
