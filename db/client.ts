import { Kysely, sql } from 'kysely'
import type postgres from 'postgres'
import type { Database } from './database.ts'
import { createPgPool } from './driver/pg.ts'
import { createPoolState, type PoolState, type PoolUsage } from './driver/pool-usage.ts'
import { createPostgresJsPool, type DriverPool } from './driver/postgres-js.ts'
import { PLANNING, PROBES_ONLY_SETTINGS, SERVICE_SESSION_SETTINGS, type Planning } from './driver/session.ts'

// The driver's workarounds (the round-trip tuning, the rollback fix, the patch, the session
// settings) live in db/driver/, each held by a test in test/db/driver/; this module is the pool
// the rest of the service sees, and keeps its names (docs/decisions/0010-postgres-js-or-pg.md).
export { DATABASE_BUSY, type PoolUsage } from './driver/pool-usage.ts'
export { PLANNING, type Planning } from './driver/session.ts'

export interface DatabaseOptions {
  url: string
  poolMax: number
  /** Seconds to open a new connection before the attempt fails. */
  connectTimeoutSeconds: number
  /**
   * Milliseconds a query or transaction waits for a connection of the pool before it fails with
   * DATABASE_BUSY (every connection in use) or CONNECT_TIMEOUT (none could be opened). Default:
   * the connect timeout.
   */
  acquireTimeoutMs?: number
  statementTimeoutMs: number
  applicationName: string
  /** How this pool's statements are planned: one of PLANNING (default `probesOnly`). */
  planning?: Planning
  /** PostgreSQL's notices and warnings on this pool's connections (default: dropped). */
  onNotice?: (notice: postgres.Notice) => void
}

export type Db = Kysely<Database>

const pools = new WeakMap<Db, DriverPool>()
const usage = new WeakMap<Db, PoolState>()

export function poolUsage (db: Db): PoolUsage | undefined {
  const found = usage.get(db)
  return found === undefined ? undefined : { max: found.max, inUse: found.inUse, waiting: found.waiting }
}

/** Calls `observe` with every wait for a connection of the pool, in seconds, until the returned function. */
export function observeAcquireWaits (db: Db, observe: (seconds: number) => void): () => void {
  const state = usage.get(db)
  state?.onAcquired.add(observe)
  return () => { state?.onAcquired.delete(observe) }
}

/**
 * Closes the pool, giving queries in flight `timeoutSeconds` to finish. Bounded even when the
 * database is gone (Kysely's own destroy() would wait for postgres.js indefinitely).
 */
export async function closeDb (db: Db, timeoutSeconds = 5): Promise<void> {
  await pools.get(db)?.end(timeoutSeconds)
  await db.destroy()
}

/**
 * The driver under the pools: postgres.js unless DB_DRIVER=pg, a switch kept for the driver A/B
 * only (docs/decisions/0010-postgres-js-or-pg.md), hence read here and not in lib/config.ts.
 */
function chosenDriver (): typeof createPostgresJsPool {
  return process.env.DB_DRIVER === 'pg' ? createPgPool : createPostgresJsPool
}

/**
 * One pool wrapped by Kysely. The statement and lock timeouts are set per session so a stuck
 * query or a lock held by a dead peer surfaces as an error (and a 503) instead of a hang.
 */
export function createDb (options: DatabaseOptions): Db {
  const counts = createPoolState(options.poolMax)
  const pool = chosenDriver()({
    url: options.url,
    max: options.poolMax,
    connectTimeoutSeconds: options.connectTimeoutSeconds,
    acquireTimeoutMs: options.acquireTimeoutMs ?? options.connectTimeoutSeconds * 1000,
    onNotice: options.onNotice,
    connection: {
      application_name: options.applicationName,
      statement_timeout: options.statementTimeoutMs,
      lock_timeout: options.statementTimeoutMs,
      idle_in_transaction_session_timeout: options.statementTimeoutMs * 3,
      ...SERVICE_SESSION_SETTINGS,
      ...PLANNING[options.planning ?? 'probesOnly']
    }
  }, counts)
  const db = new Kysely<Database>({ dialect: pool.dialect })
  pools.set(db, pool)
  usage.set(db, counts)
  return db
}

/**
 * Runs `read` in a transaction whose planner may use every kind of plan again: for an operator's
 * query over whole tables (the books of every event, the failed jobs) on a pool that otherwise
 * plans with index paths only (PLANNING).
 */
export async function withEveryPlan<T> (db: Db, read: (trx: Db) => Promise<T>): Promise<T> {
  return await db.transaction().execute(async (trx) => {
    await sql`SELECT ${sql.join(PROBES_ONLY_SETTINGS.map((setting) => sql`set_config(${setting}, 'on', true)`))}`.execute(trx)
    return await read(trx)
  })
}

/** Sends a notification; inside a transaction, it is delivered when (and only if) that commits. */
async function notify (db: Db, channel: string): Promise<void> {
  await sql`SELECT pg_notify(${channel}, '')`.execute(db)
}

/**
 * A coalescing notifier: call it after each commit that others should hear of; at most one
 * NOTIFY is in flight, and calls meanwhile are covered by one more after it. Sent outside the
 * committing transaction: a NOTIFY inside one would serialise every commit on PostgreSQL's
 * notification queue lock, and nobody waits for it. If it fails, listeners still poll.
 */
export function createNotifier (db: Db, channel: string, onError: (err: unknown) => void): () => void {
  return coalesced(async () => { await notify(db, channel).catch(onError) })
}

/**
 * Wraps a task so that calls never overlap: a call while it runs asks for one more run after it,
 * however many such calls there were. The task handles its own errors.
 */
export function coalesced (task: () => Promise<void>): () => void {
  let running = false
  let again = false
  const run = (): void => {
    if (running) {
      again = true
      return
    }
    running = true
    again = false
    void task().finally(() => {
      running = false
      if (again) run()
    })
  }
  return run
}

/**
 * Calls `onNotify` for each notification on `channel`, on a connection of its own that the driver
 * re-establishes (and re-subscribes) after it drops; `onListening` runs at each (re)subscription,
 * since notifications sent while it was down are gone. Resolves once listening; the returned
 * function stops.
 */
export async function listen (db: Db, channel: string, onNotify: () => void, onListening: () => void): Promise<() => Promise<void>> {
  const pool = pools.get(db)
  if (pool === undefined) throw new Error('listen() needs a Db made by createDb()')
  return await pool.listen(channel, onNotify, onListening)
}
