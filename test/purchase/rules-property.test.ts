import t from 'tap'
import fc from 'fast-check'
import type { QueuedJob } from '../../purchase/jobs.ts'
import { decideJobs, type BookingState, type DecisionContext, type JobsDecided, type LockedEvent } from '../../purchase/rules.ts'
import { buyerKey } from '../../purchase/vocabulary.ts'

// decideJobs against generated batches: random buyers from a small pool, quantities 1-5, events
// with or without a per-user cap and with or without holds (hold_seconds: seats taken are HELD,
// counted like sold ones), cancellations of earlier purchases interleaved, the batch claimed in
// any order. Each property is checked on RUNS batches; a failure prints the seed and the
// smallest batch that breaks it.

const RUNS = 2000
const NOW = new Date('2026-11-24T12:00:00Z')
const USERS = 4
const MAX_JOBS = 40

// Ids that sort like the UUIDv7s they stand for: by their counter.
const bookingId = (n: number): string => `00000000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`
const eventId = (n: number): string => `00000000-0000-4000-8000-00000000e${n.toString(16).padStart(3, '0')}`
const userId = (n: number): string => `00000000-0000-4000-a000-${n.toString(16).padStart(12, '0')}`

type Step =
  | { kind: 'buy', event: number, user: number, quantity: number, withdrawn: boolean }
  | { kind: 'cancel', pick: number }

interface Purchase { id: string, event: string, user: string, quantity: number }
/** Seats taken: a decided purchase that got its seats, for good or held. */
const TAKEN = ['SUCCESS', 'HELD']

/** A batch as the worker meets it, and what the test needs to judge it. */
interface Scenario {
  events: Map<string, LockedEvent & { total: number }>
  /** Decided in earlier batches, still holding seats (cancellations may target them); held ones too. */
  priorSold: Array<Purchase & { held: boolean }>
  /** Pending, but their jobs are not in this batch (waiting for a retry): a cancellation withdraws them. */
  priorPending: Purchase[]
  /** Holds that ran out before this batch (their seats back): a cancellation of one does nothing. */
  priorExpired: Purchase[]
  /** The batch in arrival order. */
  jobs: Array<{ id: string } & ({ kind: 'buy', purchase: Purchase, withdrawn: boolean } | { kind: 'cancel', target: string })>
  /** The same jobs in the order they were claimed. */
  claimed: QueuedJob[]
  context: DecisionContext
}

const eventArb = fc.record({
  total: fc.integer({ min: 0, max: 30 }),
  cap: fc.option(fc.integer({ min: 1, max: 8 }), { nil: null }),
  hold: fc.option(fc.integer({ min: 1, max: 86_400 }), { nil: null })
})
const buyArb = (events: number) => fc.record({
  kind: fc.constant('buy' as const),
  event: fc.nat({ max: events - 1 }),
  user: fc.nat({ max: USERS - 1 }),
  quantity: fc.integer({ min: 1, max: 5 }),
  // One in eight was cancelled while queued: the batch finds it no longer pending.
  withdrawn: fc.nat({ max: 7 }).map((n) => n === 0)
})
const cancelArb = fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() })

const scenarioArb: fc.Arbitrary<Scenario> = fc.integer({ min: 1, max: 3 }).chain((eventCount) => fc.record({
  events: fc.array(eventArb, { minLength: eventCount, maxLength: eventCount }),
  prior: fc.array(fc.record({
    event: fc.nat({ max: eventCount - 1 }),
    user: fc.nat({ max: USERS - 1 }),
    quantity: fc.integer({ min: 1, max: 5 }),
    pending: fc.boolean(),
    held: fc.boolean(),
    expired: fc.nat({ max: 3 }).map((n) => n === 0)
  }), { maxLength: 8 }),
  steps: fc.array(fc.oneof({ weight: 3, arbitrary: buyArb(eventCount) }, { weight: 1, arbitrary: cancelArb }), { maxLength: MAX_JOBS }),
  // The claim order: the jobs sorted by these keys.
  claimKeys: fc.array(fc.double({ noNaN: true }), { minLength: MAX_JOBS, maxLength: MAX_JOBS })
})).map(({ events: specs, prior, steps, claimKeys }) => buildScenario(specs, prior, steps, claimKeys))

