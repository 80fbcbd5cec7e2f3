// Usage: imported by bench/flash-sale.ts; checkInvariants(...) reads the database and the API,
// checkInvariantsEndpoint(...) asks the service's own check (GET /admin/invariants).
//
// What must hold after every sale, checked from the database itself (plain SQL, independent of
// the service's code) and from the API:
// - per event, seats sold + seats held == total_quota - available_quota, and none held any more
// - never more sold than the quota
// - every accepted purchase exists and has a final status ("lost" otherwise)
// - no booking id handed out twice
// - GET /bookings/:id?user_id=<its buyer> agrees with the database for a sample of accepted purchases
//   (asked as the buyer: with buyer tokens, with its token)
// - with buyer tokens (countOtherBuyers), every booking's user_id is one the service derived from a
//   token of the crowd's
// - no user holds more seats of an event than its cap
// - every accepted cancellation ended cancelled (or its purchase failed: nothing to cancel)
// - seats given back (the events' cancelled counter) never more than the cancelled bookings held
//   (fewer when some were withdrawn while pending: those held none)
// and with holds (checkHolds):
// - after the drain no seat held, and every booking ever held ended confirmed (success with
//   confirmed_at), released (cancelled) or expired; none both confirmed and expired; nothing sold
//   on a hold event without a confirmation
// - confirms answered 200 == bookings confirmed in the database, each with the seller's payment
//   reference; every confirm answered 409 (HOLD_EXPIRED, or not confirmable) is an expired booking
// - every release accepted ended cancelled (or expired first: the sweep can beat the queue)
import type { Sql } from 'postgres'
import { bookingLocation } from '../server/schemas/bookings.ts'
import { paymentReference, type HoldFigures } from './holds.ts'

