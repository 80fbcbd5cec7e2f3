// Usage: imported by bench/sale.ts: followHolds(...) plays the seller and the buyers of the sale's
// held bookings, from its start until the drain is over.
//
// On an event with hold_seconds, a purchase that gets its seats is held until the seller confirms
// it (POST /bookings/:id/confirm, as the admin), its buyer releases it (DELETE /bookings/:id, as the
// buyer: with --buyer-tokens, with its token) or it expires. The bench learns of holds from the database, not from the API: the seller
// would hear of them from its own payment flow, and reading every booking over HTTP to find them
// would double the requests the service answers. One indexed query every 100 ms reads only the
// holds decided since the last one (bookings_held_by_event_idx: event, hold_expires_at, held only).
// Each hold seen is then confirmed, released or left to expire, in the shares asked for, spread
// evenly over the holds in the order seen, so even a small sale gets every outcome.
import { setTimeout as sleep } from 'node:timers/promises'
import type postgres from 'postgres'
import { bookingLocation } from '../server/schemas/bookings.ts'
import { httpClient } from './http-client.ts'
import { percentiles } from './reads.ts'

export interface HoldSetup {
  db: postgres.Sql
  baseUrl: string
  adminToken: string
  eventIds: readonly string[]
  confirmPercent: number
  releasePercent: number
  /** A buyer's Authorization header by its user_id, with buyer tokens (the release is the buyer's). */
  authorizationOf: (userId: string) => string | undefined
  /**
   * Bookings someone in the bench has taken charge of: the admin's canceller adds those it cancels,
   * the seller those it sees held. Whoever sees a booking first owns it, so a booking is never both
   * cancelled by the admin and confirmed, and every answer has one reading.
   */
  claimed: Set<string>
}

export interface HoldFigures {
  /** Holds the seller saw, and among them those the admin's canceller had already taken. */
  seen: number
  leftToCanceller: number
  confirmRequests: number
  /** Confirms answered 200, 409 HOLD_EXPIRED, 409 BOOKING_NOT_CONFIRMABLE; the rest failed. */
  confirmedIds: string[]
  confirmExpiredIds: string[]
  confirmRefusedIds: string[]
  confirmErrors: number
  confirmP50Ms: number | null
  confirmP99Ms: number | null
  releaseRequests: number
  /** Releases answered 202 or 200 (accepted), 409 (nothing left to release); the rest failed. */
  releasedIds: string[]
  releaseRefused: number
  releaseErrors: number
}

/** What the seller sends with a confirmation; the invariants find it on the confirmed booking. */
export const paymentReference = (bookingId: string): string => `bench:${bookingId}`

// Poll the database this often: a hold seen 100 ms late still has most of even a 1 s hold to run.
const POLL_EVERY_MS = 100
// A batch's holds carry its transaction's start time (hold_expires_at = now() + hold_seconds), so a
// batch that began before the latest hold seen but committed after the last poll would escape a
// strict cursor; half a second covers a batch's transaction (tens of ms) many times over, and a
// hold missed all the same is only left to expire.
const CURSOR_SLACK_MS = 500
// The seller's and the buyers' connections, as many as the followers'. Holds come in bursts of
// thousands a second while seats remain: over 8, at ~17 ms an answer, the seller confirmed ~500 a
// second and most of a 20,000-request sale's confirmations came after their hold had expired.
const CONNECTIONS = 32
// The golden ratio's fraction: the k-th hold seen takes outcome frac(k * φ), a sequence that spreads
// evenly over [0, 1) at any length, where k % 100 would confirm the first sixty holds in a row.
const GOLDEN = 0.6180339887498949

