import { existsSync } from 'node:fs'
import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'

/** batched: many purchases per worker transaction (the default); serial: one per transaction. */
export const WORKER_MODES = ['batched', 'serial'] as const
export type WorkerMode = typeof WORKER_MODES[number]

/** none: the body's user_id is the buyer (demos, tests); jwt: a token from the seller's identity provider. */
export const BUYER_AUTH_MODES = ['none', 'jwt'] as const

// Every variable the service reads, with its default. `.env.example` and the table in
// docs/configuration.md list the same variables with the same defaults; tests keep all three in
// step (test/lib/config.test.ts, test/lib/config-docs.test.ts). One switch is left out on purpose:
// DB_DRIVER=pg, for the driver A/B only (db/client.ts; docs/decisions/0010-postgres-js-or-pg.md).
export const ConfigSchema = Type.Object({
  NODE_ENV: Type.String({ default: 'development' }),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' }
  ),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATA_DIR: Type.String({ default: '.data', minLength: 1 }),
  EMBEDDED_PG_PORT: Type.Integer({ default: 0, minimum: 0, maximum: 65535 }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  BUYER_AUTH: Type.Union(BUYER_AUTH_MODES.map((mode) => Type.Literal(mode)), { default: 'none' }),
  BUYER_JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
  BUYER_JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  BUYER_JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  BUYER_JWT_JWKS_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  BUYER_JWT_JWKS_COOLDOWN_MS: Type.Integer({ default: 30000, minimum: 0, maximum: 3600000 }),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: Type.Boolean({ default: false }),
  WEBHOOK_RETRY_DELAY_S: Type.Integer({ default: 10, minimum: 1, maximum: 3600 }),
  QUEUE_CAPACITY: Type.Integer({ default: 100000, minimum: 1 }),
  RATE_LIMIT_PER_IP_PER_MINUTE: Type.Integer({ default: 6000, minimum: 0 }),
  BUY_LIMIT_PER_USER_PER_MINUTE: Type.Integer({ default: 60, minimum: 0 }),
  TRUST_PROXY_HOPS: Type.Integer({ default: 0, minimum: 0, maximum: 10 }),
  DB_POOL_MAX: Type.Integer({ default: 10, minimum: 2, maximum: 200 }),
  DB_CONNECT_TIMEOUT_S: Type.Integer({ default: 5, minimum: 1, maximum: 120 }),
  DB_ACQUIRE_TIMEOUT_MS: Type.Integer({ default: 1000, minimum: 10, maximum: 120000 }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({ default: 10000, minimum: 100 }),
  INTAKE_BATCH_MAX: Type.Integer({ default: 500, minimum: 1, maximum: 5000 }),
  INTAKE_BATCH_WAIT_MS: Type.Integer({ default: 2, minimum: 0, maximum: 1000 }),
  WORKER_MODE: Type.Union(WORKER_MODES.map((mode) => Type.Literal(mode)), { default: 'batched' }),
  WORKER_BATCH_SIZE: Type.Integer({ default: 4000, minimum: 1, maximum: 10000 }),
  WORKER_IDLE_POLL_MS: Type.Integer({ default: 1000, minimum: 5, maximum: 60000 }),
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ default: 1000, minimum: 0 }),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  // Not 0: the dashboard's server cannot be asked for a free port (it reads 0 as its default, 3000).
  QUEUE_DASHBOARD_PORT: Type.Integer({ default: 3001, minimum: 1, maximum: 65535 }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ default: 20000, minimum: 1000 }),
  DEMO_EVENT: Type.Boolean({ default: true })
})

export type Config = Readonly<Static<typeof ConfigSchema>>

/**
 * Reads the environment once, validates every variable against the schema and freezes the result.
 * A bad or missing value throws one error that lists every problem, so start-up fails in one go.
 * A `.env` file in the working directory is loaded first when present; real environment wins.
 * Empty values count as unset.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, { dotenv = true } = {}): Config {
  if (dotenv && env === process.env && existsSync('.env')) process.loadEnvFile('.env')
  // `NAME=` (as a copied .env.example leaves it) means unset, not "the empty string".
  const data = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''))
  const config = envSchema<Static<typeof ConfigSchema>>({
    schema: ConfigSchema,
    data,
    dotenv: false,
    env: false,
    ajv: {
      customOptions (ajv) {
        ajv.opts.allErrors = true
        return ajv
      }
    }
  })
  const problems = buyerAuthProblems(config)
  if (problems.length > 0) throw new Error(problems.join('; '))
  return Object.freeze(config)
}

/** What BUYER_AUTH=jwt needs beside it (the schema checks each variable alone). */
function buyerAuthProblems (config: Static<typeof ConfigSchema>): string[] {
  if (config.BUYER_AUTH !== 'jwt') return []
  const problems: string[] = []
  if (config.BUYER_JWT_ISSUER === undefined) problems.push('BUYER_AUTH=jwt needs BUYER_JWT_ISSUER (the identity provider\'s iss)')
  if (config.BUYER_JWT_AUDIENCE === undefined) problems.push('BUYER_AUTH=jwt needs BUYER_JWT_AUDIENCE (the aud its tokens carry for this service)')
  if ((config.BUYER_JWT_PUBLIC_KEY === undefined) === (config.BUYER_JWT_JWKS_URL === undefined)) {
    problems.push('BUYER_AUTH=jwt needs exactly one of BUYER_JWT_PUBLIC_KEY (a PEM public key) and BUYER_JWT_JWKS_URL')
  }
  return problems
}

/** Loads the configuration or exits with every problem listed on one line. */
export function loadConfigOrExit (): Config {
  try {
    return loadConfig()
  } catch (err) {
    process.stderr.write(`boxoffice: invalid configuration: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
}

/** Why a process that cannot use the embedded database refuses to start without DATABASE_URL. */
export function databaseUrlRequired (what: string): string {
  return `DATABASE_URL is required to run ${what} (the embedded database belongs to \`npm start\`; \`npm run db\` runs one that several processes can share and prints its URL)`
}
