import { PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely'
import pg from 'pg'
import type postgres from 'postgres'
import { acquireWithin, type PoolState } from './pool-usage.ts'
import type { DriverPool, PoolSettings } from './postgres-js.ts'

// The other side of the driver A/B (docs/decisions/0010-postgres-js-or-pg.md): Kysely's own
// PostgresDialect on node-postgres, the driver pg-boss already uses, unpatched. Chosen with
// DB_DRIVER=pg; it gets the same prepared statements, session settings and bounded waits as
// postgres.js so that the A/B compares drivers, not plans. Not the default: see the record.

/** `-c name=value` startup options; a space inside a value is escaped as PostgreSQL's parser expects. */
function startupOptions (connection: PoolSettings['connection']): string {
  return Object.entries(connection).map(([name, value]) => `-c ${name}=${String(value).replaceAll(' ', '\\ ')}`).join(' ')
}

/** Transaction control is sent as is; every other text gets one statement name per pool, as postgres.js prepares. */
const TRANSACTION_CONTROL = /^(begin|commit|rollback)$/i

export function createPgPool (settings: PoolSettings, counts: PoolState): DriverPool {
  const clientConfig = {
    connectionString: settings.url,
    connectionTimeoutMillis: settings.connectTimeoutSeconds * 1000,
    options: startupOptions(settings.connection)
  }
  const pool = new pg.Pool({ ...clientConfig, max: settings.max, idleTimeoutMillis: 60_000 })
  // An idle connection that fails is already taken out of the pool; without a listener the error would end the process.
  pool.on('error', () => {})
  const onNotice = settings.onNotice
  if (onNotice !== undefined) pool.on('connect', (client) => { client.on('notice', (notice) => { onNotice({ ...notice } as unknown as postgres.Notice) }) })
  // closeDb ends the pool with a bound and Kysely's destroy() ends it again: once is what pg allows.
  let ending: Promise<void> | undefined
  const end = async (): Promise<void> => { await (ending ??= pool.end()) }
  const names = new Map<string, string>()
  const nameOf = (text: string): string | undefined => {
    if (TRANSACTION_CONTROL.test(text)) return undefined
    let name = names.get(text)
    if (name === undefined) names.set(text, name = `boxoffice_${names.size}`)
    return name
  }
  const kyselyPool: PostgresPool = {
    connect: async (): Promise<PostgresPoolClient> => {
      let discard = false
      const giveBack = (late: pg.PoolClient): void => { late.release(discard) }
      const { connection: client, release } = await acquireWithin(async () => await pool.connect(), giveBack, settings.acquireTimeoutMs, counts)
      return {
        query: async (text: string, values: unknown[]) => await client.query({ name: nameOf(text), text, values }),
        release: (destroy?: boolean) => {
          discard = destroy === true
          release()
        }
      } as unknown as PostgresPoolClient
    },
    end,
    options: pool.options
  }
  return {
    dialect: new PostgresDialect({ pool: kyselyPool }),
    end: async (timeoutSeconds) => {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutSeconds * 1000) })
      await Promise.race([end(), late]).finally(() => { clearTimeout(timer) })
    },
    listen: async (channel, onNotify, onListening) => await listenWithPg(clientConfig, channel, onNotify, onListening)
  }
}

/** LISTEN on a client of its own, reconnected (and re-subscribed, calling onListening) within a second after it drops. */
async function listenWithPg (config: pg.ClientConfig, channel: string, onNotify: () => void, onListening: () => void): Promise<() => Promise<void>> {
  let stopped = false
  let current: pg.Client | undefined
  let retry: NodeJS.Timeout | undefined
  const subscribe = async (): Promise<void> => {
    const client = new pg.Client(config)
    client.on('notification', (message) => { if (message.channel === channel) onNotify() })
    client.on('error', () => { void client.end().catch(() => {}) })
    client.on('end', () => {
      if (current === client) current = undefined
      if (!stopped) retry = setTimeout(() => { subscribe().catch(() => {}) }, 1000)
    })
    await client.connect()
    await client.query(`LISTEN ${client.escapeIdentifier(channel)}`)
    current = client
    onListening()
  }
  try {
    await subscribe()
  } catch (err) {
    stopped = true
    clearTimeout(retry)
    throw err
  }
  return async () => {
    stopped = true
    clearTimeout(retry)
    await current?.end()
  }
}
