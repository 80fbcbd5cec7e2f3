import { Kysely, sql } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import postgres from 'postgres'
import type { Database } from './database.ts'

export interface DatabaseOptions {
  url: string
  poolMax: number
  connectTimeoutSeconds: number
  statementTimeoutMs: number
  applicationName: string
}

export type Db = Kysely<Database>

const pools = new WeakMap<Db, postgres.Sql>()

/**
 * Closes the pool, giving queries in flight `timeoutSeconds` to finish. Bounded even when the
 * database is gone (Kysely's own destroy() would wait for postgres.js indefinitely).
 */
export async function closeDb (db: Db, timeoutSeconds = 5): Promise<void> {
  await pools.get(db)?.end({ timeout: timeoutSeconds })
  await db.destroy()
}

/**
 * One postgres.js pool wrapped by Kysely. The statement and lock timeouts are set per session so a
 * stuck query or a lock held by a dead peer surfaces as an error (and a 503) instead of a hang.
 */
export function createDb (options: DatabaseOptions): Db {
  const sql = postgres(options.url, {
    max: options.poolMax,
    connect_timeout: options.connectTimeoutSeconds,
    idle_timeout: 60,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName,
      statement_timeout: options.statementTimeoutMs,
      lock_timeout: options.statementTimeoutMs,
      idle_in_transaction_session_timeout: options.statementTimeoutMs * 3
    }
  })
  const db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) })
  pools.set(db, sql)
  return db
}

/** Queues a notification, delivered to listeners when (and only if) the transaction commits. */
export async function notify (trx: Db, channel: string): Promise<void> {
  await sql`SELECT pg_notify(${channel}, '')`.execute(trx)
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
