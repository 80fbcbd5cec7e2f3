// Usage: imported by bench/flash-sale.ts: when purchases are decided, read from the database.
import { setTimeout as sleep } from 'node:timers/promises'
import type postgres from 'postgres'

/**
 * Bookings decided by the worker (a hold too: the worker decided it), and no cancellation waiting:
 * what the sale's chart counts as decided.
 */
export async function countDecided (sql: postgres.Sql, eventIds: readonly string[]): Promise<number> {
  const [row] = await sql<[{ n: string }]>`
    SELECT count(*) AS n FROM bookings WHERE event_id = ANY(${eventIds as string[]}::uuid[]) AND status <> 'PENDING'
      AND (cancel_requested_at IS NULL OR status NOT IN ('SUCCESS', 'HELD'))`
  return Number(row.n)
}

/**
 * Bookings settled: decided, no cancellation waiting, and not held: a hold ends confirmed,
 * released or expired, so a sale with holds has drained only once every hold has ended.
 */
export async function countSettled (sql: postgres.Sql, eventIds: readonly string[]): Promise<number> {
  const [row] = await sql<[{ n: string }]>`
    SELECT count(*) AS n FROM bookings WHERE event_id = ANY(${eventIds as string[]}::uuid[]) AND status NOT IN ('PENDING', 'HELD')
      AND (cancel_requested_at IS NULL OR status <> 'SUCCESS')`
  return Number(row.n)
}

/** Polls countSettled until `count` bookings of the events are settled or `seconds` pass; returns the last count. */
export async function waitUntilSettled (sql: postgres.Sql, eventIds: readonly string[], count: number, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000
  let settled: number
  while ((settled = await countSettled(sql, eventIds)) < count && performance.now() < deadline) await sleep(50)
  return settled
}

/**
 * First and last decision among these bookings (the database's clock), how many there are, and
 * how many came after the first: a rate is `after / span`, since the decisions stamped at the
 * first instant (a whole batch shares one) were made before the span starts.
 */
export async function decisionSpan (sql: postgres.Sql, ids: readonly string[]): Promise<{ n: number, after: number, first: Date | null, last: Date | null }> {
  const [row] = await sql<[{ n: string, after: string, first: Date | null, last: Date | null }]>`
    WITH d AS (SELECT decided_at FROM bookings WHERE id = ANY(${ids as string[]}::uuid[]) AND status <> 'PENDING')
    SELECT (SELECT count(*) FROM d) AS n, (SELECT count(*) FROM d WHERE decided_at > (SELECT min(decided_at) FROM d)) AS after,
      (SELECT min(decided_at) FROM d) AS first, (SELECT max(decided_at) FROM d) AS last`
  return { n: Number(row.n), after: Number(row.after), first: row.first, last: row.last }
}
export const spanSeconds = (span: { first: Date | null, last: Date | null }): number =>
  span.first !== null && span.last !== null ? (span.last.getTime() - span.first.getTime()) / 1000 : 0


export interface SaleDecisions {
  /** The sale's bookings settled in the end. */
  decided: number
  /** First and last decision of the purchases queued (202), for the decision rate. */
  queuedSpan: Awaited<ReturnType<typeof decisionSpan>>
  /** The sale's last decision (the database's clock). */
  last: Date | null
}

/** How the sale's purchases were decided, read once the drain is over. */
export async function saleDecisions (sql: postgres.Sql, eventIds: readonly string[], queuedIds: readonly string[]): Promise<SaleDecisions> {
  const decided = await countSettled(sql, eventIds)
  const queuedSpan = await decisionSpan(sql, queuedIds)
  const [timing] = await sql<[{ last: Date | null }]>`
    SELECT max(decided_at) AS last FROM bookings WHERE event_id = ANY(${eventIds as string[]}::uuid[]) AND status <> 'PENDING'`
  return { decided, queuedSpan, last: timing.last }
}
