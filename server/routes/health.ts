import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { sql } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { PgBoss } from 'pg-boss'
import { withEveryPlan, type Db } from '../../db/client.ts'
import { createMigrator } from '../../db/migrate.ts'
import { PURCHASE_QUEUE } from '../../purchase/queue.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse } from '../schemas/common.ts'

// A health check must answer even when the database does not: give up on it after this long.
const HEALTH_TIMEOUT_MS = 2000

const CheckResult = Type.String({ description: '"ok", or what is wrong' })
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('not_ready')]),
  checks: Type.Object({ database: CheckResult, migrations: CheckResult, queue: CheckResult })
})
const NotReady = Type.Object({
  statusCode: Type.Literal(503),
  error: Type.String(),
  code: Type.Literal('NOT_READY'),
  message: Type.String(),
  ...Readiness.properties
})

/**
 * Runs `check` with HEALTH_TIMEOUT_MS: "ok" or a short reason, never a throw. The error itself is
 * logged, not answered (it can name hosts and users).
 */
async function probe (log: FastifyBaseLogger, name: string, check: () => Promise<string>): Promise<string> {
  const signal = AbortSignal.timeout(HEALTH_TIMEOUT_MS)
  const timedOut = new Promise<string>((resolve) => {
    signal.addEventListener('abort', () => { resolve(`no answer within ${HEALTH_TIMEOUT_MS} ms`) }, { once: true })
  })
  return await Promise.race([check().catch((err: unknown) => {
    log.warn({ err, check: name }, 'health check failed')
    return 'unreachable'
  }), timedOut])
}

/**
 * /health/live: the process is up and its event loop turns (no I/O: a database outage must not get
 * a healthy process restarted). /health/ready: this process can do its work now: the database
 * answers, its schema is migrated to what this code expects, and the pg-boss queue exists.
 * /health is the database check alone (kept for clients that use it).
 */
export const healthRoutes: FastifyPluginAsyncTypebox<{ db: Db, boss: PgBoss }> = async (app, { db, boss }) => {
  // Exempt from load shedding (@fastify/under-pressure): an orchestrator must see a busy process
  // as alive, not restart it.
  const config = { shedUnderPressure: false }

  app.get('/health/live', {
    config,
    schema: {
      summary: 'Liveness: 200 while the process runs (checks nothing else)',
      response: { 200: Type.Object({ status: Type.Literal('ok'), uptime_seconds: Type.Number() }) }
    }
  }, async () => ({ status: 'ok' as const, uptime_seconds: Math.round(process.uptime()) }))

  app.get('/health/ready', {
    schema: {
      summary: 'Readiness: 200 when the database answers, migrations are current and the queue exists; 503 with the failing checks otherwise',
      response: { 200: Readiness, 503: NotReady }
    }
  }, async (request, reply) => {
    const database = await probe(request.log, 'database', async () => { await sql`SELECT 1`.execute(db); return 'ok' })
    const [migrations, queue] = database !== 'ok'
      ? ['not checked: no database', 'not checked: no database']
      : await Promise.all([
        probe(request.log, 'migrations', async () => {
          // Kysely reads its whole (small) migration table: planned as PostgreSQL would.
          const pending = (await withEveryPlan(db, async (trx) => await createMigrator(trx).getMigrations())).filter((m) => m.executedAt === undefined)
          return pending.length === 0 ? 'ok' : `${pending.length} pending: ${pending.map((m) => m.name).join(', ')}`
        }),
        probe(request.log, 'queue', async () => await boss.getQueue(PURCHASE_QUEUE) === null ? `queue ${PURCHASE_QUEUE} does not exist` : 'ok')
      ])
    const checks = { database, migrations, queue }
    if (Object.values(checks).every((c) => c === 'ok')) return { status: 'ok' as const, checks }
    void reply.header('retry-after', '5')
    const failing = Object.entries(checks).filter(([, c]) => c !== 'ok').map(([name, c]) => `${name}: ${c}`).join('; ')
    return await reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', code: 'NOT_READY', message: `Not ready: ${failing}`, status: 'not_ready' as const, checks })
  })

  app.get('/health', {
    schema: {
      summary: '200 while the database answers, 503 when it does not (see /health/ready for the full check)',
      response: { 200: Type.Object({ status: Type.Literal('ok') }), 503: ErrorResponse }
    }
  }, async (request) => {
    const database = await probe(request.log, 'database', async () => { await sql`SELECT 1`.execute(db); return 'ok' })
    if (database !== 'ok') throw new AppError('DATABASE_UNAVAILABLE')
    return { status: 'ok' as const }
  })
}
