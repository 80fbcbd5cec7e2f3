// Usage: imported by bench/flash-sale.ts: a mode's figures as its JSON record, and the table of
// every mode side by side. The record's fields are the bench's output contract (bench/README.md,
// test/bench/flash-sale.test.ts): add fields, never rename them.
import os from 'node:os'
import type { Sample } from './chart.ts'
import { cpuPerRequest } from './cpu.ts'
import { spanSeconds, type SaleDecisions } from './decisions.ts'
import type { HoldReport, InvariantReport } from './invariants.ts'
import type { ModeParams } from './mode.ts'
import type { BenchOptions } from './options.ts'
import type { poolWaits, ReadBackFigures } from './reads.ts'
import type { SaleFigures } from './sale.ts'

export const pct = (n: number): string => `${(100 * n).toFixed(1)}%`
export const round = (n: number, digits = 1): number => Number(n.toFixed(digits))

export type ModeResult = Record<string, unknown> & { samples: Sample[] }

export interface ModeFigures {
  params: ModeParams
  sale: SaleFigures
  decisions: SaleDecisions
  invariants: InvariantReport
  /** With buyer tokens: the sale's bookings under a user_id no token of the crowd names (null without). */
  otherBuyers: number | null
  /** How the holds ended (none with --hold-seconds 0). */
  holds: HoldReport | undefined
  endpointProblems: string[]
  settlement: Record<string, unknown>
  readAfter: ReadBackFigures | undefined
  waits: Awaited<ReturnType<typeof poolWaits>>
  readUnavailable: number
  readErrors: number
  server: { version: string, jit: string, jitAvailable: boolean }
  serverName: string
  /** With --webhooks: what the receiver got (bench/webhooks.ts). */
  webhooks: Record<string, number | null> | undefined
}

