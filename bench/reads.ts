// The read path as buyers use it (bench/flash-sale.ts runs these): each buyer told 202 follows the
// booking its answer named (the Location) until it is decided, by plain polling or with ?wait=,
// while the sale runs; afterwards every buyer reads its outcome back (with --buyer-tokens, each
// sends its token). Measured against a no-op GET /bookings/:id (bench/noop-server.ts: the same
// schemas and reply, no database), loaded with the same generator, connections and headers, so the
// ratio compares the servers alone.
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { httpClient } from './http-client.ts'

export interface ReadOptions {
  /** Connections reading at once. */
  readers: number
}

/** A buyer's read: a Location, and with buyer tokens the buyer's Authorization header. */
export interface BuyerRead {
  path: string
  authorization: string | undefined
}

/** Latency percentiles (ms, one decimal) of a list of durations. */
export function percentiles (durations: number[]): { p50: number | null, p99: number | null } {
  if (durations.length === 0) return { p50: null, p99: null }
  const sorted = [...durations].sort((a, b) => a - b)
  const at = (q: number): number => Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number).toFixed(1))
  return { p50: at(0.5), p99: at(0.99) }
}

export interface Following {
  /** Resolves with what the followers saw once stop() was called and they have finished. */
  stop: () => Promise<FollowFigures>
}

export interface FollowFigures {
  /** Bookings followed until decided (or until stopped). */
  followed: number
  /** Reads (polls and ?wait= together) a second over the time followed. */
  reads_per_s: number
  /** Plain GETs of a Location, and their latency. */
  polls: number
  poll_p50_ms: number | null
  poll_p99_ms: number | null
  /** GETs with ?wait= (held by the server until the booking is settled, so not timed). */
  waits: number
  /** Answers 503 and answers neither 200 nor 503, over both kinds. */
  unavailable: number
  errors: number
}

const POLL_EVERY_MS = 200
const WAIT_SECONDS = 5

/**
 * `followers` buyers follow the bookings in `locations` (which grows as the sale answers), each
 * taking the next one not followed yet: half poll its Location every 200 ms until it is decided,
 * half ask with ?wait=5 until it is, with the buyer's token when `authorizationAt` has one. Runs
 * until stop().
 */
export function followBookings (baseUrl: string, locations: readonly string[],
  { followers, authorizationAt }: { followers: number, authorizationAt: (location: string) => string | undefined }): Following {
  let stopping = false
  let next = 0
  const figures = { followed: 0, polls: 0, waits: 0, unavailable: 0, errors: 0 }
  const pollTimes: number[] = []
  const started = performance.now()
  const client = httpClient(followers)

  async function read (location: string, wait: boolean, headers: Record<string, string>): Promise<string | undefined> {
    const started = performance.now()
    try {
      const res = await client.request('GET', `${baseUrl}${location}${wait ? `&wait=${WAIT_SECONDS}` : ''}`, { headers, timeoutMs: (WAIT_SECONDS + 10) * 1000 })
      const body = res.body
      if (wait) figures.waits++
      else {
        figures.polls++
        pollTimes.push(performance.now() - started)
      }
      if (res.status === 503) figures.unavailable++
      else if (res.status !== 200) figures.errors++
      return res.status === 200 ? (JSON.parse(body) as { status: string }).status : undefined
    } catch {
      figures.errors++
      return undefined
    }
  }

  async function follower (index: number): Promise<void> {
    const waits = index % 2 === 1
    while (!stopping) {
      const location = locations[next]
      if (location === undefined) {
        await sleep(20)
        continue
      }
      next++
      figures.followed++
      const authorization = authorizationAt(location)
      const headers: Record<string, string> = authorization === undefined ? {} : { authorization }
      for (;;) {
        const status = await read(location, waits, headers)
        if (status !== 'pending' || stopping) break
        if (!waits) await sleep(POLL_EVERY_MS)
      }
    }
  }

  const running = Promise.all(Array.from({ length: followers }, async (_v, i) => { await follower(i) }))
  return {
    async stop () {
      stopping = true
      await running
      client.close()
      const { p50, p99 } = percentiles(pollTimes)
      const seconds = (performance.now() - started) / 1000
      return { ...figures, reads_per_s: Number(((figures.polls + figures.waits) / (seconds || 1)).toFixed(1)), poll_p50_ms: p50, poll_p99_ms: p99 }
    }
  }
}

export interface ReadBackFigures {
  reads: number
  read_rps: number
  read_p50_ms: number
  read_p99_ms: number
  unavailable: number
  errors: number
}

