// Usage: imported by bench/flash-sale.ts: step 1, this machine's ceiling.
//
// The no-op server (bench/noop-server.ts) loaded with the same generator, concurrency, bodies and
// per-answer work as the sale, POST /buy and then GET /bookings/:id: what the real service's
// intake and reads are reported against.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { freePort } from '../db/embedded.ts'
import { bookingLocation } from '../server/schemas/bookings.ts'
import { answerRecorder, buyRequest, crowd, crowdSize, runAutocannon, warmUp } from './load.ts'
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

/** Both ceilings, in requests per second, measured while nothing else runs. */
export async function measureCeilings (options: BenchOptions, log: (line: string) => void): Promise<{ ceilingRps: number, readCeilingRps: number }> {
  const { ceilingS, concurrency, readers } = options
  const port = await freePort()
  const noop = spawn(process.execPath, [path.join(import.meta.dirname, 'noop-server.ts')], { env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    await waitForLine(noop, 'ready')
    const base = `http://127.0.0.1:${port}`
    log(`ceiling: loading a no-op POST /buy for ${ceilingS} s at concurrency ${concurrency}...`)
    const fakeEvent = randomUUID()
    await warmUp(options, base, undefined, undefined, '')
    const buying = buyRequest(options, base, () => fakeEvent, answerRecorder().onResponse, crowd(crowdSize(options, options.requests)))
    const ceiling = await runAutocannon(buying, { seconds: ceilingS })
    const ceilingRps = ceiling['2xx'] / (ceiling.duration || ceilingS)
    log(`ceiling: ${Math.round(ceilingRps)} req/s`)
    // The read ceiling: the no-op GET /bookings/:id, at the readers' concurrency, over as many
    // different Locations as the sale's buyers will read.
    const locations = Array.from({ length: 1000 }, () => bookingLocation(randomUUID(), randomUUID()))
    log(`read ceiling: loading a no-op GET /bookings/:id for ${ceilingS} s at concurrency ${readers}...`)
    const readCeilingRps = await readCeiling(base, locations, { readers }, ceilingS)
    log(`read ceiling: ${Math.round(readCeilingRps)} req/s`)
    return { ceilingRps, readCeilingRps }
  } finally {
    await stopChild(noop)
  }
}
