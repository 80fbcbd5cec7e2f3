import type { PgBoss } from 'pg-boss'
import type { Db } from '../../db/client.ts'
import { storePurchases, type NewPurchase, type StoredPurchase, type StoreVerdict } from '../../db/purchases.ts'
import { enqueuePurchases, type QueuedPurchase } from '../../purchase/queue.ts'

// Events whose last purchases were all answered at once: sold out, closed, not open yet. Bounded:
// it is a guess that saves a round trip, never a source of truth.
const ANSWERED_AT_ONCE_MAX = 10_000

/**
 * Stores a batch of purchases: their booking rows (storePurchases: the event checks, the sold-out
 * fast path and the idempotency keys are in its one statement) and, in the same transaction, the
 * jobs of those that queue. A batch only for events that answered their last purchases at once is
 * first tried as one autocommitted statement that stores nothing if any purchase would queue: one
 * round trip instead of a transaction's, and never a booking without its job.
 */
export class PurchaseStore {
  readonly #db: Db
  readonly #boss: PgBoss
  readonly #answeredAtOnce = new Set<string>()

  constructor ({ db, boss }: { db: Db, boss: PgBoss }) {
    this.#db = db
    this.#boss = boss
  }

  async store (purchases: readonly NewPurchase[]): Promise<StoredPurchase[]> {
    if (purchases.every((p) => this.#answeredAtOnce.has(p.event_id))) {
      const results = await storePurchases(this.#db, purchases, { onlyIfNoneQueue: true })
      if (results !== 'would_queue') return this.#remember(purchases, results)
    }
    const results = await this.#db.transaction().execute(async (trx) => {
      const stored = await storePurchases(trx, purchases)
      const queued: QueuedPurchase[] = []
      stored.forEach((result, i) => {
        if (result.verdict !== 'pending') return
        const { event_id, user_id, quantity } = purchases[i] as NewPurchase
        const data: QueuedPurchase['data'] = { event_id, user_id, quantity, arrival: Number(result.arrival) }
        if (result.expires_at !== null) data.expires_at = result.expires_at.toISOString()
        queued.push({ bookingId: result.id, data })
      })
      await enqueuePurchases(trx, this.#boss, queued)
      return stored
    })
    return this.#remember(purchases, results)
  }

  /** storePurchases answers one result per purchase, in their order. */
  #remember (purchases: readonly NewPurchase[], results: StoredPurchase[]): StoredPurchase[] {
    results.forEach(({ verdict }, i) => { this.#note((purchases[i] as NewPurchase).event_id, verdict) })
    return results
  }

  #note (eventId: string, verdict: StoreVerdict): void {
    if (verdict === 'pending') this.#answeredAtOnce.delete(eventId)
    else if (verdict === 'sold_out' || verdict === 'closed' || verdict === 'not_open') {
      if (this.#answeredAtOnce.size >= ANSWERED_AT_ONCE_MAX) this.#answeredAtOnce.clear()
      this.#answeredAtOnce.add(eventId)
    }
  }
}
