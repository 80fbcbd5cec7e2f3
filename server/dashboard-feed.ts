import type { Logger } from 'pino'
import { withEveryPlan, type Db } from '../db/client.ts'
import { listEvents, readEventTotals, type EventSummary, type SaleStatus } from '../db/events.ts'

/** One event as the dashboard shows it: the seat counts of GET /events/:id, from the same query. */
export interface DashboardEvent {
  id: string
  name: string
  total_quota: number
  available_quota: number
  /** Seats of successful bookings: total_quota = available_quota + held + sold. */
  sold: number
  /** Seats held for purchases waiting for the seller's confirmation. */
  held: number
  /** How long the event holds a purchase's seats; null: purchases are final at once (holds begun before it was cleared still count in held). */
  hold_seconds: number | null
  pending: number
  cancelled: number
  sale_status: SaleStatus
}

/** What the dashboard shows besides the chart; sent again only when it changes. */
export interface DashboardState {
  /** Newest first, at most `eventLimit`. */
  events: DashboardEvent[]
  /** Every event there is (more than `events` holds when the list is capped). */
  events_total: number
  /** Purchases waiting for their decision, over every event. */
  queue_depth: number
}

/** One point of the chart: the workers' decisions per second over the tick that ended at `t`. */
export interface DashboardPoint {
  /** Milliseconds since the epoch, by the server's clock. */
  t: number
  decisions_per_second: number
}

export interface DashboardSnapshot {
  state: DashboardState
  /** A counter of decisions that only grows; the chart plots its differences. */
  decided: number
}

/** Where the feed writes: an HTTP response (or a stand-in in tests). */
export interface FeedClient {
  write: (chunk: string) => boolean
  end: () => void
  destroy: () => void
  readonly writableLength: number
}

export interface FeedOptions {
  tickMs: number
  /** How much chart history is kept, and sent to each new client at once. */
  historyMs: number
  /** Clients at once; beyond it join() answers 'full'. */
  maxClients: number
  /** A client that has not read this much of what was sent is dropped (it reconnects afresh). */
  maxBufferedBytes: number
}

export const FEED_DEFAULTS: FeedOptions = Object.freeze({
  // One snapshot a second: live enough to watch a sale, three small queries a second for the
  // database whether one dashboard is open or a thousand.
  tickMs: 1000,
  historyMs: 5 * 60_000,
  // Each open dashboard is a socket and a copy of every message: a state of 50 events is ~10 KB,
  // so a thousand clients during a sale are ~10 MB/s out of this process. Enough for a team's
  // screens; a public audience belongs behind a cache or a CDN, not on this process.
  maxClients: 1000,
  // A few minutes of messages for a client on a slow link; a stalled one is cut rather than
  // buffered without end.
  maxBufferedBytes: 256 * 1024
})

// Newest first, this many at most: a screenful, and a bounded snapshot whatever the database holds.
export const DASHBOARD_EVENT_LIMIT = 50

// How a client reconnects after the stream drops (EventSource does it by itself).
const RETRY_MS = 2000

export interface Joined {
  /** What a new client gets first: the reconnect delay, the chart's history, the current state. */
  greeting: string
  leave: () => void
}

export interface DashboardFeed {
  /** Adds a client; the caller writes `greeting` to it before anything else. */
  join: (client: FeedClient) => Joined | 'full' | 'closed'
  readonly clients: number
  /** Whether the ticker runs (only while a client is connected). */
  readonly ticking: boolean
  /** Stops the ticker, waits for a snapshot being read, and ends every client's stream. */
  close: () => Promise<void>
}

export interface FeedDeps {
  readSnapshot: () => Promise<DashboardSnapshot>
  log: Logger
  /** The clock the chart's times and rates are measured by (milliseconds since the epoch). */
  now?: () => number
}

const message = (event: string, data: string): string => `event: ${event}\ndata: ${data}\n\n`

/**
 * The dashboard's live feed (server-sent events). One snapshot is read per tick and the same bytes
 * are written to every client, so the database's cost does not grow with the number of open
 * dashboards; the ticker runs only while at least one is connected. Every tick sends a chart point
 * (a few dozen bytes); the state (events, queue depth) is sent only when it changed.
 *
 * Decisions per second come from successive snapshots: the difference of a counter that grows by
 * one per decision (the events' decided_through, summed; see readEventTotals) over the time
 * between the two readings. Points are kept for `historyMs`, so a new dashboard draws its chart at
 * once.
 */