/** Loads GET requests for `reads` (cycled) at `readers` connections: `amount` requests, or for `seconds`. */
async function loadGets (baseUrl: string, reads: readonly BuyerRead[], { readers }: ReadOptions, limit: { amount?: number, seconds: number }):
  Promise<{ result: autocannon.Result, statuses: Map<number, number>, seconds: number }> {
  let next = 0
  const statuses = new Map<number, number>()
  // From the start to the last answer: autocannon's own duration counts whole seconds.
  const started = performance.now()
  let lastAnswerAt = started
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: baseUrl,
      connections: readers,
      ...(limit.amount !== undefined ? { amount: limit.amount } : { duration: limit.seconds }),
      requests: [{
        method: 'GET',
        setupRequest: (req) => {
          const { path, authorization } = reads[next++ % reads.length] as BuyerRead
          return authorization === undefined ? { ...req, path } : { ...req, path, headers: { ...req.headers, authorization } }
        },
        // As the sale's load does with its answers: the status is counted, the body parsed.
        onResponse: (status: number, body: string) => {
          lastAnswerAt = performance.now()
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
          if (status === 200) JSON.parse(body)
        }
      }]
    }, (err, res) => {
      clearTimeout(cap)
      if (err !== null && err !== undefined) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve(res)
    })
    const cap = setTimeout(() => instance.stop(), limit.seconds * 1000)
  })
  return { result, statuses, seconds: (lastAnswerAt - started) / 1000 }
}

/** The ceiling: the no-op server's GET /bookings/:id, for `seconds`. Requests per second. */
export async function readCeiling (noopUrl: string, reads: readonly BuyerRead[], options: ReadOptions, seconds: number): Promise<number> {
  const { result, seconds: elapsed } = await loadGets(noopUrl, reads, options, { seconds })
  return result['2xx'] / (elapsed || seconds)
}

/** Every buyer reads its outcome back: `amount` GETs of the Locations, `readers` at a time. */
export async function readBack (baseUrl: string, reads: readonly BuyerRead[], amount: number, options: ReadOptions,
  seconds: number): Promise<ReadBackFigures> {
  const { result, statuses, seconds: elapsed } = await loadGets(baseUrl, reads, options, { amount, seconds })
  const answered = [...statuses.values()].reduce((a, b) => a + b, 0)
  return {
    reads: answered,
    // Reads answered with the booking; anything else is counted below, not as a read.
    read_rps: Number(((statuses.get(200) ?? 0) / (elapsed || 1)).toFixed(1)),
    read_p50_ms: result.latency.p50,
    read_p99_ms: result.latency.p99,
    unavailable: statuses.get(503) ?? 0,
    errors: result.errors + result.timeouts + [...statuses].filter(([s]) => s !== 200 && s !== 503).reduce((sum, [, n]) => sum + n, 0)
  }
}

/**
 * From the service's /metrics: its API pool's size, and how long the pool's queries and
 * transactions waited for a connection over the run (boxoffice_db_pool_acquire_seconds), as the
 * upper bounds of the buckets holding the median and the 99th percentile, in ms; undefined when
 * not served.
 */
export async function poolWaits (baseUrl: string): Promise<{ max: number | null, count: number, p50_ms: number | null, p99_ms: number | null } | undefined> {
  const res = await fetch(`${baseUrl}/metrics`).catch(() => undefined)
  if (res?.ok !== true) return undefined
  const text = await res.text()
  const labelled = (line: string, name: string, value: string): boolean => line.includes(`${name}="${value}"`)
  const samples = text.split('\n').filter((line) => line.startsWith('boxoffice_db_pool_') && labelled(line, 'pool', 'api'))
  const max = samples.find((line) => line.startsWith('boxoffice_db_pool_connections{') && labelled(line, 'state', 'max'))
  const buckets = samples.filter((line) => line.startsWith('boxoffice_db_pool_acquire_seconds_bucket{'))
    .map((line) => ({ le: Number(/le="([^"]+)"/.exec(line)?.[1]), n: Number(line.slice(line.lastIndexOf(' ') + 1)) }))
    .sort((a, b) => a.le - b.le)
  const count = buckets.at(-1)?.n ?? 0
  const at = (q: number): number | null => {
    const bucket = buckets.find((b) => b.n >= q * count)
    return count === 0 || bucket === undefined || !Number.isFinite(bucket.le) ? null : bucket.le * 1000
  }
  return { max: max === undefined ? null : Number(max.slice(max.lastIndexOf(' ') + 1)), count, p50_ms: at(0.5), p99_ms: at(0.99) }
}
