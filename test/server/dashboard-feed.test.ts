import t from 'tap'
import { createDashboardFeed, type DashboardSnapshot, type DashboardState, type FeedClient, type FeedOptions } from '../../server/dashboard-feed.ts'
import { waitFor } from '../fixtures/http.ts'
import { silentLog } from '../fixtures/log.ts'
import { parseEventBlock } from '../fixtures/sse.ts'

interface FakeClient extends FeedClient {
  chunks: string[]
  ended: boolean
  destroyed: boolean
  writableLength: number
}

function fakeClient (): FakeClient {
  const client: FakeClient = {
    chunks: [],
    ended: false,
    destroyed: false,
    writableLength: 0,
    write: (chunk) => { client.chunks.push(chunk); return true },
    end: () => { client.ended = true },
    destroy: () => { client.destroyed = true }
  }
  return client
}

/** The server-sent events in what a client was sent. */
function eventsOf (chunks: readonly string[]): Array<{ event: string, data: unknown }> {
  return chunks.join('').split('\n\n').flatMap((block) => {
    const parsed = parseEventBlock(block)
    return parsed === undefined ? [] : [{ event: parsed.event, data: JSON.parse(parsed.data) as unknown }]
  })
}

const STATE: DashboardState = { events: [], events_total: 0, queue_depth: 0 }
const OPTIONS: FeedOptions = { tickMs: 20, historyMs: 60_000, maxClients: 1000, maxBufferedBytes: 1024 }

/**
 * A snapshot reader that counts its reads, on a clock that moves one tick per read, with a
 * decisions counter that grows by `perRead` each time.
 */
function countingReader ({ perRead = 0, state = (): DashboardState => STATE } = {}) {
  let clock = 1_800_000_000_000
  const reader = {
    reads: 0,
    decided: 0,
    now: () => clock,
    read: async (): Promise<DashboardSnapshot> => {
      reader.reads++
      clock += OPTIONS.tickMs
      reader.decided += perRead
      return { state: state(), decided: reader.decided }
    }
  }
  return reader
}

t.test('one snapshot per tick, the same bytes to every client, however many are connected', async (t) => {
  const reader = countingReader({ perRead: 5 })
  const feed = createDashboardFeed({ readSnapshot: reader.read, log: silentLog, now: reader.now }, OPTIONS)
  t.teardown(feed.close)
  const clients = Array.from({ length: 200 }, fakeClient)
  for (const client of clients) feed.join(client)
  t.equal(feed.clients, 200)
  await waitFor(async () => reader.reads >= 5 ? true : undefined, { what: 'five snapshots' })
  await feed.close()
  const first = clients[0] as FakeClient
  const points = eventsOf(first.chunks).filter((e) => e.event === 'point')
  // The first read only sets the rate's baseline; every later one is one point for everybody.
  t.equal(points.length, reader.reads - 1, 'one point per snapshot read, not per client')
  t.ok(clients.every((c) => c.chunks.join('') === first.chunks.join('')), 'every client got exactly the same stream')
  t.ok(clients.every((c) => c.ended), 'close ended every stream')
})

t.test('decisions per second: the growth of the decided counter over the time between two snapshots', async (t) => {
  const reader = countingReader({ perRead: 30 })
  const feed = createDashboardFeed({ readSnapshot: reader.read, log: silentLog, now: reader.now }, OPTIONS)
  t.teardown(feed.close)
  const client = fakeClient()
  feed.join(client)
  await waitFor(async () => reader.reads >= 3 ? true : undefined, { what: 'three snapshots' })
  const points = eventsOf(client.chunks).filter((e) => e.event === 'point').map((e) => e.data as { t: number, decisions_per_second: number })
  t.ok(points.length >= 2)
  t.ok(points.every((p) => p.decisions_per_second === 1500), `30 decided in each ${OPTIONS.tickMs} ms: 1,500 a second`)
  t.ok(points.every((p, i) => i === 0 || p.t - (points[i - 1] as { t: number }).t === OPTIONS.tickMs), 'each point carries its time')
})

t.test('the state is sent when it changes, not every tick', async (t) => {
  let queueDepth = 7
  const reader = countingReader({ state: () => ({ ...STATE, queue_depth: queueDepth }) })
  const feed = createDashboardFeed({ readSnapshot: reader.read, log: silentLog, now: reader.now }, OPTIONS)
  t.teardown(feed.close)
  const client = fakeClient()
  feed.join(client)
  await waitFor(async () => reader.reads >= 4 ? true : undefined, { what: 'four snapshots' })
  queueDepth = 3
  const readsBefore = reader.reads
  await waitFor(async () => reader.reads >= readsBefore + 2 ? true : undefined, { what: 'two more snapshots' })
  const states = eventsOf(client.chunks).filter((e) => e.event === 'state').map((e) => (e.data as DashboardState).queue_depth)
  t.same(states, [7, 3], 'the first state, then the change, and nothing in between')
})

