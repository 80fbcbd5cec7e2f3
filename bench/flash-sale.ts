// Usage: npm run bench -- [options]          (node bench/flash-sale.ts --help lists them)
//
// A flash sale, measured against this machine's own ceiling and checked for correctness:
//  1. ceiling: a no-op Fastify POST /buy (same schema, same reply, no database) is loaded with the
//     same generator, concurrency, request bodies and per-answer work (status counted, booking id
//     kept); every throughput is reported as a ratio of it;
//  then, for each worker mode asked for (default: batched, then serial), on a fresh database:
//  2. sale: events are created (with a per-user cap, `--max-per-user`), then `--requests`
//     purchases from a crowd of `--users` (some buy more than once) are fired at `--concurrency`
//     as fast as the server accepts them (autocannon), at `npm start` (API and worker in one
//     process), while `--cancel-percent` of the queued purchases are cancelled;
//  3. drain: the bench waits until every stored purchase has a final status (or `--wait` runs out);
//  4. invariants, from the database and the API (bench/invariants.ts); any failure exits 1;
//  5. settlement: `--backlog` purchases are stored by the API alone (`npm run server`), then the
//     worker alone (`npm run worker`) is started and timed deciding them: decisions per second
//     with nothing else running (for at most `--backlog-seconds`).
//  Reads (bench/reads.ts): during the sale and the drain, `--followers` buyers follow their queued
//  bookings (the Location of each 202, plain polling or ?wait=); after it, `--reads` reads of the
//  Locations from `--readers` connections, against a no-op GET ceiling measured first.
// Without --url it runs the real service on a fresh database per mode and stops both after: an
// embedded PostgreSQL, or a new database on the server of `--database-url`, dropped after.
// Writes bench/results/<time>-<mode>.json and .svg; --json prints each mode's JSON, one line each.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import postgres from 'postgres'
import { freePort, startEmbeddedPostgres } from '../db/embedded.ts'
import { renderChart, type Sample } from './chart.ts'
import { checkInvariants } from './invariants.ts'
import { summarizeProfiles } from './profile.ts'
import { followBookings, poolWaits, readBack, readCeiling, type FollowFigures, type ReadBackFigures } from './reads.ts'
import { bookingLocation } from '../server/schemas/bookings.ts'
import { WORKER_MODES } from '../lib/config.ts'

const ROOT = path.resolve(import.meta.dirname, '..')

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '50000' },
    quota: { type: 'string', default: '5000' },
    'serial-requests': { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '3000' },
    backlog: { type: 'string', default: '20000' },
    'backlog-seconds': { type: 'string', default: '10' },
    profile: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '100' },
    duration: { type: 'string', default: '60' },
    quantity: { type: 'string', default: '1' },
    events: { type: 'string', default: '1' },
    'max-per-user': { type: 'string', default: '4' },
    users: { type: 'string' },
    'cancel-percent': { type: 'string', default: '5' },
    'worker-mode': { type: 'string', default: 'batched,serial' },
    wait: { type: 'string', default: '180' },
    'ceiling-seconds': { type: 'string', default: '5' },
    sample: { type: 'string', default: '200' },
    readers: { type: 'string', default: '64' },
    reads: { type: 'string', default: '10000' },
    followers: { type: 'string', default: '32' },
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
  --requests N          purchase requests in the sale (default 50000)
  --quota N             seats per event (default 5000)
  --serial-requests N   requests in the serial mode's sale, which settles ~200/s; its quota is scaled
                        by the same ratio (default 5000; the batched mode uses --requests)
  --warmup N            requests sent to each server before it is measured, not counted: code that
                        has just started runs cold (default 3000; 0 = none)
  --backlog N           purchases stored before the worker starts, to time settlement alone;
                        0 skips that phase (default 20000)
  --backlog-seconds S   longest the worker is timed on the backlog (default 10)
  --profile             write CPU profiles of the service (node --cpu-prof) and print their top costs
  --concurrency C       connections kept busy by the load generator (default 100)
  --duration S          stop sending after S seconds even if requests remain (default 60)
  --quantity MIX        seats per request: "1", a range "1-4", or weights "1:70,2:20,4:10" (default 1)
  --events N            events sharing the requests evenly; 1 = one hot event (default 1)
  --max-per-user N      the events' per-user cap; 0 = none (default 4)
  --users N             the crowd's distinct user ids, drawn at random per request, so some users buy
                        more than once and meet the cap (default: a third of the requests)
  --cancel-percent P    while the sale runs, cancel this share of the queued purchases (DELETE, as
                        the admin), so seats come back mid-sale (default 5)
  --worker-mode MODES   WORKER_MODE(s) to run, comma-separated, side by side (default batched,serial)
  --wait S              longest wait for every accepted purchase to be decided (default 180)
  --ceiling-seconds S   how long to load the no-op ceiling server (default 5)
  --sample N            accepted purchases whose GET /bookings/:id?user_id= is compared with the database (default 200)
  --followers N         buyers told 202 following their bookings during the sale, half polling every
                        200 ms, half with ?wait=5 (default 32; 0 = none)
  --reads N             after the sale, reads of the buyers' Locations (default 10000; 0 = none)
  --readers C           connections for those reads and for the no-op GET ceiling (default 64)
  --database-url URL    without --url: a PostgreSQL server to run the service on instead of an
                        embedded one (an admin connection: each mode gets a new database there,
                        dropped after). With --url: that server's database, for the invariant checks
  --url URL             target an already running server instead (needs --database-url and --admin-token)
  --admin-token T       that server's ADMIN_TOKEN, to create the events
  --out DIR             where the JSON and SVG go (default bench/results)
  --json                print each mode's result JSON, one line each, last on stdout
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
const warmupRequests = int('warmup', opts.warmup, 0)
const durationS = int('duration', opts.duration, 1)
const eventCount = int('events', opts.events, 1)
const waitS = int('wait', opts.wait, 1)
const ceilingS = int('ceiling-seconds', opts['ceiling-seconds'], 1)
const sampleSize = int('sample', opts.sample, 0)
const readOptions = { readers: int('readers', opts.readers, 1) }
const readCount = int('reads', opts.reads, 0)
const followers = int('followers', opts.followers, 0)
const pickQuantity = parseQuantityMix(opts.quantity)
const maxPerUser = int('max-per-user', opts['max-per-user'], 0)
const cancelPercent = Number(opts['cancel-percent'])
if (!(cancelPercent >= 0 && cancelPercent <= 100)) fail(`--cancel-percent must be 0-100 (got ${opts['cancel-percent']})`)
const serialRequests = int('serial-requests', opts['serial-requests'], 1)
const backlog = int('backlog', opts.backlog, 0)
const backlogS = int('backlog-seconds', opts['backlog-seconds'], 1)
const workerModes = (opts['worker-mode'] ?? '').split(',').map((mode) => mode.trim()).filter((mode) => mode !== '')
if (workerModes.length === 0 || workerModes.some((mode) => !(WORKER_MODES as readonly string[]).includes(mode))) {
  fail(`--worker-mode must list modes among ${WORKER_MODES.join(', ')} (got ${opts['worker-mode']})`)
}
const log = (line: string): void => { if (!opts.quiet) process.stderr.write(line + '\n') }

