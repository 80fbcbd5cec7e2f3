import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * The Prometheus metrics of one process (prom-client, its own registry), served at GET /metrics.
 * Counters and histograms are updated where things happen (cheap: no I/O); the gauges that need
 * the database read it only when scraped, with one query each.
 */
export interface Metrics {
  readonly registry: Registry
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>
  /** POST /buy answers that stored a purchase, by what the buyer was told. */
  readonly purchasesAccepted: Counter<'outcome'>
  /** Final outcomes written by this process's worker. */
  readonly purchasesDecided: Counter<'status' | 'reason'>
  readonly bookingsCancelled: Counter
  /** Holds that ended: confirmed by the seller, or expired (their seats back on sale). */
  readonly holdsEnded: Counter<'outcome'>
  /** Webhook delivery attempts: delivered (2xx), gone (410: endpoint disabled), failed (retried). */
  readonly webhookDeliveries: Counter<'outcome'>
  readonly settleBatchSize: Histogram
  readonly settleBatchDuration: Histogram
}

/** A database pool as the metrics see it. */
export interface PoolGauge {
  /** Connections now: max, in use, waiting (undefined once closed). */
  usage: () => { max: number, inUse: number, waiting: number } | undefined
  /** Calls `observe` with each wait for a connection, in seconds. */
  onAcquireWait: (observe: (seconds: number) => void) => void
}

/** A queue's job counts, as pg-boss last counted them. */
export interface QueueCounts { name: string, readyCount: number, deferredCount: number, activeCount: number, failedCount: number }

/**
 * Where the gauges read the database, wired in by the composition root (app/metrics-sources.ts), so
 * that this module knows nothing of the pools' driver, the tables or the queue.
 */
export interface MetricsSources {
  /** The process's pools, by role (api, worker). */
  pools: Partial<Record<'api' | 'worker', PoolGauge>>
  /** Pending purchases per event that has any, read when scraped. */
  pendingByEvent: () => Promise<ReadonlyArray<{ event_id: string, pending: number }>>
  /** The purchase queue's and its dead-letter queue's job counts, read when scraped. */
  queues: () => Promise<readonly QueueCounts[]>
}

const PREFIX = 'boxoffice_'

export function createMetrics ({ pools, pendingByEvent, queues }: MetricsSources): Metrics {
  const registry = new Registry()
  // Node's own: CPU, memory, GC, handles, and event-loop lag (nodejs_eventloop_lag_seconds and
  // its percentiles).
  collectDefaultMetrics({ register: registry })

  const httpDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'HTTP requests by route (the route pattern, not the URL) and status, with their latency',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const purchasesAccepted = new Counter({
    name: `${PREFIX}purchases_accepted_total`,
    help: 'Purchases stored by POST /buy: queued (202), sold_out (200, decided at once), replayed (an Idempotency-Key seen before)',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const purchasesDecided = new Counter({
    name: `${PREFIX}purchases_decided_total`,
    help: 'Purchases decided by this process\'s worker (and expired by its sweep), by final status and reason',
    labelNames: ['status', 'reason'] as const,
    registers: [registry]
  })
  const bookingsCancelled = new Counter({
    name: `${PREFIX}bookings_cancelled_total`,
    help: 'Bookings cancelled by this process\'s worker (successful ones gave their seats back)',
    registers: [registry]
  })
  const holdsEnded = new Counter({
    name: `${PREFIX}holds_ended_total`,
    help: 'Holds that ended in this process: confirmed (POST /bookings/{id}/confirm) or expired by its worker\'s sweep (seats back on sale). Holds begun are purchases_decided_total{status="held"}',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const webhookDeliveries = new Counter({
    name: `${PREFIX}webhook_deliveries_total`,
    help: 'Webhook delivery attempts made by this process: delivered (the receiver answered 2xx), gone (410: the endpoint is disabled), failed (any other answer, an error or a timeout: tried again later)',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const settleBatchSize = new Histogram({
    name: `${PREFIX}settle_batch_size`,
    help: 'Jobs claimed by one settlement transaction',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000],
    registers: [registry]
  })
  const settleBatchDuration = new Histogram({
    name: `${PREFIX}settle_batch_duration_seconds`,
    help: 'Time of one settlement transaction that claimed jobs, claim to commit',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })

  // A scrape during a database outage still answers, with the process's own metrics: the
  // database-backed gauges are left empty and the failure counted.
  const scrapeErrors = new Counter({
    name: `${PREFIX}metrics_scrape_errors_total`,
    help: 'Database-backed gauges that could not be read during a scrape (they were left empty)',
    labelNames: ['gauge'] as const,
    registers: [registry]
  })
  async function fromDatabase<T> (gauge: string, read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read()
    } catch {
      scrapeErrors.inc({ gauge })
      return undefined
    }
  }

  // How long queries and transactions wait for a connection of their pool: the measure to size
  // DB_POOL_MAX and DB_ACQUIRE_TIMEOUT_MS by (docs/configuration.md).
  const acquireWaits = new Histogram({
    name: `${PREFIX}db_pool_acquire_seconds`,
    help: 'Time a query or transaction waited for a connection of its pool (opening one included)',
    labelNames: ['pool'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  for (const [pool, gauge] of Object.entries(pools)) {
    if (gauge === undefined) continue
    const series = acquireWaits.labels({ pool })
    // For the pool's lifetime: the registry lives as long as the process's pools.
    gauge.onAcquireWait((seconds) => { series.observe(seconds) })
  }

  new Gauge({
    name: `${PREFIX}db_pool_connections`,
    help: 'Database pool connections of this process: max, in_use (by a query or transaction), waiting (queries waiting for one)',
    labelNames: ['pool', 'state'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const [pool, gauge] of Object.entries(pools)) {
        const usage = gauge?.usage()
        if (usage === undefined) continue
        this.set({ pool, state: 'max' }, usage.max)
        this.set({ pool, state: 'in_use' }, usage.inUse)
        this.set({ pool, state: 'waiting' }, usage.waiting)
      }
    }
  })
  new Gauge({
    name: `${PREFIX}pending_purchases`,
    help: 'Purchases waiting for their decision, per event (events with none are left out); read from the database when scraped',
    labelNames: ['event_id'] as const,
    registers: [registry],
    async collect () {
      this.reset()
      const pending = await fromDatabase('pending_purchases', pendingByEvent)
      for (const { event_id: eventId, pending: n } of pending ?? []) this.set({ event_id: eventId }, n)
    }
  })
  new Gauge({
    name: `${PREFIX}queue_jobs`,
    help: 'Jobs in the purchase queue and its dead-letter queue by state, as counted by pg-boss\'s last monitor pass',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect () {
      this.reset()
      const counts = await fromDatabase('queue_jobs', queues)
      for (const queue of counts ?? []) {
        this.set({ queue: queue.name, state: 'ready' }, queue.readyCount)
        this.set({ queue: queue.name, state: 'deferred' }, queue.deferredCount)
        this.set({ queue: queue.name, state: 'active' }, queue.activeCount)
        this.set({ queue: queue.name, state: 'failed' }, queue.failedCount)
      }
    }
  })

  return { registry, httpDuration, purchasesAccepted, purchasesDecided, bookingsCancelled, holdsEnded, webhookDeliveries, settleBatchSize, settleBatchDuration }
}
