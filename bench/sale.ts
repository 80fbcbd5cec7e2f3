// Usage: imported by bench/flash-sale.ts: steps 2 and 3 of a mode's run, the sale and the drain.
//
// The crowd (with --buyer-tokens, signed in first) buys as fast as the service accepts (autocannon),
// while a sampler charts stored and decided purchases every 250 ms, the admin cancels a share of the
// queued ones, some buyers follow their bookings, and (with --hold-seconds) the seller confirms a
// share of the holds and their buyers release another (bench/holds.ts); then the bench waits until
// every stored purchase is decided and every hold has ended.
import { setTimeout as sleep } from 'node:timers/promises'
import type autocannon from 'autocannon'
import type postgres from 'postgres'
import type { IdentityProvider } from './buyer-tokens.ts'
import type { Sample } from './chart.ts'
import { cpuNow, rssKb, type CpuReading } from './cpu.ts'
import { countDecided, waitUntilSettled } from './decisions.ts'
import { followHolds, type HoldFigures } from './holds.ts'
import { httpClient } from './http-client.ts'
import { answerRecorder, buyRequest, createEvents, crowdSize, gatherCrowd, roundRobin, runAutocannon, type Crowd } from './load.ts'
import type { BenchOptions } from './options.ts'
import { followBookings, type FollowFigures } from './reads.ts'
import { round } from './report.ts'

export interface SaleSetup {
  options: BenchOptions
  mode: string
  requests: number
  quota: number
  baseUrl: string
  adminToken: string
  /** The database the service runs on (the bench's own connection). */
  db: postgres.Sql
  /** The service's process, for its CPU and memory (none with --url). */
  servicePid: number | undefined
  /** The server's files, for PostgreSQL's CPU (when this machine can read them). */
  clusterDir: string | undefined
  startedAt: Date
  /** With --buyer-tokens: the provider the crowd signs in with. */
  identity: IdentityProvider | undefined
  log: (line: string) => void
}

export interface SaleFigures {
  eventIds: string[]
  /** Who bought (with buyer tokens, each with its token: the reads after the sale are made as them). */
  crowd: Crowd
  answers: ReturnType<typeof answerRecorder>
  sale: autocannon.Result
  users: number
  samples: Sample[]
  maxRssKb: number
  cpuAtStart: CpuReading
  cpuAtEnd: CpuReading
  cpuSeconds: number
  intakeSeconds: number
  stored: number
  decidedDuringIntake: number
  cancelStatuses: Map<number, number>
  cancelledIds: string[]
  followed: FollowFigures | undefined
  /** What the seller and the buyers did with the holds (none with --hold-seconds 0). */
  holds: HoldFigures | undefined
}