if (opts.help) {
  process.stdout.write(HELP + '\n')
  process.exit(0)
}
if (opts.url !== undefined && (opts['database-url'] === undefined || opts['admin-token'] === undefined)) {
  fail('--url needs --database-url (for the invariant checks) and --admin-token (to create the events)')
}
if (opts.url !== undefined && workerModes.length > 1) fail('--url measures the server that runs there: give one --worker-mode (its WORKER_MODE)')

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

/** The crowd's distinct users for a sale of `n` requests: --users, else a third of them. */
const crowdSize = (n: number): number => opts.users === undefined ? Math.max(1, Math.floor(n / 3)) : int('users', opts.users, 1)

/** A crowd of `size` users, drawn at random: with fewer users than requests, some buy again. */
function crowd (size: number): () => string {
  const users = Array.from({ length: size }, () => randomUUID())
  return () => users[Math.floor(Math.random() * users.length)] as string
}

/**
 * What the load generator keeps of each answer: its status, and the booking id of a 200 or 202 (so
 * the invariants can follow it). The ceiling's run records its answers the same way, so both runs
 * cost the load generator the same per request and the ratio compares the servers alone.
 */
function answerRecorder (): { onResponse: (status: number, body: string, headers: Record<string, string | string[] | undefined>) => void, statusCounts: Map<number, number>, queuedIds: string[], soldOutIds: string[], locations: string[], queuedLocations: string[], lastAnswerAt: () => number, lastStoredAt: () => number } {
  const statusCounts = new Map<number, number>()
  const queuedIds: string[] = []
  const soldOutIds: string[] = []
  const locations: string[] = []
  const queuedLocations: string[] = []
  let lastAnswerAt = 0
  let lastStoredAt = 0
  return {
    onResponse: (status, body, headers) => {
      statusCounts.set(status, (statusCounts.get(status) ?? 0) + 1)
      lastAnswerAt = performance.now()
      if (status === 202 || status === 200) {
        const id = (JSON.parse(body) as { booking_id: string }).booking_id;
        (status === 202 ? queuedIds : soldOutIds).push(id)
        // Where the buyer follows it: the answer's Location.
        const location = headers.location
        if (typeof location === 'string') {
          locations.push(location)
          if (status === 202) queuedLocations.push(location)
        }
        lastStoredAt = lastAnswerAt
      }
    },
    statusCounts,
    queuedIds,
    soldOutIds,
    locations,
    queuedLocations,
    lastAnswerAt: () => lastAnswerAt,
    lastStoredAt: () => lastStoredAt
  }
}