/** One mode's JSON record (its samples go to the chart, not the file). */
export function modeResult (options: BenchOptions, figures: ModeFigures): ModeResult {
  const { params: { mode, requests, quota, ceilingRps, readCeilingRps, startedAt }, sale: run, decisions, invariants, holds, endpointProblems } = figures
  const { settlement, otherBuyers } = figures
  const { readAfter, waits, readUnavailable, readErrors, server, serverName } = figures
  const { concurrency, eventCount, maxPerUser, waitS, followers, warmupRequests } = options
  const { answers: { queuedIds, soldOutIds, statusCounts }, sale, stored, intakeSeconds, decidedDuringIntake, samples, followed, maxRssKb } = run
  const { decided, queuedSpan } = decisions
  const lastStoredAt = run.answers.lastStoredAt()
  const timeToAllDecided = decided >= stored ? (samples.at(-1)?.t ?? 0) : null
  const { version: postgresVersion, jit: postgresJit, jitAvailable } = server
  const { cancelStatuses, cancelledIds, users, cpuAtStart, cpuAtEnd, cpuSeconds } = run
  const intakeRps = stored / intakeSeconds
  const intakeRatio = round(intakeRps / ceilingRps, 3)
  // Every request stored and queued (none refused, none answered sold out at once), and seats left.
  const queuedOnly = stored === requests && queuedIds.length === requests && soldOutIds.length === 0 && invariants.sold < quota * eventCount
  return {
    requests,
    quota: quota * eventCount,
    events: eventCount,
    concurrency,
    warmup_requests: warmupRequests,
    quantity_mix: options.quantity,
    // Buyers signed in (--buyer-tokens): every purchase and read as a buyer carried an RS256 token.
    buyer_tokens: options.buyerTokens,
    // A webhook receiver subscribed for the whole run (--webhooks), to these types (--webhook-types).
    webhooks: options.webhooks !== undefined,
    webhook_types: options.webhooks ?? null,
    ...figures.webhooks,
    accepted: queuedIds.length,
    sold_out_at_once: soldOutIds.length,
    stored,
    rejected_busy: statusCounts.get(503) ?? 0,
    errors: sale.errors + sale.timeouts + [...statusCounts].filter(([s]) => s !== 202 && s !== 200 && s !== 503).reduce((sum, [, n]) => sum + n, 0),
    intake_seconds: round(intakeSeconds, 3),
    intake_rps: round(intakeRps),
    intake_p50_ms: sale.latency.p50,
    intake_p99_ms: sale.latency.p99,
    decided,
    decided_during_intake: decidedDuringIntake,
    decide_rps: round(spanSeconds(queuedSpan) > 0 ? queuedSpan.after / spanSeconds(queuedSpan) : queuedSpan.n),
    time_to_all_decided_s: timeToAllDecided,
    last_decision_after_last_acceptance_s: decisions.last !== null && lastStoredAt > 0
      ? round((decisions.last.getTime() - (performance.timeOrigin + lastStoredAt)) / 1000, 3)
      : null,
    ...settlement,
    sold: invariants.sold,
    oversold: invariants.oversold,
    quota_mismatch: invariants.quota_mismatch,
    lost: invariants.lost,
    max_per_user: maxPerUser,
    users,
    bookings_of_other_buyers: otherBuyers,
    limit_exceeded: invariants.limit_exceeded,
    over_cap: invariants.over_cap,
    cancel_requests: [...cancelStatuses.values()].reduce((a, b) => a + b, 0),
    cancel_accepted: cancelledIds.length,
    cancel_refused: cancelStatuses.get(409) ?? 0,
    cancelled_bookings: invariants.cancelled,
    cancelled_seats: invariants.cancelled_seats,
    cancellations_lost: invariants.cancellations_lost,
    ...holdFields(options, run, holds, invariants.held),
    duplicate_ids: invariants.duplicate_ids,
    api_sampled: invariants.api_sampled,
    api_disagreements: invariants.api_disagreements,
    ceiling_rps: round(ceilingRps),
    intake_ratio: intakeRatio,
    // The phase of a flash sale that matters is while seats remain, when every purchase is queued.
    // A sale in which every purchase was queued and seats remained at the end measured only that
    // phase (--quota at least --requests does); its intake ratio is also given under this name.
    queued_only: queuedOnly,
    queued_only_ratio: queuedOnly ? intakeRatio : null,
    // Settlement alone against the same run's no-op ceiling: a machine-speed yardstick.
    settle_ratio: typeof settlement.settle_rps === 'number' ? round(settlement.settle_rps / ceilingRps, 3) : null,
    // Reads: the buyers following their bookings during the sale and the drain, then every
    // buyer reading the outcome back, against the no-op GET's ceiling.
    followers,
    follow_bookings: followed?.followed ?? 0,
    follow_polls: followed?.polls ?? 0,
    follow_waits: followed?.waits ?? 0,
    follow_reads_per_s: followed?.reads_per_s ?? null,
    follow_poll_p50_ms: followed?.poll_p50_ms ?? null,
    follow_poll_p99_ms: followed?.poll_p99_ms ?? null,
    readers: options.readers,
    reads: readAfter?.reads ?? 0,
    read_ceiling_rps: round(readCeilingRps),
    read_rps: readAfter?.read_rps ?? null,
    read_ratio: readAfter === undefined ? null : round(readAfter.read_rps / readCeilingRps, 3),
    read_p50_ms: readAfter?.read_p50_ms ?? null,
    read_p99_ms: readAfter?.read_p99_ms ?? null,
    read_unavailable: readUnavailable,
    read_errors: readErrors,
    // The API pool's waits for a connection over the run (bucket bounds of its histogram).
    db_pool_max: waits?.max ?? null,
    db_acquire_waits: waits?.count ?? null,
    db_acquire_p50_ms: waits?.p50_ms ?? null,
    db_acquire_p99_ms: waits?.p99_ms ?? null,
    server_max_rss_mb: maxRssKb > 0 ? round(maxRssKb / 1024) : null,
    // CPU per stored request during the sale (microseconds; 10 ms ticks over the sale's seconds),
    // the service's including the worker's decisions beside it, and what the machine had idle.
    ...cpuPerRequest(cpuAtStart, cpuAtEnd, stored, cpuSeconds),
    worker_mode: mode,
    node_version: process.version,
    postgres_version: postgresVersion,
    postgres_server: serverName,
    postgres_jit: postgresJit === 'on' && jitAvailable ? 'on' : jitAvailable ? 'off' : 'not built in',
    cpus: os.cpus().length,
    started_at: startedAt.toISOString(),
    endpoint_invariants_ok: endpointProblems.length === 0,
    invariants_ok: invariants.failures.length === 0 && timeToAllDecided !== null,
    failures: timeToAllDecided === null
      ? [...invariants.failures, `not every purchase was decided${options.holdSeconds > 0 ? ' and every hold ended' : ''} within ${waitS} s`]
      : invariants.failures,
    samples
  }
}

/**
 * The holds: what the seller and the buyers were answered (bench/holds.ts) and how the holds ended
 * in the database (checkHolds). With --hold-seconds 0 the counts are 0 and the rest null.
 */
