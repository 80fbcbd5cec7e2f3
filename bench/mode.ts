// Usage: imported by bench/flash-sale.ts: one worker mode's run, steps 2 to 5.
//
// A database and a service of its own (without --url), a warm-up, the sale and its drain
// (bench/sale.ts), the buyers reading their outcomes back, the invariants, and then settlement
// alone (bench/settlement.ts); the figures become one JSON record (bench/report.ts).
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import type { IdentityProvider } from './buyer-tokens.ts'
import { saleDecisions } from './decisions.ts'
import { checkHolds, checkInvariants, checkInvariantsEndpoint, countOtherBuyers } from './invariants.ts'
import { warmUp } from './load.ts'
import type { BenchOptions } from './options.ts'
import { poolWaits, readBack } from './reads.ts'
import { modeResult, type ModeResult } from './report.ts'
import { createRunDatabase, type RunDatabase } from './run-database.ts'
import { runSale } from './sale.ts'
import { startBenchService, stopOrThrow, type BenchService } from './service.ts'
import { timeSettlement } from './settlement.ts'
import { startBenchReceiver, type BenchReceiver, type WebhookFigures } from './webhooks.ts'

export interface ModeParams {
  mode: string
  requests: number
  quota: number
  ceilingRps: number
  readCeilingRps: number
  startedAt: Date
  profileDir: string | undefined
  /** With --buyer-tokens: the provider the service trusts and the crowds sign in with. */
  identity: IdentityProvider | undefined
}

