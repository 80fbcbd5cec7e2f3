import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import postgres from 'postgres'
import t from 'tap'
import { paymentReference, type HoldFigures } from '../../bench/holds.ts'
import { checkHolds } from '../../bench/invariants.ts'
import { PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase, type TestDatabase } from '../fixtures/database.ts'

const ROOT = path.resolve(import.meta.dirname, '..', '..')

const REQUIRED_FIELDS = ['requests', 'quota', 'concurrency', 'accepted', 'rejected_busy', 'errors', 'intake_rps', 'intake_p50_ms',
  'intake_p99_ms', 'decided', 'decide_rps', 'time_to_all_decided_s', 'sold', 'oversold', 'lost', 'ceiling_rps', 'intake_ratio',
  'queued_only', 'queued_only_ratio', 'settle_ratio',
  'read_ceiling_rps', 'read_rps', 'read_ratio', 'read_p50_ms', 'read_p99_ms', 'read_unavailable', 'read_errors', 'follow_bookings',
  'follow_polls', 'follow_waits', 'worker_mode', 'node_version', 'postgres_version', 'postgres_server', 'postgres_jit', 'started_at',
  'endpoint_invariants_ok', 'hold_seconds', 'confirm_percent', 'release_percent', 'holds', 'holds_confirmed', 'holds_released', 'holds_expired',
  'holds_unended', 'held_end', 'holds_seen', 'confirm_requests', 'confirm_ok', 'confirm_409_expired', 'confirm_409_not_confirmable',
  'confirm_p99_ms', 'release_requests', 'release_accepted', 'buyer_tokens', 'bookings_of_other_buyers']

// In a run of the suite on an embedded server, the bench runs as `npm run bench` does by default (an
// embedded server of its own per mode); on a server the suite was given, on that server
// (--database-url: a database of its own per mode, dropped after).
const external = process.env.TEST_DATABASE_EMBEDDED !== '1' && process.env.TEST_DATABASE_URL !== undefined
const serverArgs = external ? ['--database-url', process.env.TEST_DATABASE_URL as string] : []

interface BenchRun { code: number | null, results: Array<Record<string, unknown>>, result: Record<string, unknown>, out: string, stdout: string }

async function runBench (t: { teardown: (fn: () => unknown) => void }, args: string[]): Promise<BenchRun> {
  const { code, stdout, stderr, out } = await spawnBench(t, args)
  // One JSON line per worker mode, last on stdout.
  const results: Array<Record<string, unknown>> = []
  for (const line of stdout.trim().split('\n').reverse()) {
    if (!line.startsWith('{')) break
    results.unshift(JSON.parse(line) as Record<string, unknown>)
  }
  const result = results.at(-1)
  if (result === undefined) throw new Error(`no JSON last line (exit ${code}): ${stdout}\n${stderr}`)
  return { code, results, result, out, stdout }
}

async function spawnBench (t: { teardown: (fn: () => unknown) => void }, args: string[]):
  Promise<{ code: number | null, stdout: string, stderr: string, out: string }> {
  const out = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-bench-test-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })
  const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'flash-sale.ts'), '--json', '--quiet', '--out', out, '--ceiling-seconds', '1', '--warmup', '200', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { code, stdout, stderr, out }
}

/** The bench's databases on the suite's server (a run on --database-url makes one per mode). */
async function benchDatabases (): Promise<string[]> {
  const admin = postgres(process.env.TEST_DATABASE_URL as string, { max: 1, onnotice: () => {} })
  try {
    return (await admin<Array<{ datname: string }>>`SELECT datname FROM pg_database WHERE datname LIKE 'boxoffice_bench_%'`).map((row) => row.datname)
  } finally {
    await admin.end()
  }
}