function holdFields ({ holdSeconds, confirmPercent, releasePercent }: BenchOptions, { holds: asked }: SaleFigures, ended: HoldReport | undefined,
  heldEnd: number): Record<string, number | null> {
  return {
    hold_seconds: holdSeconds,
    confirm_percent: asked === undefined ? null : confirmPercent,
    release_percent: asked === undefined ? null : releasePercent,
    // Bookings held at some point, how they ended, and the seats still held after the drain (0).
    holds: ended?.holds ?? 0,
    holds_confirmed: ended?.confirmed ?? 0,
    holds_released: ended?.released ?? 0,
    holds_expired: ended?.expired ?? 0,
    holds_unended: ended?.unended ?? 0,
    held_end: heldEnd,
    // Holds the seller saw (the rest expire unseen), those the admin's canceller had taken first.
    holds_seen: asked?.seen ?? 0,
    holds_left_to_canceller: asked?.leftToCanceller ?? 0,
    confirm_requests: asked?.confirmRequests ?? 0,
    confirm_ok: asked?.confirmedIds.length ?? 0,
    confirm_409_expired: asked?.confirmExpiredIds.length ?? 0,
    confirm_409_not_confirmable: asked?.confirmRefusedIds.length ?? 0,
    confirm_p50_ms: asked?.confirmP50Ms ?? null,
    confirm_p99_ms: asked?.confirmP99Ms ?? null,
    release_requests: asked?.releaseRequests ?? 0,
    release_accepted: asked?.releasedIds.length ?? 0,
    release_refused: asked?.releaseRefused ?? 0,
    // The checks' counts: each is 0 when the holds held.
    holds_confirmed_and_expired: ended?.confirmed_and_expired ?? 0,
    sold_unconfirmed: ended?.sold_unconfirmed ?? 0,
    confirms_unrecorded: ended?.confirms_unrecorded ?? 0,
    confirms_unanswered: ended?.confirms_unanswered ?? 0,
    confirm_409_not_expired: ended?.confirm_409_not_expired ?? 0,
    releases_lost: ended?.releases_lost ?? 0
  }
}

