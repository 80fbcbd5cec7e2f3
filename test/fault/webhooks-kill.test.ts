// The worker process killed with SIGKILL while it delivers webhooks: every message still arrives.
// Real processes (`npm run server`, `npm run worker` entry points), a real database, a real receiver.
import { sql } from 'kysely'
import { PgBoss } from 'pg-boss'
import t from 'tap'
import { PGBOSS_SCHEMA } from '../../db/pgboss-tables.ts'
import { WEBHOOK_QUEUE } from '../../worker/webhook-queue.ts'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { startService } from '../fixtures/service.ts'
import { startWebhookReceiver } from '../fixtures/webhook-receiver.ts'

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

t.test('a worker killed mid-delivery loses no message: the next one delivers what it held', { timeout: 150_000 }, async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const receiver = await startWebhookReceiver(t)
  const env = { DATABASE_URL: database.url, ADMIN_TOKEN, WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_RETRY_DELAY_S: '1' }
  const api = await startService(t, 'api', env)
  const registered = await request(api.base, 'POST', '/webhooks', { json: { url: receiver.url }, headers: admin })
  t.equal(registered.status, 201)
  const { secret } = registered.body

  // The receiver is slow (1.5 s an answer), so the worker is killed with deliveries in flight.
  receiver.answer(() => ({ status: 200, delayMs: 1500 }))
  const worker = await startService(t, 'worker', env)
  const eventId = (await request(api.base, 'POST', '/events', { json: { name: 'Webhook kill', total_quota: 60 }, headers: admin })).body.id as string
  const bought = await mapConcurrent(Array.from({ length: 100 }), 10, async () =>
    (await request(api.base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId(), quantity: 1 } })).body.booking_id as string)
  await waitFor(async () => receiver.inFlight >= 10 ? true : undefined, { timeoutMs: 30_000, what: 'deliveries in flight' })
  worker.child.kill('SIGKILL')
  t.equal((await worker.exited).signal, 'SIGKILL', 'killed')
  const inFlightAtKill = receiver.received.length
  receiver.answer(() => ({ status: 200 }))

  // Its deliveries stay active until they expire (15 s); pg-boss's supervision then puts them
  // back. The service's runs every minute; the test's own pg-boss runs the same pass every second.
  const supervisor = new PgBoss({
    connectionString: database.url, schema: PGBOSS_SCHEMA, supervise: false, schedule: false, migrate: false, monitorIntervalSeconds: 1, max: 1
  })
  supervisor.on('error', () => {})
  await supervisor.start()
  t.teardown(async () => { await supervisor.stop({ graceful: false, close: true }) })
  await startService(t, 'worker', env)
  await waitFor(async () => {
    await supervisor.supervise(WEBHOOK_QUEUE)
    const { rows: pending } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM bookings WHERE event_id = ${eventId} AND status = 'PENDING'`.execute(db)
    return pending[0]?.n === 0 && receiver.verified(secret).size >= bought.length ? true : undefined
  }, { timeoutMs: 90_000, intervalMs: 1000, what: 'every message delivered after the kill' })

  const { rows: finalStatuses } = await sql<{ id: string, status: string }>`SELECT id, status FROM bookings WHERE event_id = ${eventId}`.execute(db)
  const wanted = finalStatuses.map((b) => `msg_${b.id}_${b.status.toLowerCase()}`).sort()
  t.same([...receiver.verified(secret).keys()].sort(), wanted, `each of the ${wanted.length} decisions arrived, verified`)
  t.equal(wanted.length, bought.length, 'one message per purchase (each decided once, nothing cancelled)')
  const dropped = receiver.received.filter((r) => r.dropped).length
  t.ok(dropped > 0, `${dropped} deliveries were cut off by the kill (of ${inFlightAtKill} requests then), and delivered again`)
})
