import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import underPressure from '@fastify/under-pressure'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { PgBoss } from 'pg-boss'
import type { Logger } from 'pino'
import type { Db } from '../db/client.ts'
import type { Config } from '../lib/config.ts'
import type { Metrics } from '../lib/metrics.ts'
import { AppError, clientErrorHandler, frameworkErrors, rateLimited, registerErrorHandler, SECURITY_HEADERS } from './errors.ts'
import { createNotifier } from '../db/client.ts'
import { PURCHASES_QUEUED_CHANNEL } from '../purchase/queue.ts'
import { createBookingReader } from './booking-reader.ts'
import { createBookingWaiter } from './booking-waiter.ts'
import { createBuyerVerifier } from './buyer-auth.ts'
import { createIntake } from './intake/intake.ts'
import { adminRoutes } from './routes/admin.ts'
import { webhookRoutes } from './routes/webhooks.ts'
import { bookingRoutes } from './routes/bookings.ts'
import { dashboardRoutes } from './routes/dashboard.ts'
import { eventRoutes } from './routes/events.ts'
import { healthRoutes } from './routes/health.ts'
import { metricsRoutes } from './routes/metrics.ts'
import { purchaseRoutes } from './routes/purchases.ts'
import { ErrorResponse } from './schemas/common.ts'

export interface RegisteredRoute { method: string, url: string, documented: boolean }

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered, with whether it asked to be left out of the OpenAPI document. */
    registeredRoutes: readonly RegisteredRoute[]
  }
}

export interface AppDeps {
  db: Db
  boss: PgBoss
  log: Logger
  config: Pick<Config, 'ADMIN_TOKEN' | 'QUEUE_CAPACITY' | 'INTAKE_BATCH_MAX' | 'INTAKE_BATCH_WAIT_MS' | 'DB_POOL_MAX' |
    'RATE_LIMIT_PER_IP_PER_MINUTE' | 'BUY_LIMIT_PER_USER_PER_MINUTE' | 'TRUST_PROXY_HOPS' | 'MAX_EVENT_LOOP_DELAY_MS' |
    'BUYER_AUTH' | 'BUYER_JWT_ISSUER' | 'BUYER_JWT_AUDIENCE' | 'BUYER_JWT_PUBLIC_KEY' | 'BUYER_JWT_JWKS_URL' | 'BUYER_JWT_JWKS_COOLDOWN_MS' |
    'WEBHOOK_ALLOW_PRIVATE_NETWORKS'>
  /** The process's metrics (shared with its worker in `npm start`). */
  metrics: Metrics
  /** Called after each commit that queued purchases or cancellations (the in-process worker starts at once). */
  onPurchaseAccepted?: () => void
  /** Called after each committed intake batch, queued or answered at once (lib/activity.ts). */
  onPurchasesStored?: () => void
}


const API_VERSION = '0.1.0'
const DOCS_PREFIX = '/docs'
const DOCS_HEADERS = Object.freeze({
  ...SECURITY_HEADERS,
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
})

// Requests are small JSON documents; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES = 16 * 1024

// Transactions storing purchases at once. More would only make each batch smaller: a few in flight
// keep PostgreSQL's group commit busy while the next batch gathers (docs/decisions/0007-group-committed-intake.md).
const INTAKE_BATCHES_IN_FLIGHT = 4