/** Runs the sale on fresh events, then waits (at most --wait) until every stored purchase is decided and every hold ended. */
export async function runSale (setup: SaleSetup): Promise<SaleFigures> {
  const { options, mode, requests, quota, baseUrl, adminToken, db, servicePid, clusterDir, startedAt, identity, log } = setup
  const { eventCount, maxPerUser, cancelPercent, concurrency, holdSeconds, confirmPercent, releasePercent } = options
  const eventIds = await createEvents(baseUrl, adminToken, eventCount, quota, `Bench sale ${startedAt.toISOString()} ${mode}`, { maxPerUser, holdSeconds })
  // The crowd signs in before the clock starts: a buyer logs in before the sale opens.
  const users = crowdSize(options, requests)
  if (identity !== undefined) log(`sale (${mode}): signing ${users} buyers' tokens...`)
  const crowd = await gatherCrowd(users, identity)
  // The sale, sampled every 250 ms: stored (from the answers) and decided (from the database).
  const answers = answerRecorder()
  const { queuedIds, soldOutIds, statusCounts } = answers
  const samples: Sample[] = []
  let maxRssKb = 0
  const cpuAtStart = await cpuNow(servicePid, clusterDir)
  const cpuReadAt = performance.now()
  const saleStart = performance.now()
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const decided = await countDecided(db, eventIds)
      const t = (performance.now() - saleStart) / 1000
      samples.push({ t: round(t, 2), accepted: queuedIds.length + soldOutIds.length, decided })
      const rss = await rssKb(servicePid)
      if (rss !== undefined) maxRssKb = Math.max(maxRssKb, rss)
      const sent = [...statusCounts.values()].reduce((a, b) => a + b, 0)
      log(`  t=${t.toFixed(1)}s  sent ${sent}  queued ${queuedIds.length}  sold out at once ${soldOutIds.length}  decided ${decided}`)
      await sleep(250)
    }
  })()

  // Cancellations during the sale: every so many queued purchases is cancelled by the admin (a
  // successful one gives its seats back, so the sold-out fast path must reopen), a few at a time.
  // A booking the seller has already taken charge of (bench/holds.ts) is left to it.
  const cancelEvery = cancelPercent > 0 ? Math.max(1, Math.round(100 / cancelPercent)) : 0
  const cancelStatuses = new Map<number, number>()
  const cancelledIds: string[] = []
  const claimed = new Set<string>()
  let selling = true
  const cancelling = httpClient(8)
  const canceller = (async () => {
    let next = 0
    while (cancelEvery > 0 && (selling || next < queuedIds.length)) {
      const chosen: string[] = []
      for (; next < queuedIds.length && chosen.length < 8; next++) {
        const id = queuedIds[next] as string
        if (next % cancelEvery === cancelEvery - 1 && !claimed.has(id)) {
          claimed.add(id)
          chosen.push(id)
        }
      }
      if (chosen.length === 0) {
        await sleep(20)
        continue
      }
      await Promise.all(chosen.map(async (id) => {
        const res = await cancelling.request('DELETE', `${baseUrl}/bookings/${id}`, { headers: { authorization: `Bearer ${adminToken}` } })
        cancelStatuses.set(res.status, (cancelStatuses.get(res.status) ?? 0) + 1)
        if (res.status === 202 || res.status === 200) cancelledIds.push(id)
      }))
    }
  })()

  // Buyers told 202 follow their bookings, from the first answer until all are decided (a 200
  // is an outcome already: sold out at once).
  let following = options.followers > 0
    ? followBookings(baseUrl, answers.queuedLocations, { followers: options.followers, authorizationAt: crowd.authorizationAt })
    : undefined
  // The seller and the buyers of the holds, from the first decision until every hold has ended.
  let holding = holdSeconds > 0
    ? followHolds({ db, baseUrl, adminToken, eventIds, confirmPercent, releasePercent, authorizationOf: crowd.authorizationOf, claimed })
    : undefined
  try {
    const holdsSaid = holdSeconds > 0 ? `, seats held ${holdSeconds} s (${confirmPercent}% confirmed, ${releasePercent}% released, the rest left to expire)` : ''
    log(`sale (${mode}): ${requests} requests from ${users} users${identity === undefined ? '' : ' with tokens'}, ${eventCount} event(s) x ${quota} seats${maxPerUser > 0 ? `, at most ${maxPerUser} per user` : ''}${holdsSaid}, concurrency ${concurrency}, ${cancelPercent}% of queued purchases cancelled`)
    const buying = buyRequest(options, baseUrl, roundRobin(eventIds), answers.onResponse, crowd.pick)
    const sale = await runAutocannon(buying, { amount: requests, seconds: options.durationS })
    const lastAnswerAt = answers.lastAnswerAt() || saleStart
    const cpuAtEnd = await cpuNow(servicePid, clusterDir)
    const cpuSeconds = (performance.now() - cpuReadAt) / 1000
    selling = false
    await canceller
    cancelling.close()
    // From the first request to the last answer (autocannon's own duration is rounded up to its
    // one-second ticks, too coarse for a sale of a few seconds).
    const intakeSeconds = (lastAnswerAt - saleStart) / 1000 || sale.duration
    const stored = queuedIds.length + soldOutIds.length
    // How much settlement kept pace while the crowd was still arriving.
    const decidedDuringIntake = await countDecided(db, eventIds)

    // Drain: wait for every stored purchase to be decided, and every hold to end.
    await waitUntilSettled(db, eventIds, stored, options.waitS)
    sampling = false
    await sampler
    const followed = await following?.stop()
    following = undefined
    const holds = await holding?.stop()
    holding = undefined
    return {
      eventIds, crowd, answers, sale, users, samples, maxRssKb, cpuAtStart, cpuAtEnd, cpuSeconds,
      intakeSeconds, stored, decidedDuringIntake, cancelStatuses, cancelledIds, followed, holds
    }
  } finally {
    selling = false
    sampling = false
    cancelling.close()
    await following?.stop()
    // Only on the way out of a failed sale: its own error is the one to report.
    await holding?.stop().catch(() => undefined)
  }
}
