// The words of the purchase domain, defined once: what a booking can be, why a purchase fails,
// what a decision is, and how the API spells each status. The database, the rules, the worker and
// the routes all import them from here.

/** A booking's status as the database stores it. */
export const BOOKING_STATUS = {
  pending: 'PENDING',
  /** Seats taken until hold_expires_at, waiting for the seller's confirmation (events with hold_seconds). */
  held: 'HELD',
  success: 'SUCCESS',
  failed: 'FAILED',
  cancelled: 'CANCELLED',
  /** A hold that ran out unconfirmed: its seats went back on sale. */
  expired: 'EXPIRED'
} as const
export type BookingStatus = typeof BOOKING_STATUS[keyof typeof BOOKING_STATUS]

/** Why a purchase failed: a stable code clients can branch on. */
export const FAILURE_REASON = {
  soldOut: 'sold_out',
  insufficientQuota: 'insufficient_quota',
  limitExceeded: 'limit_exceeded',
  saleClosed: 'sale_closed',
  expired: 'expired',
  invalid: 'invalid_request'
} as const
export type FailureReason = typeof FAILURE_REASON[keyof typeof FAILURE_REASON]

/** The reason of a purchase whose decision kept throwing until its retries ran out. */
export const GIVEN_UP = 'error'

/** The one map from a stored status to the status clients read (lower case, as the API documents). */
export const API_STATUS = {
  PENDING: 'pending',
  HELD: 'held',
  SUCCESS: 'success',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  EXPIRED: 'expired'
} as const satisfies Record<BookingStatus, string>

/**
 * The worker's outcome for one purchase: final (success, failed), or held until `hold_expires_at`
 * on an event with hold_seconds (then confirmed or expired outside the queue: db/holds.ts).
 */
export type Decision =
  | { status: typeof BOOKING_STATUS.success }
  | { status: typeof BOOKING_STATUS.held, hold_expires_at: Date }
  | { status: typeof BOOKING_STATUS.failed, reason: FailureReason | typeof GIVEN_UP }

export interface BookingDecision {
  /** The booking's id (its job's id too). */
  id: string
  decision: Decision
}

/** Every final outcome a decision can have (a hold is not final: each has its own expiry). */
const FAILURES: ReadonlyArray<FailureReason | typeof GIVEN_UP> = [...Object.values(FAILURE_REASON), GIVEN_UP]
export type FinalDecision = Exclude<Decision, { status: typeof BOOKING_STATUS.held }>
export const DECISIONS: ReadonlyArray<FinalDecision> = [
  { status: BOOKING_STATUS.success },
  ...FAILURES.map((reason) => ({ status: BOOKING_STATUS.failed, reason }))
]

/** A stable key per outcome: `SUCCESS`, `HELD`, `FAILED:sold_out`, ... */
export const decisionKey = (decision: Decision): string =>
  decision.status === BOOKING_STATUS.failed ? `${decision.status}:${decision.reason}` : decision.status

/** Statuses whose seats are taken: the per-user cap counts them, and sold plus held add up to them. */
export const SEAT_TAKING: readonly BookingStatus[] = [BOOKING_STATUS.held, BOOKING_STATUS.success]

/** Statuses nothing changes any more (cancelling them does nothing). */
export const FINISHED: readonly BookingStatus[] = [BOOKING_STATUS.failed, BOOKING_STATUS.cancelled, BOOKING_STATUS.expired]

/**
 * Resolved, for its buyer: decided (a hold counts: the buyer goes and pays), and no cancellation
 * outstanding (a waiting client is answered). db/booking-views.ts's findResolved says the same in SQL.
 */
export const isResolved = (booking: { status: BookingStatus, cancel_requested_at: Date | null }): boolean =>
  booking.status !== BOOKING_STATUS.pending && (booking.cancel_requested_at === null || FINISHED.includes(booking.status))

/** The key of a buyer's seats in one event, as the per-user cap counts them. */
export const buyerKey = (eventId: string, userId: string): string => `${eventId}\n${userId}`
