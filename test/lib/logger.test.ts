import { Writable } from 'node:stream'
import t from 'tap'
import { metricsSources } from '../../app/metrics-sources.ts'
import { createLogger } from '../../lib/logger.ts'
import { createMetrics } from '../../lib/metrics.ts'
import { buildApp } from '../../server/app.ts'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'

t.test('request logs keep the path but not the query: ?user_id= proves who owns a booking', async (t) => {
  const database = await createTestDatabase(t)
  let logged = ''
  const destination = new Writable({ write (chunk: Buffer, _encoding, done) { logged += chunk.toString(); done() } })
  const log = createLogger({ LOG_LEVEL: 'info' }, { pretty: false, destination })
  const app = await buildApp({
    db: database.db,
    boss: database.boss,
    log,
    metrics: createMetrics(metricsSources({ pools: { api: database.db }, db: database.db, boss: database.boss })),
    config: {
      ADMIN_TOKEN, QUEUE_CAPACITY: 1000, INTAKE_BATCH_MAX: 10, INTAKE_BATCH_WAIT_MS: 0, DB_POOL_MAX: 4,
      RATE_LIMIT_PER_IP_PER_MINUTE: 0, BUY_LIMIT_PER_USER_PER_MINUTE: 0, TRUST_PROXY_HOPS: 0, MAX_EVENT_LOOP_DELAY_MS: 0,
      BUYER_AUTH: 'none', BUYER_JWT_JWKS_COOLDOWN_MS: 30_000, WEBHOOK_ALLOW_PRIVATE_NETWORKS: false
    }
  })
  t.teardown(async () => { await app.close() })
  const secret = newUserId()
  const bookingId = '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e'
  const res = await app.inject({ method: 'GET', url: `/bookings/${bookingId}?user_id=${secret}&wait=0`, headers: { authorization: 'Bearer not-the-admin-token-at-all' } })
  t.equal(res.statusCode, 401)
  const lines = logged.trim().split('\n').map((line) => JSON.parse(line) as { msg?: string, req?: { url?: string } })
  const incoming = lines.find((line) => line.msg === 'incoming request')
  t.equal(incoming?.req?.url, `/bookings/${bookingId}`, 'the path is logged')
  t.notOk(logged.includes(secret), 'the user_id is nowhere in the logs')
  t.notOk(logged.includes('not-the-admin-token-at-all'), 'nor the token sent')
})