t.test('a small flash sale without holds in both worker modes: every field reported, every invariant held, JSON and SVG written', async (t) => {
  const databasesBefore = external ? await benchDatabases() : []
  // --hold-seconds 0: the sale as it was before holds, whose figures compare with older records.
  const { code, results, out, stdout } = await runBench(t, ['--requests', '300', '--quota', '40', '--concurrency', '20', '--quantity', '1:3,2:1',
    '--serial-requests', '300', '--backlog', '300', '--backlog-seconds', '20', '--followers', '8', '--reads', '600', '--readers', '16',
    '--hold-seconds', '0', ...serverArgs])
  t.equal(code, 0, 'exits 0')
  t.same(results.map((r) => r.worker_mode), ['batched', 'serial'], 'both modes, batched first')
  for (const result of results) {
    for (const field of REQUIRED_FIELDS) t.ok(field in result, `${String(result.worker_mode)} reports ${field}`)
    t.match(result, {
      requests: 300, quota: 40, concurrency: 20, stored: 300, rejected_busy: 0, errors: 0, decided: 300, oversold: 0, lost: 0,
      invariants_ok: true, endpoint_invariants_ok: true
    })
    t.equal((result.accepted as number) + (result.sold_out_at_once as number), 300, 'every request stored: queued or sold out at once')
    t.equal(result.sold, 40, 'sold exactly the quota')
    t.match(result, { hold_seconds: 0, holds: 0, holds_seen: 0, confirm_requests: 0, release_requests: 0, held_end: 0, confirm_percent: null }, 'no holds')
    t.match(result, { buyer_tokens: false, bookings_of_other_buyers: null }, 'no buyer tokens')
    t.match(result, { settle_backlog: 300, settle_decided: 300, settle_drained: true }, 'the backlog was settled alone, in full')
    t.ok((result.settle_rps as number) > 0)
    t.ok((result.ceiling_rps as number) > 0)
    t.ok((result.intake_ratio as number) > 0)
    t.match(result, { queued_only: false, queued_only_ratio: null }, 'seats ran out: not a queued-only sale')
    t.ok(Math.abs((result.settle_ratio as number) - (result.settle_rps as number) / (result.ceiling_rps as number)) <= 0.001, 'settle_ratio is settlement alone over the ceiling')
    t.match(result, { reads: 600, read_unavailable: 0, read_errors: 0, followers: 8, readers: 16 }, 'every read answered 200')
    t.ok((result.read_ratio as number) > 0 && (result.read_ceiling_rps as number) > 0 && (result.read_p99_ms as number) >= 0, 'reads measured against their ceiling')
    t.ok((result.follow_bookings as number) > 0 && (result.follow_polls as number) + (result.follow_waits as number) >= (result.follow_bookings as number), 'buyers followed their bookings during the sale')
    if (external) {
      const server = new URL(process.env.TEST_DATABASE_URL as string)
      t.equal(result.postgres_server, `${server.hostname}:${server.port === '' ? '5432' : server.port}`, 'the figures name the server they came from')
    } else {
      t.equal(result.postgres_server, 'embedded')
      t.match(result.postgres_version, /^18\./)
    }
  }
  if (external) t.same(await benchDatabases(), databasesBefore, 'the bench dropped the databases it made')
  t.match(stdout, /worker mode\s+batched\s+serial/, 'the table puts the modes side by side')
  t.match(stdout, /invariants\s+ALL HELD\s+ALL HELD/, 'and says both held')
  const files = await readdir(out)
  for (const mode of ['batched', 'serial']) {
    const json = files.find((f) => f.endsWith(`-${mode}.json`))
    const svg = files.find((f) => f.endsWith(`-${mode}.svg`))
    t.ok(json !== undefined && svg !== undefined, `JSON and SVG written for ${mode}`)
    const { written, ...printed } = results.find((r) => r.worker_mode === mode) ?? {}
    t.ok(Array.isArray(written))
    t.same(JSON.parse(await readFile(path.join(out, json ?? ''), 'utf8')), printed, 'the file holds the printed JSON')
    t.match(await readFile(path.join(out, svg ?? ''), 'utf8'), /^<svg[\s\S]*decided \/ s[\s\S]*ceiling/)
  }
})

