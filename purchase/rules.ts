import { isCancelJobData, isPurchaseJobData, type QueuedJob } from './jobs.ts'
import { BOOKING_STATUS, buyerKey, FAILURE_REASON, type BookingDecision, type BookingStatus, type Decision } from './vocabulary.ts'

// The purchase rules, free of I/O: what the worker decides once it holds the events' row locks.
// The worker reads their inputs (worker/apply-jobs.ts) and writes their result back.

/** What a decision needs of an event, read under its row lock. */
export interface LockedEvent {
  available_quota: number
  max_per_user: number | null
  sales_close_at: Date | null
  /** Seats of a purchase decided now are held this long, waiting for confirmation; null: sold at once. */
  hold_seconds: number | null
}

/** A booking as a decision needs it. */
export interface BookingState {
  status: BookingStatus
  quantity: number
  user_id: string
  event_id: string
}

/** What the deciding transaction read once it held the events' locks. */
export interface DecisionContext {
  /**
   * The database's clock, read after the locks were taken: the time of every decision. null when no
   * rule needs it (no closing time, no deadline, no cancellation): the statements recording the
   * decisions then take the database's clock themselves.
   */
  now: Date | null
  /** Of the claimed purchases, those no longer pending; and every booking a cancellation names. */
  bookings: Map<string, BookingState>
  /** Seats each buyer a cap applies to has now (held and sold), by buyerKey(event, user). */
  buyerSeats: Map<string, number>
}

/** Per event: the seats and counters a batch changes. */
export interface EventChange {
  eventId: string
  /** Seats back on sale (cancellations) minus seats sold. */
  seats: number
  /** Seats given back by cancellations. */
  cancelledSeats: number
  /** The highest arrival number decided (0: none). */
  decidedThrough: number
}

/** The rule for seats alone, free of I/O: a purchase takes all of its seats or none. */
export function decidePurchase (available: number, quantity: number): Decision {
  if (available >= quantity) return { status: BOOKING_STATUS.success }
  return { status: BOOKING_STATUS.failed, reason: available === 0 ? FAILURE_REASON.soldOut : FAILURE_REASON.insufficientQuota }
}

export interface JobsDecided {
  /** A final outcome for each purchase decided now, in arrival order. */
  decisions: BookingDecision[]
  /** Bookings cancelled now (successful ones give their seats back). */
  cancelled: string[]
  /** Per event concerned: seats and counters to change (events with nothing to change left out). */
  changes: EventChange[]
  /** What became of each job, for its completion record. */
  outcomes: Map<string, JobOutcome>
}

export type JobOutcome = Decision['status'] | 'cancelled' | 'skipped'

/** What a cancellation acts on: seats taken (held or sold) come back, a pending purchase is withdrawn. */
const CANCELLABLE: readonly BookingStatus[] = [BOOKING_STATUS.pending, BOOKING_STATUS.held, BOOKING_STATUS.success]

/**
 * The rules, free of I/O. Decides the claimed jobs one by one in arrival order (by id), each
 * against what its event has left after the jobs before it, all at the clock `context.now`:
 *
 * - a purchase whose payload is malformed, or whose event does not exist: failed, invalid_request;
 * - a purchase that is no longer pending (cancelled or expired while queued): skipped;
 * - the event's sale closed: failed, sale_closed;
 * - its deadline passed: failed, expired;
 * - fewer seats left than it asks for: failed, sold_out (none left) or insufficient_quota;
 * - the event's per-user cap would be passed by the seats this buyer has (held and sold) plus
 *   these: failed, limit_exceeded;
 * - otherwise its seats are taken: success, or on an event with hold_seconds, held until
 *   `context.now` + hold_seconds (db/holds.ts: confirmed or expired later).
 *
 * A cancellation of a held or successful booking gives its seats back (to purchases after it in
 * this very batch too); of a pending one, withdraws it (its purchase is then skipped); of a failed,
 * cancelled or expired one, does nothing.
 *
 * `events` holds every event concerned, read under its row lock; `context` is what was read with them
 * (db/decisions.ts, readDecisionContext).
 */
