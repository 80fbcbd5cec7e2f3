import { CompiledQuery, Kysely, sql, type Driver } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import postgres from 'postgres'
import type { Database } from './database.ts'
import { SERVICE_SESSION_SETTINGS } from './session.ts'

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

/**
 * How a pool's statements are planned, as session settings. In a sale the bookings table and the
 * queue's jobs grow from a few rows to a million within a minute, far faster than autovacuum
 * re-analyses them: a prepared statement keeps the generic plan it got at its sixth run on a
 * connection until the table is next analysed, and a plan priced on stale statistics takes a
 * partial index that held ten rows for one that still does. A plan chosen while the table was
 * small (a hash join over a sequential scan of every booking, a nested loop comparing every
 * pending booking with every decision) grows slower with every booking. What holds instead
 * (docs/decisions/0001-plans-that-hold-as-tables-grow.md):
 *
 * - `probesOnly`, both service pools': index scans, and nested loops whose inner side is probed
 *   anew for each outer row (sequential scans, hash and merge joins and materialised inner sides
 *   off). Their statements find bookings and jobs by key only: one row by its key, a batch by
 *   `= ANY(ids)` or through a LATERAL or scalar subquery per row, never a join a plan could turn
 *   into a scan of the table. Whatever a plan guesses, it probes the rows it was given, however
 *   large the table has grown, so the generic plans are kept: planning each run instead cost a
 *   third more PostgreSQL CPU per stored purchase, twice per read, and a third of the worker's
 *   pace (PostgreSQL 15 and 18).
 * - `default`: as PostgreSQL plans, for migrations and tools that read whole tables.
 *
 * Every table a statement reads on such a pool needs an index its conditions or order can use: a
 * plan that must scan one holds a disabled node, which PostgreSQL before 18 costs at 10^10 (what
 * made every statement JIT-compiled on PostgreSQL 15 with JIT on). test/db/statement-plans.test.ts
 * checks every statement the service runs. Operators' whole-table reads use withEveryPlan.
 */
const PROBES_ONLY = { enable_seqscan: 'off', enable_hashjoin: 'off', enable_mergejoin: 'off', enable_material: 'off' } as const

export const PLANNING = {
  probesOnly: PROBES_ONLY,
  default: {}
} as const satisfies Record<string, Record<string, string>>

export type Planning = keyof typeof PLANNING

/** The planner settings withEveryPlan turns back on. */
const PROBES_ONLY_SETTINGS = Object.keys(PROBES_ONLY)

export type Db = Kysely<Database>

const pools = new WeakMap<Db, postgres.Sql>()

/** A pool's connections as Kysely uses them, for metrics. */
export interface PoolUsage {
  max: number
  /** Connections handed to a query or transaction now. */
  inUse: number
  /** Queries and transactions waiting for a connection now. */
  waiting: number
}
interface PoolState extends PoolUsage {
  /** Called with each wait for a connection, in seconds (metrics). */
  onAcquired: Set<(seconds: number) => void>
}
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

/** The wait for a connection ran out with every one of the pool in use: busy, not gone. */
export const DATABASE_BUSY = 'DATABASE_BUSY'

/**
 * Closes the pool, giving queries in flight `timeoutSeconds` to finish. Bounded even when the
 * database is gone (Kysely's own destroy() would wait for postgres.js indefinitely).
 */
export async function closeDb (db: Db, timeoutSeconds = 5): Promise<void> {
  await pools.get(db)?.end({ timeout: timeoutSeconds })
  await db.destroy()
}

/**
 * The pool as Kysely's dialect sees it, tuned for round trips (each one is a context switch to
 * PostgreSQL and back on a machine whose cores are all busy in a sale):
 * - Every query runs as a named prepared statement. The dialect sends queries through postgres.js's
 *   `unsafe()`, which does not prepare by default, and an unprepared query with parameters costs
 *   two round trips (describe, then bind and execute); measured, that doubled the time of every
 *   intake and worker transaction. Our queries have fixed texts (arrays go in as one parameter,
 *   `= ANY($1)` / `unnest($1)`), so each connection keeps a handful. (Behind a transaction-pooling
 *   PgBouncer, prepared statements need its `max_prepared_statements`.)
 * - A transaction's BEGIN is not waited for on its own: it is sent at once and answered together
 *   with the transaction's first statement, which follows it on the same connection (postgres.js
 *   pipelines). If BEGIN fails, that first statement fails with its error.
 */
