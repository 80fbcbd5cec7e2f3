import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import t from 'tap'
import { poolOptions } from '../../app/service.ts'
import { closeDb, createDb } from '../../db/client.ts'
import { CHANGE_NUMBER } from '../../purchase/webhook-messages.ts'
import { BOOKING_STATUS } from '../../purchase/vocabulary.ts'
import { ensureWebhookQueues, webhookRetryLimit, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE } from '../../worker/webhook-queue.ts'
import { DELIVERY_TIMEOUT_MS } from '../../worker/webhook-send.ts'
import { DELIVERIES_IN_FLIGHT_PER_ENDPOINT, startWebhookLoops } from '../../worker/webhooks.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase, type TestContext, type TestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { silentLog } from '../fixtures/log.ts'
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.ts'

// Webhooks end to end: the admin routes, the triggers' outbox, the dispatcher, the delivery workers
// and a real HTTP receiver that verifies each message with the `standardwebhooks` package.

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const API_STATUS_OF = Object.fromEntries(Object.values(BOOKING_STATUS).map((s) => [s.toLowerCase(), s]))

interface Teardown { teardown: (fn: () => unknown) => void }

/** The dispatcher and delivery workers as the worker process runs them, on a pool of their own; stopped at teardown. */
async function startTestWebhooks (t: Teardown, database: TestDatabase, { retryDelayS = 1, allowPrivateNetworks = true } = {}): Promise<void> {
  const db = createDb(poolOptions('webhooks', database.url, { DB_POOL_MAX: 10, DB_CONNECT_TIMEOUT_S: 5, DB_ACQUIRE_TIMEOUT_MS: 1000, DB_STATEMENT_TIMEOUT_MS: 30_000 }))
  await ensureWebhookQueues(database.boss, retryDelayS)
  const loops = await startWebhookLoops({ db, boss: database.boss, log: silentLog, allowPrivateNetworks })
  t.teardown(async () => {
    await loops.stop()
    await closeDb(db)
  })
}

/** A database, a receiver, the API with its worker, and the webhook loops (retries after 1 s) unless `loops` is false. */
async function startWebhookService (t: TestContext, { allowPrivateNetworks = true, loops = true } = {}):
  Promise<{ database: TestDatabase, receiver: WebhookReceiver, base: string }> {
  const database = await createTestDatabase(t)
  const receiver = await startWebhookReceiver(t)
  const { base } = await startTestApp(t, database, { worker: true, webhookAllowPrivateNetworks: allowPrivateNetworks })
  if (loops) await startTestWebhooks(t, database, { allowPrivateNetworks })
  return { database, receiver, base }
}

async function register (base: string, body: Record<string, unknown>): Promise<{ id: string, secret: string }> {
  const res = await request(base, 'POST', '/webhooks', { json: body, headers: admin })
  if (res.status !== 201) throw new Error(`registering a webhook: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

async function createEvent (base: string, body: Record<string, unknown>): Promise<string> {
  const res = await request(base, 'POST', '/events', { json: { name: 'Webhooks', ...body }, headers: admin })
  if (res.status !== 201) throw new Error(`creating an event: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.id
}

/** Buys one seat and waits for its decision (held counts); the booking as its buyer reads it. */
async function buyDecided (base: string, eventId: string): Promise<{ id: string, userId: string, status: string }> {
  const userId = newUserId()
  const res = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: userId, quantity: 1 } })
  const id = res.body.booking_id as string
  const view = await waitFor(async () => {
    const read = await request(base, 'GET', `/bookings/${id}?user_id=${userId}&wait=5`)
    return read.body.status === 'pending' ? undefined : read.body
  }, { what: `booking ${id} decided` })
  return { id, userId, status: view.status }
}

/** Waits until `receiver` has `n` distinct verified messages, then a moment more to catch any extra one. */
async function verifiedMessages (receiver: WebhookReceiver, secret: string, n: number, { timeoutMs = 30_000, path = '/hooks' } = {}): Promise<Map<string, any>> {
  await waitFor(async () => receiver.verified(secret, path).size >= n ? true : undefined, { timeoutMs, what: `${n} verified messages` })
  await sleep(500)
  return receiver.verified(secret, path)
}

