import t from 'tap'
import { sql } from 'kysely'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request } from '../fixtures/http.ts'

t.test('rate limits: per client address on every route, per user on POST /buy; 429 with Retry-After, nothing stored', async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const eventId = await createEvent(db, 100)
  const bookings = async (): Promise<number> => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM bookings`.execute(db)).rows[0]?.n)

  t.test('one address: the 6th request in a minute is a 429, on any route', async (t) => {
    const { base } = await startTestApp(t, database, { rateLimitPerIpPerMinute: 5 })
    for (let i = 0; i < 5; i++) t.equal((await request(base, 'GET', '/events')).status, 200, `request ${i + 1}`)
    const before = await bookings()
    const refused = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })
    t.equal(refused.status, 429)
    t.match(refused.body, { statusCode: 429, error: 'Too Many Requests', code: 'RATE_LIMITED', message: /at most 5 a minute/ })
    t.ok(Number(refused.headers.get('retry-after')) >= 1, `Retry-After: ${refused.headers.get('retry-after')}`)
    t.equal(await bookings(), before, 'nothing stored')
    t.equal((await request(base, 'GET', '/health')).status, 429, 'every route counts')
  })

  t.test('guessing the admin token is rate-limited like everything else', async (t) => {
    const { base } = await startTestApp(t, database, { rateLimitPerIpPerMinute: 3 })
    const guess = { authorization: 'Bearer not-the-admin-token-000' }
    for (let i = 0; i < 3; i++) t.equal((await request(base, 'GET', '/admin/invariants', { headers: guess })).status, 401, `guess ${i + 1}`)
    const fourth = await request(base, 'POST', '/events', { json: { name: 'x', total_quota: 1 }, headers: guess })
    t.equal(fourth.status, 429, 'the fourth guess in a minute is refused before the token is even compared')
  })

  t.test('behind a proxy (TRUST_PROXY_HOPS=1), each client address has its own allowance, and a forged X-Forwarded-For gains nothing', async (t) => {
    const { base } = await startTestApp(t, database, { rateLimitPerIpPerMinute: 2, trustProxyHops: 1 })
    const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
    t.equal((await request(base, 'GET', '/events', { headers: from('203.0.113.1') })).status, 200)
    t.equal((await request(base, 'GET', '/events', { headers: from('203.0.113.1') })).status, 200)
    t.equal((await request(base, 'GET', '/events', { headers: from('203.0.113.1') })).status, 429, 'the third from one client')
    t.equal((await request(base, 'GET', '/events', { headers: from('203.0.113.2') })).status, 200, 'another client is not affected')
    // A client writing its own X-Forwarded-For: the proxy appends the address it saw, and only
    // that last entry is trusted, so the forged ones to its left change nothing.
    t.equal((await request(base, 'GET', '/events', { headers: from('10.9.9.9, 203.0.113.1') })).status, 429, 'a forged entry in front does not give a fresh allowance')
  })

  t.test('one user_id: the 4th purchase in a minute is a 429, whatever the address, with the per-address limit on too; other users buy on', async (t) => {
    const { base } = await startTestApp(t, database, { buyLimitPerUserPerMinute: 3, rateLimitPerIpPerMinute: 1000, trustProxyHops: 1 })
    const user = newUserId()
    for (let i = 0; i < 3; i++) {
      const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: user }, headers: { 'x-forwarded-for': `198.51.100.${i}` } })
      t.equal(res.status, 202, `purchase ${i + 1}: ${JSON.stringify(res.body)}`)
    }
    const before = await bookings()
    const refused = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: user.toUpperCase() }, headers: { 'x-forwarded-for': '198.51.100.99' } })
    t.equal(refused.status, 429, 'the same user, in upper case, from a fourth address')
    t.equal(refused.body.code, 'RATE_LIMITED')
    t.ok(refused.headers.get('retry-after') !== null, 'Retry-After')
    t.equal(await bookings(), before, 'nothing stored')
    t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() } })).status, 202, 'another user is not affected')
    t.equal((await request(base, 'GET', '/events')).status, 200, 'nor are other routes')
  })
})

t.test('security headers on every answer, errors included', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  for (const [method, path] of [['GET', '/events'], ['GET', '/nope'], ['POST', '/buy']] as const) {
    const res = await request(base, method, path, method === 'POST' ? { json: {} } : {})
    t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${method} ${path}: nosniff`)
    t.equal(res.headers.get('x-frame-options'), 'DENY', `${method} ${path}: no framing`)
    t.match(res.headers.get('content-security-policy'), /default-src 'none'/, `${method} ${path}: CSP`)
    t.equal(res.headers.get('referrer-policy'), 'no-referrer', `${method} ${path}: no referrer`)
    t.match(res.headers.get('strict-transport-security'), /max-age=\d+/, `${method} ${path}: HSTS`)
  }
})