function tunedForRoundTrips (pool: postgres.Sql, acquireTimeoutMs: number, counts: PoolState): postgres.Sql {
  return new Proxy(pool, {
    get (target, property, receiver) {
      if (property !== 'reserve') return Reflect.get(target, property, receiver) as unknown
      return async () => {
        counts.waiting++
        const started = performance.now()
        let reserved: postgres.ReservedSql
        try {
          reserved = await reserveWithin(target, acquireTimeoutMs, counts)
        } finally {
          counts.waiting--
        }
        const waited = (performance.now() - started) / 1000
        for (const observe of counts.onAcquired) observe(waited)
        counts.inUse++
        const release = reserved.release.bind(reserved)
        let released = false
        reserved.release = () => {
          if (!released) counts.inUse--
          released = true
          release()
        }
        const unsafe = reserved.unsafe.bind(reserved)
        let begin: Promise<unknown> | undefined
        reserved.unsafe = ((query: string, parameters?: postgres.ParameterOrJSON<never>[], options?: postgres.UnsafeQueryOptions) => {
          if (begin === undefined && /^begin$/i.test(query) && (parameters === undefined || parameters.length === 0)) {
            begin = unsafe(query).execute()
            begin.catch(() => {}) // its error is reported by the statement that follows
            return Promise.resolve(Object.assign([], { command: 'BEGIN', count: 0 }))
          }
          const pending = unsafe(query, parameters, { prepare: true, ...options })
          if (begin === undefined) return pending
          const answered = begin
          begin = undefined
          void pending.execute() // sent now, right behind the BEGIN
          return Promise.all([answered, pending]).then(([, result]) => result)
        }) as typeof reserved.unsafe
        return reserved
      }
    }
  })
}

/**
 * A connection of the pool for a query or transaction, or an error after `timeoutMs`: postgres.js
 * waits for one without limit, and while the database is down the wait lasts until a reconnection
 * attempt fails for it, which would hold a request past any sensible answer. The error says which:
 * DATABASE_BUSY when every connection was still in use at the end (the pool is too small for the
 * load, or its statements too slow), CONNECT_TIMEOUT when one could not be opened. A reservation that comes
 * after its timeout is handed straight back.
 */
async function reserveWithin (pool: postgres.Sql, timeoutMs: number, counts: PoolUsage): Promise<postgres.ReservedSql> {
  const reservation = pool.reserve()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(counts.inUse >= counts.max
        ? Object.assign(new Error(`all ${counts.max} database connections of this process were still in use after ${timeoutMs} ms`), { code: DATABASE_BUSY })
        : Object.assign(new Error(`no database connection within ${timeoutMs} ms`), { code: 'CONNECT_TIMEOUT' }))
    }, timeoutMs)
  })
  try {
    return await Promise.race([reservation, timeout])
  } catch (err) {
    reservation.then((late) => { late.release() }, () => {})
    throw err
  } finally {
    clearTimeout(timer)
  }
}

// Seconds before reconnecting after a failed attempt: postgres.js's default grows to 20 s, so a
// database back from a restart would wait that long for the service; here at most 1 s.
const reconnectDelay = (retries: number): number => Math.min(0.1 * 2 ** retries, 1)

/**
 * Kysely's PostgreSQL driver, when a ROLLBACK fails (the connection died), marks the connection
 * for discard through a method only its own `pg` connections have: on kysely-postgres-js's
 * connection that is a TypeError, which hid the real error (a 503 became a 500). postgres.js
 * (patched: patches/postgres+*.patch) already drops a reserved connection whose socket closed, so
 * the ROLLBACK's own error is simply passed on.
 */
class PostgresJSDialectWithRollback extends PostgresJSDialect {
  override createDriver (): Driver {
    const driver = super.createDriver()
    driver.rollbackTransaction = async (connection) => { await connection.executeQuery(CompiledQuery.raw('rollback')) }
    return driver
  }
}


/**
 * One postgres.js pool wrapped by Kysely. The statement and lock timeouts are set per session so a
 * stuck query or a lock held by a dead peer surfaces as an error (and a 503) instead of a hang.
 */
export function createDb (options: DatabaseOptions): Db {
  const pool = postgres(options.url, {
    max: options.poolMax,
    connect_timeout: options.connectTimeoutSeconds,
    idle_timeout: 60,
    backoff: reconnectDelay,
    onnotice: options.onNotice ?? (() => {}),
    connection: {
      application_name: options.applicationName,
      statement_timeout: options.statementTimeoutMs,
      lock_timeout: options.statementTimeoutMs,
      idle_in_transaction_session_timeout: options.statementTimeoutMs * 3,
      ...SERVICE_SESSION_SETTINGS,
      ...PLANNING[options.planning ?? 'probesOnly']
    }
  })
  const counts: PoolState = { max: options.poolMax, inUse: 0, waiting: 0, onAcquired: new Set() }
  const tuned = tunedForRoundTrips(pool, options.acquireTimeoutMs ?? options.connectTimeoutSeconds * 1000, counts)
  const db = new Kysely<Database>({ dialect: new PostgresJSDialectWithRollback({ postgres: tuned }) })
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
 * Calls `onNotify` for each notification on `channel`, on a connection of its own that postgres.js
 * re-establishes (and re-subscribes) after it drops; `onListening` runs at each (re)subscription,
 * since notifications sent while it was down are gone. Resolves once listening; the returned
 * function stops.
 */
export async function listen (db: Db, channel: string, onNotify: () => void, onListening: () => void): Promise<() => Promise<void>> {
  const pool = pools.get(db)
  if (pool === undefined) throw new Error('listen() needs a Db made by createDb()')
  const subscription = await pool.listen(channel, onNotify, onListening)
  return async () => { await subscription.unlisten() }
}