export function decideJobs (jobs: readonly QueuedJob[], events: ReadonlyMap<string, LockedEvent>, context: DecisionContext): JobsDecided {
  const buyerSeats = new Map(context.buyerSeats)
  // Bookings whose status changes in this batch, over what the database said.
  const states = new Map(context.bookings)
  const changes = new Map<string, EventChange>()
  const change = (eventId: string): EventChange => {
    let c = changes.get(eventId)
    if (c === undefined) {
      c = { eventId, seats: 0, cancelledSeats: 0, decidedThrough: 0 }
      changes.set(eventId, c)
    }
    return c
  }
  const seatsLeft = (eventId: string): number => (events.get(eventId)?.available_quota ?? 0) + (changes.get(eventId)?.seats ?? 0)
  const clock = (): Date => {
    if (context.now === null) throw new Error('a decision needs the clock, but none was read')
    return context.now
  }
  const decisions: BookingDecision[] = []
  const cancelled: string[] = []
  const outcomes = new Map<string, JobOutcome>()
  const ordered = [...jobs].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

  for (const { id, data } of ordered) {
    if (isCancelJobData(data)) {
      const target = states.get(data.cancel_booking_id)
      if (target === undefined || !CANCELLABLE.includes(target.status)) {
        outcomes.set(id, 'skipped')
        continue
      }
      if (target.status !== BOOKING_STATUS.pending) {
        const c = change(target.event_id)
        c.seats += target.quantity
        c.cancelledSeats += target.quantity
        const key = buyerKey(target.event_id, target.user_id)
        if (buyerSeats.has(key)) buyerSeats.set(key, (buyerSeats.get(key) ?? 0) - target.quantity)
      }
      states.set(data.cancel_booking_id, { ...target, status: BOOKING_STATUS.cancelled })
      cancelled.push(data.cancel_booking_id)
      outcomes.set(id, 'cancelled')
      continue
    }

    if (!isPurchaseJobData(data) || !events.has(data.event_id)) {
      decisions.push({ id, decision: { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.invalid } })
      outcomes.set(id, BOOKING_STATUS.failed)
      continue
    }
    const event = events.get(data.event_id) as LockedEvent
    if ((states.get(id)?.status ?? BOOKING_STATUS.pending) !== BOOKING_STATUS.pending) {
      // Decided already (withdrawn or expired while queued, or a job delivered twice).
      outcomes.set(id, 'skipped')
      continue
    }
    const c = change(data.event_id)
    if (data.arrival !== undefined) c.decidedThrough = Math.max(c.decidedThrough, data.arrival)
    const seats = seatsLeft(data.event_id)
    const key = buyerKey(data.event_id, data.user_id)
    let decision: Decision
    if (event.sales_close_at !== null && event.sales_close_at <= clock()) {
      decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.saleClosed }
    } else if (data.expires_at !== undefined && Date.parse(data.expires_at) <= clock().getTime()) {
      decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.expired }
    } else {
      decision = decidePurchase(seats, data.quantity)
      if (decision.status === BOOKING_STATUS.success && event.max_per_user !== null && (buyerSeats.get(key) ?? 0) + data.quantity > event.max_per_user) {
        decision = { status: BOOKING_STATUS.failed, reason: FAILURE_REASON.limitExceeded }
      }
    }
    if (decision.status === BOOKING_STATUS.success) {
      c.seats -= data.quantity
      if (event.max_per_user !== null) buyerSeats.set(key, (buyerSeats.get(key) ?? 0) + data.quantity)
      if (event.hold_seconds !== null) decision = { status: BOOKING_STATUS.held, hold_expires_at: new Date(clock().getTime() + event.hold_seconds * 1000) }
      states.set(id, { status: decision.status, quantity: data.quantity, user_id: data.user_id, event_id: data.event_id })
    } else {
      states.set(id, { status: BOOKING_STATUS.failed, quantity: data.quantity, user_id: data.user_id, event_id: data.event_id })
    }
    decisions.push({ id, decision })
    outcomes.set(id, decision.status)
  }

  // A purchase cancelled in the batch that decided it is recorded as decided, then cancelled.
  return { decisions, cancelled, changes: [...changes.values()], outcomes }
}

