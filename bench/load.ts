// Usage: imported by bench/flash-sale.ts: the load generator's side of a sale.
//
// autocannon firing POST /buy from a crowd of users (with --buyer-tokens, signed in: each sends its
// token), what it keeps of each answer, and the events the sale buys from (created through the API,
// as an operator would).
import { randomUUID } from 'node:crypto'
import autocannon from 'autocannon'
import type postgres from 'postgres'
import type { Buyer, IdentityProvider } from './buyer-tokens.ts'
import { waitUntilSettled } from './decisions.ts'
import type { BenchOptions } from './options.ts'

/** The crowd's distinct users for a sale of `n` requests: --users, else a third of them. */
export const crowdSize = (options: BenchOptions, n: number): number => options.users ?? Math.max(1, Math.floor(n / 3))

export interface Crowd {
  readonly buyers: readonly Buyer[]
  /** A buyer drawn at random: with fewer buyers than requests, some buy again. */
  pick: () => Buyer
  /** The Authorization header of the crowd's buyer with this user_id (undefined without buyer tokens). */
  authorizationOf: (userId: string) => string | undefined
  /** The same, for the buyer a Location (`?user_id=`, as a purchase's answer names it) belongs to. */
  authorizationAt: (location: string) => string | undefined
}

/**
 * A crowd of `size` users. With an identity provider (--buyer-tokens) each has signed in: a token,
 * and the user_id the service derives from it; otherwise each is a user_id alone.
 */
export async function gatherCrowd (size: number, identity: IdentityProvider | undefined): Promise<Crowd> {
  const subjects = Array.from({ length: size }, () => randomUUID())
  if (identity === undefined) {
    const buyers = subjects.map((userId) => ({ userId, authorization: undefined }))
    return {
      buyers,
      pick: () => buyers[Math.floor(Math.random() * buyers.length)] as Buyer,
      authorizationOf: () => undefined,
      authorizationAt: () => undefined
    }
  }
  const buyers = await identity.signIn(subjects)
  const tokens = new Map(buyers.map((buyer) => [buyer.userId, buyer.authorization]))
  const authorizationOf = (userId: string): string | undefined => tokens.get(userId)
  return {
    buyers,
    pick: () => buyers[Math.floor(Math.random() * buyers.length)] as Buyer,
    authorizationOf,
    authorizationAt: (location) => authorizationOf(new URLSearchParams(location.slice(location.indexOf('?') + 1)).get('user_id') ?? '')
  }
}

/** A new user each time, with no token: the settlement backlog's buyers without --buyer-tokens. */
const newcomer = (): Buyer => ({ userId: randomUUID(), authorization: undefined })

/**
 * What the load generator keeps of each answer: its status, and the booking id of a 200 or 202 (so
 * the invariants can follow it). The ceiling's run records its answers the same way, so both runs
 * cost the load generator the same per request and the ratio compares the servers alone.
 */
export type AnswerHeaders = Record<string, string | string[] | undefined>
export type OnResponse = (status: number, body: string, headers: AnswerHeaders) => void

export interface AnswerRecorder {
  onResponse: OnResponse
  statusCounts: Map<number, number>
  queuedIds: string[]
  soldOutIds: string[]
  locations: string[]
  queuedLocations: string[]
  lastAnswerAt: () => number
  lastStoredAt: () => number
}

export function answerRecorder (): AnswerRecorder {
  const statusCounts = new Map<number, number>()
  const queuedIds: string[] = []
  const soldOutIds: string[] = []
  const locations: string[] = []
  const queuedLocations: string[] = []
  let lastAnswerAt = 0
  let lastStoredAt = 0
  return {
    onResponse: (status, body, headers) => {
      statusCounts.set(status, (statusCounts.get(status) ?? 0) + 1)
      lastAnswerAt = performance.now()
      if (status === 202 || status === 200) {
        const id = (JSON.parse(body) as { booking_id: string }).booking_id;
        (status === 202 ? queuedIds : soldOutIds).push(id)
        // Where the buyer follows it: the answer's Location.
        const location = headers.location
        if (typeof location === 'string') {
          locations.push(location)
          if (status === 202) queuedLocations.push(location)
        }
        lastStoredAt = lastAnswerAt
      }
    },
    statusCounts,
    queuedIds,
    soldOutIds,
    locations,
    queuedLocations,
    lastAnswerAt: () => lastAnswerAt,
    lastStoredAt: () => lastStoredAt
  }
}