/** Builds the HTTP app; never listens (app/service.ts and the tests do). */
export async function buildApp (deps: AppDeps): Promise<FastifyInstance> {
  const { db, boss, log, config, onPurchaseAccepted, onPurchasesStored, metrics } = deps
  // Before anything listens: a buyer key that cannot be used stops the start.
  const buyers = await createBuyerVerifier(config)
  const httpLog: FastifyBaseLogger = log.child({ component: 'http' })
  const app = Fastify({
    loggerInstance: httpLog,
    bodyLimit: BODY_LIMIT_BYTES,
    ajv: {
      // Reject, never silently repair: extra fields are a 400, and "2" is not a number.
      customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false }
    },
    // Our own onRequest hook answers 503 during shutdown, in the same shape as every other error.
    // Behind N proxies (load balancers) the client's address is the Nth from the right of
    // X-Forwarded-For: entries a client writes itself further left are not trusted.
    trustProxy: config.TRUST_PROXY_HOPS > 0 ? (_address: string, hop: number) => hop < config.TRUST_PROXY_HOPS : false,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Errors before routing, and from Node's HTTP parser, in the same JSON shape as the rest.
    frameworkErrors,
    clientErrorHandler
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.addSchema(ErrorResponse)
  registerErrorHandler(app)
  // Every route as registered, for the OpenAPI test's "every route is documented".
  const routes: RegisteredRoute[] = []
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, documented: route.schema?.hide !== true })
  })
  app.decorate('registeredRoutes', routes)
  // Security headers (errors.ts, SECURITY_HEADERS) on every routed answer, by a synchronous hook;
  // the interactive docs page loads its own scripts and styles, so it gets a CSP that allows them.
  app.addHook('onRequest', (request, reply, done) => {
    void reply.headers(request.url.startsWith(DOCS_PREFIX) ? DOCS_HEADERS : SECURITY_HEADERS)
    done()
  })
  // Per client address, every route (429 RATE_LIMITED with Retry-After); POST /buy also limits each
  // user_id (routes/purchases.ts). In memory, per process: with N API processes behind a balancer a
  // client gets up to N times the limit.
  await app.register(rateLimit, {
    global: config.RATE_LIMIT_PER_IP_PER_MINUTE > 0,
    max: config.RATE_LIMIT_PER_IP_PER_MINUTE,
    timeWindow: 60_000,
    cache: 100_000,
    errorResponseBuilder: (_request, context) => rateLimited('requests', context.max, context.ttl / 1000)
  })
  // Load shedding: while the event loop lags more than MAX_EVENT_LOOP_DELAY_MS, new requests get a
  // prompt 503 OVERLOADED with Retry-After instead of joining a queue that only grows. Liveness and
  // /metrics are exempt (route config shedUnderPressure: false).
  if (config.MAX_EVENT_LOOP_DELAY_MS > 0) {
    await app.register(underPressure, {
      maxEventLoopDelay: config.MAX_EVENT_LOOP_DELAY_MS,
      pressureHandler: async (request, _reply, type, value) => {
        if ((request.routeOptions.config as { shedUnderPressure?: boolean }).shedUnderPressure === false) return
        request.log.warn({ type, value }, 'overloaded: request shed')
        throw new AppError('OVERLOADED')
      }
    })
  }
  // Latency by route pattern and status for /metrics (the URL itself would make a series per id).
  // One child per method, route and status, found by a string key: prom-client would otherwise
  // hash the label object on every answer, on the hottest path there is.
  const latencyByRoute = new Map<string, { observe: (seconds: number) => void }>()
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const key = `${request.method} ${reply.statusCode} ${route}`
    let series = latencyByRoute.get(key)
    if (series === undefined) {
      series = metrics.httpDuration.labels({ method: request.method, route, status_code: reply.statusCode })
      latencyByRoute.set(key, series)
    }
    series.observe(reply.elapsedTime / 1000)
    done()
  })
  // This API speaks JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain')

  // Once closing starts, requests still arriving on open connections get a clear 503 and a
  // Retry-After (another instance, or this one after its restart, will take them).
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onRequest', async () => { if (closing) throw new AppError('SHUTTING_DOWN') })

  // After each commit that queued work: wake the worker in this process at once, and workers in
  // other processes by NOTIFY.
  const notifyQueued = createNotifier(db, PURCHASES_QUEUED_CHANNEL, (err) => { log.warn({ err }, 'could not notify workers of queued work; they will find it at their next poll') })
  const onQueued = (): void => {
    onPurchaseAccepted?.()
    notifyQueued()
  }
  const intake = createIntake({ db, log, onQueued, onStored: onPurchasesStored }, {
    queueCapacity: config.QUEUE_CAPACITY,
    batchMax: config.INTAKE_BATCH_MAX,
    batchWaitMs: config.INTAKE_BATCH_WAIT_MS,
    // Leaves pool connections for reads (GET /bookings, the pending count) while intake is busy.
    batchesInFlight: Math.max(1, Math.min(INTAKE_BATCHES_IN_FLIGHT, config.DB_POOL_MAX - 2))
  })
  app.addHook('onClose', async () => { intake.close() })
  const waiter = createBookingWaiter({ db, log })
  // Before connections close: requests held by ?wait= answer with what they have.
  app.addHook('preClose', async () => { await waiter.close() })

  // OpenAPI 3 from the routes' own TypeBox schemas: /openapi.json, and interactive docs at /docs.
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'boxoffice',
        version: API_VERSION,
        description: 'Flash-sale ticketing: every purchase is stored durably before its 202, decided one by one in arrival order under its event\'s lock, and never oversold. Follow a booking with GET /bookings/{id}?user_id= (the Location of its answer names the buyer).'
      },
      components: {
        securitySchemes: {
          admin: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
          ...(buyers === undefined ? {} : { buyer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A token from the seller\'s identity provider (BUYER_AUTH=jwt)' } })
        }
      }
    },
    // Shared schemas (ErrorResponse) keep their names in the document.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  await app.register(purchaseRoutes, { intake, metrics, buyLimitPerUserPerMinute: config.BUY_LIMIT_PER_USER_PER_MINUTE, buyers })
  await app.register(bookingRoutes, { db, reader: createBookingReader(db), waiter, adminToken: config.ADMIN_TOKEN, onQueued, metrics, buyers })
  await app.register(eventRoutes, { db, adminToken: config.ADMIN_TOKEN })
  await app.register(healthRoutes, { db, boss })
  await app.register(metricsRoutes, { metrics })
  await app.register(adminRoutes, { db, adminToken: config.ADMIN_TOKEN })
  await app.register(webhookRoutes, { db, adminToken: config.ADMIN_TOKEN, allowPrivateNetworks: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS })
  await app.register(dashboardRoutes, { db, log })
  return app
}