function buyRequest (baseUrl: string, pickEvent: () => string, onResponse?: (status: number, body: string, headers: Record<string, string | string[] | undefined>) => void, pickUser: () => string = randomUUID): autocannon.Options {
  return {
    url: baseUrl,
    connections: concurrency,
    requests: [{
      method: 'POST',
      path: '/buy',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req) => ({ ...req, body: JSON.stringify({ event_id: pickEvent(), user_id: pickUser(), quantity: pickQuantity() }) }),
      ...(onResponse === undefined ? {} : { onResponse: (status: number, body: string, _context: object, headers?: Record<string, string | string[] | undefined>) => { onResponse(status, body, headers ?? {}) } })
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

// CPU time (user + system) from /proc, in clock ticks of 10 ms (Linux's USER_HZ is 100).
const TICK_S = 0.01

/** A process's CPU seconds so far, all its threads; with `children`, also its reaped children's. */
async function cpuSecondsOf (pid: number, { children = false } = {}): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15,
  // cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  const [utime = 0, stime = 0, cutime = 0, cstime = 0] = fields.slice(11, 15)
  return (utime + stime + (children ? cutime + cstime : 0)) * TICK_S
}

/** PostgreSQL's CPU seconds so far: the postmaster, its live backends, and those that ended. */
async function postgresCpuSeconds (clusterDir: string | undefined): Promise<number | undefined> {
  if (clusterDir === undefined) return undefined
  const pid = Number((await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
  if (!(pid > 0)) return undefined
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number)
  const times = await Promise.all([cpuSecondsOf(pid, { children: true }), ...children.map(async (child) => await cpuSecondsOf(child))])
  return times.reduce((a, b) => a + b, 0)
}

/** CPU seconds of the service, PostgreSQL and this process (the load generator) so far. */
async function cpuNow (servicePid: number | undefined, clusterDir: string | undefined): Promise<{ service?: number, postgres?: number, generator: number }> {
  const { user, system } = process.cpuUsage()
  return {
    service: servicePid === undefined ? undefined : await cpuSecondsOf(servicePid),
    postgres: await postgresCpuSeconds(clusterDir),
    generator: (user + system) / 1e6
  }
}

/** CPU per request between two readings `seconds` apart; the idle share only when all three are known. */
function cpuPerRequest (start: Awaited<ReturnType<typeof cpuNow>>, end: Awaited<ReturnType<typeof cpuNow>>, requests: number, seconds: number): Record<string, number | null> {
  const spent = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined ? undefined : b - a
  const service = spent(start.service, end.service)
  const postgres = spent(start.postgres, end.postgres)
  const generator = end.generator - start.generator
  const per = (cpu: number | undefined): number | null => cpu === undefined || requests === 0 ? null : round(cpu * 1e6 / requests)
  return {
    sale_cpu_us_per_request_service: per(service),
    sale_cpu_us_per_request_postgres: per(postgres),
    sale_cpu_us_per_request_generator: per(generator),
    sale_cpu_idle_share: service === undefined || postgres === undefined || seconds <= 0
      ? null
      : round(Math.max(0, 1 - (service + postgres + generator) / (seconds * os.cpus().length)), 2)
  }
}

const pct = (n: number): string => `${(100 * n).toFixed(1)}%`
const round = (n: number, digits = 1): number => Number(n.toFixed(digits))


const ENTRY = { all: 'app/main.ts', api: 'app/api.ts', worker: 'app/worker.ts' } as const
// The flags package.json's start/server/worker scripts run the service with (the ceiling server
// runs with Node's defaults).
const SERVICE_NODE_FLAGS = ['--max-semi-space-size=4']

interface Service { child: ChildProcess, baseUrl: string }

/** Runs one of the service's entry points against `databaseUrl` and waits until it is ready. */
async function startService (role: keyof typeof ENTRY, env: Record<string, string>, profileDir: string | undefined): Promise<Service> {
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${role === 'all' ? 'sale-npm-start' : role === 'api' ? 'settlement-npm-run-server' : 'settlement-npm-run-worker'}.cpuprofile`]
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...nodeArgs, path.join(ROOT, ENTRY[role])], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DEMO_EVENT: 'false', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  // Keep the pipes drained (a full pipe would block the service); show errors.
  child.stdout?.resume()
  child.stderr?.on('data', (chunk: Buffer) => { if (!opts.quiet) process.stderr.write(`  [${role}] ${chunk.toString()}`) })
  if (role === 'worker') {
    const dbUrl = env.DATABASE_URL as string
    const probe = postgres(dbUrl, { max: 1, onnotice: () => {} })
    try {
      const deadline = Date.now() + 60_000
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error('the worker exited during start-up')
        const [row] = await probe<[{ n: string }]>`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'boxoffice-worker'`
        if (Number(row.n) > 0) break
        if (Date.now() > deadline) throw new Error('the worker did not connect within 60 s')
        await sleep(20)
      }
    } finally {
      await probe.end()
    }
  } else {
    await fetchUntilHealthy(baseUrl, child)
  }
  return { child, baseUrl }
}

async function createEvents (baseUrl: string, token: string, count: number, seats: number, label: string, cap = maxPerUser): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${baseUrl}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: `${label} #${i + 1}`, total_quota: seats, ...(cap > 0 ? { max_per_user: cap } : {}) })
    })
    if (res.status !== 201) throw new Error(`creating an event failed: ${res.status} ${await res.text()}`)
    ids.push(((await res.json()) as { id: string }).id)
  }
  return ids
}

/**
 * Before anything is measured, `--warmup` requests go through the server: a process that has just
 * started runs its first requests through cold code (V8 compiles it as it goes), which a real sale,
 * meeting a service that has been up for a while, does not. The ceiling server gets the same. With
 * a database (the real service), the requests buy from an event of their own with seats for a fifth
 * of them, so both answers (queued and sold out at once) are exercised; the sale starts once every
 * one of them is decided.
 */
async function warmUp (baseUrl: string, db: postgres.Sql | undefined, token: string | undefined, label: string): Promise<void> {
  if (warmupRequests === 0) return
  let pickEvent = (): string => randomUUID()
  let eventIds: string[] = []
  if (db !== undefined) {
    eventIds = await createEvents(baseUrl, token as string, 1, Math.ceil(warmupRequests / 5), label)
    pickEvent = () => eventIds[0] as string
  }
  const answers = answerRecorder()
  await runAutocannon(buyRequest(baseUrl, pickEvent, answers.onResponse, crowd(crowdSize(warmupRequests))), { amount: warmupRequests, seconds: 60 })
  if (db === undefined) return
  const stored = answers.queuedIds.length + answers.soldOutIds.length
  await waitUntilSettled(db, eventIds, stored, 60)
}