/**
 * POST /buy from `pickBuyer`'s buyers. A buyer with a token sends it and names no user_id, as a
 * client of a service with buyer tokens would: the service derives it from the token.
 */
export function buyRequest ({ concurrency, pickQuantity }: BenchOptions, baseUrl: string, pickEvent: () => string, onResponse?: OnResponse,
  pickBuyer: () => Buyer = newcomer): autocannon.Options {
  return {
    url: baseUrl,
    connections: concurrency,
    requests: [{
      method: 'POST',
      path: '/buy',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req) => {
        const { userId, authorization } = pickBuyer()
        return authorization === undefined
          ? { ...req, body: JSON.stringify({ event_id: pickEvent(), user_id: userId, quantity: pickQuantity() }) }
          : { ...req, headers: { ...req.headers, authorization }, body: JSON.stringify({ event_id: pickEvent(), quantity: pickQuantity() }) }
      },
      ...(onResponse === undefined
        ? {}
        : { onResponse: (status: number, body: string, _context: object, headers?: AnswerHeaders) => { onResponse(status, body, headers ?? {}) } })
    }]
  }
}

export async function runAutocannon (options: autocannon.Options, limit: { amount?: number, seconds: number }): Promise<autocannon.Result> {
  return await new Promise((resolve, reject) => {
    const instance = autocannon({ ...options, ...(limit.amount !== undefined ? { amount: limit.amount } : { duration: limit.seconds }) }, (err, result) => {
      clearTimeout(cap)
      if (err !== null && err !== undefined) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve(result)
    })
    // --duration caps the sale even when requests remain.
    const cap = setTimeout(() => instance.stop(), limit.seconds * 1000)
  })
}

/** The events' rules: a per-user cap (0: none), and how long a purchase's seats are held (0: no holds). */
export interface EventRules { maxPerUser: number, holdSeconds?: number }

export async function createEvents (baseUrl: string, token: string, count: number, seats: number, label: string,
  { maxPerUser, holdSeconds = 0 }: EventRules): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${baseUrl}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({
        name: `${label} #${i + 1}`, total_quota: seats, ...(maxPerUser > 0 ? { max_per_user: maxPerUser } : {}), ...(holdSeconds > 0 ? { hold_seconds: holdSeconds } : {})
      })
    })
    if (res.status !== 201) throw new Error(`creating an event failed: ${res.status} ${await res.text()}`)
    ids.push(((await res.json()) as { id: string }).id)
  }
  return ids
}

/**
 * Before anything is measured, `--warmup` requests go through the server: a process that has just
 * started runs its first requests through cold code (V8 compiles it as it goes), which a real sale,
 * meeting a service that has been up for a while, does not. The ceiling server gets the same. With
 * a database (the real service), the requests buy from an event of their own with seats for a fifth
 * of them, so both answers (queued and sold out at once) are exercised; the sale starts once every
 * one of them is decided.
 */
export async function warmUp (options: BenchOptions, baseUrl: string, db: postgres.Sql | undefined, token: string | undefined, label: string,
  identity: IdentityProvider | undefined): Promise<void> {
  const { warmupRequests } = options
  if (warmupRequests === 0) return
  let pickEvent = (): string => randomUUID()
  let eventIds: string[] = []
  if (db !== undefined) {
    eventIds = await createEvents(baseUrl, token as string, 1, Math.ceil(warmupRequests / 5), label, { maxPerUser: options.maxPerUser })
    pickEvent = () => eventIds[0] as string
  }
  const answers = answerRecorder()
  const { pick } = await gatherCrowd(crowdSize(options, warmupRequests), identity)
  const buying = buyRequest(options, baseUrl, pickEvent, answers.onResponse, pick)
  await runAutocannon(buying, { amount: warmupRequests, seconds: 60 })
  if (db === undefined) return
  const stored = answers.queuedIds.length + answers.soldOutIds.length
  await waitUntilSettled(db, eventIds, stored, 60)
}

export const roundRobin = <T>(items: readonly T[]): () => T => {
  let next = 0
  return () => items[next++ % items.length] as T
}

