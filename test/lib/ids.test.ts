import t from 'tap'
import { validate, version } from 'uuid'
import { buyerId, timeOrderedId } from '../../lib/ids.ts'

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

t.test('buyerId: the documented UUIDv5 of issuer and subject, fixed forever', async (t) => {
  // docs/api.md, "Buyer identity": changing the namespace or the name would change every buyer.
  t.equal(buyerId('https://id.example/', 'alice'), 'a52bbc28-5a21-5979-a013-1211f1015acf')
  t.equal(buyerId('https://id.example/', 'alice'), buyerId('https://id.example/', 'alice'), 'deterministic')
  t.not(buyerId('https://id.example/', 'alice'), buyerId('https://other.example/', 'alice'), 'another issuer\'s alice is another buyer')
  t.not(buyerId('https://id.example/a', 'lice'), buyerId('https://id.example/', 'alice'), 'the separator keeps issuer and subject apart')
  t.match(buyerId('i', 's'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a version 5 UUID')
})