class HoldFollower {
  readonly #setup: HoldSetup
  readonly #client = httpClient(CONNECTIONS)
  readonly #seen = new Set<string>()
  /** Confirmations and releases under way: each starts when its hold is seen, the agent queues them. */
  readonly #acting = new Set<Promise<void>>()
  readonly #confirmTimes: number[] = []
  readonly #figures: Omit<HoldFigures, 'confirmP50Ms' | 'confirmP99Ms'> = {
    seen: 0, leftToCanceller: 0, confirmRequests: 0, confirmedIds: [], confirmExpiredIds: [], confirmRefusedIds: [], confirmErrors: 0,
    releaseRequests: 0, releasedIds: [], releaseRefused: 0, releaseErrors: 0
  }

  /** Holds the seller took charge of, the k of the k-th hold's share. */
  #taken = 0
  #stopping = false
  #latestExpiry = new Date(0)
  #failure: Error | undefined
  readonly #polling: Promise<void>

  constructor (setup: HoldSetup) {
    this.#setup = setup
    // A failed poll (the database gone) fails the run when stop() is awaited, not before.
    this.#polling = this.#poll().catch((err: unknown) => {
      this.#failure = err instanceof Error ? err : new Error(String(err))
    })
  }

  async stop (): Promise<HoldFigures> {
    this.#stopping = true
    await this.#polling
    await Promise.all(this.#acting)
    this.#client.close()
    if (this.#failure !== undefined) throw this.#failure
    const { p50, p99 } = percentiles(this.#confirmTimes)
    return { ...this.#figures, confirmP50Ms: p50, confirmP99Ms: p99 }
  }

  async #poll (): Promise<void> {
    const { db, eventIds, claimed, confirmPercent, releasePercent } = this.#setup
    while (!this.#stopping) {
      const since = new Date(this.#latestExpiry.getTime() - CURSOR_SLACK_MS)
      const held = await db<Array<{ id: string, user_id: string, hold_expires_at: Date }>>`
        SELECT id, user_id, hold_expires_at FROM bookings
        WHERE status = 'HELD' AND event_id = ANY(${eventIds as string[]}::uuid[]) AND hold_expires_at > ${since}`
      for (const { id, user_id: userId, hold_expires_at: expiresAt } of held) {
        if (expiresAt > this.#latestExpiry) this.#latestExpiry = expiresAt
        if (this.#seen.has(id)) continue
        this.#seen.add(id)
        this.#figures.seen++
        if (claimed.has(id)) {
          this.#figures.leftToCanceller++
          continue
        }
        claimed.add(id)
        const share = 100 * ((++this.#taken * GOLDEN) % 1)
        if (share < confirmPercent) this.#start(this.#confirm(id))
        else if (share < confirmPercent + releasePercent) this.#start(this.#release(id, userId))
      }
      await sleep(POLL_EVERY_MS)
    }
  }

  /** Keeps an action (which never rejects: failures are counted) until it is done. */
  #start (action: Promise<void>): void {
    this.#acting.add(action)
    void action.finally(() => this.#acting.delete(action))
  }

  /** The seller confirms, as the admin, with a payment reference. */
  async #confirm (id: string): Promise<void> {
    const { baseUrl, adminToken } = this.#setup
    const figures = this.#figures
    figures.confirmRequests++
    const started = performance.now()
    try {
      const res = await this.#client.request('POST', `${baseUrl}/bookings/${id}/confirm`, {
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ payment_reference: paymentReference(id) })
      })
      this.#confirmTimes.push(performance.now() - started)
      const code = res.status === 409 ? (JSON.parse(res.body) as { code?: string }).code : undefined
      if (res.status === 200) figures.confirmedIds.push(id)
      else if (code === 'HOLD_EXPIRED') figures.confirmExpiredIds.push(id)
      else if (code === 'BOOKING_NOT_CONFIRMABLE') figures.confirmRefusedIds.push(id)
      else figures.confirmErrors++
    } catch {
      figures.confirmErrors++
    }
  }

  /** The buyer releases its hold: DELETE at the Location its 202 named, with its token if it has one. */
  async #release (id: string, userId: string): Promise<void> {
    const figures = this.#figures
    figures.releaseRequests++
    const authorization = this.#setup.authorizationOf(userId)
    try {
      const res = await this.#client.request('DELETE', `${this.#setup.baseUrl}${bookingLocation(id, userId)}`,
        { headers: authorization === undefined ? {} : { authorization } })
      if (res.status === 202 || res.status === 200) figures.releasedIds.push(id)
      else if (res.status === 409) figures.releaseRefused++
      else figures.releaseErrors++
    } catch {
      figures.releaseErrors++
    }
  }
}

export interface HoldFollowing {
  /** Resolves with what the seller and the buyers did, once they have stopped. */
  stop: () => Promise<HoldFigures>
}

/** Starts the seller and the buyers on the holds of `eventIds`; they run until stop(). */
export function followHolds (setup: HoldSetup): HoldFollowing {
  const follower = new HoldFollower(setup)
  return { stop: async () => await follower.stop() }
}