function buildScenario (
  specs: ReadonlyArray<{ total: number, cap: number | null, hold: number | null }>,
  prior: ReadonlyArray<{ event: number, user: number, quantity: number, pending: boolean, held: boolean, expired: boolean }>,
  steps: readonly Step[],
  claimKeys: readonly number[]
): Scenario {
  let counter = 0
  const owned = new Map<string, number>()
  const priorSold: Scenario['priorSold'] = []
  const priorPending: Purchase[] = []
  const priorExpired: Purchase[] = []
  // Earlier sales within each event's seats and cap, as the worker would have left them.
  const sold = specs.map(() => 0)
  for (const p of prior) {
    const spec = specs[p.event] as { total: number, cap: number | null, hold: number | null }
    const purchase = { id: bookingId(counter++), event: eventId(p.event), user: userId(p.user), quantity: p.quantity }
    if (p.pending) {
      priorPending.push(purchase)
      continue
    }
    if (spec.hold !== null && p.expired) {
      priorExpired.push(purchase)
      continue
    }
    const key = buyerKey(purchase.event, purchase.user)
    if (sold[p.event] as number + p.quantity > spec.total || (spec.cap !== null && (owned.get(key) ?? 0) + p.quantity > spec.cap)) continue
    sold[p.event] = sold[p.event] as number + p.quantity
    owned.set(key, (owned.get(key) ?? 0) + p.quantity)
    // On an event with holds, an earlier purchase may still be held (or confirmed since).
    priorSold.push({ ...purchase, held: spec.hold !== null && p.held })
  }
  const events = new Map(specs.map((spec, n) => [eventId(n), {
    total: spec.total, available_quota: spec.total - (sold[n] as number), max_per_user: spec.cap, sales_close_at: null, hold_seconds: spec.hold
  }]))

  const jobs: Scenario['jobs'] = []
  const targets: string[] = [...priorSold, ...priorPending, ...priorExpired].map((p) => p.id)
  for (const step of steps) {
    const id = bookingId(counter++)
    if (step.kind === 'buy') {
      jobs.push({ id, kind: 'buy', purchase: { id, event: eventId(step.event), user: userId(step.user), quantity: step.quantity }, withdrawn: step.withdrawn })
      targets.push(id)
    } else if (targets.length > 0) {
      jobs.push({ id, kind: 'cancel', target: targets[step.pick % targets.length] as string })
    }
  }

  // What readDecisionContext would read under the locks: the claimed purchases no longer pending,
  // every booking a cancellation names (as stored before this batch), and the seats owned by each
  // (event, user) that a cap applies to and that buys in this batch.
  const stored = new Map<string, BookingState>()
  for (const p of priorSold) stored.set(p.id, { status: p.held ? 'HELD' : 'SUCCESS', quantity: p.quantity, user_id: p.user, event_id: p.event })
  for (const p of priorPending) stored.set(p.id, { status: 'PENDING', quantity: p.quantity, user_id: p.user, event_id: p.event })
  for (const p of priorExpired) stored.set(p.id, { status: 'EXPIRED', quantity: p.quantity, user_id: p.user, event_id: p.event })
  for (const job of jobs) {
    if (job.kind === 'buy') stored.set(job.id, { status: job.withdrawn ? 'CANCELLED' : 'PENDING', quantity: job.purchase.quantity, user_id: job.purchase.user, event_id: job.purchase.event })
  }
  const bookings = new Map<string, BookingState>()
  for (const job of jobs) {
    if (job.kind === 'buy' && job.withdrawn) bookings.set(job.id, stored.get(job.id) as BookingState)
    if (job.kind === 'cancel') bookings.set(job.target, stored.get(job.target) as BookingState)
  }
  const capped = new Map<string, number>()
  for (const job of jobs) {
    if (job.kind !== 'buy' || events.get(job.purchase.event)?.max_per_user === null) continue
    const key = buyerKey(job.purchase.event, job.purchase.user)
    if ((owned.get(key) ?? 0) > 0) capped.set(key, owned.get(key) as number)
  }

  const claimed = jobs
    .map((job, i): [number, QueuedJob] => [claimKeys[i] ?? 0, {
      id: job.id,
      data: job.kind === 'buy'
        ? { event_id: job.purchase.event, user_id: job.purchase.user, quantity: job.purchase.quantity }
        : { cancel_booking_id: job.target, event_id: (stored.get(job.target) as BookingState).event_id }
    }])
    .sort((a, b) => a[0] - b[0])
    .map(([, job]) => job)
  return { events, priorSold, priorPending, priorExpired, jobs, claimed, context: { now: NOW, bookings, buyerSeats: capped } }
}

