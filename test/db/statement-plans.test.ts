import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import postgres from 'postgres'
import t from 'tap'
import { closeDb, createDb, type Db } from '../../db/client.ts'
import { isJobTable, JOBS } from '../../db/pgboss-tables.ts'
import { loadConfig } from '../../lib/config.ts'
import { createBoss, PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { poolOptions } from '../../app/service.ts'
import { ensureWebhookQueues } from '../../worker/webhook-queue.ts'
import { startWebhookLoops } from '../../worker/webhooks.ts'
import { startPurchaseWorker, type PurchaseWorker } from '../../worker/worker.ts'
import { startWebhookReceiver } from '../fixtures/webhook-receiver.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { silentLog } from '../fixtures/log.ts'
import { openEventStream } from '../fixtures/sse.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'

// Every statement the service's pools run, as PostgreSQL ran it: auto_explain (loaded into each new
// connection of this test's database) sends each executed statement's plan, with its actual row
// counts and any JIT, to the connection as a notice, and the pools made as the service makes them
// (app/service.ts, poolOptions) hand their notices to the test. The server keeps its own settings,
// but for JIT, on (as PostgreSQL 15 as Debian ships it has it); the tables grow by tens of
// thousands of rows between two sales, their statistics left stale, under plans the pools have
// already cached; then a third sale runs on fresh statistics. Checked by counts, never by time:
// - no statement is JIT-compiled;
// - no plan holds a node its pool's settings disable (before PostgreSQL 18, such a node costs
//   10^10, which passes every JIT threshold; 18 marks it Disabled);
// - on the purchase path, no scan of bookings or of the queue's jobs reads more rows than the sale
//   itself holds, whatever the table holds.
// Some of it can fail only on PostgreSQL 15-17 (JIT, and disabled nodes' costs): CI runs it on 15 too.

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Schema'?: string
  'Total Cost': number
  'Actual Rows'?: number
  'Actual Loops'?: number
  'Rows Removed by Filter'?: number
  'Rows Removed by Index Recheck'?: number
  'Rows Removed by Join Filter'?: number
  'Index Name'?: string
  Disabled?: boolean
  Plans?: PlanNode[]
}

interface ExplainedStatement {
  pool: string
  text: string
  plan: PlanNode
  jitFunctions: number
}

/** A PostgreSQL notice from auto_explain (log_format json): "duration: ... plan:\n{...}". */
function parsePlanNotice (pool: string, message: string): ExplainedStatement | undefined {
  const start = message.indexOf('{')
  if (!message.startsWith('duration:') || start < 0) return undefined
  const explained = JSON.parse(message.slice(start)) as { 'Query Text': string, Plan: PlanNode, JIT?: { Functions?: number } }
  return { pool, text: explained['Query Text'].replace(/\s+/g, ' ').trim(), plan: explained.Plan, jitFunctions: explained.JIT?.Functions ?? 0 }
}

function * nodes (node: PlanNode): Generator<PlanNode> {
  yield node
  for (const child of node.Plans ?? []) yield * nodes(child)
}

// Far above any real plan of ours, far below a disabled node's 10^10 (PostgreSQL 15-17).
const DISABLED_COST = 1e9

const isDisabled = (node: PlanNode): boolean => node.Disabled === true || node['Total Cost'] >= DISABLED_COST

/** Rows a scan node looked at: those it returned and those its filters dropped, over every loop. */
const rowsRead = (node: PlanNode): number =>
  ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * (node['Actual Loops'] ?? 1)

// Tables that grow with every sale: the bookings, and pg-boss's job table (or its partitions).
const growsWithSales = (node: PlanNode): boolean => node['Relation Name'] === 'bookings' || isJobTable(node.Schema, node['Relation Name'])

const short = (text: string): string => text.length > 140 ? `${text.slice(0, 140)}...` : text

/** One line per distinct statement that broke a rule, with its pool and what broke. */
function offenders (statements: readonly ExplainedStatement[], rule: (s: ExplainedStatement) => string | undefined): string[] {
  const found = new Map<string, string>()
  for (const statement of statements) {
    const broken = rule(statement)
    if (broken !== undefined) found.set(`${statement.pool}: ${short(statement.text)}`, broken)
  }
  return [...found].map(([statement, broken]) => `${statement} (${broken})`)
}

const readsOnlyCatalogs = (s: ExplainedStatement): boolean =>
  [...nodes(s.plan)].every((n) => n['Relation Name'] === undefined || n.Schema === 'pg_catalog')

