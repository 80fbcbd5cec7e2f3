// `npm run queue-dashboard`: pg-boss's dashboard on the service's database, behind the admin token.
import { createServer, type AddressInfo } from 'node:net'
import t from 'tap'
import { PURCHASE_DEAD_LETTER_QUEUE, PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { ADMIN_TOKEN, startTestWorker } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'
import { enqueuePurchaseJob, jobRows, refuseSuccessfulDecisions } from '../fixtures/jobs.ts'
import { startService } from '../fixtures/service.ts'

const basic = (user: string, password: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` })
const operator = basic('admin', ADMIN_TOKEN)

t.test('it refuses to start without ADMIN_TOKEN or DATABASE_URL, saying why, exit code 1', async (t) => {
  await t.rejects(startService(t, 'queue-dashboard', { DATABASE_URL: 'postgres://127.0.0.1:1/none', ADMIN_TOKEN: '' }),
    /exit code 1\b[\s\S]*ADMIN_TOKEN is required to run the queue dashboard[\s\S]*never served without one/)
  await t.rejects(startService(t, 'queue-dashboard', { DATABASE_URL: '', ADMIN_TOKEN }),
    /exit code 1\b[\s\S]*DATABASE_URL is required to run the queue dashboard/)
})

t.test('when the dashboard cannot start, the launcher exits with its exit code', async (t) => {
  // It connects to the database only when a page asks.
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { await new Promise((resolve) => taken.close(resolve)) })
  const { port } = taken.address() as AddressInfo
  await t.rejects(startService(t, 'queue-dashboard', { DATABASE_URL: 'postgres://127.0.0.1:1/none', ADMIN_TOKEN, QUEUE_DASHBOARD_PORT: String(port) }),
    /exit code 1\b[\s\S]*EADDRINUSE/)
})

t.test('operators see a dead-lettered purchase and retry it, behind the admin token', { timeout: 120_000 }, async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database

  // A purchase whose decision keeps failing: tried twice, then failed and dead-lettered
  // (as in test/worker/settle.test.ts).
  const eventId = await createEvent(db, 5)
  await refuseSuccessfulDecisions(db)
  const id = await enqueuePurchaseJob(database, eventId, { event_id: eventId, user_id: crypto.randomUUID(), quantity: 1 }, { retryLimit: 1 })
  startTestWorker(t, database)
  const jobState = async (): Promise<string | undefined> =>
    (await jobRows(db, { id }))[0]?.state
  await waitFor(async () => await jobState() === 'failed' ? true : undefined, { timeoutMs: 60_000, what: 'the purchase to be given up on' })
  const deadId = await waitFor(async () =>
    (await jobRows(db, { queue: PURCHASE_DEAD_LETTER_QUEUE }))[0]?.id,
  { what: 'its copy in the dead-letter queue' })

  const dashboard = await startService(t, 'queue-dashboard', { DATABASE_URL: database.url, ADMIN_TOKEN })
  const { base } = dashboard

  t.test('every page asks for the admin login', async (t) => {
    for (const path of ['/', '/queues', `/queues/${PURCHASE_QUEUE}?state=failed`, `/queues/${PURCHASE_QUEUE}/jobs/${id}`]) {
      const anonymous = await request(base, 'GET', path)
      t.equal(anonymous.status, 401, `${path} without credentials`)
      t.match(anonymous.headers.get('www-authenticate'), /^Basic /)
      t.equal((await request(base, 'GET', path, { headers: basic('admin', `${ADMIN_TOKEN}x`) })).status, 401, `${path} with a wrong password`)
      t.equal((await request(base, 'GET', path, { headers: basic('root', ADMIN_TOKEN) })).status, 401, `${path} with another user`)
    }
    const home = await request<string>(base, 'GET', '/', { headers: operator })
    t.equal(home.status, 200)
    t.match(home.headers.get('content-type'), /^text\/html/)
  })

  t.test('the purchase queue and its dead-letter queue are listed', async (t) => {
    const queues = await request<string>(base, 'GET', '/queues', { headers: operator })
    t.equal(queues.status, 200)
    t.match(queues.body, `href="/queues/${PURCHASE_QUEUE}"`)
    t.match(queues.body, `href="/queues/${PURCHASE_DEAD_LETTER_QUEUE}"`)
  })

  t.test('the failed job, its error and its dead-letter copy can be seen', async (t) => {
    const failed = await request<string>(base, 'GET', `/queues/${PURCHASE_QUEUE}?state=failed`, { headers: operator })
    t.equal(failed.status, 200)
    t.match(failed.body, `href="/queues/${PURCHASE_QUEUE}/jobs/${id}"`, 'listed among the failed jobs')
    const job = await request<string>(base, 'GET', `/queues/${PURCHASE_QUEUE}/jobs/${id}`, { headers: operator })
    t.equal(job.status, 200, 'its page opens (the schema check patched in patches/@pg-boss+dashboard+1.9.0.patch)')
    t.match(job.body, 'disk on fire', 'with the error it failed with')
    t.match(job.body, eventId, 'and its payload')
    const dead = await request<string>(base, 'GET', `/queues/${PURCHASE_DEAD_LETTER_QUEUE}?state=all`, { headers: operator })
    t.equal(dead.status, 200)
    t.match(dead.body, `href="/queues/${PURCHASE_DEAD_LETTER_QUEUE}/jobs/${deadId}"`, 'the dead-letter copy is listed')
  })

  t.test('a form posted from another site is refused', async (t) => {
    const forged = await request(base, 'POST', `/queues/${PURCHASE_QUEUE}/jobs/${id}`, {
      headers: { ...operator, origin: 'https://attacker.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'intent=retry'
    })
    t.equal(forged.status, 400)
    t.equal(await jobState(), 'failed', 'the job is untouched')
  })

  t.test('retrying it runs it once more, and a purchase already given up on is not decided twice', async (t) => {
    const retried = await request<string>(base, 'POST', `/queues/${PURCHASE_QUEUE}/jobs/${id}`, {
      headers: { ...operator, origin: base, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'intent=retry'
    })
    t.equal(retried.status, 200)
    t.match(retried.body, 'Job queued for retry')
    // The worker (still running) claims it again: its booking is no longer pending, so it is
    // completed as it is.
    await waitFor(async () => await jobState() === 'completed' ? true : undefined, { what: 'the retried job to be completed' })
    const booking = await db.selectFrom('bookings').select(['status', 'reason']).where('id', '=', id).executeTakeFirstOrThrow()
    t.same(booking, { status: 'FAILED', reason: 'error' }, 'the booking keeps its outcome')
    const event = await db.selectFrom('events').select('available_quota').where('id', '=', eventId).executeTakeFirstOrThrow()
    t.equal(event.available_quota, 5, 'no seat taken')
  })

  t.test('SIGTERM stops the dashboard and the launcher, exit code 0, and nothing leaked a secret', async (t) => {
    dashboard.child.kill('SIGTERM')
    t.same(await dashboard.exited, { code: 0, signal: null })
    await t.rejects(fetch(base), 'the port is closed')
    const password = new URL(database.url).password
    const logs = dashboard.lines.join('\n')
    t.notOk(logs.includes(ADMIN_TOKEN), 'no admin token in the logs')
    t.notOk(password !== '' && logs.includes(password), 'no database password in the logs')
    t.match(logs, 'queue dashboard is ready at http://127.0.0.1:')
  })
})
