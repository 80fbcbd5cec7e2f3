// The words of the purchase domain, defined once: what a booking can be, why a purchase fails,
// what a decision is, and how the API spells each status. The database, the rules, the worker and
// the routes all import them from here.

/** A booking's status as the database stores it. */
export const BOOKING_STATUS = {
  pending: 'PENDING',
  success: 'SUCCESS',
  failed: 'FAILED',
  cancelled: 'CANCELLED'
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
  SUCCESS: 'success',
  FAILED: 'failed',
  CANCELLED: 'cancelled'
} as const satisfies Record<BookingStatus, string>

/** The final outcome of one purchase. */
export type Decision =
  | { status: typeof BOOKING_STATUS.success }
  | { status: typeof BOOKING_STATUS.failed, reason: FailureReason | typeof GIVEN_UP }

export interface BookingDecision {
  /** The booking's id (its job's id too). */
  id: string
  decision: Decision
}

/** Every outcome a decision can have. */
const FAILURES: ReadonlyArray<FailureReason | typeof GIVEN_UP> = [...Object.values(FAILURE_REASON), GIVEN_UP]
export const DECISIONS: ReadonlyArray<Decision> = [
  { status: BOOKING_STATUS.success },
  ...FAILURES.map((reason) => ({ status: BOOKING_STATUS.failed, reason }))
]

/** A stable key per outcome: `SUCCESS`, `FAILED:sold_out`, ... */
export const decisionKey = (decision: Decision): string =>
  decision.status === BOOKING_STATUS.failed ? `${decision.status}:${decision.reason}` : decision.status

/**
 * Resolved, for its buyer: decided, and no cancellation outstanding (a waiting client is answered).
 * db/booking-views.ts's findResolved says the same in SQL.
 */
export const isResolved = (booking: { status: BookingStatus, cancel_requested_at: Date | null }): boolean =>
  booking.status !== BOOKING_STATUS.pending &&
  (booking.cancel_requested_at === null || booking.status === BOOKING_STATUS.cancelled || booking.status === BOOKING_STATUS.failed)

/** The key of a buyer's seats in one event, as the per-user cap counts them. */
export const buyerKey = (eventId: string, userId: string): string => `${eventId}\n${userId}`
