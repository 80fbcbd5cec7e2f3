import net from 'node:net'

export interface ExchangeCounter {
  /** A URL like `url` whose connections go through this relay. */
  url: string
  /** Round trips since the last reset: each time the client sends after the server has answered. */
  exchanges: () => number
  reset: () => void
  close: () => Promise<void>
}

/**
 * A TCP relay in front of PostgreSQL that counts round trips as the wire shows them, so a test can
 * say how many times a transaction waited for the server without looking inside the driver.
 */
export async function startExchangeCounter (url: string): Promise<ExchangeCounter> {
  const target = new URL(url)
  const sockets = new Set<net.Socket>()
  let exchanges = 0
  let serverSpoke = true
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => { client.destroy(); upstream.destroy() })
    }
    client.on('data', (chunk) => {
      if (serverSpoke) exchanges++
      serverSpoke = false
      upstream.write(chunk)
    })
    upstream.on('data', (chunk) => {
      serverSpoke = true
      client.write(chunk)
    })
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address() as net.AddressInfo
  const relayed = new URL(url)
  relayed.hostname = '127.0.0.1'
  relayed.port = String(address.port)
  return {
    url: relayed.toString(),
    exchanges: () => exchanges,
    reset: () => { exchanges = 0; serverSpoke = true },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
