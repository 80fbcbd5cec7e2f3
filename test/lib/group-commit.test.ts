import t from 'tap'
import { GroupCommit } from '../../lib/group-commit.ts'

// The batcher alone, with commits made of promises the test settles: no database, no timing.

/** A commit the test controls: every batch it was given, each waiting for the test to finish it. */
function controlledCommit () {
  const batches: Array<{ items: number[], finish: (answers?: Array<string | Error>) => void, fail: (err: Error) => void }> = []
  const commit = async (items: number[]): Promise<Array<string | Error>> => await new Promise((resolve, reject) => {
    batches.push({ items, finish: (answers) => { resolve(answers ?? items.map((i) => `stored ${i}`)) }, fail: reject })
  })
  return { batches, commit }
}

/** Resolves once `n` batches have reached the commit (the batcher starts them on timers). */
async function batchesStarted (batches: unknown[], n: number): Promise<void> {
  while (batches.length < n) await new Promise((resolve) => setImmediate(resolve))
}

t.test('items submitted together share one commit, and each gets its own answer', async (t) => {
  const { batches, commit } = controlledCommit()
  const group = new GroupCommit({ maxBatch: 100, waitMs: 0, concurrency: 1, commit })
  const answers = Promise.all([1, 2, 3].map(async (i) => await group.submit(i)))
  await batchesStarted(batches, 1)
  t.same(batches.map((b) => b.items), [[1, 2, 3]], 'one commit for the three')
  batches[0]?.finish()
  t.same(await answers, ['stored 1', 'stored 2', 'stored 3'])
})

t.test('a batch holds at most maxBatch items; the rest go in the next', async (t) => {
  const { batches, commit } = controlledCommit()
  const group = new GroupCommit({ maxBatch: 2, waitMs: 1000, concurrency: 5, commit })
  const answers = Promise.all([1, 2, 3, 4, 5].map(async (i) => await group.submit(i)))
  // Full batches start at once, without waiting for the window; the last one waits for it.
  await batchesStarted(batches, 2)
  t.same(batches.map((b) => b.items), [[1, 2], [3, 4]])
  await batchesStarted(batches, 3)
  t.same(batches[2]?.items, [5], 'the remainder, when its window elapsed')
  for (const b of batches) b.finish()
  t.equal((await answers).length, 5)
})

t.test('while every slot is busy, arrivals gather into one bigger batch', async (t) => {
  const { batches, commit } = controlledCommit()
  const group = new GroupCommit({ maxBatch: 100, waitMs: 0, concurrency: 1, commit })
  const first = group.submit(1)
  await batchesStarted(batches, 1)
  const later = Promise.all([2, 3, 4, 5].map(async (i) => await group.submit(i)))
  // Give the batcher every chance to start another commit: it must not, the one slot is taken.
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve))
  t.equal(batches.length, 1, 'no second commit while the first runs')
  t.equal(group.inFlight, 1)
  batches[0]?.finish()
  await first
  await batchesStarted(batches, 2)
  t.same(batches[1]?.items, [2, 3, 4, 5], 'the four that arrived meanwhile share the next commit')
  batches[1]?.finish()
  await later
})

t.test('an Error answer rejects its item only; a failed commit rejects its whole batch and no other', async (t) => {
  const { batches, commit } = controlledCommit()
  const group = new GroupCommit({ maxBatch: 2, waitMs: 0, concurrency: 2, commit })
  const results = [1, 2, 3, 4].map(async (i) => await group.submit(i))
  await batchesStarted(batches, 2)
  batches[0]?.finish(['stored 1', new Error('refused 2')])
  batches[1]?.fail(new Error('disk full'))
  const settled = await Promise.allSettled(results)
  t.same(settled.map((s) => s.status === 'fulfilled' ? s.value : (s.reason as Error).message), ['stored 1', 'refused 2', 'disk full', 'disk full'])
  // And the batcher goes on.
  const after = group.submit(5)
  await batchesStarted(batches, 3)
  batches[2]?.finish()
  t.equal(await after, 'stored 5')
})

t.test('a commit that answers the wrong number of items rejects the batch', async (t) => {
  const { batches, commit } = controlledCommit()
  const group = new GroupCommit({ maxBatch: 10, waitMs: 0, concurrency: 1, commit })
  const results = [1, 2].map(async (i) => await group.submit(i))
  await batchesStarted(batches, 1)
  batches[0]?.finish(['only one'])
  const settled = await Promise.allSettled(results)
  t.ok(settled.every((s) => s.status === 'rejected' && /answered 1 of 2/.test((s.reason as Error).message)), 'both rejected, with the reason')
})

t.test('options out of range are refused', async (t) => {
  const commit = async (items: number[]): Promise<number[]> => items
  t.throws(() => new GroupCommit({ maxBatch: 0, waitMs: 0, concurrency: 1, commit }), RangeError)
  t.throws(() => new GroupCommit({ maxBatch: 1, waitMs: 0, concurrency: 0, commit }), RangeError)
})