t.test('hold and token options are checked before anything runs', async (t) => {
  for (const [args, message] of [
    [['--confirm-percent', '95', '--release-percent', '10'], '--confirm-percent and --release-percent must add up to at most 100 (got 95 + 10)'],
    [['--hold-seconds', '86401'], '--hold-seconds must be at most 86400'],
    [['--buyer-tokens', '--url', 'http://127.0.0.1:9', '--database-url', 'postgres://127.0.0.1:9/x', '--admin-token', 'x', '--worker-mode', 'batched'],
      '--buyer-tokens signs with a key of its own, which a server at --url does not trust']
  ] as const) {
    const { code, stderr } = await spawnBench(t, [...args])
    t.equal(code, 2, `${args.join(' ')} exits 2`)
    t.match(stderr, message)
  }
})

t.test('a small sale with holds and a webhook receiver: every hold ended, every message delivered', async (t) => {
  // The default mix's holds and shares, shorter holds; settlement alone has no holds and is left out.
  // The receiver gets every type: sold-out answers, decisions, holds' ends, cancellations.
  const { code, result } = await runBench(t, ['--worker-mode', 'batched', '--requests', '300', '--quota', '40', '--concurrency', '20',
    '--quantity', '1:3,2:1', '--hold-seconds', '2', '--backlog', '0', '--followers', '4', '--reads', '100', '--readers', '8', '--wait', '60',
    '--webhooks', ...serverArgs])
  t.equal(code, 0, 'exits 0')
  for (const field of REQUIRED_FIELDS) t.ok(field in result, `reports ${field}`)
  t.match(result, {
    hold_seconds: 2, confirm_percent: 60, release_percent: 10, stored: 300, decided: 300, oversold: 0, quota_mismatch: 0, lost: 0, held_end: 0,
    holds_unended: 0, holds_confirmed_and_expired: 0, sold_unconfirmed: 0, confirms_unrecorded: 0, confirms_unanswered: 0, confirm_409_not_expired: 0,
    releases_lost: 0, invariants_ok: true, endpoint_invariants_ok: true, failures: []
  })
  const n = (field: string): number => result[field] as number
  t.ok(n('holds') >= 20, `the 40 seats were held (${n('holds')} holds)`)
  t.equal(n('holds_confirmed') + n('holds_released') + n('holds_expired'), n('holds'), 'every hold ended confirmed, released or expired')
  t.ok(n('holds_confirmed') > 0 && n('holds_released') > 0 && n('holds_expired') > 0,
    `each end happened: ${n('holds_confirmed')} confirmed, ${n('holds_released')} released, ${n('holds_expired')} expired`)
  t.equal(n('confirm_ok'), n('holds_confirmed'), 'every confirmed hold was answered 200, and every 200 confirmed one')
  t.equal(n('confirm_requests'), n('confirm_ok') + n('confirm_409_expired') + n('confirm_409_not_confirmable'), 'every confirmation answered 200 or 409')
  t.ok(n('holds_seen') <= n('holds') && n('confirm_requests') + n('release_requests') <= n('holds_seen'), 'the seller acted only on holds it saw')
  t.ok(n('holds_released') >= n('release_accepted'), 'every release accepted ended its hold (the admin\'s cancellations release holds too)')
  t.ok(n('sold') >= n('holds_confirmed') && n('sold') <= 40, 'the seats sold are the confirmed holds\' (one or two each)')
  t.match(result, { webhooks: true, webhook_jobs_open: 0, webhook_jobs_failed: 0 }, 'every webhook message delivered')
  // At least one message per stored purchase (its decision), one more per hold (its end).
  t.ok(n('webhook_messages_distinct') >= 300 + n('holds'), `${n('webhook_messages_distinct')} messages`)
  t.equal(n('webhook_messages_distinct'), n('webhook_jobs_completed'), 'each delivered message once in the queue, each queued one received')
  t.ok(n('webhook_messages_verified') > 0, 'a sample verified with standardwebhooks')
})

