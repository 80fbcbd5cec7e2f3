// Usage: npm run bench -- [options]          (node bench/flash-sale.ts --help lists them)
//
// A flash sale, measured against this machine's own ceiling and checked for correctness:
//  1. ceiling: a no-op Fastify POST /buy (same schema, same reply, no database) is loaded with the
//     same generator and concurrency; every throughput is reported as a ratio of it;
//  2. sale: events are created, then `--requests` purchases from distinct users are fired at
//     `--concurrency` as fast as the server accepts them (autocannon);
//  3. drain: the bench waits until every accepted purchase has a final status (or `--wait` runs out);
//  4. invariants, from the database and the API (bench/invariants.ts); any failure exits 1.
// Without --url it runs the real service (`node lib/main.ts`) on a fresh embedded PostgreSQL and
// stops both after. Writes bench/results/<time>.json and .svg; --json prints the JSON last.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import postgres from 'postgres'
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.ts'
import { renderChart, type Sample } from './chart.ts'
import { checkInvariants } from './invariants.ts'

const ROOT = path.resolve(import.meta.dirname, '..')

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '5000' },
    quota: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '100' },
    duration: { type: 'string', default: '60' },
    quantity: { type: 'string', default: '1' },
    events: { type: 'string', default: '1' },
    'worker-mode': { type: 'string', default: 'serial' },
    wait: { type: 'string', default: '180' },
    'ceiling-seconds': { type: 'string', default: '5' },
    sample: { type: 'string', default: '200' },
    url: { type: 'string' },
    'database-url': { type: 'string' },
    'admin-token': { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    json: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})

const HELP = `npm run bench -- [options]
  --requests N          purchase requests to send (default 5000)
  --quota N             seats per event (default 1000)
  --concurrency C       connections kept busy by the load generator (default 100)
  --duration S          stop sending after S seconds even if requests remain (default 60)
  --quantity MIX        seats per request: "1", a range "1-4", or weights "1:70,2:20,4:10" (default 1)
  --events N            events sharing the requests evenly; 1 = one hot event (default 1)
  --worker-mode MODE    WORKER_MODE for the service it starts (default serial)
  --wait S              longest wait for every accepted purchase to be decided (default 180)
  --ceiling-seconds S   how long to load the no-op ceiling server (default 5)
  --sample N            accepted purchases whose GET /bookings/:id is compared with the database (default 200)
  --url URL             target an already running server instead (needs --database-url and --admin-token)
  --database-url URL    that server's database, for the invariant checks
  --admin-token T       that server's ADMIN_TOKEN, to create the events
  --out DIR             where the JSON and SVG go (default bench/results)
  --json                print the result JSON as the last line of stdout
  --quiet               no progress lines`