t.test('retries go on for at least a day, whatever the first delay', async (t) => {
  for (const delay of [1, 10, 60, 3600]) {
    const retries = webhookRetryLimit(delay)
    let shortest = 0
    for (let n = 1; n <= retries; n++) shortest += Math.min(3600, delay * 2 ** (n - 1))
    t.ok(shortest >= 24 * 3600, `first delay ${delay} s: ${retries} retries, at least ${Math.round(shortest / 3600)} h`)
    t.ok(retries <= 60, 'and a bounded number of them')
  }
})

t.test('registering endpoints: admin only, checked, secret shown once', async (t) => {
  const database = await createTestDatabase(t)
  const open = await startTestApp(t, database, { webhookAllowPrivateNetworks: true })
  const strict = await startTestApp(t, database, { webhookAllowPrivateNetworks: false })

  t.equal((await request(open.base, 'POST', '/webhooks', { json: { url: 'https://example.com/' } })).status, 401, 'no token: 401')
  t.equal((await request(open.base, 'GET', '/webhooks')).status, 401, 'listing needs it too')

  const res = await request(open.base, 'POST', '/webhooks', { json: { url: 'http://127.0.0.1:9/hooks' }, headers: admin })
  t.equal(res.status, 201)
  t.match(res.body, { id: /^[0-9a-f-]{36}$/, url: 'http://127.0.0.1:9/hooks', secret: /^whsec_[A-Za-z0-9+/]{43}=$/, created_at: String })
  t.same(res.body.events, ['booking.success', 'booking.failed', 'booking.held', 'booking.expired', 'booking.cancelled'], 'every type by default')
  t.equal(res.headers.get('location'), `/webhooks/${res.body.id}`)
  const listed = await request(open.base, 'GET', '/webhooks', { headers: admin })
  t.equal(listed.status, 200)
  t.same(listed.body.webhooks.map((w: any) => w.id), [res.body.id])
  t.notOk('secret' in listed.body.webhooks[0], 'the list does not show the secret')
  t.equal(listed.body.webhooks[0].disabled_at, null)

  const refused = async (base: string, body: unknown, code = 'WEBHOOK_URL_REFUSED'): Promise<string> => {
    const answer = await request(base, 'POST', '/webhooks', { json: body, headers: admin })
    t.equal(answer.status, code === 'FST_ERR_VALIDATION' ? 400 : answer.status, `${JSON.stringify(body)}: ${answer.status}`)
    t.equal(answer.status < 500, true, 'never a 5xx')
    if (code !== 'FST_ERR_VALIDATION') t.match(answer.body, { statusCode: 400, code })
    else t.equal(answer.body.statusCode, 400)
    return answer.body.message
  }
  t.match(await refused(open.base, { url: 'ftp://example.com/' }), /https:\/\/ or http:\/\//)
  t.match(await refused(open.base, { url: 'not a url' }), /absolute URL/)
  t.match(await refused(open.base, { url: 'https://user:pass@example.com/' }), /user name or password/)
  const unresolved = await request(strict.base, 'POST', '/webhooks', { json: { url: 'https://no-such-host.invalid/hooks' }, headers: admin })
  t.equal(unresolved.status, 201, 'a name that does not resolve yet is taken: each delivery checks it again')
  t.equal((await request(strict.base, 'DELETE', `/webhooks/${unresolved.body.id}`, { headers: admin })).status, 204)
  await refused(open.base, { url: 'https://example.com/', events: ['booking.nope'] }, 'FST_ERR_VALIDATION')
  await refused(open.base, { url: 'https://example.com/', events: [] }, 'FST_ERR_VALIDATION')
  await refused(open.base, { url: 'https://example.com/', events: ['booking.held', 'booking.held'] }, 'FST_ERR_VALIDATION')
  await refused(open.base, { url: 'https://example.com/', secret: 'mine' }, 'FST_ERR_VALIDATION')

  // Without WEBHOOK_ALLOW_PRIVATE_NETWORKS: https only, and only public addresses.
  t.match(await refused(strict.base, { url: 'http://example.com/' }), /WEBHOOK_ALLOW_PRIVATE_NETWORKS/)
  for (const host of ['127.0.0.1', 'localhost', '10.1.2.3', '192.168.0.10', '172.16.5.5', '169.254.169.254', '100.64.0.1', '0.0.0.0', '[::1]', '[::ffff:127.0.0.1]', '[fd00:ec2::254]', '[fe80::1]']) {
    t.match(await refused(strict.base, { url: `https://${host}/hooks` }), /not a public address/, `${host} refused`)
  }

  t.equal((await request(open.base, 'DELETE', `/webhooks/${res.body.id}`, { headers: admin })).status, 204, 'deleted')
  t.equal((await request(open.base, 'DELETE', `/webhooks/${res.body.id}`, { headers: admin })).status, 404, 'then unknown')
  t.equal((await request(open.base, 'GET', `/webhooks/${res.body.id}/deliveries`, { headers: admin })).body.code, 'WEBHOOK_NOT_FOUND')
  t.equal((await request(open.base, 'GET', '/webhooks/nope/deliveries', { headers: admin })).status, 400, 'a malformed id: 400')

  // At most 20: the 21st is refused, whoever registers it.
  const many = await Promise.all(Array.from({ length: 22 }, async (_v, i) => await request(open.base, 'POST', '/webhooks', { json: { url: `http://127.0.0.1:9/${i}` }, headers: admin })))
  t.equal(many.filter((r) => r.status === 201).length, 20, '20 registered')
  t.same([...new Set(many.filter((r) => r.status !== 201).map((r) => `${r.status} ${r.body.code}`))], ['409 WEBHOOK_LIMIT_REACHED'])
})

t.test('every outcome of a small sale arrives once per status, signed, and verifies with standardwebhooks', async (t) => {
  const { database, receiver, base } = await startWebhookService(t)
  const all = await register(base, { url: receiver.url })
  const heldOnly = await register(base, { url: `${receiver.url}?only=held`, events: ['booking.held'] })

  // Final at once: two sold, one refused, one of the sold cancelled by its buyer.
  const plain = await createEvent(base, { total_quota: 2 })
  const sold = [await buyDecided(base, plain), await buyDecided(base, plain)]
  const refusedBuy = await buyDecided(base, plain)
  t.same([...sold.map((b) => b.status), refusedBuy.status], ['success', 'success', 'failed'])
  const cancelled = sold[0] as { id: string, userId: string }
  t.equal((await request(base, 'DELETE', `/bookings/${cancelled.id}?user_id=${cancelled.userId}`)).status < 300, true, 'cancellation asked')
  await waitFor(async () => (await request(base, 'GET', `/bookings/${cancelled.id}?user_id=${cancelled.userId}`)).body.status === 'cancelled' ? true : undefined, { what: 'cancelled' })

  // Holds: one confirmed, one left to expire. The confirmed one holds long enough for a loaded
  // machine to confirm it in time; the other expires a second after its decision.
  const holding = await createEvent(base, { total_quota: 1, hold_seconds: 600 })
  const expiring = await createEvent(base, { total_quota: 1, hold_seconds: 1 })
  const held = [await buyDecided(base, holding), await buyDecided(base, expiring)]
  t.same(held.map((b) => b.status), ['held', 'held'])
  t.equal((await request(base, 'POST', `/bookings/${held[0]?.id}/confirm`, { headers: admin, json: { payment_reference: 'pay_1' } })).status, 200, 'confirmed')
  await waitFor(async () => (await request(base, 'GET', `/bookings/${held[1]?.id}`, { headers: admin })).body.status === 'expired' ? true : undefined, { what: 'the other hold expired' })

  const expected = new Map<string, string[]>([
    [sold[0]?.id as string, ['success', 'cancelled']],
    [sold[1]?.id as string, ['success']],
    [refusedBuy.id, ['failed']],
    [held[0]?.id as string, ['held', 'success']],
    [held[1]?.id as string, ['held', 'expired']]
  ])
  const wanted = [...expected].flatMap(([id, statuses]) => statuses.map((status) => `msg_${id}_${status}`)).sort()
  const messages = await verifiedMessages(receiver, all.secret, wanted.length)
  const toAll = receiver.received.filter((r) => r.path === '/hooks')
  t.same([...new Set(toAll.map((r) => r.headers['webhook-id']))].sort(), wanted, 'one message per status each booking reached, nothing else')
  t.equal(toAll.length, wanted.length, 'each delivered once (the receiver answered 200 each time)')
  for (const [id, message] of messages) {
    const { type, timestamp, data } = message
    t.equal(type, `booking.${data.status}`, `${id}: type`)
    t.equal(id, `msg_${data.booking_id}_${data.status}`, `${id}: id`)
    t.ok(!Number.isNaN(Date.parse(timestamp)), `${id}: timestamp`)
    t.equal(data.change_number, CHANGE_NUMBER[API_STATUS_OF[data.status] as keyof typeof CHANGE_NUMBER], `${id}: change number`)
    t.match(data, { booking_id: String, event_id: String, user_id: String, quantity: 1, position: null, estimated_wait_ms: null })
  }
  const confirmedMessage = messages.get(`msg_${held[0]?.id}_success`)
  t.equal(confirmedMessage.data.payment_reference, 'pay_1', 'a confirmation reports its payment reference')
  t.ok(confirmedMessage.data.confirmed_at !== null && messages.get(`msg_${held[0]?.id}_held`).data.confirmed_at === null, 'each message shows the booking as it was then')
  t.ok(messages.get(`msg_${held[0]?.id}_success`).data.change_number > messages.get(`msg_${held[0]?.id}_held`).data.change_number, 'later changes have larger numbers')
  t.equal(messages.get(`msg_${refusedBuy.id}_failed`).data.reason, 'sold_out')

  // The endpoint that asked for holds only got the two holds.
  const toHeldOnly = receiver.received.filter((r) => r.path === '/hooks?only=held')
  t.same(toHeldOnly.map((r) => r.headers['webhook-id']).sort(), [`msg_${held[0]?.id}_held`, `msg_${held[1]?.id}_held`].sort())
  t.equal(receiver.verified(heldOnly.secret, '/hooks?only=held').size, 2, 'signed with its own secret')
  t.throws(() => receiver.verified(heldOnly.secret, '/hooks'), 'another endpoint\'s secret does not verify')

  const log = await request(base, 'GET', `/webhooks/${all.id}/deliveries`, { headers: admin })
  t.equal(log.status, 200)
  t.equal(log.body.deliveries.length, wanted.length, 'every attempt logged')
  t.ok(log.body.deliveries.every((d: any) => d.status_code === 200 && d.attempt === 1 && d.error === null && d.response_excerpt === 'ok'), 'all answered 200 at the first attempt')
  const { rows: [outbox] } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM webhook_outbox`.execute(database.db)
  t.equal(outbox?.n, 0, 'the outbox is empty once dispatched')
})

t.test('a receiver that answers 500 for a while, then times out once, gets every message when it recovers', async (t) => {
  const { receiver, base } = await startWebhookService(t)
  const endpoint = await register(base, { url: receiver.url, events: ['booking.success', 'booking.failed'] })

  let down = true
  let slowOnce = true
  receiver.answer(() => {
    if (down) return { status: 500 }
    if (slowOnce) {
      slowOnce = false
      return { status: 200, delayMs: 6000 }
    }
    return { status: 200 }
  })
  const eventId = await createEvent(base, { total_quota: 4 })
  const bookings = []
  for (let i = 0; i < 8; i++) bookings.push(await buyDecided(base, eventId))
  await waitFor(async () => receiver.received.length >= 16 ? true : undefined, { what: 'each message refused at least twice' })
  down = false

  const messages = await verifiedMessages(receiver, endpoint.secret, 8, { timeoutMs: 45_000 })
  t.same([...messages.keys()].sort(), bookings.map((b) => `msg_${b.id}_${b.status}`).sort(), 'every message arrived')
  // A batch's attempts are logged once its slowest has ended.
  const log = await waitFor(async () => {
    const deliveries = (await request(base, 'GET', `/webhooks/${endpoint.id}/deliveries?limit=1000`, { headers: admin })).body.deliveries
    return deliveries.filter((d: any) => d.status_code === 200).length >= 8 ? deliveries : undefined
  }, { what: 'every delivery logged' })
  t.ok(log.filter((d: any) => d.status_code === 500).length >= 16, 'the 500s are in the log')
  t.ok(log.some((d: any) => d.status_code === null && /no answer within 5000 ms/.test(d.error)), 'and the timeout')
  t.ok(log.filter((d: any) => d.status_code === 200).every((d: any) => d.attempt > 1), 'each delivered at a retry')
  t.equal(log[0].response_excerpt !== undefined, true)
  const endpoints = (await request(base, 'GET', '/webhooks', { headers: admin })).body.webhooks
  t.equal(endpoints[0].disabled_at, null, 'a failing receiver is not disabled: it is retried')
})

t.test('a receiver that never answers holds its own share of deliveries; the other endpoint gets everything meanwhile', async (t) => {
  const { database, receiver, base } = await startWebhookService(t, { loops: false })
  await register(base, { url: `${receiver.url}?stuck`, events: ['booking.success'] })
  const healthy = await register(base, { url: receiver.url, events: ['booking.success'] })
  // Answers after the sender has given up: an attempt to it always times out.
  receiver.answer((req) => req.path.endsWith('?stuck') ? { status: 200, delayMs: DELIVERY_TIMEOUT_MS + 3000 } : { status: 200 })
  // Messages for both queued before delivery starts, so both endpoints' jobs are there at once,
  // more of each than one endpoint may have open.
  const messages = DELIVERIES_IN_FLIGHT_PER_ENDPOINT + 50
  const eventId = await createEvent(base, { total_quota: messages })
  const bookings = await Promise.all(Array.from({ length: messages }, async () => await buyDecided(base, eventId)))
  t.ok(bookings.every((b) => b.status === 'success'))
  await startTestWebhooks(t, database)

  await verifiedMessages(receiver, healthy.secret, messages, { path: '/hooks' })
  // Read off the receiver's clock: what arrived before the first attempt to the silent one could
  // have timed out, however long the test then took to look.
  const toStuck = receiver.received.filter((r) => r.path.endsWith('?stuck'))
  const firstTimeout = Math.min(...toStuck.map((r) => r.at)) + DELIVERY_TIMEOUT_MS
  const openAtOnce = toStuck.filter((r) => r.at < firstTimeout).length
  t.ok(openAtOnce > 0 && openAtOnce <= DELIVERIES_IN_FLIGHT_PER_ENDPOINT,
    `at most ${DELIVERIES_IN_FLIGHT_PER_ENDPOINT} requests open to the silent receiver at once (${openAtOnce})`)
  const lastHealthy = Math.max(...receiver.received.filter((r) => r.path === '/hooks').map((r) => r.at))
  t.ok(lastHealthy < firstTimeout, `the other endpoint got all ${messages} before any attempt to the silent one had timed out (${firstTimeout - lastHealthy} ms to spare)`)
})

t.test('an endpoint deleted while attempts to it are open: delivery to the others goes on', async (t) => {
  const { receiver, base } = await startWebhookService(t)
  const doomed = await register(base, { url: `${receiver.url}?doomed`, events: ['booking.success'] })
  const kept = await register(base, { url: receiver.url, events: ['booking.success'] })
  receiver.answer((req) => req.path.endsWith('?doomed') ? { status: 200, delayMs: DELIVERY_TIMEOUT_MS + 1000 } : { status: 200 })
  const eventId = await createEvent(base, { total_quota: 10 })
  await buyDecided(base, eventId)
  await waitFor(async () => receiver.received.some((r) => r.path.endsWith('?doomed')) ? true : undefined, { what: 'an attempt open to the doomed endpoint' })
  // Its attempt ends after this, and its log row would name an endpoint that is gone.
  t.equal((await request(base, 'DELETE', `/webhooks/${doomed.id}`, { headers: admin })).status, 204)
  await sleep(DELIVERY_TIMEOUT_MS + 500)
  const later = await buyDecided(base, eventId)
  const messages = await verifiedMessages(receiver, kept.secret, 2, { path: '/hooks' })
  t.ok(messages.has(`msg_${later.id}_success`), 'a message queued after the doomed attempt ended was delivered')
})

t.test('a message refused at its last attempt goes to the dead-letter queue, kept for the operator', async (t) => {
  const { database, receiver, base } = await startWebhookService(t)
  const endpoint = await register(base, { url: receiver.url, events: ['booking.success'] })
  receiver.answer(() => ({ status: 500 }))
  const booking = await buyDecided(base, await createEvent(base, { total_quota: 10 }))
  const messageId = `msg_${booking.id}_success`
  const retryLimit = await waitFor(async () => {
    const { rows: [job] } = await sql<{ state: string, retry_limit: number }>`SELECT state, retry_limit FROM pgboss.job WHERE name = ${WEBHOOK_QUEUE}`.execute(database.db)
    return job?.state === 'retry' ? job.retry_limit : undefined
  }, { what: 'the first attempt refused' })
  t.equal(retryLimit, webhookRetryLimit(1), 'tried again as many times as a day of waits takes')
  // The day of retries, skipped: the job is put before its last attempt, due now (pg-boss counts
  // the attempt when it hands the job out again).
  await sql`UPDATE pgboss.job SET retry_count = retry_limit - 1, start_after = now() WHERE name = ${WEBHOOK_QUEUE} AND state = 'retry'`.execute(database.db)
  const dead = await waitFor(async () => {
    const { rows } = await sql<{ data: { message_id: string, endpoint_id: string } }>`SELECT data FROM pgboss.job WHERE name = ${WEBHOOK_DEAD_LETTER_QUEUE}`.execute(database.db)
    return rows.length > 0 ? rows : undefined
  }, { what: 'the message dead-lettered' })
  t.equal(dead.length, 1)
  t.match(dead[0]?.data, { message_id: messageId, endpoint_id: endpoint.id }, 'the dead letter names the message and its endpoint')
  const { rows: [failed] } = await sql<{ state: string }>`SELECT state FROM pgboss.job WHERE name = ${WEBHOOK_QUEUE}`.execute(database.db)
  t.equal(failed?.state, 'failed', 'the delivery job itself ended failed, not retried again')
  const log = (await request(base, 'GET', `/webhooks/${endpoint.id}/deliveries`, { headers: admin })).body.deliveries
  t.ok(log.some((d: any) => d.message_id === messageId && d.attempt === retryLimit + 1 && d.status_code === 500), 'the last attempt is logged with its number')
  const before = receiver.received.length
  await sleep(2500)
  t.equal(receiver.received.length, before, 'and nothing is sent after it')
})

t.test('a 410 disables the endpoint; a deleted endpoint gets nothing more', async (t) => {
  const { database, receiver, base } = await startWebhookService(t)
  const gone = await register(base, { url: `${receiver.url}?gone`, events: ['booking.success'] })
  const kept = await register(base, { url: receiver.url, events: ['booking.success'] })
  receiver.answer((req) => ({ status: req.path.endsWith('?gone') ? 410 : 200 }))
  const eventId = await createEvent(base, { total_quota: 10 })
  await buyDecided(base, eventId)
  await waitFor(async () => {
    const list = (await request(base, 'GET', '/webhooks', { headers: admin })).body.webhooks
    return list.find((w: any) => w.id === gone.id)?.disabled_at !== null ? list : undefined
  }, { what: 'the endpoint disabled' })
  const list = (await request(base, 'GET', '/webhooks', { headers: admin })).body.webhooks
  t.match(list.find((w: any) => w.id === gone.id), { disabled_reason: /410 Gone/ })
  await verifiedMessages(receiver, kept.secret, 1)

  const before = receiver.received.filter((r) => r.path.endsWith('?gone')).length
  t.equal((await request(base, 'DELETE', `/webhooks/${kept.id}`, { headers: admin })).status, 204)
  for (let i = 0; i < 3; i++) await buyDecided(base, eventId)
  await sleep(1500)
  t.equal(receiver.received.filter((r) => r.path.endsWith('?gone')).length, before, 'the disabled endpoint gets nothing more')
  t.equal(receiver.received.filter((r) => r.path === '/hooks').length, 1, 'the deleted one neither')
  const { rows: [queued] } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM webhook_outbox`.execute(database.db)
  t.equal(queued?.n, 0, 'with no endpoint listening, no message is even recorded')
})

t.test('a URL that resolves to a private address by delivery time is refused then, not called', async (t) => {
  const { database, receiver, base } = await startWebhookService(t, { allowPrivateNetworks: false })
  // As if a public name had been registered and later pointed at the service's own network.
  const id = '0190d8a2-1c3e-7a4b-9f00-5e1a2b3c4d5e'
  await sql`INSERT INTO webhook_endpoints (id, url, event_types, secret) VALUES (${id}, ${receiver.url.replace('http:', 'https:')}, ${['booking.success']}::text[], 'whsec_AAAA')`.execute(database.db)
  const eventId = await createEvent(base, { total_quota: 10 })
  await buyDecided(base, eventId)
  const log = await waitFor(async () => {
    const deliveries = (await request(base, 'GET', `/webhooks/${id}/deliveries`, { headers: admin })).body.deliveries
    return deliveries.length > 0 ? deliveries : undefined
  }, { what: 'an attempt logged' })
  t.match(log[0], { status_code: null, error: /^refused: 127\.0\.0\.1 resolves to 127\.0\.0\.1 \(loopback\), not a public address/ })
  t.equal(receiver.received.length, 0, 'the receiver was never called')
  const { rows: [job] } = await sql<{ state: string }>`SELECT state FROM pgboss.job WHERE name = ${WEBHOOK_QUEUE}`.execute(database.db)
  t.ok(job?.state === 'retry' || job?.state === 'active', `and it is tried again later, not given up (the name may point elsewhere by then): ${job?.state}`)
})
