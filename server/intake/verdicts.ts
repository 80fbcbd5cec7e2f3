import type { ExistingPurchase, NewPurchase, StoredPurchase } from '../../db/purchases.ts'
import { BOOKING_STATUS, FAILURE_REASON, type BookingStatus } from '../../purchase/vocabulary.ts'
import { AppError, saleNotOpen } from '../errors.ts'

// What intake answers for each purchase of a stored batch, from the storing statement's verdict
// (db/purchases.ts) and the Idempotency-Key rules. Free of I/O.

/**
 * What became of a purchase: queued for the worker (202), or known at once (200): sold out when
 * stored, or, for a retry under an idempotency key, whatever the first request's purchase has
 * become by now. `replayed` says the purchase was stored by an earlier request with the same key.
 */
export type Submitted =
  | { id: string, status: typeof BOOKING_STATUS.pending, reason: null, replayed: boolean }
  | { id: string, status: Exclude<BookingStatus, typeof BOOKING_STATUS.pending>, reason: string | null, replayed: boolean }

export type Answer = Submitted | AppError

type Asked = Pick<NewPurchase, 'event_id' | 'quantity' | 'max_wait_seconds'>

/** A retry must ask for the same thing as the purchase its key already names. */
function sameRequest (a: Asked, b: Asked): boolean {
  return a.event_id === b.event_id && a.quantity === b.quantity && (a.max_wait_seconds ?? null) === (b.max_wait_seconds ?? null)
}

/** A retry's answer: the purchase stored under its key, if it asked for the same thing. */
export function replayOf (purchase: NewPurchase, existing: ExistingPurchase): Answer {
  if (!sameRequest(purchase, existing)) return new AppError('IDEMPOTENCY_KEY_REUSED')
  return existing.status === BOOKING_STATUS.pending
    ? { id: existing.id, status: existing.status, reason: null, replayed: true }
    : { id: existing.id, status: existing.status, reason: existing.reason, replayed: true }
}

/** The answer to a purchase the statement judged (a not_stored one is looked up again first). */
export function answerOf (purchase: NewPurchase, stored: StoredPurchase): Answer {
  switch (stored.verdict) {
    case 'pending': return { id: stored.id, status: BOOKING_STATUS.pending, reason: null, replayed: false }
    case 'sold_out': return { id: stored.id, status: BOOKING_STATUS.failed, reason: FAILURE_REASON.soldOut, replayed: false }
    case 'replay': return replayOf(purchase, stored.existing)
    case 'unknown_event': return new AppError('EVENT_NOT_FOUND')
    case 'closed': return new AppError('SALE_CLOSED')
    case 'not_open': return saleNotOpen(stored.sales_open_at)
    case 'not_stored': return new AppError('PURCHASE_NOT_STORED')
  }
}

/**
 * Splits a batch by idempotency key: the first request of each (user, key) is stored (a leader);
 * any later one in the same batch is a follower, answered from its leader's fate.
 */
export function splitByKey (purchases: readonly NewPurchase[]): { leaders: NewPurchase[], followers: Map<NewPurchase, NewPurchase> } {
  const byKey = new Map<string, NewPurchase>()
  const leaders: NewPurchase[] = []
  const followers = new Map<NewPurchase, NewPurchase>()
  for (const purchase of purchases) {
    const { user_id: userId, idempotency_key: key } = purchase
    const leader = key === null ? undefined : byKey.get(`${userId}\n${key}`)
    if (leader !== undefined) {
      followers.set(purchase, leader)
      continue
    }
    if (key !== null) byKey.set(`${userId}\n${key}`, purchase)
    leaders.push(purchase)
  }
  return { leaders, followers }
}

/** A follower's answer: its leader's, replayed, if it asked for the same thing. */
export function followerAnswer (follower: NewPurchase, leader: NewPurchase, led: Answer): Answer {
  if (!sameRequest(follower, leader)) return new AppError('IDEMPOTENCY_KEY_REUSED')
  return led instanceof AppError ? led : { ...led, replayed: true }
}
