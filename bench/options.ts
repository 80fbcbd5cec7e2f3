// Usage: imported by bench/flash-sale.ts; parseBenchOptions() reads its command line.
//
// The bench's flags, their help text, and their checks: a bad flag exits 2 with one line saying
// which, before anything runs.
import path from 'node:path'
import { parseArgs } from 'node:util'
import { WORKER_MODES } from '../lib/config.ts'
import { WEBHOOK_EVENT_TYPES } from '../purchase/webhook-messages.ts'

const ROOT = path.resolve(import.meta.dirname, '..')

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
  --hold-seconds N      the sale's events hold a purchase's seats N s (1-86400) until the seller
                        confirms; 0 = events without holds, the sale as it was before holds, whose
                        figures compare with older records (default 3, so a run ends a few s later)
  --confirm-percent P   share of the holds the seller confirms (POST /bookings/:id/confirm) as soon
                        as it sees them held (default 60)
  --release-percent P   share of the holds their buyer releases (DELETE /bookings/:id); the rest are
                        left to expire (default 10, so 30% expire)
  --buyer-tokens        buyers sign in: the service runs with BUYER_AUTH=jwt and the bench's own key,
                        each crowd user gets an RS256 token signed before the sale and sends it with
                        every purchase (no user_id in the body) and every read (default off)
  --webhooks            a receiver in the bench subscribes to webhooks for the whole run; after the
                        sale every message queued must have been delivered once (default off)
  --webhook-types T     with --webhooks, the types it asks for, comma-separated, e.g.
                        booking.success,booking.held (default all: sold-out answers included)
  --worker-mode MODES   WORKER_MODE(s) to run, comma-separated, side by side (default batched,serial)
  --wait S              longest wait for every accepted purchase to be decided and every hold to
                        end (default 180)
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

export interface BenchOptions {
  requests: number
  quota: number
  serialRequests: number
  warmupRequests: number
  backlog: number
  backlogS: number
  profile: boolean
  concurrency: number
  durationS: number
  /** The --quantity mix as given (reported), and a function drawing from it. */
  quantity: string
  pickQuantity: () => number
  eventCount: number
  maxPerUser: number
  /** --users, when given. */
  users: number | undefined
  cancelPercent: number
  /** The sale's events' hold_seconds; 0: no holds. */
  holdSeconds: number
  confirmPercent: number
  releasePercent: number
  /** Buyers sign in: BUYER_AUTH=jwt, each crowd user sends its token (bench/buyer-tokens.ts). */
  buyerTokens: boolean
  /** A webhook receiver subscribed to these types for the whole run (bench/webhooks.ts); undefined: none. */
  webhooks: string[] | undefined
  workerModes: string[]
  waitS: number
  ceilingS: number
  sampleSize: number
  readers: number
  readCount: number
  followers: number
  url: string | undefined
  databaseUrl: string | undefined
  adminToken: string | undefined
  out: string
  json: boolean
  quiet: boolean
}

export function fail (message: string): never {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

function int (name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min} (got ${value})`)
  return n
}

function percent (name: string, value: string | undefined): number {
  const n = Number(value)
  if (!(n >= 0 && n <= 100)) fail(`--${name} must be 0-100 (got ${value})`)
  return n
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

/** The command line's options, checked; --help prints the usage and exits 0. */
export function parseBenchOptions (args: string[] = process.argv.slice(2)): BenchOptions {
  const { values: opts } = parseArgs({
    args,
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
      'hold-seconds': { type: 'string', default: '3' },
      'confirm-percent': { type: 'string', default: '60' },
      'release-percent': { type: 'string', default: '10' },
      'buyer-tokens': { type: 'boolean', default: false },
      webhooks: { type: 'boolean', default: false },
      'webhook-types': { type: 'string', default: 'all' },
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
  if (opts.help) {
    process.stdout.write(HELP + '\n')
    process.exit(0)
  }
  const cancelPercent = percent('cancel-percent', opts['cancel-percent'])
  const confirmPercent = percent('confirm-percent', opts['confirm-percent'])
  const releasePercent = percent('release-percent', opts['release-percent'])
  if (confirmPercent + releasePercent > 100) fail(`--confirm-percent and --release-percent must add up to at most 100 (got ${confirmPercent} + ${releasePercent})`)
  const holdSeconds = int('hold-seconds', opts['hold-seconds'], 0)
  if (holdSeconds > 86_400) fail(`--hold-seconds must be at most 86400, the service's longest hold (got ${holdSeconds})`)
  const workerModes = (opts['worker-mode'] ?? '').split(',').map((mode) => mode.trim()).filter((mode) => mode !== '')
  if (workerModes.length === 0 || workerModes.some((mode) => !(WORKER_MODES as readonly string[]).includes(mode))) {
    fail(`--worker-mode must list modes among ${WORKER_MODES.join(', ')} (got ${opts['worker-mode']})`)
  }
  if (opts.url !== undefined && (opts['database-url'] === undefined || opts['admin-token'] === undefined)) {
    fail('--url needs --database-url (for the invariant checks) and --admin-token (to create the events)')
  }
  if (opts.url !== undefined && opts['buyer-tokens']) fail('--buyer-tokens signs with a key of its own, which a server at --url does not trust: leave out --url')
  if (opts.url !== undefined && opts.webhooks) fail('--webhooks needs the service the bench runs (WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to reach its receiver): leave out --url')
  if (opts.url !== undefined && workerModes.length > 1) fail('--url measures the server that runs there: give one --worker-mode (its WORKER_MODE)')
  return {
    requests: int('requests', opts.requests, 1),
    quota: int('quota', opts.quota, 1),
    serialRequests: int('serial-requests', opts['serial-requests'], 1),
    warmupRequests: int('warmup', opts.warmup, 0),
    backlog: int('backlog', opts.backlog, 0),
    backlogS: int('backlog-seconds', opts['backlog-seconds'], 1),
    profile: opts.profile,
    concurrency: int('concurrency', opts.concurrency, 1),
    durationS: int('duration', opts.duration, 1),
    quantity: opts.quantity,
    pickQuantity: parseQuantityMix(opts.quantity),
    eventCount: int('events', opts.events, 1),
    maxPerUser: int('max-per-user', opts['max-per-user'], 0),
    users: opts.users === undefined ? undefined : int('users', opts.users, 1),
    cancelPercent,
    holdSeconds,
    confirmPercent,
    releasePercent,
    buyerTokens: opts['buyer-tokens'],
    webhooks: opts.webhooks ? webhookTypes(opts['webhook-types']) : undefined,
    workerModes,
    waitS: int('wait', opts.wait, 1),
    ceilingS: int('ceiling-seconds', opts['ceiling-seconds'], 1),
    sampleSize: int('sample', opts.sample, 0),
    readers: int('readers', opts.readers, 1),
    readCount: int('reads', opts.reads, 0),
    followers: int('followers', opts.followers, 0),
    url: opts.url,
    databaseUrl: opts['database-url'],
    adminToken: opts['admin-token'],
    out: opts.out,
    json: opts.json,
    quiet: opts.quiet
  }
}

/** --webhook-types: all of them for "all", else the listed ones. */
function webhookTypes (value: string): string[] {
  if (value === 'all') return [...WEBHOOK_EVENT_TYPES]
  const types = value.split(',').map((type) => type.trim()).filter((type) => type !== '')
  const unknown = types.filter((type) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(type))
  if (types.length === 0 || unknown.length > 0) fail(`--webhook-types takes "all" or types among ${WEBHOOK_EVENT_TYPES.join(', ')} (got ${value})`)
  return types
}