export function createDashboardFeed ({ readSnapshot, log, now = Date.now }: FeedDeps, options: FeedOptions): DashboardFeed {
  const clients = new Set<FeedClient>()
  const points: DashboardPoint[] = []
  let historyMessage: string | undefined
  let stateMessage: string | undefined
  let previous: { at: number, decided: number } | undefined
  let failing = false
  let closed = false
  let timer: NodeJS.Timeout | undefined
  let reading: Promise<void> | undefined

  function broadcast (chunk: string): void {
    for (const client of clients) {
      if (client.writableLength > options.maxBufferedBytes) {
        log.warn({ buffered: client.writableLength }, 'a dashboard stopped reading its stream; closing it')
        clients.delete(client)
        client.destroy()
        continue
      }
      client.write(chunk)
    }
  }

  function trimHistory (at: number): void {
    let stale = 0
    while (stale < points.length && (points[stale] as DashboardPoint).t < at - options.historyMs) stale++
    if (stale > 0) {
      points.splice(0, stale)
      historyMessage = undefined
    }
  }

  async function tick (): Promise<void> {
    const at = now()
    try {
      const snapshot = await readSnapshot()
      const state = message('state', JSON.stringify(snapshot.state))
      if (state !== stateMessage) {
        stateMessage = state
        broadcast(stateMessage)
      }
      // After a pause (nobody watching, or the database away) the first reading only sets the
      // baseline: an average over the gap would draw a point for a time nobody measured.
      if (previous !== undefined && at - previous.at <= 3 * options.tickMs) {
        const seconds = (at - previous.at) / 1000
        const point = { t: at, decisions_per_second: Math.round(Math.max(0, snapshot.decided - previous.decided) / seconds * 10) / 10 }
        points.push(point)
        historyMessage = undefined
        trimHistory(at)
        broadcast(message('point', JSON.stringify(point)))
      }
      previous = { at, decided: snapshot.decided }
      if (failing) log.info('dashboard snapshots are read again')
      failing = false
    } catch (err) {
      if (!failing) log.warn({ err }, 'could not read the dashboard snapshot; its clients are told, and it is tried again every tick')
      failing = true
      broadcast(message('problem', JSON.stringify({ message: 'The database is not answering; the figures shown are the last ones read.' })))
    }
  }

  function schedule (delayMs: number): void {
    timer = setTimeout(() => {
      timer = undefined
      const startedAt = Date.now()
      reading = tick().finally(() => {
        reading = undefined
        if (clients.size > 0 && !closed) schedule(Math.max(0, options.tickMs - (Date.now() - startedAt)))
      })
    }, delayMs)
  }

  const ticking = (): boolean => timer !== undefined || reading !== undefined

  function leave (client: FeedClient): void {
    clients.delete(client)
    if (clients.size === 0 && timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
  }

  return {
    join (client) {
      if (closed) return 'closed'
      if (clients.size >= options.maxClients) return 'full'
      const fresh = ticking()
      if (!fresh) {
        // The state kept from before the pause is old: the first tick sends the current one to all.
        stateMessage = undefined
        schedule(0)
      }
      clients.add(client)
      trimHistory(now())
      historyMessage ??= message('history', JSON.stringify({ tick_ms: options.tickMs, window_ms: options.historyMs, points }))
      return {
        greeting: `retry: ${RETRY_MS}\n\n${historyMessage}${fresh ? stateMessage ?? '' : ''}`,
        leave: () => { leave(client) }
      }
    },
    get clients () { return clients.size },
    get ticking () { return ticking() },
    async close () {
      closed = true
      clearTimeout(timer)
      timer = undefined
      await reading
      for (const client of clients) client.end()
      clients.clear()
    }
  }
}

function toDashboardEvent (event: EventSummary): DashboardEvent {
  return {
    id: event.id,
    name: event.name,
    total_quota: event.total_quota,
    available_quota: event.available_quota,
    sold: event.sold,
    held: event.held,
    hold_seconds: event.hold_seconds,
    pending: event.pending,
    cancelled: event.cancelled_seats,
    sale_status: event.sale_status
  }
}

/**
 * Reads one snapshot: the newest events with their counts (the query behind GET /events), then the
 * events' totals with the queue depth. Two small statements, whatever the number of purchases: the
 * per-event and overall pending counts are index-only over the pending-only index. The totals sum
 * every event, a whole-table read, so both run planned as PostgreSQL would (withEveryPlan).
 */
export function dashboardSnapshotReader (db: Db, eventLimit: number): () => Promise<DashboardSnapshot> {
  return async () => {
    const { events, totals } = await withEveryPlan(db, async (trx) => ({
      events: await listEvents(trx, { limit: eventLimit }),
      totals: await readEventTotals(trx)
    }))
    return {
      state: { events: events.map(toDashboardEvent), events_total: totals.events, queue_depth: totals.pending },
      decided: totals.decided
    }
  }
}
