import { randomUUID } from 'node:crypto'
import closeWithGrace from 'close-with-grace'
import { sql } from 'kysely'
import type { Logger } from 'pino'
import { closeDb, createDb, withEveryPlan, type DatabaseOptions, type Db } from '../db/client.ts'
import { startEmbeddedPostgres } from '../db/embedded.ts'
import { countEvents, findEventIdPreferringName, insertEvent } from '../db/events.ts'
import { migrateToLatest } from '../db/migrate.ts'
import { buildApp } from '../server/app.ts'
import { buildOpsApp } from '../server/ops-app.ts'
import { startPurchaseWorker, WORKER_POOL_SIZE, type PurchaseWorker } from '../worker/worker.ts'
import { databaseUrlRequired, loadConfigOrExit, type Config } from '../lib/config.ts'
import { createActivity } from '../lib/activity.ts'
import { createLogger } from '../lib/logger.ts'
import { createMetrics } from '../lib/metrics.ts'
import { metricsSources } from './metrics-sources.ts'
import { createBoss, ensurePurchaseQueues } from '../purchase/queue.ts'
import { ensureWebhookQueues } from '../worker/webhook-queue.ts'
import { startWebhookLoops } from '../worker/webhooks.ts'

// The sale counts as running until this long after its last intake batch or settled batch.
const SALE_QUIET_MS = 1000

export interface Roles {
  api: boolean
  worker: boolean
}

interface Closer { name: string, close: () => Promise<void> }

const roleName = (roles: Roles): string => roles.api && roles.worker ? 'all' : roles.api ? 'api' : 'worker'

/**
 * Runs the service with the given roles until SIGINT/SIGTERM. Start order: database (embedded when
 * DATABASE_URL is unset and both roles run here), migrations, pg-boss, worker, HTTP. Close runs in
 * reverse: HTTP stops taking requests and answers those in flight, the worker commits the purchase
 * in hand, then pools close and the embedded server stops last. Exit code 0 after a clean close.
 */
export async function runService (roles: Roles): Promise<void> {
  const config = loadConfigOrExit()
  if (config.DATABASE_URL === undefined && !(roles.api && roles.worker)) {
    process.stderr.write(`boxoffice: ${databaseUrlRequired(`the ${roleName(roles) === 'api' ? 'API' : 'worker'} on its own`)}\n`)
    process.exit(1)
  }
  const log = createLogger(config).child({ role: roleName(roles) })
  const closers: Closer[] = []
  let closed: Promise<void> | undefined

  async function closeAll (): Promise<void> {
    closed ??= (async () => {
      for (const { name, close } of closers.reverse()) {
        try {
          await close()
          log.debug({ resource: name }, 'closed')
        } catch (err) {
          log.error({ err, resource: name }, 'error while closing')
        }
      }
    })()
    await closed
  }

  closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS, logger: { error: (detail: unknown) => log.error({ detail }, 'graceful close did not finish') } }, async ({ signal, err }) => {
    if (err !== undefined) log.error({ err }, 'closing after an unexpected error')
    else log.info({ signal }, 'closing gracefully')
    await closeAll()
    log.info('closed')
  })

  try {
    await start(config, roles, log, closers)
  } catch (err) {
    log.fatal({ err }, 'start-up failed')
    await closeAll()
    process.exit(1)
  }
}

export type PoolRole = 'api' | 'worker' | 'webhooks' | 'migrate'

/**
 * The database pool of each role, as the service runs it (the tests build theirs from here too):
 * the API's of DB_POOL_MAX connections, the worker's of one per transaction it runs at once (its
 * LISTEN connection is separate), webhook delivery's two (in the worker's process), and
 * migrations', planned as PostgreSQL would (DDL, whole tables).
 */
export function poolOptions (role: PoolRole, url: string, config: Pick<Config, 'DB_POOL_MAX' | 'DB_CONNECT_TIMEOUT_S' | 'DB_ACQUIRE_TIMEOUT_MS' | 'DB_STATEMENT_TIMEOUT_MS'>): DatabaseOptions {
  return {
    url,
    poolMax: role === 'api' ? config.DB_POOL_MAX : role === 'worker' ? WORKER_POOL_SIZE : 2,
    connectTimeoutSeconds: config.DB_CONNECT_TIMEOUT_S,
    // The worker's transactions each own a connection of their own and never wait for one; the
    // API's requests share the pool, and one that cannot have a connection soon is answered 503.
    acquireTimeoutMs: role === 'api' ? config.DB_ACQUIRE_TIMEOUT_MS : undefined,
    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
    applicationName: `boxoffice-${role}`,
    planning: role === 'migrate' ? 'default' : 'probesOnly'
  }
}