/** Asks the service's GET /admin/invariants about each event; returns what it reported broken. */
async function checkInvariantsEndpoint (baseUrl: string, token: string, eventIds: readonly string[], soldInDatabase: number): Promise<string[]> {
  const problems: string[] = []
  let sold = 0
  for (const id of eventIds) {
    const res = await fetch(`${baseUrl}/admin/invariants?event_id=${id}`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.json() as { ok?: boolean, events?: Array<{ sold_seats: number, problems: string[] }> }
    const [event] = body.events ?? []
    if (res.status !== 200 || event === undefined) {
      problems.push(`GET /admin/invariants?event_id=${id} answered ${res.status}`)
      continue
    }
    sold += event.sold_seats
    if (body.ok !== true) problems.push(`GET /admin/invariants: event ${id}: ${event.problems.join('; ')}`)
  }
  if (problems.length === 0 && sold !== soldInDatabase) problems.push(`GET /admin/invariants counts ${sold} seats sold, the database ${soldInDatabase}`)
  return problems
}

const roundRobin = (ids: readonly string[]): () => string => {
  let next = 0
  return () => ids[next++ % ids.length] as string
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Bookings settled: decided, and no cancellation waiting. */
async function countSettled (sql: postgres.Sql, eventIds: readonly string[]): Promise<number> {
  const [row] = await sql<[{ n: string }]>`
    SELECT count(*) AS n FROM bookings WHERE event_id = ANY(${eventIds as string[]}::uuid[]) AND status <> 'PENDING'
      AND (cancel_requested_at IS NULL OR status <> 'SUCCESS')`
  return Number(row.n)
}

/** Polls countSettled until `count` bookings of the events are settled or `seconds` pass; returns the last count. */
async function waitUntilSettled (sql: postgres.Sql, eventIds: readonly string[], count: number, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000
  let settled: number
  while ((settled = await countSettled(sql, eventIds)) < count && performance.now() < deadline) await sleep(50)
  return settled
}

/**
 * First and last decision among these bookings (the database's clock), how many there are, and
 * how many came after the first: a rate is `after / span`, since the decisions stamped at the
 * first instant (a whole batch shares one) were made before the span starts.
 */
async function decisionSpan (sql: postgres.Sql, ids: readonly string[]): Promise<{ n: number, after: number, first: Date | null, last: Date | null }> {
  const [row] = await sql<[{ n: string, after: string, first: Date | null, last: Date | null }]>`
    WITH d AS (SELECT decided_at FROM bookings WHERE id = ANY(${ids as string[]}::uuid[]) AND status <> 'PENDING')
    SELECT (SELECT count(*) FROM d) AS n, (SELECT count(*) FROM d WHERE decided_at > (SELECT min(decided_at) FROM d)) AS after,
      (SELECT min(decided_at) FROM d) AS first, (SELECT max(decided_at) FROM d) AS last`
  return { n: Number(row.n), after: Number(row.after), first: row.first, last: row.last }
}
const spanSeconds = (span: { first: Date | null, last: Date | null }): number =>
  span.first !== null && span.last !== null ? (span.last.getTime() - span.first.getTime()) / 1000 : 0

interface SaleParams { mode: string, requests: number, quota: number, ceilingRps: number, readCeilingRps: number, startedAt: Date, profileDir: string | undefined }

/** A database of its own for one mode's run: on an embedded PostgreSQL, or new on --database-url's server. */
interface RunDatabase {
  url: string
  /** Where the server's files are (its postmaster.pid gives PostgreSQL's CPU), when this machine can read them. */
  clusterDir: string | undefined
  /** Which server: "embedded", or the host and port of --database-url's. */
  server: string
  drop: () => Promise<void>
}

async function createRunDatabase (mode: string, startedAt: Date): Promise<RunDatabase> {
  const serverUrl = opts['database-url']
  if (serverUrl === undefined) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-bench-'))
    const embedded = await startEmbeddedPostgres({ dataDir, database: 'boxoffice' })
    return {
      url: embedded.url,
      clusterDir: path.join(embedded.dataDir, 'postgres'),
      server: 'embedded',
      drop: async () => {
        await embedded.stop()
        await rm(dataDir, { recursive: true, force: true })
      }
    }
  }
  const name = `boxoffice_bench_${startedAt.toISOString().replace(/\D/g, '').slice(0, 14)}_${mode}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  let clusterDir: string | undefined
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.unsafe(`CREATE DATABASE ${name}`)
    // Readable by superusers (and pg_read_all_settings); a server elsewhere simply has no CPU figure.
    const [row] = await admin<[{ dir: string }?]>`SELECT current_setting('data_directory') AS dir`.catch(() => [])
    clusterDir = row?.dir
  } finally {
    await admin.end()
  }
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    clusterDir,
    server: `${url.hostname}:${url.port === '' ? '5432' : url.port}`,
    drop: async () => {
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} })
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await dropper.end()
      }
    }
  }
}

/** One worker mode: the sale (steps 2-4) and, without --url, the settlement backlog (step 5). */
async function runMode ({ mode, requests, quota, ceilingRps, readCeilingRps, startedAt, profileDir }: SaleParams): Promise<Record<string, unknown>> {
  let database: RunDatabase | undefined
  let service: Service | undefined
  let sql: postgres.Sql | undefined
  let following: ReturnType<typeof followBookings> | undefined
  try {
    let baseUrl = opts.url
    let databaseUrl = opts['database-url']
    let adminToken = opts['admin-token']
    const serviceEnv: Record<string, string> = {}
    if (baseUrl === undefined) {
      database = await createRunDatabase(mode, startedAt)
      databaseUrl = database.url
      adminToken = randomBytes(18).toString('base64url')
      // The load generator is one client address: the per-address limit would stop it, so it is off
      // (the per-user limit stays: the crowd's users buy a few times each).
      Object.assign(serviceEnv, { DATABASE_URL: databaseUrl, ADMIN_TOKEN: adminToken, WORKER_MODE: mode, QUEUE_CAPACITY: String(Math.max(requests, backlog) * 2 + 100_000), RATE_LIMIT_PER_IP_PER_MINUTE: '0' })
      service = await startService('all', serviceEnv, profileDir)
      baseUrl = service.baseUrl
    }
    sql = postgres(databaseUrl as string, { max: 2, onnotice: () => {} })
    // Which server every figure comes from, and whether it would JIT-compile (its own default).
    const [{ version: postgresVersion, jit: postgresJit, jitAvailable }] = await sql<[{ version: string, jit: string, jitAvailable: boolean }]>`
      SELECT current_setting('server_version') AS version, current_setting('jit') AS jit, pg_jit_available() AS "jitAvailable"`
    const db = sql
    await warmUp(baseUrl, db, adminToken, `Bench warm-up ${startedAt.toISOString()} ${mode}`)
    const eventIds = await createEvents(baseUrl, adminToken as string, eventCount, quota, `Bench sale ${startedAt.toISOString()} ${mode}`)
    const pickEvent = roundRobin(eventIds)

    // The sale, sampled every 250 ms: stored (from the answers) and decided (from the database).
    const answers = answerRecorder()
    const { queuedIds, soldOutIds, statusCounts } = answers
    const samples: Sample[] = []
    let maxRssKb = 0
    const clusterDir = database?.clusterDir
    const cpuAtStart = await cpuNow(service?.child.pid, clusterDir)
    const cpuReadAt = performance.now()
    const saleStart = performance.now()
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const decided = await countSettled(db, eventIds)
        const t = (performance.now() - saleStart) / 1000
        samples.push({ t: round(t, 2), accepted: queuedIds.length + soldOutIds.length, decided })
        const rss = await rssKb(service?.child.pid)
        if (rss !== undefined) maxRssKb = Math.max(maxRssKb, rss)
        const sent = [...statusCounts.values()].reduce((a, b) => a + b, 0)
        log(`  t=${t.toFixed(1)}s  sent ${sent}  queued ${queuedIds.length}  sold out at once ${soldOutIds.length}  decided ${decided}`)
        await sleep(250)
      }
    })()

    // Cancellations during the sale: every so many queued purchases is cancelled by the admin (a
    // successful one gives its seats back, so the sold-out fast path must reopen), a few at a time.
    const cancelEvery = cancelPercent > 0 ? Math.max(1, Math.round(100 / cancelPercent)) : 0
    const cancelStatuses = new Map<number, number>()
    const cancelledIds: string[] = []
    let selling = true
    const canceller = (async () => {
      let next = 0
      while (cancelEvery > 0 && (selling || next < queuedIds.length)) {
        const chosen: string[] = []
        for (; next < queuedIds.length && chosen.length < 8; next++) if (next % cancelEvery === cancelEvery - 1) chosen.push(queuedIds[next] as string)
        if (chosen.length === 0) {
          await sleep(20)
          continue
        }
        await Promise.all(chosen.map(async (id) => {
          const res = await fetch(`${baseUrl}/bookings/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken as string}` } })
          await res.arrayBuffer()
          cancelStatuses.set(res.status, (cancelStatuses.get(res.status) ?? 0) + 1)
          if (res.status === 202 || res.status === 200) cancelledIds.push(id)
        }))
      }
    })()

    // Buyers told 202 follow their bookings, from the first answer until all are decided (a 200
    // is an outcome already: sold out at once).
    following = followers > 0 ? followBookings(baseUrl, answers.queuedLocations, { followers }) : undefined

    const users = crowdSize(requests)
    log(`sale (${mode}): ${requests} requests from ${users} users, ${eventCount} event(s) x ${quota} seats${maxPerUser > 0 ? `, at most ${maxPerUser} per user` : ''}, concurrency ${concurrency}, ${cancelPercent}% of queued purchases cancelled`)
    const sale = await runAutocannon(buyRequest(baseUrl, pickEvent, answers.onResponse, crowd(users)), { amount: requests, seconds: durationS })
    const lastAnswerAt = answers.lastAnswerAt() || saleStart
    const cpuAtEnd = await cpuNow(service?.child.pid, clusterDir)
    const cpuSeconds = (performance.now() - cpuReadAt) / 1000
    const lastStoredAt = answers.lastStoredAt()
    selling = false
    await canceller
    // From the first request to the last answer (autocannon's own duration is rounded up to its
    // one-second ticks, too coarse for a sale of a few seconds).
    const intakeSeconds = (lastAnswerAt - saleStart) / 1000 || sale.duration
    const stored = queuedIds.length + soldOutIds.length
    // How much settlement kept pace while the crowd was still arriving.
    const decidedDuringIntake = await countSettled(db, eventIds)

    // Drain: wait for every stored purchase to be decided.
    await waitUntilSettled(db, eventIds, stored, waitS)
    sampling = false
    await sampler
    const followed: FollowFigures | undefined = await following?.stop()
    following = undefined
    // Then every buyer reads the outcome back, as fast as the service answers.
    log(`reads (${mode}): ${readCount} reads of the buyers' Locations from ${readOptions.readers} connections...`)
    const readAfter: ReadBackFigures | undefined = readCount > 0 && answers.locations.length > 0
      ? await readBack(baseUrl, answers.locations, readCount, readOptions, Math.max(durationS, 60))
      : undefined
    const waits = await poolWaits(baseUrl)
    const decided = await countSettled(db, eventIds)
    const queuedSpan = await decisionSpan(db, queuedIds)
    const [timing] = await db<[{ last: Date | null }]>`
      SELECT max(decided_at) AS last FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status <> 'PENDING'`
    const allDecidedAt = samples.at(-1)?.t ?? 0
    const timeToAllDecided = decided >= stored ? allDecidedAt : null

    const storedIds = [...queuedIds, ...soldOutIds]
    const invariants = await checkInvariants(db, { baseUrl, eventIds, acceptedIds: storedIds, sampleSize, maxPerUser, cancelledIds })
    const soldOutWrong = soldOutIds.length === 0
      ? 0
      : Number((await db<[{ n: string }]>`SELECT count(*) AS n FROM bookings WHERE id = ANY(${soldOutIds}::uuid[]) AND (status <> 'FAILED' OR reason <> 'sold_out')`)[0].n)
    if (soldOutWrong > 0) invariants.failures.push(`${soldOutWrong} purchases answered "sold out" at once are not stored as failed/sold_out`)
    // The operators' own check (GET /admin/invariants) must agree: every event ok, the same seats sold.
    const endpointProblems = await checkInvariantsEndpoint(baseUrl, adminToken as string, eventIds, invariants.sold)
    invariants.failures.push(...endpointProblems)
    // A buyer reading its booking must never be told the database is unavailable.
    const readUnavailable = (followed?.unavailable ?? 0) + (readAfter?.unavailable ?? 0)
    const readErrors = (followed?.errors ?? 0) + (readAfter?.errors ?? 0)
    if (readUnavailable > 0) invariants.failures.push(`${readUnavailable} booking reads answered 503`)
    if (readErrors > 0) invariants.failures.push(`${readErrors} booking reads failed or answered neither 200 nor 503`)

    // Settlement alone: the API stores a backlog with no worker running, then the worker is timed.
    let settlement: Record<string, unknown> = { settle_backlog: 0 }
    if (opts.url === undefined && backlog > 0) {
      await stopOrThrow(service, 'the service')
      service = undefined
      settlement = await timeSettlement(db, serviceEnv, adminToken as string, mode, quota, startedAt, profileDir, invariants.failures)
    }

    const intakeRps = stored / intakeSeconds
    return {
      requests,
      quota: quota * eventCount,
      events: eventCount,
      concurrency,
      warmup_requests: warmupRequests,
      quantity_mix: opts.quantity,
      accepted: queuedIds.length,
      sold_out_at_once: soldOutIds.length,
      stored,
      rejected_busy: statusCounts.get(503) ?? 0,
      errors: sale.errors + sale.timeouts + [...statusCounts].filter(([s]) => s !== 202 && s !== 200 && s !== 503).reduce((sum, [, n]) => sum + n, 0),
      intake_seconds: round(intakeSeconds, 3),
      intake_rps: round(intakeRps),
      intake_p50_ms: sale.latency.p50,
      intake_p99_ms: sale.latency.p99,
      decided,
      decided_during_intake: decidedDuringIntake,
      decide_rps: round(spanSeconds(queuedSpan) > 0 ? queuedSpan.after / spanSeconds(queuedSpan) : queuedSpan.n),
      time_to_all_decided_s: timeToAllDecided,
      last_decision_after_last_acceptance_s: timing.last !== null && lastStoredAt > 0
        ? round((timing.last.getTime() - (performance.timeOrigin + lastStoredAt)) / 1000, 3)
        : null,
      ...settlement,
      sold: invariants.sold,
      oversold: invariants.oversold,
      quota_mismatch: invariants.quota_mismatch,
      lost: invariants.lost,
      max_per_user: maxPerUser,
      users,
      limit_exceeded: invariants.limit_exceeded,
      over_cap: invariants.over_cap,
      cancel_requests: [...cancelStatuses.values()].reduce((a, b) => a + b, 0),
      cancel_accepted: cancelledIds.length,
      cancel_refused: cancelStatuses.get(409) ?? 0,
      cancelled_bookings: invariants.cancelled,
      cancelled_seats: invariants.cancelled_seats,
      cancellations_lost: invariants.cancellations_lost,
      duplicate_ids: invariants.duplicate_ids,
      api_sampled: invariants.api_sampled,
      api_disagreements: invariants.api_disagreements,
      ceiling_rps: round(ceilingRps),
      intake_ratio: round(intakeRps / ceilingRps, 3),
      // Reads: the buyers following their bookings during the sale and the drain, then every
      // buyer reading the outcome back, against the no-op GET's ceiling.
      followers,
      follow_bookings: followed?.followed ?? 0,
      follow_polls: followed?.polls ?? 0,
      follow_waits: followed?.waits ?? 0,
      follow_reads_per_s: followed?.reads_per_s ?? null,
      follow_poll_p50_ms: followed?.poll_p50_ms ?? null,
      follow_poll_p99_ms: followed?.poll_p99_ms ?? null,
      readers: readOptions.readers,
      reads: readAfter?.reads ?? 0,
      read_ceiling_rps: round(readCeilingRps),
      read_rps: readAfter?.read_rps ?? null,
      read_ratio: readAfter === undefined ? null : round(readAfter.read_rps / readCeilingRps, 3),
      read_p50_ms: readAfter?.read_p50_ms ?? null,
      read_p99_ms: readAfter?.read_p99_ms ?? null,
      read_unavailable: readUnavailable,
      read_errors: readErrors,
      // The API pool's waits for a connection over the run (bucket bounds of its histogram).
      db_pool_max: waits?.max ?? null,
      db_acquire_waits: waits?.count ?? null,
      db_acquire_p50_ms: waits?.p50_ms ?? null,
      db_acquire_p99_ms: waits?.p99_ms ?? null,
      server_max_rss_mb: maxRssKb > 0 ? round(maxRssKb / 1024) : null,
      // CPU per stored request during the sale (microseconds; 10 ms ticks over the sale's seconds),
      // the service's including the worker's decisions beside it, and what the machine had idle.
      ...cpuPerRequest(cpuAtStart, cpuAtEnd, stored, cpuSeconds),
      worker_mode: mode,
      node_version: process.version,
      postgres_version: postgresVersion,
      postgres_server: database?.server ?? 'the one --url runs on',
      postgres_jit: postgresJit === 'on' && jitAvailable ? 'on' : jitAvailable ? 'off' : 'not built in',
      cpus: os.cpus().length,
      started_at: startedAt.toISOString(),
      endpoint_invariants_ok: endpointProblems.length === 0,
      invariants_ok: invariants.failures.length === 0 && timeToAllDecided !== null,
      failures: timeToAllDecided === null ? [...invariants.failures, `not every purchase was decided within ${waitS} s`] : invariants.failures,
      samples
    }
  } finally {
    await following?.stop()
    await sql?.end({ timeout: 5 })
    try {
      await stopOrThrow(service, 'the service')
    } finally {
      await database?.drop()
    }
  }
}

