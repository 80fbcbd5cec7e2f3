// Usage: npm run db        (EMBEDDED_PG_PORT=54329 npm run db for a fixed port)
//
// Runs the embedded PostgreSQL on its own, in DATA_DIR, and prints a DATABASE_URL for it, so that
// several `npm run server` and `npm run worker` processes can share one database without Docker.
// Ctrl-C (or SIGTERM) stops it cleanly.
import closeWithGrace from 'close-with-grace'
import { loadConfigOrExit } from '../lib/config.ts'
import { createLogger } from '../lib/logger.ts'
import { startEmbeddedPostgres } from '../db/embedded.ts'

const config = loadConfigOrExit()
const log = createLogger(config)
const embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, port: config.EMBEDDED_PG_PORT, log })
closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS }, async () => {
  await embedded.stop()
  log.info('embedded PostgreSQL stopped')
})
log.info({ port: embedded.port, dataDir: embedded.dataDir }, 'embedded PostgreSQL running; stop it with Ctrl-C')
// The server's output pipe keeps this process alive until a signal arrives.
process.stdout.write(`DATABASE_URL=${embedded.url}\n`)
