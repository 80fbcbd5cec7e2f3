import type { PgBoss } from 'pg-boss'
import { countPendingByEvent } from '../db/bookings.ts'
import { observeAcquireWaits, poolUsage, type Db } from '../db/client.ts'
import type { MetricsSources, QueueCounts } from '../lib/metrics.ts'
import { PURCHASE_DEAD_LETTER_QUEUE, PURCHASE_QUEUE } from '../purchase/queue.ts'

/**
 * What the metrics' gauges read: the process's pools (by role), the pending purchases per event,
 * and the purchase queues' job counts. `db` is the pool the scrape's queries use.
 */
export function metricsSources ({ pools, db, boss }: { pools: Partial<Record<'api' | 'worker', Db>>, db: Db, boss: PgBoss }): MetricsSources {
  const gauges: MetricsSources['pools'] = {}
  for (const role of ['api', 'worker'] as const) {
    const pool = pools[role]
    if (pool !== undefined) gauges[role] = { usage: () => poolUsage(pool), onAcquireWait: (observe) => { observeAcquireWaits(pool, observe) } }
  }
  return {
    pools: gauges,
    pendingByEvent: async () => await countPendingByEvent(db),
    queues: async () => {
      const queues = await Promise.all([PURCHASE_QUEUE, PURCHASE_DEAD_LETTER_QUEUE].map(async (name) => await boss.getQueue(name)))
      return queues.filter((queue): queue is NonNullable<typeof queue> => queue !== null) satisfies readonly QueueCounts[]
    }
  }
}
