import { PgBoss, type Queue } from 'pg-boss'
import type { Logger } from 'pino'
import { SERVICE_SESSION_SETTINGS } from '../db/driver/session.ts'
import { PGBOSS_SCHEMA } from '../db/pgboss-tables.ts'
import { PURCHASE_QUEUE } from './jobs.ts'

// The purchase queue: one pg-boss queue carries purchases and cancellations (payloads:
// purchase/jobs.ts). Its jobs are put on it by the statements that store their purchases and
// cancellation requests (db/purchase-jobs.ts, docs/decisions/0011-pg-boss-hot-path-in-sql.md).

export { PURCHASE_QUEUE }
export const PURCHASE_DEAD_LETTER_QUEUE = 'purchases_dead'
// Intake notifies here when a commit queued purchases, so an idle worker in any process starts
// within milliseconds instead of at its next poll.
export const PURCHASES_QUEUED_CHANNEL = 'boxoffice_purchases_queued'
// The worker notifies here after a commit that decided or cancelled bookings, so API processes
// holding GET /bookings/:id?wait= requests re-read them at once (one query for all of them).
export const BOOKINGS_DECIDED_CHANNEL = 'boxoffice_bookings_decided'


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
  // The booking row is the permanent record. The batched worker deletes a job as it decides it;
  // jobs settled through pg-boss (one at a time) are kept a day for inspection.
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
    // pg-boss's own pg pool only carries maintenance and failure bookkeeping: intake, cancellation
    // requests and batched settlement write its table with our SQL (db/purchase-jobs.ts), and the
    // serial path runs its pg-boss calls inside our Kysely transactions (fromKysely).
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
