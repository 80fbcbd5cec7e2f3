// Usage: imported by bench/flash-sale.ts: step 1, this machine's ceiling.
//
// The no-op server (bench/noop-server.ts) loaded with the same generator, concurrency, bodies and
// per-answer work as the sale (with --buyer-tokens, the same tokens sent), POST /buy and then
// GET /bookings/:id: what the real service's intake and reads are reported against.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { freePort } from '../db/embedded.ts'
import { bookingLocation } from '../server/schemas/bookings.ts'
import type { Buyer, IdentityProvider } from './buyer-tokens.ts'
import { answerRecorder, buyRequest, crowdSize, gatherCrowd, runAutocannon, warmUp } from './load.ts'
import type { BenchOptions } from './options.ts'
import { readCeiling } from './reads.ts'

async function waitForLine (child: ChildProcess, text: string, timeoutMs = 60_000): Promise<void> {
  let seen = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms: ${seen.slice(-2000)}`)), timeoutMs)
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString()
      if (seen.includes(text)) { clearTimeout(timer); child.stdout?.off('data', onData); resolve() }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => { seen += chunk.toString() })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited (${code}) before "${text}": ${seen.slice(-2000)}`)) })
  })
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  await exited
  clearTimeout(timer)
}

/**
 * Both ceilings, in requests per second, measured while nothing else runs. With buyer tokens
 * (`identity`) the crowd sends its tokens here too, so the generator's work per request is the
 * sale's; the no-op server ignores them.
 */
export async function measureCeilings (options: BenchOptions, log: (line: string) => void, identity: IdentityProvider | undefined):
  Promise<{ ceilingRps: number, readCeilingRps: number }> {
  const { ceilingS, concurrency, readers } = options
  const port = await freePort()
  const noop = spawn(process.execPath, [path.join(import.meta.dirname, 'noop-server.ts')], {
    env: { ...process.env, ...identity?.serviceEnv, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe']
  })
  try {
    await waitForLine(noop, 'ready')
    const base = `http://127.0.0.1:${port}`
    log(`ceiling: loading a no-op POST /buy for ${ceilingS} s at concurrency ${concurrency}...`)
    const fakeEvent = randomUUID()
    await warmUp(options, base, undefined, undefined, '', identity)
    const buyers = await gatherCrowd(crowdSize(options, options.requests), identity)
    const buying = buyRequest(options, base, () => fakeEvent, answerRecorder().onResponse, buyers.pick)
    const ceiling = await runAutocannon(buying, { seconds: ceilingS })
    const ceilingRps = ceiling['2xx'] / (ceiling.duration || ceilingS)
    log(`ceiling: ${Math.round(ceilingRps)} req/s`)
    // The read ceiling: the no-op GET /bookings/:id, at the readers' concurrency, over as many
    // different Locations as the sale's buyers will read, each with its buyer's token if any.
    const reads = Array.from({ length: 1000 }, (_v, i) => {
      const { userId, authorization } = buyers.buyers[i % buyers.buyers.length] as Buyer
      return { path: bookingLocation(randomUUID(), userId), authorization }
    })
    log(`read ceiling: loading a no-op GET /bookings/:id for ${ceilingS} s at concurrency ${readers}...`)
    const readCeilingRps = await readCeiling(base, reads, { readers }, ceilingS)
    log(`read ceiling: ${Math.round(readCeilingRps)} req/s`)
    return { ceilingRps, readCeilingRps }
  } finally {
    await stopChild(noop)
  }
}