async function stopOrThrow (service: Service | undefined, what: string): Promise<void> {
  if (service === undefined) return
  const code = await stopChild(service.child)
  if (code !== 0) throw new Error(`${what} exited with ${code} on SIGTERM`)
}

/**
 * Step 5: `--backlog` purchases for fresh events, stored by `npm run server` with no worker
 * anywhere (so none is sold out at once), then `npm run worker` alone, timed from its first
 * decision to its last (the database's clock), for at most `--backlog-seconds`.
 */
async function timeSettlement (db: postgres.Sql, env: Record<string, string>, token: string, mode: string, quota: number, startedAt: Date, profileDir: string | undefined, failures: string[]): Promise<Record<string, unknown>> {
  const api = await startService('api', env, profileDir)
  let worker: Service | undefined
  try {
    // Settlement alone is the performance issue's measure, purchases decided per second, taken on
    // plain events (no cap): a cap adds a lookup of each buyer's seats per batch (bench/README.md, "Where the time goes").
    const eventIds = await createEvents(api.baseUrl, token, eventCount, quota, `Bench backlog ${startedAt.toISOString()} ${mode}`, 0)
    const ids: string[] = []
    log(`settlement (${mode}): storing a backlog of ${backlog} purchases with no worker running...`)
    const fill = await runAutocannon(buyRequest(api.baseUrl, roundRobin(eventIds), (status, body) => {
      if (status === 202) ids.push((JSON.parse(body) as { booking_id: string }).booking_id)
    }), { amount: backlog, seconds: Math.max(durationS, 120) })
    if (ids.length < backlog) failures.push(`settlement backlog: only ${ids.length} of ${backlog} purchases were stored (${fill.non2xx} refused)`)
    await stopOrThrow(api, 'the API')
    log(`settlement (${mode}): starting the worker alone on ${ids.length} purchases (at most ${backlogS} s)...`)
    worker = await startService('worker', { ...env }, profileDir)
    const decided = await waitUntilSettled(db, eventIds, ids.length, backlogS)
    await stopOrThrow(worker, 'the worker')
    worker = undefined
    const span = await decisionSpan(db, ids)
    const seconds = spanSeconds(span)
    // Whatever was decided must still add up: no seat sold twice, quota used == seats sold.
    const check = await checkInvariants(db, { baseUrl: '', eventIds, acceptedIds: [], sampleSize: 0 })
    failures.push(...check.failures.map((f) => `settlement: ${f}`))
    log(`settlement (${mode}): ${span.n} decided in ${seconds.toFixed(2)} s`)
    return {
      settle_backlog: ids.length,
      settle_decided: span.n,
      settle_drained: decided >= ids.length,
      settle_seconds: round(seconds, 3),
      settle_rps: round(seconds > 0 ? span.after / seconds : span.n)
    }
  } finally {
    await stopChild(worker?.child)
    await stopChild(api.child)
  }
}

