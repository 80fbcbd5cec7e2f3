import { Kysely } from 'kysely'
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
  return new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) })
}
