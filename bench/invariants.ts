// Usage: imported by bench/flash-sale.ts; checkInvariants(...) reads the database and the API,
// checkInvariantsEndpoint(...) asks the service's own check (GET /admin/invariants).
//
// What must hold after every sale, checked from the database itself (plain SQL, independent of
// the service's code) and from the API:
// - per event, seats sold (sum of successful quantities) == total_quota - available_quota
// - never more sold than the quota
// - every accepted purchase exists and has a final status ("lost" otherwise)
// - no booking id handed out twice
// - GET /bookings/:id?user_id=<its buyer> agrees with the database for a sample of accepted purchases
// - no user holds more seats of an event than its cap
// - every accepted cancellation ended cancelled (or its purchase failed: nothing to cancel)
// - seats given back (the events' cancelled counter) never more than the cancelled bookings held
//   (fewer when some were withdrawn while pending: those held none)
import type { Sql } from 'postgres'
import { bookingLocation } from '../server/schemas/bookings.ts'

export interface InvariantReport {
  sold: number
  quota: number
  oversold: number
  quota_mismatch: number
  lost: number
  duplicate_ids: number
  api_disagreements: number
  api_sampled: number
  limit_exceeded: number
  over_cap: number
  cancelled: number
  cancelled_seats: number
  cancellations_lost: number
  failures: string[]
}

