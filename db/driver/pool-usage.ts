/** A pool's connections as Kysely uses them, for metrics. */
export interface PoolUsage {
  max: number
  /** Connections handed to a query or transaction now. */
  inUse: number
  /** Queries and transactions waiting for a connection now. */
  waiting: number
}

/** What a driver counts while it hands out connections. */
export interface PoolState extends PoolUsage {
  /** Called with each wait for a connection, in seconds (metrics). */
  onAcquired: Set<(seconds: number) => void>
}

/** The wait for a connection ran out with every one of the pool in use: busy, not gone. */
export const DATABASE_BUSY = 'DATABASE_BUSY'

export function createPoolState (max: number): PoolState {
  return { max, inUse: 0, waiting: 0, onAcquired: new Set() }
}

/**
 * A connection of the pool for a query or transaction, counted in `counts`, or an error after
 * `timeoutMs`: postgres.js waits for one without limit, and while the database is down the wait
 * lasts until a reconnection attempt fails for it, which would hold a request past any sensible
 * answer. The error says which: DATABASE_BUSY when every connection was still in use at the end
 * (the pool is too small for the load, or its statements too slow), CONNECT_TIMEOUT when one could
 * not be opened. A connection that comes after its timeout is handed straight back. `release`
 * must be called once per connection returned; later calls are ignored.
 */
export async function acquireWithin<C> (
  acquire: () => Promise<C>,
  giveBack: (connection: C) => void,
  timeoutMs: number,
  counts: PoolState
): Promise<{ connection: C, release: () => void }> {
  counts.waiting++
  const started = performance.now()
  const acquiring = acquire()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(counts.inUse >= counts.max
        ? Object.assign(new Error(`all ${counts.max} database connections of this process were still in use after ${timeoutMs} ms`), { code: DATABASE_BUSY })
        : Object.assign(new Error(`no database connection within ${timeoutMs} ms`), { code: 'CONNECT_TIMEOUT' }))
    }, timeoutMs)
  })
  let connection: C
  try {
    connection = await Promise.race([acquiring, timeout])
  } catch (err) {
    acquiring.then(giveBack, () => {})
    throw err
  } finally {
    clearTimeout(timer)
    counts.waiting--
  }
  const waited = (performance.now() - started) / 1000
  for (const observe of counts.onAcquired) observe(waited)
  counts.inUse++
  let released = false
  return {
    connection,
    release: () => {
      if (released) return
      released = true
      counts.inUse--
      giveBack(connection)
    }
  }
}
