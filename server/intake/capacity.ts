import type { Logger } from 'pino'

/**
 * How many purchases may wait for a decision at once, across all processes; beyond it, intake
 * answers 503 QUEUE_FULL.
 *
 * The count is pending purchases as last counted in the database (every `refreshMs`), plus what
 * this process has queued since and what it holds right now (gathering or storing). Counting per
 * request would put a query on the hot path; a count a second is enough, because this process's
 * own purchases are tracked exactly: a slot is taken synchronously (enter), so a burst cannot all
 * pass the check. Other processes' purchases since the last count are seen at the next count.
 */
export class CapacityGate {
  readonly #capacity: number
  readonly #countPending: () => Promise<number>
  readonly #log: Pick<Logger, 'warn'>
  readonly #timer: NodeJS.Timeout
  #counted = 0
  #queuedSinceCount = 0
  #holding = 0
  #counting: Promise<void> | undefined

  constructor ({ capacity, countPending, refreshMs = 1000, log }: { capacity: number, countPending: () => Promise<number>, refreshMs?: number, log: Pick<Logger, 'warn'> }) {
    this.#capacity = capacity
    this.#countPending = countPending
    this.#log = log
    this.#timer = setInterval(() => { void this.refresh() }, refreshMs)
    void this.refresh()
  }

  /** Re-reads the pending count (one read at a time; a failed read keeps the last count). */
  async refresh (): Promise<void> {
    this.#counting ??= (async () => {
      const before = this.#queuedSinceCount
      try {
        this.#counted = await this.#countPending()
        this.#queuedSinceCount -= before
      } catch (err) {
        this.#log.warn({ err }, 'could not count pending purchases; keeping the last count')
      }
    })().finally(() => { this.#counting = undefined })
    await this.#counting
  }

  /** Takes a slot for a purchase about to be stored; false when the queue is full. */
  enter (): boolean {
    if (this.#counted + this.#queuedSinceCount + this.#holding >= this.#capacity) return false
    this.#holding += 1
    return true
  }

  /** Gives the slot back once the purchase's store has returned (its queued count is in by then). */
  leave (): void {
    this.#holding -= 1
  }

  /** Purchases this process queued: counted until the next database count includes them. */
  queued (n: number): void {
    this.#queuedSinceCount += n
  }

  close (): void {
    clearInterval(this.#timer)
  }
}
