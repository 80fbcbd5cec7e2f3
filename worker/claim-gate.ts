// Several batched loops in one process share one claim gate (worker/worker.ts).

/**
 * Runs the claim-and-lock step of one batch. Several batched loops in one process share one, so
 * that the loop that claimed the older purchases also queues first for their events' locks: batches
 * of one event are then decided in the order they were claimed, and a loop's claim overlaps the
 * other loop's writes instead of waiting for them.
 */
export type ClaimGate = <T>(claim: () => Promise<T>) => Promise<T>

export function createClaimGate (): ClaimGate {
  let tail: Promise<unknown> = Promise.resolve()
  return async (claim) => {
    const turn = tail.then(claim)
    tail = turn.catch(() => {})
    return await turn
  }
}

