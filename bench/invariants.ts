// Usage: imported by bench/flash-sale.ts; checkInvariants(...) reads the database and the API.
//
// What must hold after every sale, checked from the database itself (plain SQL, independent of
// the service's code) and from the API:
// - per event, seats sold (sum of successful quantities) == total_quota - available_quota
// - never more sold than the quota
// - every accepted purchase exists and has a final status ("lost" otherwise)
// - no booking id handed out twice
// - GET /bookings/:id agrees with the database for a sample of accepted purchases
import type { Sql } from 'postgres'

export interface InvariantReport {
  sold: number
  quota: number
  oversold: number
  quota_mismatch: number
  lost: number
  duplicate_ids: number
  api_disagreements: number
  api_sampled: number
  failures: string[]
}

export async function checkInvariants (sql: Sql, { baseUrl, eventIds, acceptedIds, sampleSize }: {
  baseUrl: string
  eventIds: readonly string[]
  acceptedIds: readonly string[]
  sampleSize: number
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

  const decided = await sql<Array<{ id: string, status: string, reason: string | null }>>`
    SELECT id, status, reason FROM bookings WHERE id = ANY(${acceptedIds as string[]}::uuid[])`
  const byId = new Map(decided.map((row) => [row.id, row]))
  let lost = 0
  for (const id of acceptedIds) {
    const row = byId.get(id)
    if (row === undefined || row.status === 'PENDING') lost++
  }
  if (lost > 0) failures.push(`${lost} accepted purchases have no final status`)

  // The API must tell buyers what the database says.
  const step = Math.max(1, Math.floor(acceptedIds.length / Math.max(1, sampleSize)))
  let disagreements = 0
  let sampled = 0
  for (let i = 0; i < acceptedIds.length && sampled < sampleSize; i += step) {
    const id = acceptedIds[i] as string
    sampled++
    const res = await fetch(`${baseUrl}/bookings/${id}`)
    const body = await res.json() as { status?: string, reason?: string | null }
    const row = byId.get(id)
    if (res.status !== 200 || row === undefined || body.status !== row.status.toLowerCase() || body.reason !== row.reason) disagreements++
  }
  if (disagreements > 0) failures.push(`GET /bookings/:id disagreed with the database for ${disagreements} of ${sampled} sampled purchases`)

  return { sold, quota, oversold, quota_mismatch: quotaMismatch, lost, duplicate_ids: duplicates, api_disagreements: disagreements, api_sampled: sampled, failures }
}
