// Usage: imported by bench/flash-sale.ts: step 5, settlement alone, timed.
import type postgres from 'postgres'
import type { IdentityProvider } from './buyer-tokens.ts'
import { decisionSpan, spanSeconds, waitUntilSettled } from './decisions.ts'
import { checkInvariants, countOtherBuyers } from './invariants.ts'
import { buyRequest, createEvents, gatherCrowd, roundRobin, runAutocannon } from './load.ts'
import type { BenchOptions } from './options.ts'
import { round } from './report.ts'
import { startBenchService, stopOrThrow, type BenchService } from './service.ts'

export interface SettlementSetup {
  db: postgres.Sql
  /** The service's environment (DATABASE_URL, ADMIN_TOKEN, WORKER_MODE...). */
  env: Record<string, string>
  token: string
  mode: string
  quota: number
  startedAt: Date
  profileDir: string | undefined
  /** With --buyer-tokens: the provider the API trusts; each purchase of the backlog is then a buyer of its own, signed in. */
  identity: IdentityProvider | undefined
  /** Where broken invariants are reported. */
  failures: string[]
}

/**
 * Step 5: `--backlog` purchases for fresh events, stored by `npm run server` with no worker
 * anywhere (so none is sold out at once), then `npm run worker` alone, timed from its first
 * decision to its last (the database's clock), for at most `--backlog-seconds`.
 */
export async function timeSettlement (options: BenchOptions, log: (line: string) => void, setup: SettlementSetup): Promise<Record<string, unknown>> {
  const { db, env, token, mode, quota, startedAt, profileDir, identity, failures } = setup
  const { backlog, backlogS, quiet } = options
  // Without tokens every purchase names a new user_id; with them, a buyer of its own signs in for each.
  if (identity !== undefined) log(`settlement (${mode}): signing ${backlog} buyers' tokens...`)
  const buyers = identity === undefined ? undefined : await gatherCrowd(backlog, identity)
  let api: BenchService | undefined = await startBenchService('api', env, { profileDir, quiet })
  let worker: BenchService | undefined
  try {
    // Settlement alone is the performance issue's measure, purchases decided per second, taken on
    // plain events (no cap, no holds): a cap adds a lookup of each buyer's seats per batch (bench/README.md, "Where the time goes").
    const eventIds = await createEvents(api.base, token, options.eventCount, quota, `Bench backlog ${startedAt.toISOString()} ${mode}`, { maxPerUser: 0 })
    const ids: string[] = []
    log(`settlement (${mode}): storing a backlog of ${backlog} purchases with no worker running...`)
    const fill = await runAutocannon(buyRequest(options, api.base, roundRobin(eventIds), (status, body) => {
      if (status === 202) ids.push((JSON.parse(body) as { booking_id: string }).booking_id)
    }, buyers === undefined ? undefined : roundRobin(buyers.buyers)), { amount: backlog, seconds: Math.max(options.durationS, 120) })
    if (ids.length < backlog) failures.push(`settlement backlog: only ${ids.length} of ${backlog} purchases were stored (${fill.non2xx} refused)`)
    await stopOrThrow(api, 'the API')
    api = undefined
    log(`settlement (${mode}): starting the worker alone on ${ids.length} purchases (at most ${backlogS} s)...`)
    worker = await startBenchService('worker', { ...env }, { profileDir, quiet })
    const decided = await waitUntilSettled(db, eventIds, ids.length, backlogS)
    await stopOrThrow(worker, 'the worker')
    worker = undefined
    const span = await decisionSpan(db, ids)
    const seconds = spanSeconds(span)
    // Whatever was decided must still add up: no seat sold twice, quota used == seats sold.
    const check = await checkInvariants(db, { baseUrl: '', eventIds, acceptedIds: [], sampleSize: 0 })
    failures.push(...check.failures.map((f) => `settlement: ${f}`))
    const otherBuyers = buyers === undefined ? 0 : await countOtherBuyers(db, eventIds, buyers.buyers.map((buyer) => buyer.userId))
    if (otherBuyers > 0) failures.push(`settlement: ${otherBuyers} bookings are not of a buyer the tokens name`)
    log(`settlement (${mode}): ${span.n} decided in ${seconds.toFixed(2)} s`)
    return {
      settle_backlog: ids.length,
      settle_decided: span.n,
      settle_drained: decided >= ids.length,
      settle_seconds: round(seconds, 3),
      settle_rps: round(seconds > 0 ? span.after / seconds : span.n)
    }
  } finally {
    await worker?.stop()
    await api?.stop()
  }
}