t.test('the ticker runs only while a client is connected; a new client gets the chart history at once', async (t) => {
  const reader = countingReader({ perRead: 10 })
  const feed = createDashboardFeed({ readSnapshot: reader.read, log: silentLog, now: reader.now }, OPTIONS)
  t.teardown(feed.close)
  t.equal(feed.ticking, false, 'nothing read before anyone watches')
  const first = fakeClient()
  const joined = feed.join(first)
  if (typeof joined === 'string') throw new Error(joined)
  t.equal(feed.ticking, true)
  await waitFor(async () => reader.reads >= 4 ? true : undefined, { what: 'four snapshots' })
  joined.leave()
  t.equal(feed.clients, 0)
  await waitFor(async () => feed.ticking ? undefined : true, { what: 'the ticker to stop' })
  const readsWhenStopped = reader.reads
  await new Promise((resolve) => setTimeout(resolve, OPTIONS.tickMs * 5))
  t.equal(reader.reads, readsWhenStopped, 'no snapshot is read while nobody is connected')

  const second = fakeClient()
  const again = feed.join(second)
  if (typeof again === 'string') throw new Error(again)
  const greeting = eventsOf([again.greeting])
  const history = greeting.find((e) => e.event === 'history')?.data as { points: unknown[], tick_ms: number }
  t.equal(history.tick_ms, OPTIONS.tickMs)
  t.equal(history.points.length, readsWhenStopped - 1, 'the points measured before, in the greeting')
  t.notOk(greeting.some((e) => e.event === 'state'), 'no state from before the pause: the next snapshot brings it')
  await waitFor(async () => eventsOf(second.chunks).some((e) => e.event === 'state') ? true : undefined, { what: 'a state' })
  t.equal(feed.ticking, true, 'ticking again')
})

t.test('a client that stops reading is cut off; beyond maxClients a join is refused', async (t) => {
  const reader = countingReader()
  const feed = createDashboardFeed({ readSnapshot: reader.read, log: silentLog, now: reader.now }, { ...OPTIONS, maxClients: 2 })
  t.teardown(feed.close)
  const stalled = fakeClient()
  const reading = fakeClient()
  feed.join(stalled)
  feed.join(reading)
  t.equal(feed.join(fakeClient()), 'full')
  stalled.writableLength = OPTIONS.maxBufferedBytes + 1
  await waitFor(async () => stalled.destroyed ? true : undefined, { what: 'the stalled client to be cut off' })
  t.equal(feed.clients, 1)
  t.notOk(reading.destroyed)
  t.not(feed.join(fakeClient()), 'full', 'its place is free again')
})

t.test('a failing snapshot is reported to the clients, and the feed recovers', async (t) => {
  const reader = countingReader()
  let failures = 2
  const feed = createDashboardFeed({
    readSnapshot: async () => {
      if (failures-- > 0) throw new Error('connection refused')
      return await reader.read()
    },
    log: silentLog,
    now: reader.now
  }, OPTIONS)
  t.teardown(feed.close)
  const client = fakeClient()
  feed.join(client)
  await waitFor(async () => eventsOf(client.chunks).some((e) => e.event === 'state') ? true : undefined, { what: 'a state after the failures' })
  const events = eventsOf(client.chunks).map((e) => e.event)
  t.same(events.slice(0, 3), ['problem', 'problem', 'state'])
})

t.test('close waits for the snapshot being read, ends every stream, and refuses new clients', async (t) => {
  let release: () => void = () => {}
  let reading = false
  const feed = createDashboardFeed({
    readSnapshot: async () => {
      reading = true
      await new Promise<void>((resolve) => { release = resolve })
      return { state: STATE, decided: 0 }
    },
    log: silentLog
  }, OPTIONS)
  const client = fakeClient()
  feed.join(client)
  await waitFor(async () => reading ? true : undefined, { what: 'a snapshot being read' })
  let closed = false
  const closing = feed.close().then(() => { closed = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(closed, 'still waiting for the read in flight')
  release()
  await closing
  t.ok(client.ended)
  t.equal(feed.ticking, false)
  t.equal(feed.join(fakeClient()), 'closed')
})
