import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import type { Metrics } from '../lib/metrics.ts'
import { clientErrorHandler, frameworkErrors, registerErrorHandler, SECURITY_HEADERS } from './errors.ts'
import { healthRoutes } from './routes/health.ts'
import { metricsRoutes } from './routes/metrics.ts'
import { ErrorResponse } from './schemas/common.ts'

/**
 * The operations port of a process without the API (`npm run worker` with METRICS_PORT): the same
 * /metrics, /health/live, /health/ready and /health as the API serves, nothing else.
 */
export async function buildOpsApp ({ db, boss, log, metrics }: { db: Db, boss: PgBoss, log: Logger, metrics: Metrics }): Promise<FastifyInstance> {
  const httpLog: FastifyBaseLogger = log.child({ component: 'ops-http' })
  const app = Fastify({ loggerInstance: httpLog, frameworkErrors, clientErrorHandler }).withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(ErrorResponse)
  registerErrorHandler(app)
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.headers(SECURITY_HEADERS)
    done()
  })
  await app.register(healthRoutes, { db, boss })
  await app.register(metricsRoutes, { metrics })
  return app
}
