import t from 'tap'
import { CapacityGate } from '../../../server/intake/capacity.ts'
import { silentLog } from '../../fixtures/log.ts'

// The capacity gate with a pending count the test sets: no database.

function gateWith (capacity: number, counts: Array<number | Error>) {
  let reads = 0
  const countPending = async (): Promise<number> => {
    const next = counts[Math.min(reads++, counts.length - 1)]
    if (next instanceof Error) throw next
    return next ?? 0
  }
  // A refresh period long enough never to fire during a test: the test refreshes by hand.
  const gate = new CapacityGate({ capacity, countPending, refreshMs: 3_600_000, log: silentLog })
  return { gate, reads: () => reads }
}

t.test('slots are taken synchronously up to the capacity, and given back', async (t) => {
  const { gate } = gateWith(3, [0])
  t.teardown(() => { gate.close() })
  await gate.refresh()
  t.same([gate.enter(), gate.enter(), gate.enter(), gate.enter()], [true, true, true, false], 'the fourth at once is refused')
  gate.leave()
  t.equal(gate.enter(), true, 'a slot given back is free again')
})

t.test('pending purchases counted in the database take capacity', async (t) => {
  const { gate } = gateWith(5, [4])
  t.teardown(() => { gate.close() })
  await gate.refresh()
  t.same([gate.enter(), gate.enter()], [true, false])
})

t.test('what this process queued counts until a database count includes it', async (t) => {
  const { gate } = gateWith(3, [0, 2])
  t.teardown(() => { gate.close() })
  await gate.refresh()
  t.ok(gate.enter() && gate.enter())
  gate.queued(2)
  gate.leave()
  gate.leave()
  t.equal(gate.enter(), true, 'two queued, one slot left')
  t.equal(gate.enter(), false)
  gate.leave()
  // The next count sees the two queued purchases: they are not counted twice.
  await gate.refresh()
  t.equal(gate.enter(), true, 'counted once by the database, one slot left')
  t.equal(gate.enter(), false)
})

t.test('a failed count keeps the last one', async (t) => {
  const { gate, reads } = gateWith(2, [1, new Error('database down')])
  t.teardown(() => { gate.close() })
  await gate.refresh()
  await gate.refresh()
  t.ok(reads() >= 2, 'the count was read again')
  t.same([gate.enter(), gate.enter()], [true, false], 'still one pending as last counted')
})