/** One column per mode, side by side. */
export function printTable (results: ReadonlyArray<Record<string, unknown>>, waitS: number): void {
  const v = (r: Record<string, unknown>, key: string): string => {
    const value = r[key]
    return typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' ? String(value) : '-'
  }
  const rows: Array<[string, (r: Record<string, unknown>) => string]> = [
    ['requests / seats / events', (r) => `${v(r, 'requests')} / ${v(r, 'quota')} / ${v(r, 'events')}`],
    ['queued (202) / sold out at once (200)', (r) => `${v(r, 'accepted')} / ${v(r, 'sold_out_at_once')}`],
    ['busy (503) / errors', (r) => `${v(r, 'rejected_busy')} / ${v(r, 'errors')}`],
    ['no-op ceiling', (r) => `${v(r, 'ceiling_rps')} req/s`],
    ['intake (stored and committed)', (r) => `${v(r, 'intake_rps')} req/s (${pct(r.intake_ratio as number)})`],
    ['intake latency p50 / p99', (r) => `${v(r, 'intake_p50_ms')} / ${v(r, 'intake_p99_ms')} ms`],
    ['queued purchases decided per s', (r) => `${v(r, 'decide_rps')} (${v(r, 'decided_during_intake')} decided during intake)`],
    ['all decided (and holds ended) after', (r) => r.time_to_all_decided_s === null ? `NOT within ${waitS} s` : `${v(r, 'time_to_all_decided_s')} s`],
    ['last decision after last answer', (r) => `${v(r, 'last_decision_after_last_acceptance_s')} s`],
    ['settlement alone: decided / backlog', (r) => r.settle_backlog === 0 ? '-' : `${v(r, 'settle_decided')} / ${v(r, 'settle_backlog')}${r.settle_drained === true ? '' : ' (time-boxed)'}`],
    ['settlement alone: decisions per s', (r) => r.settle_backlog === 0 ? '-' : `${v(r, 'settle_rps')} in ${v(r, 'settle_seconds')} s (${v(r, 'settle_ratio')}x the ceiling)`],
    ['sold / held / seats', (r) => `${v(r, 'sold')} / ${v(r, 'held_end')} / ${v(r, 'quota')}`],
    ['users / cap / limit_exceeded / over cap', (r) => `${v(r, 'users')} / ${r.max_per_user === 0 ? 'none' : v(r, 'max_per_user')} / ${v(r, 'limit_exceeded')} / ${v(r, 'over_cap')}`],
    ['bookings of buyers no token names', (r) => r.buyer_tokens === true ? v(r, 'bookings_of_other_buyers') : '- (no tokens)'],
    ['cancellations: asked / accepted / 409', (r) => `${v(r, 'cancel_requests')} / ${v(r, 'cancel_accepted')} / ${v(r, 'cancel_refused')}`],
    ['cancelled bookings / seats back / lost', (r) => `${v(r, 'cancelled_bookings')} / ${v(r, 'cancelled_seats')} / ${v(r, 'cancellations_lost')}`],
    ['holds: seconds / held / seen by the seller', (r) => r.hold_seconds === 0 ? 'none' : `${v(r, 'hold_seconds')} s / ${v(r, 'holds')} / ${v(r, 'holds_seen')}`],
    ['holds: confirmed / released / expired / not ended', (r) => r.hold_seconds === 0
      ? '-'
      : `${v(r, 'holds_confirmed')} / ${v(r, 'holds_released')} / ${v(r, 'holds_expired')} / ${v(r, 'holds_unended')}`],
    ['confirms: asked / 200 / 409 expired / 409 other', (r) => r.hold_seconds === 0
      ? '-'
      : `${v(r, 'confirm_requests')} / ${v(r, 'confirm_ok')} / ${v(r, 'confirm_409_expired')} / ${v(r, 'confirm_409_not_confirmable')}, p50 / p99 ${v(r, 'confirm_p50_ms')} / ${v(r, 'confirm_p99_ms')} ms`],
    ['releases: asked / accepted / 409', (r) => r.hold_seconds === 0 ? '-' : `${v(r, 'release_requests')} / ${v(r, 'release_accepted')} / ${v(r, 'release_refused')}`],
    ['oversold / quota mismatch / lost / dup ids', (r) => `${v(r, 'oversold')} / ${v(r, 'quota_mismatch')} / ${v(r, 'lost')} / ${v(r, 'duplicate_ids')}`],
    ['API agrees with database', (r) => `${(r.api_sampled as number) - (r.api_disagreements as number)} of ${v(r, 'api_sampled')}`],
    ['reads while following (polls / ?wait=)', (r) => `${v(r, 'follow_polls')} / ${v(r, 'follow_waits')} for ${v(r, 'follow_bookings')} bookings (${v(r, 'follow_reads_per_s')}/s), poll p50 / p99 ${v(r, 'follow_poll_p50_ms')} / ${v(r, 'follow_poll_p99_ms')} ms`],
    ['no-op GET ceiling', (r) => `${v(r, 'read_ceiling_rps')} req/s`],
    ['reads after the sale', (r) => r.read_rps === null ? '-' : `${v(r, 'reads')} at ${v(r, 'read_rps')} req/s (${pct(r.read_ratio as number)}), p50 / p99 ${v(r, 'read_p50_ms')} / ${v(r, 'read_p99_ms')} ms`],
    ['reads answered 503 / failed', (r) => `${v(r, 'read_unavailable')} / ${v(r, 'read_errors')}`],
    ['API pool: connections / wait for one p50 / p99', (r) => `${v(r, 'db_pool_max')} / <= ${v(r, 'db_acquire_p50_ms')} / <= ${v(r, 'db_acquire_p99_ms')} ms`],
    ['server max RSS', (r) => `${v(r, 'server_max_rss_mb')} MB`],
    ['sale CPU per request: service / postgres / generator', (r) => `${v(r, 'sale_cpu_us_per_request_service')} / ${v(r, 'sale_cpu_us_per_request_postgres')} / ${v(r, 'sale_cpu_us_per_request_generator')} us (${typeof r.sale_cpu_idle_share === 'number' ? pct(r.sale_cpu_idle_share) : '-'} idle)`],
    ['node / postgres (server, its JIT)', (r) => `${v(r, 'node_version')} / ${v(r, 'postgres_version')} (${v(r, 'postgres_server')}, JIT ${v(r, 'postgres_jit')})`],
    ['invariants', (r) => r.invariants_ok === true ? 'ALL HELD' : `FAILED: ${(r.failures as string[]).join('; ')}`]
  ]
  const header: [string, ...string[]] = ['worker mode', ...results.map((r) => `${String(r.worker_mode)}${r.buyer_tokens === true ? ', buyer tokens' : ''}`)]
  const lines = [header, ...rows.map(([label, cell]) => [label, ...results.map(cell)])]
  const widths = header.map((_h, i) => Math.max(...lines.map((line) => (line[i] ?? '').length)))
  process.stdout.write(lines.map((line) => line.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n') + '\n')
  for (const r of results) process.stdout.write(`written (${String(r.worker_mode)}): ${(r.written as string[]).join(', ')}\n`)
}