function int (name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min} (got ${value})`)
  return n
}

function fail (message: string): never {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

/** "1", "1-4" or "1:70,2:20,4:10" -> a function picking a quantity. */
function parseQuantityMix (mix: string): () => number {
  const range = /^(\d+)-(\d+)$/.exec(mix)
  if (range !== null) {
    const lo = Number(range[1])
    const hi = Number(range[2])
    if (lo < 1 || hi > 10 || lo > hi) fail(`--quantity range must be within 1-10 (got ${mix})`)
    return () => lo + Math.floor(Math.random() * (hi - lo + 1))
  }
  const parts = mix.split(',').map((part) => part.split(':').map(Number))
  if (parts.some(([q, w]) => q === undefined || !Number.isInteger(q) || q < 1 || q > 10 || (w !== undefined && !(w > 0)))) {
    fail(`--quantity must look like 1, 1-4 or 1:70,2:20,4:10 with quantities 1-10 (got ${mix})`)
  }
  const weighted = parts.map(([q, w]) => ({ q: q as number, w: w ?? 1 }))
  const total = weighted.reduce((sum, p) => sum + p.w, 0)
  return () => {
    let r = Math.random() * total
    for (const p of weighted) {
      r -= p.w
      if (r < 0) return p.q
    }
    return (weighted[weighted.length - 1] as { q: number }).q
  }
}

const requests = int('requests', opts.requests, 1)
const quota = int('quota', opts.quota, 1)
const concurrency = int('concurrency', opts.concurrency, 1)
const durationS = int('duration', opts.duration, 1)
const eventCount = int('events', opts.events, 1)
const waitS = int('wait', opts.wait, 1)
const ceilingS = int('ceiling-seconds', opts['ceiling-seconds'], 1)
const sampleSize = int('sample', opts.sample, 0)
const pickQuantity = parseQuantityMix(opts.quantity)
const workerMode = opts['worker-mode']
const log = (line: string): void => { if (!opts.quiet) process.stderr.write(line + '\n') }

if (opts.help) {
  process.stdout.write(HELP + '\n')
  process.exit(0)
}
if (opts.url !== undefined && (opts['database-url'] === undefined || opts['admin-token'] === undefined)) {
  fail('--url needs --database-url (for the invariant checks) and --admin-token (to create the events)')
}

async function waitForLine (child: ChildProcess, text: string, timeoutMs = 60_000): Promise<void> {
  let seen = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms: ${seen.slice(-2000)}`)), timeoutMs)
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString()
      if (seen.includes(text)) { clearTimeout(timer); child.stdout?.off('data', onData); resolve() }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => { seen += chunk.toString() })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited (${code}) before "${text}": ${seen.slice(-2000)}`)) })
  })
}

async function stopChild (child: ChildProcess | undefined): Promise<number | null> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await exited
  clearTimeout(timer)
  return code
}

function buyRequest (baseUrl: string, pickEvent: () => string, onResponse?: (status: number, body: string) => void): autocannon.Options {
  return {
    url: baseUrl,
    connections: concurrency,
    requests: [{
      method: 'POST',
      path: '/buy',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req) => ({ ...req, body: JSON.stringify({ event_id: pickEvent(), user_id: randomUUID(), quantity: pickQuantity() }) }),
      ...(onResponse === undefined ? {} : { onResponse: (status: number, body: string) => onResponse(status, body) })
    }]
  }
}

async function runAutocannon (options: autocannon.Options, limit: { amount?: number, seconds: number }): Promise<autocannon.Result> {
  return await new Promise((resolve, reject) => {
    const instance = autocannon({ ...options, ...(limit.amount !== undefined ? { amount: limit.amount } : { duration: limit.seconds }) }, (err, result) => {
      clearTimeout(cap)
      if (err !== null && err !== undefined) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve(result)
    })
    // --duration caps the sale even when requests remain.
    const cap = setTimeout(() => instance.stop(), limit.seconds * 1000)
  })
}

async function rssKb (pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? undefined : Number(match[1])
}

const pct = (n: number): string => `${(100 * n).toFixed(1)}%`
const round = (n: number, digits = 1): number => Number(n.toFixed(digits))

let embedded: EmbeddedPostgres | undefined
let service: ChildProcess | undefined
let noop: ChildProcess | undefined
let dataDir: string | undefined
let sql: postgres.Sql | undefined
let exitCode: number

try {
  const startedAt = new Date()
  // 1. The ceiling, measured first, while nothing else runs.
  const noopPort = await freePort()
  noop = spawn(process.execPath, [path.join(ROOT, 'bench', 'noop-server.ts')], { env: { ...process.env, PORT: String(noopPort), HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  await waitForLine(noop, 'ready')
  log(`ceiling: loading a no-op POST /buy for ${ceilingS} s at concurrency ${concurrency}...`)
  const fakeEvent = randomUUID()
  const ceiling = await runAutocannon(buyRequest(`http://127.0.0.1:${noopPort}`, () => fakeEvent), { seconds: ceilingS })
  await stopChild(noop)
  const ceilingRps = ceiling['2xx'] / (ceiling.duration || ceilingS)
  log(`ceiling: ${Math.round(ceilingRps)} req/s`)

  // 2. The service under test, on a fresh database unless --url.
  let baseUrl = opts.url
  let databaseUrl = opts['database-url']
  let adminToken = opts['admin-token']
  if (baseUrl === undefined) {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-bench-'))
    embedded = await startEmbeddedPostgres({ dataDir, database: 'boxoffice' })
    databaseUrl = embedded.url
    adminToken = randomBytes(18).toString('base64url')
    const port = await freePort()
    baseUrl = `http://127.0.0.1:${port}`
    service = spawn(process.execPath, [path.join(ROOT, 'lib', 'main.ts')], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN: adminToken, WORKER_MODE: workerMode, DEMO_EVENT: 'false', LOG_LEVEL: 'warn', QUEUE_CAPACITY: String(Math.max(requests * 2, 100_000)) },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const ready = fetchUntilHealthy(baseUrl)
    await ready
  }
  sql = postgres(databaseUrl as string, { max: 2, onnotice: () => {} })
  const [{ version: postgresVersion }] = await sql<[{ version: string }]>`SELECT current_setting('server_version') AS version`

  const eventIds: string[] = []
  for (let i = 0; i < eventCount; i++) {
    const res = await fetch(`${baseUrl}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ name: `Bench sale ${startedAt.toISOString()} #${i + 1}`, total_quota: quota })
    })
    if (res.status !== 201) throw new Error(`creating an event failed: ${res.status} ${await res.text()}`)
    eventIds.push(((await res.json()) as { id: string }).id)
  }
  let nextEvent = 0
  const pickEvent = (): string => eventIds[nextEvent++ % eventIds.length] as string

  // 3. The sale, sampled every 250 ms: accepted (from the answers) and decided (from the database).
  const acceptedIds: string[] = []
  const statusCounts = new Map<number, number>()
  const samples: Sample[] = []
  let lastAcceptedAt = 0
  let maxRssKb = 0
  const saleStart = performance.now()
  const countDecided = async (): Promise<number> => {
    const [row] = await (sql as postgres.Sql)<[{ n: string }]>`SELECT count(*) AS n FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status <> 'PENDING'`
    return Number(row.n)
  }
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const decided = await countDecided()
      const t = (performance.now() - saleStart) / 1000
      samples.push({ t: round(t, 2), accepted: acceptedIds.length, decided })
      const rss = await rssKb(service?.pid)
      if (rss !== undefined) maxRssKb = Math.max(maxRssKb, rss)
      const sent = [...statusCounts.values()].reduce((a, b) => a + b, 0)
      log(`  t=${t.toFixed(1)}s  sent ${sent}  accepted ${acceptedIds.length}  decided ${decided}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })()

  log(`sale: ${requests} requests, ${eventCount} event(s) x ${quota} seats, concurrency ${concurrency}, worker ${workerMode}`)
  const sale = await runAutocannon(buyRequest(baseUrl, pickEvent, (status, body) => {
    statusCounts.set(status, (statusCounts.get(status) ?? 0) + 1)
    if (status === 202) {
      acceptedIds.push((JSON.parse(body) as { booking_id: string }).booking_id)
      lastAcceptedAt = performance.now()
    }
  }), { amount: requests, seconds: durationS })
  const intakeSeconds = sale.duration
  // How much settlement kept pace while the crowd was still arriving.
  const decidedDuringIntake = await countDecided()

  // 4. Drain: wait for every accepted purchase to be decided.
  const drainDeadline = performance.now() + waitS * 1000
  while (await countDecided() < acceptedIds.length && performance.now() < drainDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  sampling = false
  await sampler
  const decided = await countDecided()
  const [timing] = await sql<[{ first: Date | null, last: Date | null }]>`
    SELECT min(decided_at) AS first, max(decided_at) AS last FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status <> 'PENDING'`
  const decideSpan = timing.first !== null && timing.last !== null ? (timing.last.getTime() - timing.first.getTime()) / 1000 : 0
  const allDecidedAt = samples.at(-1)?.t ?? 0
  const timeToAllDecided = decided >= acceptedIds.length ? allDecidedAt : null

  // 5. Invariants.
  const invariants = await checkInvariants(sql, { baseUrl, eventIds, acceptedIds, sampleSize })
  const accepted = acceptedIds.length
  const intakeRps = accepted / intakeSeconds
  const result = {
    requests,
    quota: quota * eventCount,
    events: eventCount,
    concurrency,
    quantity_mix: opts.quantity,
    accepted,
    rejected_busy: statusCounts.get(503) ?? 0,
    errors: sale.errors + sale.timeouts + [...statusCounts].filter(([s]) => s !== 202 && s !== 503).reduce((sum, [, n]) => sum + n, 0),
    intake_rps: round(intakeRps),
    intake_p50_ms: sale.latency.p50,
    intake_p99_ms: sale.latency.p99,
    decided,
    decided_during_intake: decidedDuringIntake,
    decide_rps: round(decideSpan > 0 ? decided / decideSpan : decided),
    time_to_all_decided_s: timeToAllDecided,
    last_decision_after_last_acceptance_s: timing.last !== null && lastAcceptedAt > 0
      ? round((timing.last.getTime() - (performance.timeOrigin + lastAcceptedAt)) / 1000, 3)
      : null,
    sold: invariants.sold,
    oversold: invariants.oversold,
    quota_mismatch: invariants.quota_mismatch,
    lost: invariants.lost,
    duplicate_ids: invariants.duplicate_ids,
    api_sampled: invariants.api_sampled,
    api_disagreements: invariants.api_disagreements,
    ceiling_rps: round(ceilingRps),
    intake_ratio: round(intakeRps / ceilingRps, 3),
    server_max_rss_mb: maxRssKb > 0 ? round(maxRssKb / 1024) : null,
    worker_mode: workerMode,
    node_version: process.version,
    postgres_version: postgresVersion,
    cpus: os.cpus().length,
    started_at: startedAt.toISOString(),
    invariants_ok: invariants.failures.length === 0,
    failures: invariants.failures
  }

  await mkdir(opts.out, { recursive: true })
  const stem = path.join(opts.out, `flash-sale-${startedAt.toISOString().replaceAll(':', '-').replace(/\..*/, '')}-${workerMode}`)
  await writeFile(`${stem}.json`, JSON.stringify(result, null, 2) + '\n')
  await writeFile(`${stem}.svg`, await renderChart(samples, ceilingRps,
    `Flash sale: ${requests} requests, ${result.quota} seats, concurrency ${concurrency}, worker ${workerMode}`))

  const rows: Array<[string, string]> = [
    ['requests / accepted / busy (503) / errors', `${requests} / ${accepted} / ${result.rejected_busy} / ${result.errors}`],
    ['no-op ceiling', `${result.ceiling_rps} req/s`],
    ['intake (accepted and committed)', `${result.intake_rps} req/s  (${pct(result.intake_ratio)} of ceiling)`],
    ['intake latency p50 / p99', `${result.intake_p50_ms} / ${result.intake_p99_ms} ms`],
    ['decided', `${decided} at ${result.decide_rps} decisions/s (${decidedDuringIntake} while intake ran)`],
    ['all decided after', timeToAllDecided === null ? `NOT within ${waitS} s` : `${timeToAllDecided} s`],
    ['last decision after last acceptance', `${result.last_decision_after_last_acceptance_s ?? '-'} s`],
    ['sold / quota', `${result.sold} / ${result.quota}`],
    ['oversold / quota mismatch / lost / duplicate ids', `${result.oversold} / ${result.quota_mismatch} / ${result.lost} / ${result.duplicate_ids}`],
    ['API agrees with database', `${result.api_sampled - result.api_disagreements} of ${result.api_sampled} sampled`],
    ['server max RSS', result.server_max_rss_mb === null ? '-' : `${result.server_max_rss_mb} MB`],
    ['worker / node / postgres', `${workerMode} / ${process.version} / ${postgresVersion}`],
    ['invariants', result.invariants_ok ? 'ALL HELD' : `FAILED: ${result.failures.join('; ')}`],
    ['written', `${stem}.json, ${stem}.svg`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n')
  if (opts.json) process.stdout.write(JSON.stringify(result) + '\n')
  exitCode = result.invariants_ok && timeToAllDecided !== null ? 0 : 1
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  exitCode = 1
} finally {
  await sql?.end({ timeout: 5 })
  await stopChild(noop)
  const serviceExit = await stopChild(service)
  if (service !== undefined && serviceExit !== 0) {
    process.stderr.write(`bench: the service exited with ${serviceExit} on SIGTERM\n`)
    exitCode = 1
  }
  await embedded?.stop()
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
}
process.exitCode = exitCode

async function fetchUntilHealthy (baseUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (service !== undefined && (service.exitCode !== null || service.signalCode !== null)) throw new Error('the service exited during start-up')
    try {
      if ((await fetch(`${baseUrl}/health`)).ok) return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${baseUrl}/health did not answer 200 within 60 s`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