/**
 * The rules written out once more, as plainly as possible, for one job after another in arrival
 * order: what each job's outcome should be ('SUCCESS', 'HELD', a failure reason, 'cancelled', 'skipped').
 */
function expectedOutcomes (s: Scenario): string[] {
  const left = new Map([...s.events].map(([id, e]) => [id, e.available_quota]))
  const status = new Map<string, string>()
  const booking = new Map<string, Purchase>()
  const seatsOf = new Map<string, number>()
  for (const p of s.priorSold) {
    status.set(p.id, p.held ? 'HELD' : 'SUCCESS')
    booking.set(p.id, p)
    seatsOf.set(buyerKey(p.event, p.user), (seatsOf.get(buyerKey(p.event, p.user)) ?? 0) + p.quantity)
  }
  for (const p of s.priorPending) { status.set(p.id, 'PENDING'); booking.set(p.id, p) }
  for (const p of s.priorExpired) { status.set(p.id, 'EXPIRED'); booking.set(p.id, p) }
  const outcomes: string[] = []
  for (const job of s.jobs) {
    if (job.kind === 'cancel') {
      const was = status.get(job.target)
      const target = booking.get(job.target) as Purchase
      if (TAKEN.includes(was ?? '')) {
        left.set(target.event, (left.get(target.event) ?? 0) + target.quantity)
        seatsOf.set(buyerKey(target.event, target.user), (seatsOf.get(buyerKey(target.event, target.user)) ?? 0) - target.quantity)
      }
      if (TAKEN.includes(was ?? '') || was === 'PENDING') {
        status.set(job.target, 'CANCELLED')
        outcomes.push('cancelled')
      } else {
        outcomes.push('skipped')
      }
      continue
    }
    const p = job.purchase
    booking.set(p.id, p)
    if (job.withdrawn) {
      status.set(p.id, 'CANCELLED')
      outcomes.push('skipped')
      continue
    }
    const seatsLeft = left.get(p.event) ?? 0
    const cap = s.events.get(p.event)?.max_per_user ?? null
    const mine = seatsOf.get(buyerKey(p.event, p.user)) ?? 0
    let outcome: string
    if (seatsLeft < p.quantity) outcome = seatsLeft === 0 ? 'sold_out' : 'insufficient_quota'
    else if (cap !== null && mine + p.quantity > cap) outcome = 'limit_exceeded'
    else outcome = 'SUCCESS'
    if (outcome === 'SUCCESS') {
      left.set(p.event, seatsLeft - p.quantity)
      seatsOf.set(buyerKey(p.event, p.user), mine + p.quantity)
    }
    // Seats taken on an event with holds are held, not sold.
    if (outcome === 'SUCCESS' && s.events.get(p.event)?.hold_seconds != null) outcome = 'HELD'
    status.set(p.id, TAKEN.includes(outcome) ? outcome : 'FAILED')
    outcomes.push(outcome)
  }
  return outcomes
}

/** decideJobs's outcome of each job, in arrival order, in the same words as expectedOutcomes. */
function actualOutcomes (s: Scenario, decided: JobsDecided): string[] {
  const decisions = new Map(decided.decisions.map((d) => [d.id, d.decision]))
  return s.jobs.map((job) => {
    const outcome = decided.outcomes.get(job.id)
    const decision = decisions.get(job.id)
    if (decision !== undefined) return decision.status === 'FAILED' ? decision.reason : decision.status
    return outcome ?? 'none'
  })
}