let noop: ChildProcess | undefined
let exitCode: number
try {
  const startedAt = new Date()
  // 1. The ceiling, measured first, while nothing else runs.
  const noopPort = await freePort()
  noop = spawn(process.execPath, [path.join(ROOT, 'bench', 'noop-server.ts')], { env: { ...process.env, PORT: String(noopPort), HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  await waitForLine(noop, 'ready')
  log(`ceiling: loading a no-op POST /buy for ${ceilingS} s at concurrency ${concurrency}...`)
  const fakeEvent = randomUUID()
  await warmUp(`http://127.0.0.1:${noopPort}`, undefined, undefined, '')
  const ceiling = await runAutocannon(buyRequest(`http://127.0.0.1:${noopPort}`, () => fakeEvent, answerRecorder().onResponse, crowd(crowdSize(requests))), { seconds: ceilingS })
  const ceilingRps = ceiling['2xx'] / (ceiling.duration || ceilingS)
  log(`ceiling: ${Math.round(ceilingRps)} req/s`)
  // The read ceiling: the no-op GET /bookings/:id, at the readers' concurrency, over as many
  // different Locations as the sale's buyers will read.
  const noopLocations = Array.from({ length: 1000 }, () => bookingLocation(randomUUID(), randomUUID()))
  log(`read ceiling: loading a no-op GET /bookings/:id for ${ceilingS} s at concurrency ${readOptions.readers}...`)
  const readCeilingRps = await readCeiling(`http://127.0.0.1:${noopPort}`, noopLocations, readOptions, ceilingS)
  log(`read ceiling: ${Math.round(readCeilingRps)} req/s`)
  await stopChild(noop)

  await mkdir(opts.out, { recursive: true })
  const stamp = startedAt.toISOString().replaceAll(':', '-').replace(/\..*/, '')
  const results: Array<Record<string, unknown>> = []
  for (const mode of workerModes) {
    // The serial worker settles a few hundred purchases a second: it gets a smaller sale with the
    // same seats-to-requests ratio, so it ends in about a minute rather than many.
    const modeRequests = mode === 'serial' && opts.url === undefined ? Math.min(requests, serialRequests) : requests
    const modeQuota = Math.max(1, Math.round(quota * modeRequests / requests))
    const stem = path.join(opts.out, `flash-sale-${stamp}-${mode}`)
    const profileDir = opts.profile ? `${stem}-profiles` : undefined
    const { samples, ...result } = await runMode({ mode, requests: modeRequests, quota: modeQuota, ceilingRps, readCeilingRps, startedAt, profileDir })
    results.push(result)
    await writeFile(`${stem}.json`, JSON.stringify(result, null, 2) + '\n')
    await writeFile(`${stem}.svg`, await renderChart(samples as Sample[], ceilingRps,
      `Flash sale: ${modeRequests} requests, ${result.quota as number} seats, concurrency ${concurrency}, worker ${mode}`))
    result.written = [`${stem}.json`, `${stem}.svg`]
    if (profileDir !== undefined) {
      result.profiles = profileDir
      log(`\nwhere the time went (${mode}), self time by function across ${profileDir}:`)
      process.stderr.write((await summarizeProfiles(profileDir)) + '\n')
    }
  }
  printTable(results)
  if (opts.json) for (const result of results) process.stdout.write(JSON.stringify(result) + '\n')
  exitCode = results.every((result) => result.invariants_ok === true) ? 0 : 1
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  exitCode = 1
} finally {
  await stopChild(noop)
}
process.exitCode = exitCode

/** One column per mode, side by side. */
function printTable (results: ReadonlyArray<Record<string, unknown>>): void {
  const v = (r: Record<string, unknown>, key: string): string => {
    const value = r[key]
    return typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' ? String(value) : '-'
  }
  const rows: Array<[string, (r: Record<string, unknown>) => string]> = [
    ['requests / seats / events', (r) => `${v(r, 'requests')} / ${v(r, 'quota')} / ${v(r, 'events')}`],
    ['queued (202) / sold out at once (200)', (r) => `${v(r, 'accepted')} / ${v(r, 'sold_out_at_once')}`],
    ['busy (503) / errors', (r) => `${v(r, 'rejected_busy')} / ${v(r, 'errors')}`],
    ['no-op ceiling', (r) => `${v(r, 'ceiling_rps')} req/s`],
    ['intake (stored and committed)', (r) => `${v(r, 'intake_rps')} req/s (${pct(r.intake_ratio as number)})`],
    ['intake latency p50 / p99', (r) => `${v(r, 'intake_p50_ms')} / ${v(r, 'intake_p99_ms')} ms`],
    ['queued purchases decided per s', (r) => `${v(r, 'decide_rps')} (${v(r, 'decided_during_intake')} decided during intake)`],
    ['all decided after', (r) => r.time_to_all_decided_s === null ? `NOT within ${waitS} s` : `${v(r, 'time_to_all_decided_s')} s`],
    ['last decision after last answer', (r) => `${v(r, 'last_decision_after_last_acceptance_s')} s`],
    ['settlement alone: decided / backlog', (r) => r.settle_backlog === 0 ? '-' : `${v(r, 'settle_decided')} / ${v(r, 'settle_backlog')}${r.settle_drained === true ? '' : ' (time-boxed)'}`],
    ['settlement alone: decisions per s', (r) => r.settle_backlog === 0 ? '-' : `${v(r, 'settle_rps')} in ${v(r, 'settle_seconds')} s`],
    ['sold / seats', (r) => `${v(r, 'sold')} / ${v(r, 'quota')}`],
    ['users / cap / limit_exceeded / over cap', (r) => `${v(r, 'users')} / ${r.max_per_user === 0 ? 'none' : v(r, 'max_per_user')} / ${v(r, 'limit_exceeded')} / ${v(r, 'over_cap')}`],
    ['cancellations: asked / accepted / 409', (r) => `${v(r, 'cancel_requests')} / ${v(r, 'cancel_accepted')} / ${v(r, 'cancel_refused')}`],
    ['cancelled bookings / seats back / lost', (r) => `${v(r, 'cancelled_bookings')} / ${v(r, 'cancelled_seats')} / ${v(r, 'cancellations_lost')}`],
    ['oversold / quota mismatch / lost / dup ids', (r) => `${v(r, 'oversold')} / ${v(r, 'quota_mismatch')} / ${v(r, 'lost')} / ${v(r, 'duplicate_ids')}`],
    ['API agrees with database', (r) => `${(r.api_sampled as number) - (r.api_disagreements as number)} of ${v(r, 'api_sampled')}`],
    ['reads while following (polls / ?wait=)', (r) => `${v(r, 'follow_polls')} / ${v(r, 'follow_waits')} for ${v(r, 'follow_bookings')} bookings (${v(r, 'follow_reads_per_s')}/s), poll p50 / p99 ${v(r, 'follow_poll_p50_ms')} / ${v(r, 'follow_poll_p99_ms')} ms`],
    ['no-op GET ceiling', (r) => `${v(r, 'read_ceiling_rps')} req/s`],
    ['reads after the sale', (r) => r.read_rps === null ? '-' : `${v(r, 'reads')} at ${v(r, 'read_rps')} req/s (${pct(r.read_ratio as number)}), p50 / p99 ${v(r, 'read_p50_ms')} / ${v(r, 'read_p99_ms')} ms`],
    ['reads answered 503 / failed', (r) => `${v(r, 'read_unavailable')} / ${v(r, 'read_errors')}`],
    ['API pool: connections / wait for one p50 / p99', (r) => `${v(r, 'db_pool_max')} / <= ${v(r, 'db_acquire_p50_ms')} / <= ${v(r, 'db_acquire_p99_ms')} ms`],
    ['server max RSS', (r) => `${v(r, 'server_max_rss_mb')} MB`],
    ['sale CPU per request: service / postgres / generator', (r) => `${v(r, 'sale_cpu_us_per_request_service')} / ${v(r, 'sale_cpu_us_per_request_postgres')} / ${v(r, 'sale_cpu_us_per_request_generator')} us (${typeof r.sale_cpu_idle_share === 'number' ? pct(r.sale_cpu_idle_share) : '-'} idle)`],
    ['node / postgres (server, its JIT)', (r) => `${v(r, 'node_version')} / ${v(r, 'postgres_version')} (${v(r, 'postgres_server')}, JIT ${v(r, 'postgres_jit')})`],
    ['invariants', (r) => r.invariants_ok === true ? 'ALL HELD' : `FAILED: ${(r.failures as string[]).join('; ')}`]
  ]
  const header: [string, ...string[]] = ['worker mode', ...results.map((r) => String(r.worker_mode))]
  const lines = [header, ...rows.map(([label, cell]) => [label, ...results.map(cell)])]
  const widths = header.map((_h, i) => Math.max(...lines.map((line) => (line[i] ?? '').length)))
  process.stdout.write(lines.map((line) => line.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n') + '\n')
  for (const r of results) process.stdout.write(`written (${String(r.worker_mode)}): ${(r.written as string[]).join(', ')}\n`)
}

async function fetchUntilHealthy (baseUrl: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('the service exited during start-up')
    try {
      if ((await fetch(`${baseUrl}/health`)).ok) return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${baseUrl}/health did not answer 200 within 60 s`)
    await sleep(100)
  }
}
