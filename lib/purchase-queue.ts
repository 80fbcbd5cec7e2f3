import { PgBoss, type Queue } from 'pg-boss'
import type { Logger } from 'pino'
import { FormatRegistry, Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { SERVICE_SESSION_SETTINGS } from '../db/session.ts'
import { PGBOSS_SCHEMA } from '../db/pgboss-tables.ts'

// TypeBox's own checker knows no formats until told; this is the canonical form the HTTP schemas
// accept (server/schemas/common.ts), so a payload the API accepted is never rejected here.
const UUID = /^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (value) => UUID.test(value))

// The one contract between the API and the worker: a purchase job. The job id is the booking id,
// chosen at intake, so the booking row and its job are the same purchase and a retried delivery
// can be recognised by id.
export const PURCHASE_QUEUE = 'purchases'
export const PURCHASE_DEAD_LETTER_QUEUE = 'purchases_dead'
// Intake notifies here when a commit queued purchases, so an idle worker in any process starts
// within milliseconds instead of at its next poll.
export const PURCHASES_QUEUED_CHANNEL = 'boxoffice_purchases_queued'
// The worker notifies here after a commit that decided or cancelled bookings, so API processes
// holding GET /bookings/:id?wait= requests re-read them at once (one query for all of them).
export const BOOKINGS_DECIDED_CHANNEL = 'boxoffice_bookings_decided'

export const PurchaseJobData = Type.Object({
  event_id: Type.String({ format: 'uuid' }),
  user_id: Type.String({ format: 'uuid' }),
  quantity: Type.Integer({ minimum: 1, maximum: 10 }),
  /** The purchase's arrival number for its event (jobs stored before arrival numbers have none). */
  arrival: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Its deadline (ISO 8601): undecided then, it fails as expired. */
  expires_at: Type.Optional(Type.String({ minLength: 20, maxLength: 40 }))
}, { additionalProperties: false })
export type PurchaseJobData = Static<typeof PurchaseJobData>

// A cancellation travels the same queue as purchases: claimed in arrival order with them and
// decided under the same event lock, so a cancellation and a purchase of the seat it frees never race.
export const CancelJobData = Type.Object({
  cancel_booking_id: Type.String({ format: 'uuid' }),
  event_id: Type.String({ format: 'uuid' })
}, { additionalProperties: false })
export type CancelJobData = Static<typeof CancelJobData>

const purchaseJobCheck = TypeCompiler.Compile(PurchaseJobData)
export function isPurchaseJobData (data: unknown): data is PurchaseJobData {
  return purchaseJobCheck.Check(data) && (data.expires_at === undefined || !Number.isNaN(Date.parse(data.expires_at)))
}

const cancelJobCheck = TypeCompiler.Compile(CancelJobData)
export function isCancelJobData (data: unknown): data is CancelJobData {
  return cancelJobCheck.Check(data)
}

/**
 * Attempts before a purchase whose decision keeps throwing is given up on (it is then recorded as
 * failed with reason "error"). A crash mid-decision does not count: the claim is part of the
 * decision's transaction and rolls back with it.
 */
export const PURCHASE_RETRY_LIMIT = 5

const PURCHASE_QUEUE_OPTIONS: Omit<Queue, 'name'> = {
  policy: 'standard',
  // A dedicated partition keeps the hot purchase queue from sharing a table with anything else.
  partition: true,
  retryLimit: PURCHASE_RETRY_LIMIT,
  retryDelay: 1,
  retryBackoff: true,
  retryDelayMax: 30,
  // Only reached when a claim outlives its transaction, which our worker never does; kept short so
  // a foreign consumer that dies does not park a purchase for the default 15 minutes.
  expireInSeconds: 60,
  // The booking row is the permanent record; finished jobs are kept a day for inspection.
  deleteAfterSeconds: 24 * 3600,
  // A queued purchase is never dropped for age in practice (pg-boss's default is 14 days, after
  // which a job nobody processed would vanish and its booking stay pending).
  retentionSeconds: 90 * 24 * 3600,
  deadLetter: PURCHASE_DEAD_LETTER_QUEUE
}


export interface BossOptions {
  url: string
  applicationName: string
  /** Only processes that run the worker need pg-boss's maintenance and supervision loops. */
  supervise: boolean
  /** pg-boss reports pool and maintenance errors as events; unheard, an event would crash the process. */
  log: Pick<Logger, 'error'>
}

export function createBoss ({ url, applicationName, supervise, log }: BossOptions): PgBoss {
  const boss = new PgBoss({
    connectionString: url,
    application_name: applicationName,
    schema: PGBOSS_SCHEMA,
    // pg-boss's own pg pool only carries maintenance and failure bookkeeping: intake and
    // settlement run their pg-boss calls inside our Kysely transactions (fromKysely).
    max: 3,
    connectionTimeoutMillis: 5000,
    // The service's session settings (db/client.ts: JIT off), as a libpq options string.
    options: Object.entries(SERVICE_SESSION_SETTINGS).map(([name, value]) => `-c ${name}=${value}`).join(' '),
    schedule: false,
    supervise,
    migrate: true
  })
  // Only what says what went wrong: node-postgres errors carry their whole client (connection
  // parameters, buffers, queues), kilobytes of noise per line in an outage.
  boss.on('error', (err: Error & { code?: unknown }) => {
    log.error({ err: { type: err.name, message: err.message, code: err.code, stack: err.stack }, component: 'pg-boss' }, 'pg-boss error')
  })
  return boss
}

/** Creates the purchase queue and its dead-letter queue, or brings their options up to date. */
export async function ensurePurchaseQueues (boss: PgBoss): Promise<void> {
  if (await boss.getQueue(PURCHASE_DEAD_LETTER_QUEUE) === null) {
    await boss.createQueue(PURCHASE_DEAD_LETTER_QUEUE, { retentionSeconds: 30 * 24 * 3600 })
  }
  if (await boss.getQueue(PURCHASE_QUEUE) === null) {
    await boss.createQueue(PURCHASE_QUEUE, PURCHASE_QUEUE_OPTIONS)
  } else {
    const { policy, partition, ...updatable } = PURCHASE_QUEUE_OPTIONS
    await boss.updateQueue(PURCHASE_QUEUE, updatable)
  }
}