const jitRule = (s: ExplainedStatement): string | undefined => s.jitFunctions > 0 ? `JIT-compiled ${s.jitFunctions} functions` : undefined
// The system catalogs are exempt: they do not grow with sales, and the driver's own lookup of
// array types (postgres.js, once per connection) has no plan but a sequential scan of pg_type. On
// PostgreSQL 15-17 it costs 10^10 on these pools, harmless once JIT is off (the rule above).
const disabledRule = (s: ExplainedStatement): string | undefined => {
  if (readsOnlyCatalogs(s)) return undefined
  const node = [...nodes(s.plan)].find(isDisabled)
  return node === undefined ? undefined : `a disabled ${node['Node Type']}${node['Relation Name'] === undefined ? '' : ` on ${node['Relation Name']}`}, cost ${node['Total Cost']}`
}
const rowsRule = (bound: number) => (s: ExplainedStatement): string | undefined => {
  const scan = [...nodes(s.plan)].find((n) => growsWithSales(n) && rowsRead(n) > bound)
  if (scan !== undefined) return `${scan['Node Type']} on ${scan['Relation Name'] ?? '?'}${scan['Index Name'] === undefined ? '' : ` by ${scan['Index Name']}`} read ${rowsRead(scan)} rows in ${scan['Actual Loops'] ?? 1} loops; plan: ${JSON.stringify(s.plan)}`
  // A nested loop that compares every outer row with every inner one reads no more rows than it
  // holds, but does rows x rows work: its join filter says how much.
  const join = [...nodes(s.plan)].find((n) => (n['Rows Removed by Join Filter'] ?? 0) > bound)
  if (join !== undefined) return `${join['Node Type']} removed ${join['Rows Removed by Join Filter']} rows by its join filter; plan: ${JSON.stringify(s.plan)}`
  return undefined
}

/** Sends `count` purchases of `eventId` from 32 clients; some carry an Idempotency-Key or a deadline. */
async function sell (base: string, eventId: string, count: number): Promise<Array<{ id: string, user: string }>> {
  const bought = await mapConcurrent(Array.from({ length: count }, (_, i) => i), 32, async (i) => {
    const user = randomUUID()
    const res = await request(base, 'POST', '/buy', {
      json: { event_id: eventId, user_id: user, quantity: 1 + (i % 2), ...(i % 5 === 0 ? { max_wait_seconds: 60 } : {}) },
      headers: i % 3 === 0 ? { 'idempotency-key': `key-${i}` } : {}
    })
    if (res.status !== 202 && res.status !== 200) throw new Error(`POST /buy answered ${res.status}: ${JSON.stringify(res.body)}`)
    return { id: (res.body as { booking_id: string }).booking_id, user }
  })
  return bought
}

/** What buyers do next: read their bookings back (some with ?wait=; 500 of them at most), and a few cancel. */
async function followAndCancel (base: string, bought: ReadonlyArray<{ id: string, user: string }>): Promise<void> {
  await mapConcurrent(bought.slice(0, 500), 32, async ({ id, user }, i) => {
    const res = await request(base, 'GET', `/bookings/${id}?user_id=${user}${i % 4 === 0 ? '&wait=5' : ''}`)
    if (res.status !== 200) throw new Error(`GET /bookings/${id} answered ${res.status}`)
  })
  for (const { id, user } of bought.slice(0, 10)) await request(base, 'DELETE', `/bookings/${id}?user_id=${user}`)
}

async function settled (db: Db, eventId: string): Promise<true | undefined> {
  const { rows: [row] } = await sql<{ n: string }>`
    SELECT count(*) AS n FROM bookings WHERE event_id = ${eventId}::uuid
      AND (status IN ('PENDING', 'HELD') OR (cancel_requested_at IS NOT NULL AND status = 'SUCCESS'))`.execute(db)
  return Number(row?.n) === 0 ? true : undefined
}

