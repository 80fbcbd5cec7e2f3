// Usage: npm run queue-dashboard      (DATABASE_URL and ADMIN_TOKEN required; QUEUE_DASHBOARD_PORT, HOST)
//
// The operators' queue view: pg-boss's official dashboard (@pg-boss/dashboard) on this service's
// database, behind the admin token (HTTP basic auth, user "admin", password ADMIN_TOKEN). It runs
// the dashboard's own server as a child process with the environment that server reads, logs when
// it is ready, forwards SIGINT/SIGTERM to it and exits with its exit code.
//
// patches/@pg-boss+dashboard+1.9.0.patch: the dashboard bundles an older pg-boss than ours and
// refused our newer (additive) queue schema on its job pages and actions; it now accepts it.
// test/app/queue-dashboard.test.ts opens a job's page and retries it, so a pg-boss upgrade that
// breaks them fails there.
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { databaseUrlRequired, loadConfigOrExit } from '../lib/config.ts'
import { createLogger } from '../lib/logger.ts'
import { PGBOSS_SCHEMA } from '../db/pgboss-tables.ts'

const DASHBOARD_USER = 'admin'
// The package's HTTP server (its `start` script and its bin both run this file).
const DASHBOARD_SERVER = fileURLToPath(import.meta.resolve('@pg-boss/dashboard/build/server.js'))
// What the server prints once it listens: "@pg-boss/dashboard@1.9.0 listening on http://host:port".
const LISTENING = / listening on http:\/\//

const config = loadConfigOrExit()
const url = config.DATABASE_URL
const token = config.ADMIN_TOKEN
if (url === undefined || token === undefined) {
  if (url === undefined) process.stderr.write(`boxoffice: ${databaseUrlRequired('the queue dashboard')}\n`)
  if (token === undefined) process.stderr.write(`boxoffice: ADMIN_TOKEN is required to run the queue dashboard: it is the password of its login (user "${DASHBOARD_USER}"), and the dashboard is never served without one\n`)
  process.exit(1)
}
const log = createLogger(config).child({ role: 'queue-dashboard' })

const child = spawn(process.execPath, [DASHBOARD_SERVER], {
  // As the package's bin runs it: from the package's root.
  cwd: path.resolve(path.dirname(DASHBOARD_SERVER), '..'),
  env: {
    // Inherited, so what the connection may need reaches it (PGSSLROOTCERT, NODE_EXTRA_CA_CERTS, TZ)
    // and so do the dashboard's own optional settings (PGBOSS_DASHBOARD_READ_ONLY=1,
    // PGBOSS_DASHBOARD_QUERY_TIMEOUT). The ones below are ours to set.
    ...process.env,
    NODE_ENV: 'production',
    // The dashboard splits DATABASE_URL on "|" (several databases); one in a password is escaped.
    DATABASE_URL: url.replaceAll('|', '%7C'),
    PGBOSS_SCHEMA,
    HOST: config.HOST,
    PORT: String(config.QUEUE_DASHBOARD_PORT),
    PGBOSS_DASHBOARD_AUTH_USERNAME: DASHBOARD_USER,
    PGBOSS_DASHBOARD_AUTH_PASSWORD: token
  },
  // Its stderr (stack traces) passes through as it is; its stdout is read for the ready line.
  stdio: ['ignore', 'pipe', 'inherit']
})
log.info({ pid: child.pid, port: config.QUEUE_DASHBOARD_PORT, schema: PGBOSS_SCHEMA }, 'queue dashboard starting')

createInterface({ input: child.stdout }).on('line', (line) => {
  if (!LISTENING.test(line)) {
    log.info({ component: 'pg-boss-dashboard' }, line)
    return
  }
  const base = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${config.QUEUE_DASHBOARD_PORT}`
  log.info({ url: base, user: DASHBOARD_USER }, `queue dashboard is ready at ${base} (user "${DASHBOARD_USER}", password: ADMIN_TOKEN)`)
})

let forwarded: NodeJS.Signals | undefined
let killTimer: NodeJS.Timeout | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    forwarded = signal
    log.info({ signal }, 'stopping the queue dashboard')
    child.kill(signal)
    // The dashboard closes its pools and exits on these signals; one that hangs is not waited for.
    killTimer ??= setTimeout(() => {
      log.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'the queue dashboard did not stop in time; killing it')
      child.kill('SIGKILL')
    }, config.SHUTDOWN_TIMEOUT_MS)
  })
}

child.once('error', (err) => {
  log.fatal({ err }, 'could not start the queue dashboard')
  process.exitCode = 1
})
child.once('exit', (code, signal) => {
  clearTimeout(killTimer)
  // Its exit code; ended by a signal, the shell's convention (128 + the signal's number).
  process.exitCode = code ?? 128 + (signal === null ? 0 : constants.signals[signal])
  const level = forwarded !== undefined || code === 0 ? 'info' : 'error'
  log[level]({ code, signal }, 'queue dashboard stopped')
})