/** One worker mode: the sale (steps 2-4) and, without --url, the settlement backlog (step 5). */
export async function runMode (options: BenchOptions, log: (line: string) => void, params: ModeParams): Promise<ModeResult> {
  const { mode, requests, quota, startedAt, profileDir, identity } = params
  let database: RunDatabase | undefined
  let service: BenchService | undefined
  let sql: postgres.Sql | undefined
  let receiver: BenchReceiver | undefined
  try {
    let baseUrl = options.url
    let databaseUrl = options.databaseUrl
    let adminToken = options.adminToken
    const serviceEnv: Record<string, string> = {}
    if (baseUrl === undefined) {
      database = await createRunDatabase(options.databaseUrl, mode, startedAt)
      databaseUrl = database.url
      adminToken = randomBytes(18).toString('base64url')
      // The load generator is one client address: the per-address limit would stop it, so it is off
      // (the per-user limit stays: the crowd's users buy a few times each).
      Object.assign(serviceEnv, {
        DATABASE_URL: databaseUrl, ADMIN_TOKEN: adminToken, WORKER_MODE: mode,
        QUEUE_CAPACITY: String(Math.max(requests, options.backlog) * 2 + 100_000), RATE_LIMIT_PER_IP_PER_MINUTE: '0',
        // With buyer tokens, the sale's service and settlement alone's API trust the bench's provider.
        ...identity?.serviceEnv,
        // With webhooks, the services may reach the bench's receiver on the loopback.
        ...options.webhooks !== undefined ? { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' } : {}
      })
      service = await startBenchService('all', serviceEnv, { profileDir, quiet: options.quiet })
      baseUrl = service.base
    }
    const token = adminToken as string
    const db = sql = postgres(databaseUrl as string, { max: 2, onnotice: () => {} })
    // Which server every figure comes from, and whether it would JIT-compile (its own default).
    const [server] = await db<[{ version: string, jit: string, jitAvailable: boolean }]>`
      SELECT current_setting('server_version') AS version, current_setting('jit') AS jit, pg_jit_available() AS "jitAvailable"`
    if (options.webhooks !== undefined) {
      receiver = await startBenchReceiver()
      await receiver.register(baseUrl, token, options.webhooks)
    }
    await warmUp(options, baseUrl, db, token, `Bench warm-up ${startedAt.toISOString()} ${mode}`, identity)
    const sale = await runSale({
      options, mode, requests, quota, baseUrl, adminToken: token, db, servicePid: service?.child.pid, clusterDir: database?.clusterDir, startedAt, identity, log
    })
    const { answers, eventIds, followed, crowd } = sale

    // Then every buyer reads the outcome back (with its token, if it has one), as fast as the service answers.
    log(`reads (${mode}): ${options.readCount} reads of the buyers' Locations from ${options.readers} connections...`)
    const readAfter = options.readCount > 0 && answers.locations.length > 0
      ? await readBack(baseUrl, answers.locations.map((path) => ({ path, authorization: crowd.authorizationAt(path) })), options.readCount,
        { readers: options.readers }, Math.max(options.durationS, 60))
      : undefined
    const waits = await poolWaits(baseUrl)
    const decisions = await saleDecisions(db, eventIds, answers.queuedIds)

    // 4. The invariants, from the database and the API.
    const storedIds = [...answers.queuedIds, ...answers.soldOutIds]
    const invariants = await checkInvariants(db, {
      baseUrl, eventIds, acceptedIds: storedIds, sampleSize: options.sampleSize, maxPerUser: options.maxPerUser, cancelledIds: sale.cancelledIds,
      authorizationOf: crowd.authorizationOf
    })
    const soldOutWrong = answers.soldOutIds.length === 0
      ? 0
      : Number((await db<[{ n: string }]>`SELECT count(*) AS n FROM bookings WHERE id = ANY(${answers.soldOutIds}::uuid[]) AND (status <> 'FAILED' OR reason <> 'sold_out')`)[0].n)
    if (soldOutWrong > 0) invariants.failures.push(`${soldOutWrong} purchases answered "sold out" at once are not stored as failed/sold_out`)
    // With buyer tokens, every purchase is stored under the buyer its token names, as the service derives it.
    const otherBuyers = identity === undefined ? null : await countOtherBuyers(db, eventIds, crowd.buyers.map((buyer) => buyer.userId))
    if (otherBuyers !== null && otherBuyers > 0) invariants.failures.push(`${otherBuyers} bookings are not of a buyer the crowd's tokens name`)
    // How every hold ended, against what the seller and the buyers were answered.
    const holds = sale.holds === undefined ? undefined : await checkHolds(db, eventIds, sale.holds)
    invariants.failures.push(...holds?.failures ?? [])
    // The operators' own check (GET /admin/invariants) must agree: every event ok, the same seats sold.
    const endpointProblems = await checkInvariantsEndpoint(baseUrl, token, eventIds, invariants.sold)
    invariants.failures.push(...endpointProblems)
    // A buyer reading its booking must never be told the database is unavailable.
    const readUnavailable = (followed?.unavailable ?? 0) + (readAfter?.unavailable ?? 0)
    const readErrors = (followed?.errors ?? 0) + (readAfter?.errors ?? 0)
    if (readUnavailable > 0) invariants.failures.push(`${readUnavailable} booking reads answered 503`)
    if (readErrors > 0) invariants.failures.push(`${readErrors} booking reads failed or answered neither 200 nor 503`)

    // Every message of the sale and its drain delivered, once each, while the sale's service runs.
    // (Settlement alone's worker delivers its backlog's messages too, but is stopped once timed.)
    let webhooks: Omit<WebhookFigures, 'failures'> | undefined
    if (receiver !== undefined) {
      log(`webhooks (${mode}): waiting for every message to be delivered...`)
      const { failures, ...figures } = await receiver.drain(db, options.waitS)
      invariants.failures.push(...failures)
      webhooks = figures
    }

    // 5. Settlement alone: the API stores a backlog with no worker running, then the worker is timed.
    let settlement: Record<string, unknown> = { settle_backlog: 0 }
    if (options.url === undefined && options.backlog > 0) {
      await stopOrThrow(service, 'the service')
      service = undefined
      settlement = await timeSettlement(options, log, {
        db, env: serviceEnv, token, mode, quota, startedAt, profileDir, identity, failures: invariants.failures
      })
    }
    return modeResult(options, {
      webhooks,
      params, sale, decisions, invariants, otherBuyers, holds, endpointProblems, settlement, readAfter, waits, readUnavailable, readErrors, server,
      serverName: database?.server ?? 'the one --url runs on'
    })
  } finally {
    await receiver?.close()
    await sql?.end({ timeout: 5 })
    try {
      await stopOrThrow(service, 'the service')
    } finally {
      await database?.drop()
    }
  }
}
