import { CompiledQuery, type Dialect, type Driver } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import postgres from 'postgres'
import { acquireWithin, type PoolState } from './pool-usage.ts'

// postgres.js 3.4.9 with db/driver/patches/postgres+3.4.9.patch, through kysely-postgres-js. Both
// are pinned exactly: the Proxy below depends on how kysely-postgres-js calls reserve() and
// unsafe(), and the dialect subclass on Kysely's PostgresDriver (docs/decisions/0010-postgres-js-or-pg.md).

/** What a pool needs from its caller: db/client.ts's DatabaseOptions, resolved. */
export interface PoolSettings {
  url: string
  max: number
  connectTimeoutSeconds: number
  acquireTimeoutMs: number
  /** Startup parameters of every connection (timeouts, application name, planner settings). */
  connection: Record<string, string | number>
  onNotice?: (notice: postgres.Notice) => void
}

/** A pool as db/client.ts drives it, whichever driver is under it. */
export interface DriverPool {
  dialect: Dialect
  /** Closes the pool, giving queries in flight `timeoutSeconds`; bounded even when the database is gone. */
  end: (timeoutSeconds: number) => Promise<void>
  /** LISTEN on a connection of its own, re-subscribed after it drops; the returned function stops. */
  listen: (channel: string, onNotify: () => void, onListening: () => void) => Promise<() => Promise<void>>
}

// Seconds before reconnecting after a failed attempt: postgres.js's default grows to 20 s, so a
// database back from a restart would wait that long for the service; here at most 1 s.
const reconnectDelay = (retries: number): number => Math.min(0.1 * 2 ** retries, 1)

export function createPostgresJsPool (settings: PoolSettings, counts: PoolState): DriverPool {
  const pool = postgres(settings.url, {
    max: settings.max,
    connect_timeout: settings.connectTimeoutSeconds,
    idle_timeout: 60,
    backoff: reconnectDelay,
    onnotice: settings.onNotice ?? (() => {}),
    connection: settings.connection
  })
  return {
    dialect: new PostgresJSDialectWithRollback({ postgres: tunedForRoundTrips(pool, settings.acquireTimeoutMs, counts) }),
    end: async (timeoutSeconds) => { await pool.end({ timeout: timeoutSeconds }) },
    listen: async (channel, onNotify, onListening) => {
      const subscription = await pool.listen(channel, onNotify, onListening)
      return async () => { await subscription.unlisten() }
    }
  }
}

/**
 * The pool as Kysely's dialect sees it, tuned for round trips (each one is a context switch to
 * PostgreSQL and back on a machine whose cores are all busy in a sale), and with a bounded,
 * counted wait for a connection (acquireWithin):
 * - Every query runs as a named prepared statement. The dialect sends queries through postgres.js's
 *   `unsafe()`, which does not prepare by default, and an unprepared query with parameters costs
 *   two round trips (describe, then bind and execute); measured, that doubled the time of every
 *   intake and worker transaction. Our queries have fixed texts (arrays go in as one parameter,
 *   `= ANY($1)` / `unnest($1)`), so each connection keeps a handful. (Behind a transaction-pooling
 *   PgBouncer, prepared statements need its `max_prepared_statements`.)
 * - A transaction's BEGIN is not waited for on its own: it is sent at once and answered together
 *   with the transaction's first statement, which follows it on the same connection (postgres.js
 *   pipelines). If BEGIN fails, that first statement fails with its error.
 * test/db/driver/round-trips.test.ts holds both.
 */
function tunedForRoundTrips (pool: postgres.Sql, acquireTimeoutMs: number, counts: PoolState): postgres.Sql {
  return new Proxy(pool, {
    get (target, property, receiver) {
      if (property !== 'reserve') return Reflect.get(target, property, receiver) as unknown
      return async () => {
        const reserve = async (): Promise<{ reserved: postgres.ReservedSql, giveBack: () => void }> => {
          const reserved = await target.reserve()
          return { reserved, giveBack: reserved.release.bind(reserved) }
        }
        const { connection: { reserved }, release } = await acquireWithin(reserve, ({ giveBack }) => { giveBack() }, acquireTimeoutMs, counts)
        reserved.release = release
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
 * Kysely's PostgreSQL driver, when a ROLLBACK fails (the connection died), marks the connection
 * for discard through a method only its own `pg` connections have: on kysely-postgres-js's
 * connection that is a TypeError, which hid the real error (a 503 became a 500). postgres.js
 * (patched: db/driver/patches/postgres+3.4.9.patch) already drops a reserved connection whose
 * socket closed, so the ROLLBACK's own error is simply passed on (test/db/driver/rollback.test.ts).
 */
class PostgresJSDialectWithRollback extends PostgresJSDialect {
  override createDriver (): Driver {
    const driver = super.createDriver()
    driver.rollbackTransaction = async (connection) => { await connection.executeQuery(CompiledQuery.raw('rollback')) }
    return driver
  }
}