/**
 * Where every booking of the scenario ends up once the batch's outcomes are applied, and whether
 * it owned seats at some point (sold before the batch, or in it).
 */
function finalBookings (s: Scenario, decided: JobsDecided): Array<Purchase & { status: string, sold: boolean }> {
  const decisions = new Map(decided.decisions.map((d) => [d.id, d.decision.status]))
  const cancelled = new Set(decided.cancelled)
  const all = [
    ...s.priorSold.map((p) => ({ ...p, status: p.held ? 'HELD' : 'SUCCESS' })),
    ...s.priorPending.map((p) => ({ ...p, status: 'PENDING' })),
    ...s.priorExpired.map((p) => ({ ...p, status: 'EXPIRED' })),
    ...s.jobs.flatMap((job) => job.kind === 'buy' ? [{ ...job.purchase, status: job.withdrawn ? 'CANCELLED' : 'PENDING' }] : [])
  ]
  return all.map((p) => {
    const status = decisions.get(p.id) ?? p.status
    return { ...p, status: cancelled.has(p.id) ? 'CANCELLED' : status, sold: TAKEN.includes(status) }
  })
}

/** Checks the property on RUNS generated batches: one assertion, with fast-check's report on failure. */
function holds (t: { ok: (ok: boolean, message: string) => unknown }, name: string, predicate: (s: Scenario, decided: JobsDecided) => void): void {
  const details = fc.check(fc.property(scenarioArb, (s) => { predicate(s, decideJobs(s.claimed, s.events, s.context)) }), { numRuns: RUNS })
  const failure = details.failed ? `${String(details.errorInstance)}\n${fc.defaultReportMessage(details) ?? ''}` : ''
  t.ok(!details.failed, details.failed ? failure : `${name} (${details.numRuns} generated batches)`)
}

function check (ok: boolean, what: () => string): void {
  if (!ok) throw new Error(what())
}