export async function checkInvariants (sql: Sql, { baseUrl, eventIds, acceptedIds, sampleSize, maxPerUser = 0, cancelledIds = [] }: {
  baseUrl: string
  eventIds: readonly string[]
  acceptedIds: readonly string[]
  sampleSize: number
  /** The events' per-user cap (0: none). */
  maxPerUser?: number
  /** Bookings whose cancellation was accepted (202 or 200). */
  cancelledIds?: readonly string[]
}): Promise<InvariantReport> {
  const failures: string[] = []
  const events = await sql<Array<{ id: string, total_quota: number, available_quota: number, sold: string | null }>>`
    SELECT e.id, e.total_quota, e.available_quota,
      (SELECT sum(b.quantity) FROM bookings b WHERE b.event_id = e.id AND b.status = 'SUCCESS') AS sold
    FROM events e WHERE e.id = ANY(${eventIds}::uuid[])`
  let sold = 0
  let quota = 0
  let oversold = 0
  let quotaMismatch = 0
  for (const event of events) {
    const eventSold = Number(event.sold ?? 0)
    sold += eventSold
    quota += event.total_quota
    if (eventSold > event.total_quota) {
      oversold += eventSold - event.total_quota
      failures.push(`event ${event.id}: ${eventSold} seats sold for a quota of ${event.total_quota}`)
    }
    const used = event.total_quota - event.available_quota
    if (used !== eventSold) {
      quotaMismatch += Math.abs(used - eventSold)
      failures.push(`event ${event.id}: quota used is ${used} but ${eventSold} seats were sold`)
    }
  }
  if (events.length !== eventIds.length) failures.push(`${eventIds.length - events.length} events are missing`)

  const duplicates = acceptedIds.length - new Set(acceptedIds).size
  if (duplicates > 0) failures.push(`${duplicates} booking ids were handed out more than once`)

  const decided = await sql<Array<{ id: string, user_id: string, status: string, reason: string | null }>>`
    SELECT id, user_id, status, reason FROM bookings WHERE id = ANY(${acceptedIds as string[]}::uuid[])`
  const byId = new Map(decided.map((row) => [row.id, row]))
  let lost = 0
  for (const id of acceptedIds) {
    const row = byId.get(id)
    if (row === undefined || row.status === 'PENDING') lost++
  }
  if (lost > 0) failures.push(`${lost} accepted purchases have no final status`)

  // The API must tell buyers what the database says (asked as the buyer: a booking is theirs to read).
  const step = Math.max(1, Math.floor(acceptedIds.length / Math.max(1, sampleSize)))
  let disagreements = 0
  let sampled = 0
  for (let i = 0; i < acceptedIds.length && sampled < sampleSize; i += step) {
    const id = acceptedIds[i] as string
    sampled++
    const row = byId.get(id)
    if (row === undefined) {
      disagreements++
      continue
    }
    const res = await fetch(`${baseUrl}${bookingLocation(id, row.user_id)}`)
    const body = await res.json() as { status?: string, reason?: string | null }
    if (res.status !== 200 || body.status !== row.status.toLowerCase() || body.reason !== row.reason) disagreements++
  }
  if (disagreements > 0) failures.push(`GET /bookings/:id disagreed with the database for ${disagreements} of ${sampled} sampled purchases`)

  let overCap = 0
  if (maxPerUser > 0) {
    const [row] = await sql<[{ n: string }]>`
      SELECT count(*) AS n FROM (
        SELECT 1 FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status = 'SUCCESS'
        GROUP BY event_id, user_id HAVING sum(quantity) > ${maxPerUser}) over_cap`
    overCap = Number(row.n)
    if (overCap > 0) failures.push(`${overCap} users hold more than ${maxPerUser} seats of an event`)
  }
  const [counts] = await sql<[{ limit_exceeded: string, cancelled: string, cancelled_quantity: string | null, cancelled_counter: string | null }]>`
    SELECT
      (SELECT count(*) FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND reason = 'limit_exceeded') AS limit_exceeded,
      (SELECT count(*) FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status = 'CANCELLED') AS cancelled,
      (SELECT sum(quantity) FROM bookings WHERE event_id = ANY(${eventIds}::uuid[]) AND status = 'CANCELLED') AS cancelled_quantity,
      (SELECT sum(cancelled_seats) FROM events WHERE id = ANY(${eventIds}::uuid[])) AS cancelled_counter`
  const cancelledSeats = Number(counts.cancelled_counter ?? 0)
  if (cancelledSeats > Number(counts.cancelled_quantity ?? 0)) failures.push(`${cancelledSeats} seats given back, but the cancelled bookings held only ${counts.cancelled_quantity ?? 0}`)
  let cancellationsLost = 0
  if (cancelledIds.length > 0) {
    const [row] = await sql<[{ n: string }]>`
      SELECT count(*) AS n FROM bookings WHERE id = ANY(${cancelledIds as string[]}::uuid[]) AND status NOT IN ('CANCELLED', 'FAILED')`
    cancellationsLost = Number(row.n)
    if (cancellationsLost > 0) failures.push(`${cancellationsLost} accepted cancellations did not cancel their booking`)
  }

  return {
    sold,
    quota,
    oversold,
    quota_mismatch: quotaMismatch,
    lost,
    duplicate_ids: duplicates,
    api_disagreements: disagreements,
    api_sampled: sampled,
    limit_exceeded: Number(counts.limit_exceeded),
    over_cap: overCap,
    cancelled: Number(counts.cancelled),
    cancelled_seats: cancelledSeats,
    cancellations_lost: cancellationsLost,
    failures
  }
}

/** Asks the service's GET /admin/invariants about each event; returns what it reported broken. */
export async function checkInvariantsEndpoint (baseUrl: string, token: string, eventIds: readonly string[], soldInDatabase: number): Promise<string[]> {
  const problems: string[] = []
  let sold = 0
  for (const id of eventIds) {
    const res = await fetch(`${baseUrl}/admin/invariants?event_id=${id}`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.json() as { ok?: boolean, events?: Array<{ sold_seats: number, problems: string[] }> }
    const [event] = body.events ?? []
    if (res.status !== 200 || event === undefined) {
      problems.push(`GET /admin/invariants?event_id=${id} answered ${res.status}`)
      continue
    }
    sold += event.sold_seats
    if (body.ok !== true) problems.push(`GET /admin/invariants: event ${id}: ${event.problems.join('; ')}`)
  }
  if (problems.length === 0 && sold !== soldInDatabase) problems.push(`GET /admin/invariants counts ${sold} seats sold, the database ${soldInDatabase}`)
  return problems
}
