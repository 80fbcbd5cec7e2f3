export interface GroupCommitOptions<T, R> {
  /** Most items committed together. */
  maxBatch: number
  /** Longest an item waits for others to share its commit (0: only those already submitted). */
  waitMs: number
  /** Commits running at once; while all are busy, arrivals keep gathering. */
  concurrency: number
  /**
   * Commits one batch. Resolves with one answer per item, in the batch's order: a value resolves
   * that item's submit(), an Error rejects it. A throw rejects every item of the batch.
   */
  commit: (items: T[]) => Promise<Array<R | Error>>
}

interface Waiting<T, R> {
  item: T
  resolve: (result: R) => void
  reject: (err: unknown) => void
}

/**
 * Group commit: items submitted close together share one commit. A batch is due when it is full,
 * or when the first item of it has waited `waitMs`; it starts as soon as one of `concurrency`
 * slots is free. The busier the commits, the bigger the next batch, which is what keeps commits
 * per second low under a flood (docs/decisions/ on group-committed intake).
 */
export class GroupCommit<T, R> {
  readonly #options: GroupCommitOptions<T, R>
  readonly #waiting: Array<Waiting<T, R>> = []
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  #windowElapsed = false
  #inFlight = 0

  constructor (options: GroupCommitOptions<T, R>) {
    if (options.maxBatch < 1 || options.concurrency < 1 || options.waitMs < 0) throw new RangeError('maxBatch and concurrency must be at least 1, waitMs at least 0')
    this.#options = options
  }

  /** Resolves with the item's answer once the commit that carried it has returned. */
  async submit (item: T): Promise<R> {
    return await new Promise<R>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject })
      if (this.#waiting.length === 1 && this.#timer === undefined && !this.#windowElapsed) this.#openWindow()
      this.#pump()
    })
  }

  /** Commits running now. */
  get inFlight (): number {
    return this.#inFlight
  }

  #openWindow (): void {
    const elapse = (): void => {
      this.#timer = undefined
      this.#windowElapsed = true
      this.#pump()
    }
    this.#timer = this.#options.waitMs === 0 ? setImmediate(elapse) : setTimeout(elapse, this.#options.waitMs)
  }

  #closeWindow (): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer as NodeJS.Timeout)
      clearImmediate(this.#timer as NodeJS.Immediate)
    }
    this.#timer = undefined
    this.#windowElapsed = false
  }

  /** Starts a commit for each batch that is due and has a slot. */
  #pump (): void {
    const { maxBatch, concurrency } = this.#options
    while (this.#inFlight < concurrency && this.#waiting.length > 0 && (this.#windowElapsed || this.#waiting.length >= maxBatch)) {
      const batch = this.#waiting.splice(0, maxBatch)
      if (this.#waiting.length === 0) this.#closeWindow()
      this.#inFlight += 1
      void this.#commit(batch).finally(() => {
        this.#inFlight -= 1
        this.#pump()
      })
    }
  }

  async #commit (batch: ReadonlyArray<Waiting<T, R>>): Promise<void> {
    let answers: Array<R | Error>
    try {
      answers = await this.#options.commit(batch.map((w) => w.item))
      if (answers.length !== batch.length) throw new Error(`a commit answered ${answers.length} of ${batch.length} items`)
    } catch (err) {
      for (const w of batch) w.reject(err)
      return
    }
    batch.forEach((w, i) => {
      const answer = answers[i] as R | Error
      if (answer instanceof Error) w.reject(answer)
      else w.resolve(answer)
    })
  }
}
