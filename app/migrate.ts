// Usage: npm run db:migrate
//
// Applies every pending migration to DATABASE_URL, or to the embedded database in DATA_DIR when
// DATABASE_URL is unset. Exits 1 (with the reason) if a migration fails.
import { loadConfigOrExit } from '../lib/config.ts'
import { createLogger } from '../lib/logger.ts'
import { closeDb, createDb } from '../db/client.ts'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.ts'
import { migrateToLatest } from '../db/migrate.ts'

const config = loadConfigOrExit()
const log = createLogger(config)
let embedded: EmbeddedPostgres | undefined
let exitCode = 0
try {
  if (config.DATABASE_URL === undefined) embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, log })
  const db = createDb({ url: config.DATABASE_URL ?? embedded?.url ?? '', poolMax: 2, connectTimeoutSeconds: config.DB_CONNECT_TIMEOUT_S, statementTimeoutMs: 60_000, applicationName: 'boxoffice-migrate', planning: 'default' })
  try {
    const { results = [] } = await migrateToLatest(db)
    for (const r of results) log.info({ migration: r.migrationName, status: r.status }, 'migration')
    log.info({ applied: results.length }, results.length === 0 ? 'database already up to date' : 'migrations applied')
  } finally {
    await closeDb(db)
  }
} catch (err) {
  log.error({ err }, 'migration failed')
  exitCode = 1
} finally {
  await embedded?.stop()
}
process.exitCode = exitCode