async function start (config: Config, roles: Roles, log: Logger, closers: Closer[]): Promise<void> {
  let url = config.DATABASE_URL
  if (url === undefined) {
    const embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, port: config.EMBEDDED_PG_PORT, log: log.child({ component: 'embedded-postgres' }) })
    closers.push({ name: 'embedded-postgres', close: embedded.stop })
    log.info({ port: embedded.port, dataDir: embedded.dataDir }, 'embedded PostgreSQL started')
    url = embedded.url
  }

  const applicationName = `boxoffice-${roleName(roles)}`
  // One pool per role: sharing one, a burst of purchases queues ahead of every worker transaction
  // and starves settlement (docs/decisions/0006-one-pool-per-role.md).
  const apiDb = roles.api ? createDb(poolOptions('api', url, config)) : undefined
  const workerDb = roles.worker ? createDb(poolOptions('worker', url, config)) : undefined
  for (const [name, pool] of [['api database pool', apiDb], ['worker database pool', workerDb]] as const) {
    if (pool !== undefined) closers.push({ name, close: async () => { await closeDb(pool) } })
  }
  const migrationDb = createDb(poolOptions('migrate', url, config))
  try {
    await migrateToLatest(migrationDb)
  } finally {
    await closeDb(migrationDb)
  }

  // pg-boss's own small pool (maintenance, failure bookkeeping) is told apart in pg_stat_activity.
  const boss = createBoss({ url, applicationName: `${applicationName}-queue`, supervise: roles.worker, log })
  closers.push({ name: 'pg-boss', close: async () => { await boss.stop({ graceful: true, close: true, timeout: 5000 }) } })
  await boss.start()
  await ensurePurchaseQueues(boss)

  // One registry per process: in `npm start` the API's /metrics shows the worker's too.
  const metrics = createMetrics(metricsSources({ pools: { api: apiDb, worker: workerDb }, db: apiDb ?? workerDb as Db, boss }))
  // What webhook delivery yields to: intake and settlement in this process.
  const activity = createActivity()
  let worker: PurchaseWorker | undefined
  if (workerDb !== undefined) {
    worker = startPurchaseWorker({ db: workerDb, boss, log, metrics },
      { mode: config.WORKER_MODE, batchSize: config.WORKER_BATCH_SIZE, idlePollMs: config.WORKER_IDLE_POLL_MS, onSettled: activity.touch })
    const running = worker
    closers.push({ name: 'purchase worker', close: running.stop })
    // Webhooks on a pool of their own: a slow receiver or a backlog of messages never makes
    // settlement wait for a connection (docs/decisions/0013-webhooks-outbox.md).
    const webhooksDb = createDb(poolOptions('webhooks', url, config))
    closers.push({ name: 'webhooks database pool', close: async () => { await closeDb(webhooksDb) } })
    await ensureWebhookQueues(boss, config.WEBHOOK_RETRY_DELAY_S)
    const webhooks = await startWebhookLoops({
      db: webhooksDb, boss, log, metrics, allowPrivateNetworks: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS, saleBusy: () => activity.within(SALE_QUIET_MS)
    })
    closers.push({ name: 'webhook delivery', close: webhooks.stop })
  }

  if (apiDb !== undefined) {
    const app = await buildApp({ db: apiDb, boss, log, config, metrics, onPurchaseAccepted: worker?.wake, onPurchasesStored: activity.touch })
    closers.push({ name: 'http server', close: async () => { await app.close() } })
    const hintEventId = config.DEMO_EVENT ? await ensureDemoEvent(apiDb, log) : undefined
    await app.listen({ port: config.PORT, host: config.HOST })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : config.PORT
    const base = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`
    log.info({ url: base }, `boxoffice is ready at ${base}`)
    if (hintEventId !== undefined) {
      const userId = randomUUID()
      const body = JSON.stringify({ event_id: hintEventId, user_id: userId })
      // A booking is shown to its buyer only: the second line is the Location the first answers with.
      log.info({ eventId: hintEventId }, `try a purchase:  curl -si -X POST ${base}/buy -H 'content-type: application/json' -d '${body}'  then  curl -s '${base}/bookings/<booking_id>?user_id=${userId}'`)
    }
  } else if (config.METRICS_PORT !== undefined && workerDb !== undefined) {
    // A worker on its own opens a port only when asked: /metrics and the health checks.
    const ops = await buildOpsApp({ db: workerDb, boss, log, metrics })
    closers.push({ name: 'operations http server', close: async () => { await ops.close() } })
    await ops.listen({ port: config.METRICS_PORT, host: config.HOST })
    const address = ops.server.address()
    log.info({ port: typeof address === 'object' && address !== null ? address.port : config.METRICS_PORT }, 'metrics and health checks served')
  }
}

const DEMO_EVENT = { name: 'Concert Event', total_quota: 100 }

/**
 * On an empty database, creates the demo event. Returns the id to show in the start-up hint: the
 * demo event if there is one, else the newest event (undefined when there are none).
 */
async function ensureDemoEvent (db: Db, log: Logger): Promise<string | undefined> {
  // Several API processes starting at once (compose --scale api=3) create one demo event between
  // them: the check and the insert run under one transaction-scoped advisory lock. (Counting and
  // sorting every event are whole-table reads: withEveryPlan.)
  return await withEveryPlan(db, async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext('boxoffice:demo-event'))`.execute(trx)
    if (await countEvents(trx) === 0) {
      const event = await insertEvent(trx, DEMO_EVENT)
      log.info({ eventId: event.id, quota: event.total_quota }, 'created the demo event')
      return event.id
    }
    return await findEventIdPreferringName(trx, DEMO_EVENT.name)
  })
}
