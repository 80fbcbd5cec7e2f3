import t from 'tap'
import { validate, version } from 'uuid'
import { timeOrderedId } from '../../lib/ids.ts'

t.test('ids are valid UUIDv7s, unique and strictly increasing, across many per millisecond and pool refills', async (t) => {
  const ids = Array.from({ length: 20_000 }, () => timeOrderedId())
  t.equal(new Set(ids).size, ids.length, 'no id repeats')
  t.ok(ids.every((id) => validate(id) && version(id) === 7), 'every id is a valid version 7 UUID')
  const outOfOrder = ids.findIndex((id, i) => i > 0 && id <= (ids[i - 1] as string))
  t.equal(outOfOrder, -1, 'each id sorts after the one before it')
})

t.test('an id carries the time it was made', async (t) => {
  const before = Date.now()
  const id = timeOrderedId()
  const after = Date.now()
  const msecs = parseInt(id.replaceAll('-', '').slice(0, 12), 16)
  t.ok(msecs >= before && msecs <= after + 1, `timestamp ${msecs} within [${before}, ${after}]`)
})