export interface InvariantReport {
  sold: number
  /** Seats held when checked: none once a sale has drained. */
  held: number
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

export async function checkInvariants (sql: Sql, { baseUrl, eventIds, acceptedIds, sampleSize, maxPerUser = 0, cancelledIds = [], authorizationOf }: {
  baseUrl: string
  eventIds: readonly string[]
  acceptedIds: readonly string[]
  sampleSize: number
  /** The events' per-user cap (0: none). */
  maxPerUser?: number
  /** Bookings whose cancellation was accepted (202 or 200). */
  cancelledIds?: readonly string[]
  /** With buyer tokens: a buyer's Authorization header by its user_id, to read its booking as the buyer. */
  authorizationOf?: (userId: string) => string | undefined
}): Promise<InvariantReport> {
  const failures: string[] = []
  const events = await sql<Array<{ id: string, total_quota: number, available_quota: number, sold: string | null, held: string | null }>>`
    SELECT e.id, e.total_quota, e.available_quota,
      (SELECT sum(b.quantity) FROM bookings b WHERE b.event_id = e.id AND b.status = 'SUCCESS') AS sold,
      (SELECT sum(b.quantity) FROM bookings b WHERE b.event_id = e.id AND b.status = 'HELD') AS held
    FROM events e WHERE e.id = ANY(${eventIds}::uuid[])`
  let sold = 0
  let held = 0
  let quota = 0
  let oversold = 0
  let quotaMismatch = 0
  for (const event of events) {
    const eventSold = Number(event.sold ?? 0)
    const eventHeld = Number(event.held ?? 0)
    sold += eventSold
    held += eventHeld
    quota += event.total_quota
    if (eventSold > event.total_quota) {
      oversold += eventSold - event.total_quota
      failures.push(`event ${event.id}: ${eventSold} seats sold for a quota of ${event.total_quota}`)
    }
    const used = event.total_quota - event.available_quota
    if (used !== eventSold + eventHeld) {
      quotaMismatch += Math.abs(used - eventSold - eventHeld)
      failures.push(`event ${event.id}: quota used is ${used} but ${eventSold} seats were sold and ${eventHeld} are held`)
    }
  }
  if (events.length !== eventIds.length) failures.push(`${eventIds.length - events.length} events are missing`)
  // Checked once the sale has drained: every hold has ended by then.
  if (held > 0) failures.push(`${held} seats are still held`)

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
    const authorization = authorizationOf?.(row.user_id)
    const res = await fetch(`${baseUrl}${bookingLocation(id, row.user_id)}`, authorization === undefined ? undefined : { headers: { authorization } })
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
  // A cancellation accepted while its booking was held may find it expired: the sweep came first.
  let cancellationsLost = 0
  if (cancelledIds.length > 0) {
    const [row] = await sql<[{ n: string }]>`
      SELECT count(*) AS n FROM bookings WHERE id = ANY(${cancelledIds as string[]}::uuid[]) AND status NOT IN ('CANCELLED', 'FAILED', 'EXPIRED')`
    cancellationsLost = Number(row.n)
    if (cancellationsLost > 0) failures.push(`${cancellationsLost} accepted cancellations did not cancel their booking`)
  }

  return {
    sold,
    held,
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

/**
 * With buyer tokens: bookings of the events whose user_id is none of `buyerIds` (the ids the service
 * derives from the crowd's tokens), so 0 when every purchase was stored under its token's buyer.
 */
export async function countOtherBuyers (sql: Sql, eventIds: readonly string[], buyerIds: readonly string[]): Promise<number> {
  const [row] = await sql<[{ n: string }]>`
    SELECT count(*) AS n FROM bookings b LEFT JOIN unnest(${buyerIds as string[]}::uuid[]) AS crowd(user_id) ON crowd.user_id = b.user_id
    WHERE b.event_id = ANY(${eventIds as string[]}::uuid[]) AND crowd.user_id IS NULL`
  return Number(row.n)
}

export interface HoldReport {
  /** The events' bookings held at some point (a hold sets hold_expires_at, and it stays). */
  holds: number
  confirmed: number
  released: number
  expired: number
  /** Held bookings in none of those three ends: still held, or sold without a confirmation. */
  unended: number
  confirmed_and_expired: number
  sold_unconfirmed: number
  /** Confirmations answered 200 that the database does not show, and confirmed rows no 200 answered. */
  confirms_unrecorded: number
  confirms_unanswered: number
  /** Confirmations answered 409 whose booking did not end expired. */
  confirm_409_not_expired: number
  releases_lost: number
  failures: string[]
}

/**
 * After the drain, on events whose purchases were held: how every hold ended, checked against what
 * the seller and the buyers were answered (`figures`).
 */
export async function checkHolds (sql: Sql, eventIds: readonly string[], figures: HoldFigures): Promise<HoldReport> {
  const failures: string[] = []
  const [ends] = await sql<[Record<'holds' | 'confirmed' | 'released' | 'expired' | 'confirmed_and_expired' | 'sold_unconfirmed' | 'confirmed_rows', string>]>`
    SELECT
      count(*) FILTER (WHERE hold_expires_at IS NOT NULL) AS holds,
      count(*) FILTER (WHERE hold_expires_at IS NOT NULL AND status = 'SUCCESS' AND confirmed_at IS NOT NULL) AS confirmed,
      count(*) FILTER (WHERE hold_expires_at IS NOT NULL AND status = 'CANCELLED') AS released,
      count(*) FILTER (WHERE hold_expires_at IS NOT NULL AND status = 'EXPIRED') AS expired,
      count(*) FILTER (WHERE status = 'EXPIRED' AND confirmed_at IS NOT NULL) AS confirmed_and_expired,
      count(*) FILTER (WHERE status = 'SUCCESS' AND confirmed_at IS NULL) AS sold_unconfirmed,
      count(*) FILTER (WHERE confirmed_at IS NOT NULL) AS confirmed_rows
    FROM bookings WHERE event_id = ANY(${eventIds as string[]}::uuid[])`
  const n = (key: keyof typeof ends): number => Number(ends[key])
  const unended = n('holds') - n('confirmed') - n('released') - n('expired')
  if (unended > 0) failures.push(`${unended} held bookings ended neither confirmed, released nor expired`)
  if (n('confirmed_and_expired') > 0) failures.push(`${n('confirmed_and_expired')} bookings are both confirmed and expired`)
  if (n('sold_unconfirmed') > 0) failures.push(`${n('sold_unconfirmed')} bookings of events with holds were sold without a confirmation`)

  // Only the bench's seller confirms: each 200 is a confirmed booking with its payment reference,
  // and each confirmed booking was answered 200.
  const { confirmedIds, confirmExpiredIds, confirmRefusedIds, releasedIds } = figures
  const [answered] = await sql<[{ recorded: string, not_expired: string, releases_lost: string }]>`
    SELECT
      (SELECT count(*) FROM bookings b JOIN unnest(${confirmedIds}::uuid[], ${confirmedIds.map(paymentReference)}::text[]) AS c(id, reference)
        ON b.id = c.id WHERE b.status = 'SUCCESS' AND b.confirmed_at IS NOT NULL AND b.payment_reference = c.reference) AS recorded,
      (SELECT count(*) FROM bookings WHERE id = ANY(${[...confirmExpiredIds, ...confirmRefusedIds]}::uuid[]) AND status <> 'EXPIRED') AS not_expired,
      (SELECT count(*) FROM bookings WHERE id = ANY(${releasedIds}::uuid[]) AND status NOT IN ('CANCELLED', 'EXPIRED')) AS releases_lost`
  const confirmsUnrecorded = confirmedIds.length - Number(answered.recorded)
  const confirmsUnanswered = n('confirmed_rows') - Number(answered.recorded)
  if (confirmsUnrecorded > 0) failures.push(`${confirmsUnrecorded} confirmations answered 200 are not confirmed in the database with their payment reference`)
  if (confirmsUnanswered > 0) failures.push(`${confirmsUnanswered} bookings are confirmed that no confirmation answered 200`)
  const notExpired = Number(answered.not_expired)
  if (notExpired > 0) failures.push(`${notExpired} confirmations answered 409 are of bookings that did not expire`)
  const releasesLost = Number(answered.releases_lost)
  if (releasesLost > 0) failures.push(`${releasesLost} accepted releases did not end their hold`)
  if (figures.confirmErrors > 0) failures.push(`${figures.confirmErrors} confirmations failed or answered neither 200 nor 409`)
  if (figures.releaseErrors > 0) failures.push(`${figures.releaseErrors} releases failed or answered neither 202, 200 nor 409`)
  return {
    holds: n('holds'),
    confirmed: n('confirmed'),
    released: n('released'),
    expired: n('expired'),
    unended,
    confirmed_and_expired: n('confirmed_and_expired'),
    sold_unconfirmed: n('sold_unconfirmed'),
    confirms_unrecorded: confirmsUnrecorded,
    confirms_unanswered: confirmsUnanswered,
    confirm_409_not_expired: notExpired,
    releases_lost: releasesLost,
    failures
  }
}

/**
 * Asks the service's GET /admin/invariants about each event, once the sale has drained; returns
 * what it reported broken, or counted otherwise than the database (seats sold; seats held: none).
 */
export async function checkInvariantsEndpoint (baseUrl: string, token: string, eventIds: readonly string[], soldInDatabase: number): Promise<string[]> {
  const problems: string[] = []
  let sold = 0
  let held = 0
  let overdue = 0
  for (const id of eventIds) {
    const res = await fetch(`${baseUrl}/admin/invariants?event_id=${id}`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.json() as { ok?: boolean, events?: Array<{ sold_seats: number, held_seats: number, overdue_holds: number, problems: string[] }> }
    const [event] = body.events ?? []
    if (res.status !== 200 || event === undefined) {
      problems.push(`GET /admin/invariants?event_id=${id} answered ${res.status}`)
      continue
    }
    sold += event.sold_seats
    held += event.held_seats
    overdue += event.overdue_holds
    if (body.ok !== true) problems.push(`GET /admin/invariants: event ${id}: ${event.problems.join('; ')}`)
  }
  if (problems.length === 0 && sold !== soldInDatabase) problems.push(`GET /admin/invariants counts ${sold} seats sold, the database ${soldInDatabase}`)
  if (held > 0 || overdue > 0) problems.push(`GET /admin/invariants counts ${held} seats still held and ${overdue} overdue holds after the drain`)
  return problems
}
