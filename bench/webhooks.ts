// Usage: imported by bench/mode.ts: with --webhooks, a receiver subscribed to every message type
// for the whole run (the sale, its drain, settlement alone), and after the sale's drain the check
// that every message queued by then was delivered once and verifies.
//
// The receiver is an HTTP server in the bench's process on 127.0.0.1 (the service runs with
// WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to reach it). It answers 204 at once, keeps each message id,
// and verifies one message in 100 with the standardwebhooks package (all of them would cost the
// generator's CPU, which shares the machine with what is measured).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type postgres from 'postgres'
import { Webhook } from 'standardwebhooks'

export interface BenchReceiver {
  url: string
  /** Registers the receiver for these types. */
  register: (baseUrl: string, adminToken: string, types: readonly string[]) => Promise<void>
  /** Waits until the outbox and the delivery queue are empty (at most `timeoutS`), then reports. */
  drain: (db: postgres.Sql, timeoutS: number) => Promise<WebhookFigures>
  close: () => Promise<void>
}

export interface WebhookFigures {
  webhook_messages_received: number
  webhook_messages_distinct: number
  webhook_messages_verified: number
  webhook_jobs_completed: number
  webhook_jobs_open: number
  webhook_jobs_failed: number
  /** Seconds from the receiver's first message to its last. */
  webhook_delivery_span_s: number | null
  failures: string[]
}

export async function startBenchReceiver (): Promise<BenchReceiver> {
  const ids = new Set<string>()
  let received = 0
  let verified = 0
  let badSignatures = 0
  let firstAt: number | null = null
  let lastAt: number | null = null
  let webhook: Webhook | undefined
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      received++
      const id = req.headers['webhook-id']
      if (typeof id === 'string') ids.add(id)
      if (received % 100 === 1 && webhook !== undefined) {
        try {
          webhook.verify(Buffer.concat(chunks).toString('utf8'), req.headers as Record<string, string>)
          verified++
        } catch {
          badSignatures++
        }
      }
      firstAt ??= performance.now()
      lastAt = performance.now()
      res.writeHead(204).end()
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}/bench-hooks`
  return {
    url,
    async register (baseUrl, adminToken, types) {
      const res = await fetch(`${baseUrl}/webhooks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ url, events: types })
      })
      const body = await res.json() as { secret?: string }
      if (res.status !== 201 || body.secret === undefined) throw new Error(`registering the bench's webhook receiver: ${res.status} ${JSON.stringify(body)}`)
      webhook = new Webhook(body.secret)
    },
    async drain (db, timeoutS) {
      const deadline = performance.now() + timeoutS * 1000
      let open: number
      for (;;) {
        const [row] = await db<[{ outbox: string, open: string }]>`
          SELECT (SELECT count(*) FROM webhook_outbox) AS outbox,
            (SELECT count(*) FROM pgboss.job WHERE name = 'webhook_deliveries' AND state IN ('created', 'retry', 'active')) AS open`
        open = Number(row.outbox) + Number(row.open)
        if (open === 0 || performance.now() > deadline) break
        await sleep(250)
      }
      const [jobs] = await db<[{ completed: string, failed: string }]>`
        SELECT count(*) FILTER (WHERE state = 'completed') AS completed, count(*) FILTER (WHERE state = 'failed') AS failed
        FROM pgboss.job WHERE name = 'webhook_deliveries'`
      const completed = Number(jobs.completed)
      const failures: string[] = []
      if (open > 0) failures.push(`${open} webhook messages still undelivered after ${timeoutS} s`)
      if (ids.size !== completed) failures.push(`the receiver has ${ids.size} distinct webhook messages, the queue completed ${completed}`)
      if (badSignatures > 0) failures.push(`${badSignatures} webhook messages did not verify`)
      return {
        webhook_messages_received: received,
        webhook_messages_distinct: ids.size,
        webhook_messages_verified: verified,
        webhook_jobs_completed: completed,
        webhook_jobs_open: open,
        webhook_jobs_failed: Number(jobs.failed),
        webhook_delivery_span_s: firstAt !== null && lastAt !== null ? Number(((lastAt - firstAt) / 1000).toFixed(3)) : null,
        failures
      }
    },
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
  }
}