t.test('every statement the API and worker pools run: never JIT-compiled, no disabled plan node, and no scan that grows with the tables', async (t) => {
  const database = await createTestDatabase(t)
  const admin = postgres(database.url, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await admin.end() })
  const [{ superuser, jit }] = await admin<[{ superuser: string, jit: boolean }]>`SELECT current_setting('is_superuser') AS superuser, pg_jit_available() AS jit`
  if (superuser !== 'on') throw new Error('this test loads auto_explain into its database\'s sessions, which needs a superuser: TEST_DATABASE_URL must name one')
  t.comment(`server ${(await admin<[{ v: string }]>`SELECT current_setting('server_version') AS v`)[0].v}, JIT ${jit ? 'available' : 'not built in'}`)
  for (const setting of [
    "session_preload_libraries = 'auto_explain'",
    'auto_explain.log_min_duration = 0', 'auto_explain.log_analyze = on', 'auto_explain.log_timing = off',
    'auto_explain.log_format = json', 'auto_explain.log_verbose = on', 'auto_explain.log_level = notice', 'auto_explain.log_nested_statements = on',
    // On, whatever the server's default: the service's connections must turn it off themselves.
    'jit = on'
  ]) await admin.unsafe(`ALTER DATABASE ${database.name} SET ${setting}`)
  if (!jit) t.comment('this server has no JIT: the first rule cannot fail here; the disabled-node rule still catches its cause')

  const statements: ExplainedStatement[] = []
  const pool = (role: 'api' | 'worker' | 'webhooks'): Db => {
    const db = createDb({
      ...poolOptions(role, database.url, loadConfig({}, { dotenv: false })),
      onNotice: (notice) => {
        const explained = parsePlanNotice(role, String(notice.message))
        if (explained !== undefined) statements.push(explained)
      }
    })
    t.teardown(async () => { await closeDb(db) })
    return db
  }
  const api = pool('api')
  const workerDb = pool('worker')
  const boss = createBoss({ url: database.url, applicationName: 'boxoffice-plans-test-queue', supervise: false, log: silentLog })
  await boss.start()
  t.teardown(async () => { await boss.stop({ graceful: false, close: true }) })
  const { base } = await startTestApp(t, { db: api, boss }, { worker: false, webhookAllowPrivateNetworks: true })
  // A webhook receiver subscribed to every type from the start: the bookings' triggers write the
  // outbox in every statement that changes a status (their statements are captured with the
  // statement that fires them), and the dispatcher and delivery run on their pool as in the worker.
  const receiver = await startWebhookReceiver(t)
  const webhooksDb = pool('webhooks')
  await ensureWebhookQueues(boss, 1)
  const webhooks = await startWebhookLoops({ db: webhooksDb, boss, log: silentLog, allowPrivateNetworks: true })
  t.teardown(webhooks.stop)
  // The worker on its own pool with the service's batch size, started and stopped per sale.
  const runWorker = (): PurchaseWorker => startPurchaseWorker({ db: workerDb, boss, log: silentLog }, { mode: 'batched', batchSize: 4000, idlePollMs: 20 })
  const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` }
  const createEvent = async (body: object): Promise<string> => {
    const res = await request(base, 'POST', '/events', { json: body, headers: asAdmin })
    if (res.status !== 201) throw new Error(`POST /events answered ${res.status}`)
    return (res.body as { id: string }).id
  }
  const sale = async (name: string, seats: number, purchases: number, { backlog, hold }: { backlog: boolean, hold?: number }): Promise<void> => {
    const eventId = await createEvent({ name, total_quota: seats, max_per_user: 2, ...(hold === undefined ? {} : { hold_seconds: hold }) })
    let worker = backlog ? undefined : runWorker()
    const bought = await sell(base, eventId, purchases)
    // A backlog: the worker meets every purchase at once, in batches as large as it takes.
    worker ??= runWorker()
    await followAndCancel(base, bought)
    // With holds: every tenth held purchase confirmed, the rest left to expire (settled waits for both).
    if (hold !== undefined) {
      await mapConcurrent(bought.filter((_b, i) => i % 10 === 0), 10, async ({ id }) =>
        await request(base, 'POST', `/bookings/${id}/confirm`, { headers: asAdmin }))
    }
    await waitFor(async () => await settled(database.db, eventId), { what: `the sale "${name}" to be settled` })
    await worker.stop()
  }

  const registered = await request(base, 'POST', '/webhooks', { json: { url: receiver.url }, headers: asAdmin })
  if (registered.status !== 201) throw new Error(`POST /webhooks answered ${registered.status}`)

  // A sale on small tables: the pools prepare and cache their plans here.
  await sale('First', 150, 400, { backlog: false })

  // The tables grow under those plans, their statistics left stale: 60,000 bookings of another
  // event (a third with idempotency keys), and 20,000 completed purchase jobs (the batched worker
  // deletes the jobs it decides; these are what settling one at a time leaves for a day).
  const other = await createEvent({ name: 'Elsewhere', total_quota: 1_000_000 })
  await sql`
    INSERT INTO bookings (id, event_id, user_id, quantity, status, reason, decided_at, idempotency_key)
    SELECT gen_random_uuid(), ${other}::uuid, gen_random_uuid(), 1, CASE WHEN i % 2 = 0 THEN 'SUCCESS' ELSE 'FAILED' END,
      CASE WHEN i % 2 = 1 THEN 'sold_out' END, now(), CASE WHEN i % 3 = 0 THEN 'key-' || i END
    FROM generate_series(1, 60000) AS i`.execute(database.db)
  await sql`
    INSERT INTO ${JOBS} (id, name, data, state, started_on, completed_on, group_id)
    SELECT gen_random_uuid(), ${PURCHASE_QUEUE}, jsonb_build_object('event_id', ${other}::uuid, 'user_id', gen_random_uuid(), 'quantity', 1),
      'completed', now(), now(), ${other}::text
    FROM generate_series(1, 20000)`.execute(database.db)
  const { rows: [jobs] } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${JOBS} WHERE name = ${PURCHASE_QUEUE}`.execute(database.db)
  t.ok(Number(jobs?.n) >= 20_000, `the job table grew (${jobs?.n ?? 0} purchase jobs)`)
  const grownAt = statements.length

  // The same path again, on plans made before the growth: a backlog of 4,000 (one batch of the
  // worker's size: its claim and outcomes each name 4,000 ids), then, with fresh
  // statistics (every cached plan is made again), a live sale.
  // Its seats held for a second each: decided held, some confirmed, the rest expired by the sweep.
  await sale('Second', 1000, 4000, { backlog: true, hold: 1 })
  await sql`ANALYZE`.execute(database.db)
  await sale('Third', 100, 300, { backlog: false, hold: 1 })

  // What operators and dashboards read: whole tables by nature, so only the first two rules.
  const operatorsFrom = statements.length
  const purchasePath = statements.slice(0, operatorsFrom)
  const afterGrowth = statements.slice(grownAt, operatorsFrom)
  const last = await createEvent({ name: 'Last', total_quota: 10 })
  const hooks = `/webhooks/${(registered.body as { id: string }).id}/deliveries`
  await waitFor(async () => receiver.received.length > 0 ? true : undefined, { what: 'a webhook delivered' })
  for (const path of ['/events', `/events/${last}`, '/admin/invariants', `/admin/invariants?event_id=${last}`, '/admin/failed-purchases', '/metrics', '/health/ready', '/health',
    '/webhooks', hooks]) {
    const res = await request(base, 'GET', path, { headers: asAdmin })
    t.equal(res.status, 200, `GET ${path}`)
  }
  t.equal((await request(base, 'PATCH', `/events/${last}`, { json: { name: 'Last, renamed', total_quota: 12 }, headers: asAdmin })).status, 200, 'PATCH /events/:id')
  t.equal((await request(base, 'POST', `/events/${last}/close`, { headers: asAdmin })).status, 200, 'POST /events/:id/close')
  // Left open, as in the dashboard's own test: closing the app at teardown ends it.
  const stream = await openEventStream(`${base}/dashboard/stream`)
  await stream.next((event) => event.event === 'state')
  const operators = statements.slice(operatorsFrom)

  const roles = new Set(purchasePath.map((s) => s.pool))
  t.ok(roles.has('api') && roles.has('worker') && roles.has('webhooks'), 'plans were captured from every pool')
  t.ok(purchasePath.some((s) => s.text.includes('INSERT INTO webhook_outbox')), 'the triggers\' statements among them')
  t.ok(new Set(purchasePath.map((s) => s.text)).size >= 15, `${new Set(purchasePath.map((s) => s.text)).size} distinct statements on the purchase path`)
  t.ok(afterGrowth.length > 100, `${afterGrowth.length} statements run after the growth`)
  t.ok(operators.length > 0, `${operators.length} statements for operators and dashboards`)

  t.same(offenders(statements, jitRule), [], 'no statement was JIT-compiled')
  t.same(offenders(statements, disabledRule), [], 'no plan holds a node its pool disables')
  // The largest sale holds 4,000 purchases; the tables hold 60,000 more bookings and 20,000 more jobs.
  t.same(offenders(afterGrowth, rowsRule(10_000)), [], 'after the growth, no statement on the purchase path reads or compares more than 10,000 rows of bookings or jobs')

  // JIT is off on every connection the service opens, whatever the server's default: the pools'
  // and pg-boss's own (maintenance, its supervision).
  for (const [name, db] of [['api', api], ['worker', workerDb]] as const) {
    const { rows: [shown] } = await sql<{ jit: string }>`SHOW jit`.execute(db)
    t.equal(shown?.jit, 'off', `the ${name} pool's connections: jit off`)
  }
  const { rows: [shown] } = await boss.getDb().executeSql('SHOW jit')
  t.equal(shown?.jit, 'off', 'pg-boss\'s own connections: jit off')
})