t.test('a small sale with buyer tokens: each buyer sends its token, every purchase is stored under the buyer it names', async (t) => {
  // Holds, so buyers release with their tokens (found by the user_id the service stored); settlement
  // alone is left out to keep the file's time (its API takes the same tokens, and checks them alike).
  const { code, result, stdout } = await runBench(t, ['--worker-mode', 'batched', '--buyer-tokens', '--requests', '300', '--quota', '40',
    '--concurrency', '20', '--hold-seconds', '2', '--backlog', '0', '--followers', '4', '--reads', '100', '--readers', '8', '--wait', '60',
    ...serverArgs])
  t.equal(code, 0, 'exits 0')
  for (const field of REQUIRED_FIELDS) t.ok(field in result, `reports ${field}`)
  t.match(result, {
    buyer_tokens: true, bookings_of_other_buyers: 0, stored: 300, decided: 300, rejected_busy: 0, errors: 0, oversold: 0, quota_mismatch: 0,
    lost: 0, held_end: 0, holds_unended: 0, releases_lost: 0, api_disagreements: 0, read_unavailable: 0, read_errors: 0, reads: 100,
    invariants_ok: true, endpoint_invariants_ok: true, failures: []
  }, 'every purchase and every read as a buyer answered, and every purchase is a token\'s buyer\'s')
  const n = (field: string): number => result[field] as number
  t.ok(n('api_sampled') > 0, 'bookings were read back as their buyers')
  t.ok(n('follow_bookings') > 0 && n('follow_polls') + n('follow_waits') >= n('follow_bookings'), 'buyers followed their bookings with their tokens')
  t.ok(n('release_requests') === 0 || n('release_accepted') + n('release_refused') === n('release_requests'), 'every release was answered as its buyer\'s')
  t.match(stdout, /worker mode\s+batched, buyer tokens/, 'the table\'s header says the buyers had tokens')
})

t.test('the holds\' checks report what the database does not bear out', async (t) => {
  const { url } = await createTestDatabase(t)
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await sql.end() })
  const [event] = await sql<[{ id: string }]>`
    INSERT INTO events (name, total_quota, available_quota, hold_seconds) VALUES ('holds checked', 10, 10, 60) RETURNING id`
  // One hold of each end, as the service leaves them; then what the seller was truly answered.
  const booking = async (status: string, columns: { confirmed?: boolean, held?: boolean } = {}): Promise<string> => {
    const id = randomUUID()
    const { confirmed = false, held = true } = columns
    await sql`
      INSERT INTO bookings (id, event_id, user_id, quantity, status, decided_at, hold_expires_at, confirmed_at, payment_reference, cancelled_at)
      VALUES (${id}, ${event.id}, ${randomUUID()}, 1, ${status}, now(), ${held ? sql`now() + interval '1 minute'` : null},
        ${confirmed ? sql`now()` : null}, ${confirmed ? paymentReference(id) : null}, ${status === 'CANCELLED' ? sql`now()` : null})`
    return id
  }
  const confirmed = await booking('SUCCESS', { confirmed: true })
  const expired = await booking('EXPIRED')
  const released = await booking('CANCELLED')
  const told: HoldFigures = {
    seen: 3, leftToCanceller: 0, confirmRequests: 2, confirmedIds: [confirmed], confirmExpiredIds: [expired], confirmRefusedIds: [], confirmErrors: 0,
    confirmP50Ms: null, confirmP99Ms: null, releaseRequests: 1, releasedIds: [released], releaseRefused: 0, releaseErrors: 0
  }
  t.match(await checkHolds(sql, [event.id], told), { holds: 3, confirmed: 1, released: 1, expired: 1, unended: 0, failures: [] }, 'the true answers pass')

  // Answers the rows contradict: each is counted and said.
  const wrong = await checkHolds(sql, [event.id], {
    ...told, confirmedIds: [expired], confirmExpiredIds: [confirmed], releasedIds: [confirmed], confirmErrors: 1, releaseErrors: 2
  })
  t.match(wrong, { confirms_unrecorded: 1, confirms_unanswered: 1, confirm_409_not_expired: 1, releases_lost: 1 })
  t.same(wrong.failures, [
    '1 confirmations answered 200 are not confirmed in the database with their payment reference',
    '1 bookings are confirmed that no confirmation answered 200',
    '1 confirmations answered 409 are of bookings that did not expire',
    '1 accepted releases did not end their hold',
    '1 confirmations failed or answered neither 200 nor 409',
    '2 releases failed or answered neither 202, 200 nor 409'
  ])

  // Rows that break the rules: a hold never ended, and seats of a hold event sold without one.
  await booking('HELD')
  await booking('SUCCESS', { held: false })
  t.match(await checkHolds(sql, [event.id], told), {
    holds: 4, unended: 1, sold_unconfirmed: 1,
    failures: ['1 held bookings ended neither confirmed, released nor expired', '1 bookings of events with holds were sold without a confirmation']
  })
})