t.test('decideJobs, for any batch of purchases and cancellations', async (t) => {
  t.test('seats sold + seats held + seats available == total seats, never negative, after every job', async (t) => {
    holds(t, 'seats add up', (s, decided) => {
      const changes = new Map(decided.changes.map((c) => [c.eventId, c]))
      const final = finalBookings(s, decided)
      for (const [id, event] of s.events) {
        const available = event.available_quota + (changes.get(id)?.seats ?? 0)
        const taken = final.filter((b) => b.event === id && TAKEN.includes(b.status)).reduce((n, b) => n + b.quantity, 0)
        check(available >= 0, () => `event ${id}: ${available} seats available`)
        check(taken + available === event.total, () => `event ${id}: ${taken} sold or held + ${available} available != ${event.total}`)
        check(event.hold_seconds !== null || !final.some((b) => b.event === id && b.status === 'HELD'), () => `event ${id} has no holds, but a booking is held`)
        const givenBack = final.filter((b) => b.event === id && b.sold && b.status === 'CANCELLED').reduce((n, b) => n + b.quantity, 0)
        check((changes.get(id)?.cancelledSeats ?? 0) === givenBack, () => `event ${id}: ${changes.get(id)?.cancelledSeats ?? 0} seats counted as given back, ${givenBack} were`)
      }
      // Replayed job by job from decideJobs's own answers, no event ever goes below zero.
      const left = new Map([...s.events].map(([id, e]) => [id, e.available_quota]))
      const outcomes = actualOutcomes(s, decided)
      const ownerOf = new Map<string, Purchase>([...s.priorSold].map((p) => [p.id, p]))
      s.jobs.forEach((job, i) => {
        if (job.kind === 'buy' && TAKEN.includes(outcomes[i] ?? '')) {
          left.set(job.purchase.event, (left.get(job.purchase.event) ?? 0) - job.purchase.quantity)
          ownerOf.set(job.id, job.purchase)
          check((left.get(job.purchase.event) ?? 0) >= 0, () => `event ${job.purchase.event} below zero after ${job.id}`)
        }
        const given = job.kind === 'cancel' && outcomes[i] === 'cancelled' ? ownerOf.get(job.target) : undefined
        if (given !== undefined) {
          left.set(given.event, (left.get(given.event) ?? 0) + given.quantity)
          ownerOf.delete(given.id)
        }
      })
    })
  })

  t.test('no user ends up with more held and successful seats in an event than its cap', async (t) => {
    holds(t, 'caps hold', (s, decided) => {
      const seats = new Map<string, number>()
      for (const b of finalBookings(s, decided)) {
        if (TAKEN.includes(b.status)) seats.set(buyerKey(b.event, b.user), (seats.get(buyerKey(b.event, b.user)) ?? 0) + b.quantity)
      }
      for (const [key, n] of seats) {
        const cap = s.events.get(key.split('\n')[0] as string)?.max_per_user ?? null
        check(cap === null || n <= cap, () => `${JSON.stringify(key)} holds ${n} seats, cap ${cap}`)
      }
    })
  })

  t.test('every job gets exactly one outcome, and every purchase still pending exactly one decision', async (t) => {
    holds(t, 'one outcome each', (s, decided) => {
      check(decided.outcomes.size === s.jobs.length && s.jobs.every((job) => decided.outcomes.has(job.id)), () => `${decided.outcomes.size} outcomes for ${s.jobs.length} jobs`)
      const decidedIds = decided.decisions.map((d) => d.id)
      check(new Set(decidedIds).size === decidedIds.length, () => 'a purchase decided twice')
      const pending = s.jobs.filter((job) => job.kind === 'buy' && !job.withdrawn).map((job) => job.id)
      check(JSON.stringify(decidedIds) === JSON.stringify(pending), () => `decided ${decidedIds.join(',')}; pending purchases, in arrival order: ${pending.join(',')}`)
      for (const job of s.jobs) {
        const outcome = decided.outcomes.get(job.id)
        const allowed = job.kind === 'cancel' ? ['cancelled', 'skipped'] : job.withdrawn ? ['skipped'] : ['SUCCESS', 'HELD', 'FAILED']
        check(allowed.includes(outcome ?? ''), () => `job ${job.id} (${job.kind}): outcome ${outcome}`)
      }
    })
  })

  t.test('decisions follow arrival order: each outcome is the one a plain replay gives, job by job', async (t) => {
    holds(t, 'same outcomes as the reference', (s, decided) => {
      const expected = expectedOutcomes(s)
      const actual = actualOutcomes(s, decided)
      s.jobs.forEach((job, i) => {
        check(actual[i] === expected[i], () => `job ${i} (${job.id}, ${job.kind === 'buy' ? `buy ${job.purchase.quantity}` : `cancel ${job.target}`}): ${actual[i]}, expected ${expected[i]}`)
      })
    })
  })

  t.test('the generator reaches the interesting cases', async (t) => {
    // A property that holds only because the batches never sell out would prove little.
    const seen = new Set<string>()
    fc.assert(fc.property(scenarioArb, (s) => {
      for (const outcome of actualOutcomes(s, decideJobs(s.claimed, s.events, s.context))) seen.add(outcome)
    }), { numRuns: RUNS })
    t.same([...seen].sort(), ['HELD', 'SUCCESS', 'cancelled', 'insufficient_quota', 'limit_exceeded', 'skipped', 'sold_out'], 'every outcome occurs')
  })

  t.test('a hold ends exactly hold_seconds after the batch\'s clock, and only on an event with holds', async (t) => {
    holds(t, 'hold ends', (s, decided) => {
      for (const { id, decision } of decided.decisions) {
        if (decision.status !== 'HELD') continue
        const job = s.jobs.find((j) => j.id === id)
        const hold = job?.kind === 'buy' ? s.events.get(job.purchase.event)?.hold_seconds ?? null : null
        check(hold !== null && decision.hold_expires_at.getTime() === NOW.getTime() + hold * 1000,
          () => `${id}: held until ${decision.hold_expires_at.toISOString()} on an event holding ${hold} s`)
      }
    })
  })
})
