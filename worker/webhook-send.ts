import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'
import { RefusedAddressError, resolvePublicTarget } from '../lib/network-guard.ts'
import { webhookHeaders } from '../lib/webhook-signature.ts'

// One webhook delivery attempt over HTTP: where it may go, what it sends, how long it waits and
// what it keeps of the answer (docs/decisions/0013-webhooks-outbox.md). The queue around it is
// worker/webhooks.ts.

/** A receiver has this long to answer, connection included. */
export const DELIVERY_TIMEOUT_MS = 5000
/** Bytes of a receiver's answer kept in the delivery log. */
const EXCERPT_BYTES = 256

// Connections to receivers are kept open between deliveries. A new one is made to the address
// checked for the delivery that needs it (the pinned lookup).
// No cap on sockets per host: the delivery loop bounds the requests open (worker/webhooks.ts), and
// a cap here would make two endpoints on one host share it, so that one that never answers would
// hold the other's requests waiting for a socket inside their 5 s.
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }

export interface SendOutcome {
  statusCode?: number
  error?: string
  excerpt?: string
}

/**
 * One attempt: the address checked (lib/network-guard.ts), then a POST to that address with the
 * signed headers, DELIVERY_TIMEOUT_MS for all of it, no redirect followed, at most EXCERPT_BYTES of
 * the answer read. Never throws: what went wrong is the outcome's error.
 */
export async function send (url: string, secret: string, message: { message_id: string, body: string }, allowPrivate: boolean): Promise<SendOutcome> {
  const signal = AbortSignal.timeout(DELIVERY_TIMEOUT_MS)
  try {
    const target = new URL(url)
    if (target.protocol !== 'https:' && !(allowPrivate && target.protocol === 'http:')) {
      return { error: `refused: ${target.protocol} URLs need WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` }
    }
    // The resolver cannot be cancelled: a name that takes too long is given up on at the deadline
    // (its lookup ends in the background), so the attempt still ends within DELIVERY_TIMEOUT_MS.
    const resolved = await Promise.race([resolvePublicTarget(target.hostname, allowPrivate), aborted(signal)])
    // Connect to the address just checked, whatever the name resolves to a moment later.
    const pinned: LookupFunction = (_hostname, options, callback) => {
      type AllCallback = (err: null, addresses: Array<{ address: string, family: number }>) => void
      if ((options as { all?: boolean }).all === true) (callback as AllCallback)(null, [resolved])
      else callback(null, resolved.address, resolved.family)
    }
    const headers = {
      ...webhookHeaders(secret, message.message_id, new Date(), message.body),
      'content-type': 'application/json',
      'user-agent': 'boxoffice-webhooks'
    }
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const https = target.protocol === 'https:'
      const req = (https ? httpsRequest : httpRequest)(target, { method: 'POST', headers, lookup: pinned, signal, agent: https ? agents.https : agents.http }, resolve)
      req.on('error', reject)
      req.end(message.body)
    })
    const excerpt = await readExcerpt(response, signal)
    return { statusCode: response.statusCode ?? 0, excerpt }
  } catch (err) {
    if (err instanceof RefusedAddressError) return { error: `refused: ${err.message}` }
    if (signal.aborted) return { error: `no answer within ${DELIVERY_TIMEOUT_MS} ms` }
    const { code, message } = err as { code?: string, message?: string }
    return { error: [code, message].filter((part) => part !== undefined).join(': ') || String(err) }
  }
}

/** Rejects when `signal` aborts. */
async function aborted (signal: AbortSignal): Promise<never> {
  return await new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => { reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }, { once: true })
  })
}

/** The first EXCERPT_BYTES of a response body, the rest discarded unread (and NULs, which PostgreSQL's text refuses). */
async function readExcerpt (response: IncomingMessage, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  // Leaving the loop early destroys the response (and its connection); one read to its end keeps
  // the connection for the next delivery.
  for await (const chunk of response) {
    chunks.push(chunk as Buffer)
    size += (chunk as Buffer).length
    if (size >= EXCERPT_BYTES || signal.aborted) break
  }
  return Buffer.concat(chunks).subarray(0, EXCERPT_BYTES).toString('utf8').replaceAll('\0', '')
}
