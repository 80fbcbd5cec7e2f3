// When the sale last did something in this process: intake stored a batch, or the worker settled
// one. Background work that can wait (webhook delivery) asks it, and yields while the sale runs
// (docs/decisions/0013-webhooks-outbox.md).

export interface Activity {
  /** The sale did something just now. */
  touch: () => void
  /** Whether it did within the last `ms`. */
  within: (ms: number) => boolean
}

export function createActivity (): Activity {
  let last = -Infinity
  return {
    touch () { last = performance.now() },
    within (ms) { return performance.now() - last < ms }
  }
}