/**
 * The kind of worker the bench exists to catch: it decides without the event's lock, reading the
 * seats left, pausing, then writing back its own stale arithmetic. Run four at once. (It knows
 * nothing of cancellations nor holds: the bench runs it without either, or would wait for them to its --wait.)
 */
function startBrokenWorkers ({ db, boss }: TestDatabase): () => Promise<void> {
  let stopping = false
  const loop = async (): Promise<void> => {
    while (!stopping) {
      const [job] = await boss.fetch<{ event_id: string, quantity: number }>(PURCHASE_QUEUE, { batchSize: 1 })
      if (job === undefined) { await sleep(10); continue }
      const event = await db.selectFrom('events').select('available_quota').where('id', '=', job.data.event_id).executeTakeFirstOrThrow()
      await sleep(2)
      const ok = event.available_quota >= job.data.quantity
      if (ok) await sql`UPDATE events SET available_quota = ${event.available_quota - job.data.quantity} WHERE id = ${job.data.event_id}`.execute(db)
      await sql`UPDATE bookings SET status = ${ok ? 'SUCCESS' : 'FAILED'}, reason = ${ok ? null : 'sold_out'}, decided_at = now() WHERE id = ${job.id}`.execute(db)
      await boss.complete(PURCHASE_QUEUE, job.id)
    }
  }
  const loops = [loop(), loop(), loop(), loop()]
  return async () => { stopping = true; await Promise.all(loops) }
}

t.test('a worker that skips the lock makes the bench fail', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, { worker: false })
  const stopBroken = startBrokenWorkers(database)
  t.teardown(stopBroken)
  const { code, result } = await runBench(t, ['--url', base, '--database-url', database.url, '--admin-token', ADMIN_TOKEN, '--worker-mode', 'batched',
    '--requests', '200', '--quota', '60', '--concurrency', '20', '--wait', '60', '--cancel-percent', '0', '--hold-seconds', '0', '--followers', '4',
    '--reads', '200', '--readers', '8'])
  t.equal(code, 1, 'exits non-zero')
  t.equal(result.invariants_ok, false)
  t.ok((result.quota_mismatch as number) > 0 || (result.oversold as number) > 0, `caught it: sold ${String(result.sold)}, quota mismatch ${String(result.quota_mismatch)}, oversold ${String(result.oversold)}`)
  t.ok((result.failures as string[]).length > 0)
  t.equal(result.endpoint_invariants_ok, false, 'the service\'s own check (GET /admin/invariants) caught it too')
  t.ok((result.failures as string[]).some((f) => f.startsWith('GET /admin/invariants: event')), 'and said which event')
})
