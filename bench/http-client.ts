// Usage: imported by bench/reads.ts, bench/sale.ts and bench/holds.ts: the buyers' and the seller's
// own requests during a sale.
//
// node:http with a keep-alive agent, not fetch(): the followers, the canceller and the seller share
// the two cores with the service, and fetch's streams and Response objects cost the load generator
// about twice the CPU per request, CPU a real crowd would not take from the server.
import http from 'node:http'

export interface Answer { status: number, body: string }

export interface HttpClient {
  request: (method: 'GET' | 'DELETE' | 'POST', url: string,
    options?: { headers?: Record<string, string>, body?: string, timeoutMs?: number }) => Promise<Answer>
  close: () => void
}

/** A client keeping up to `connections` connections open to the service. */
export function httpClient (connections: number): HttpClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  return {
    async request (method, url, { headers = {}, body, timeoutMs = 30_000 } = {}) {
      return await new Promise<Answer>((resolve, reject) => {
        const req = http.request(url, { method, headers, agent, timeout: timeoutMs }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }) })
          res.on('error', reject)
        })
        req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)))
        req.on('error', reject)
        req.end(body)
      })
    },
    close () { agent.destroy() }
  }
}
