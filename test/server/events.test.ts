import t from 'tap'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'
import { request } from '../fixtures/http.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

t.test('events API', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss })

  t.test('POST /events creates an event for the admin', async (t) => {
    const res = await request(base, 'POST', '/events', { json: { name: 'Jazz Night', total_quota: 250 }, headers: admin })
    t.equal(res.status, 201)
    t.match(res.body, { name: 'Jazz Night', total_quota: 250, available_quota: 250, sold: 0, version: 0 })
    t.equal(res.headers.get('location'), `/events/${res.body.id}`)
    const row = await db.selectFrom('events').selectAll().where('id', '=', res.body.id).executeTakeFirstOrThrow()
    t.match(row, { name: 'Jazz Night', total_quota: 250, available_quota: 250 })
  })

  t.test('POST /events refuses a missing or wrong token with 401 and creates nothing', async (t) => {
    const before = await db.selectFrom('events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
    const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: ADMIN_TOKEN }, { authorization: 'Bearer ' }]
    for (const headers of attempts) {
      const res = await request(base, 'POST', '/events', { json: { name: 'Nope', total_quota: 1 }, headers })
      t.equal(res.status, 401, JSON.stringify(headers))
      t.equal(res.body.code, 'UNAUTHORIZED')
    }
    const after = await db.selectFrom('events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
    t.equal(after.n, before.n)
  })

  t.test('without the token, even a malformed body is a 401: the admin routes say nothing about their input to others', async (t) => {
    for (const [method, path, body] of [['POST', '/events', { total_quota: -1 }], ['PATCH', `/events/${newUserId()}`, { nope: true }], ['GET', '/admin/invariants?limit=0', undefined]] as const) {
      const res = await request(base, method, path, { ...(body === undefined ? {} : { json: body }) })
      t.equal(res.status, 401, `${method} ${path}`)
      t.equal(res.body.code, 'UNAUTHORIZED')
    }
  })

  t.test('the Bearer scheme is case-insensitive (RFC 9110); the token itself is not', async (t) => {
    const res = await request(base, 'POST', '/events', { json: { name: 'Lowercase scheme', total_quota: 1 }, headers: { authorization: `bearer ${ADMIN_TOKEN}` } })
    t.equal(res.status, 201)
    const wrongCase = await request(base, 'POST', '/events', { json: { name: 'Nope', total_quota: 1 }, headers: { authorization: `Bearer ${ADMIN_TOKEN.toUpperCase()}` } })
    t.equal(wrongCase.status, 401)
  })

  t.test('POST /events validates the body', async (t) => {
    for (const body of [{}, { name: '', total_quota: 1 }, { name: 'x', total_quota: 0 }, { name: 'x', total_quota: -5 }, { name: 'x', total_quota: 1.5 }, { name: 'x'.repeat(201), total_quota: 1 }, { name: 'x', total_quota: 1, available_quota: 9 }, { name: 'a\u0000b', total_quota: 1 }, { name: '   ', total_quota: 1 }, { name: 'tab\there', total_quota: 1 }]) {
      const res = await request(base, 'POST', '/events', { json: body, headers: admin })
      t.equal(res.status, 400, JSON.stringify(body).slice(0, 80))
    }
  })

  t.test('GET /events lists events with their seats', async (t) => {
    const res = await request(base, 'GET', '/events')
    t.equal(res.status, 200)
    t.ok(res.body.events.some((e: { name: string }) => e.name === 'Jazz Night'))
  })

  t.test('GET /events/:id shows one event, 404 when unknown, 400 when not a uuid', async (t) => {
    const created = await request(base, 'POST', '/events', { json: { name: 'Opera', total_quota: 10 }, headers: admin })
    const res = await request(base, 'GET', `/events/${created.body.id}`)
    t.equal(res.status, 200)
    t.match(res.body, { id: created.body.id, name: 'Opera', total_quota: 10, available_quota: 10, sold: 0 })
    t.equal((await request(base, 'GET', '/events/0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e')).status, 404)
    t.equal((await request(base, 'GET', '/events/opera')).status, 400)
    t.equal((await request(base, 'GET', `/events/urn:uuid:${created.body.id}`)).status, 400)
  })
})

t.test('with no ADMIN_TOKEN configured, creating events is refused, never open', async (t) => {
  const { db, boss } = await createTestDatabase(t)
  const { base } = await startTestApp(t, { db, boss }, { adminToken: undefined })
  const res = await request(base, 'POST', '/events', { json: { name: 'Open?', total_quota: 1 }, headers: admin })
  t.equal(res.status, 401)
  t.equal(res.body.code, 'ADMIN_DISABLED')
  const rows = await db.selectFrom('events').select('id').execute()
  t.equal(rows.length, 0)
})
