// Runs the service's entry points as real processes, as the npm scripts do, for the tests
// (test/fixtures/service.ts) and the bench (bench/flash-sale.ts): one place that knows which file
// each role runs, with which Node flags, and how to tell it is ready or make it stop.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../db/embedded.ts'

const ROOT = path.resolve(import.meta.dirname, '..')

/** Each role's entry point: `npm start`, `npm run server`, `npm run worker`, `npm run queue-dashboard`. */
export const SERVICE_ENTRY = { all: 'app/main.ts', api: 'app/api.ts', worker: 'app/worker.ts', 'queue-dashboard': 'app/queue-dashboard.ts' } as const
export type ServiceRole = keyof typeof SERVICE_ENTRY

// The flags package.json's start/server/worker scripts run the service with.
const NODE_FLAGS: Record<ServiceRole, readonly string[]> = {
  all: ['--max-semi-space-size=4'],
  api: ['--max-semi-space-size=4'],
  worker: ['--max-semi-space-size=4'],
  'queue-dashboard': []
}

/** The line each role logs (at info) once it serves: listening, or for the worker, its loop started. */
export const READY_LINE: Record<ServiceRole, string> = {
  all: 'boxoffice is ready',
  api: 'boxoffice is ready',
  worker: 'purchase worker started',
  'queue-dashboard': 'queue dashboard is ready'
}

export interface LaunchOptions {
  /** Added to this process's environment, after the defaults below (127.0.0.1, a free port, no demo event). */
  env: Record<string, string>
  /** Node flags before the entry point, after the npm script's own (e.g. --cpu-prof). */
  nodeArgs?: readonly string[]
  /** Keep every stdout line in `lines` (JSON log lines); otherwise stdout is drained unread. */
  keepLines?: boolean
  /** Called with each chunk of stderr as it comes (it is kept for start-up errors either way). */
  onStderr?: (text: string) => void
}

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export interface LaunchedService {
  role: ServiceRole
  child: ChildProcess
  /** http://127.0.0.1:<port>: the API's, or the queue dashboard's (the worker listens on none). */
  base: string
  /** Every stdout line so far, when `keepLines`. */
  lines: string[]
  /** Resolves once the process has ended. */
  exited: Promise<Exit>
  running: () => boolean
  /** Resolves when `ready` holds; fails if the process ends first or after `timeoutMs`. */
  waitUntil: (ready: () => boolean | Promise<boolean>, what: string, timeoutMs?: number) => Promise<void>
  /** Sends `signal` (SIGTERM by default), SIGKILL after `killAfterMs`; resolves with how it ended. */
  stop: (options?: { signal?: NodeJS.Signals, killAfterMs?: number }) => Promise<Exit>
}

// Every process launched and still running: killed if this process exits first (a test file that
// tap stops at its timeout exits without running its teardowns, which would leave them orphaned).
const running = new Set<ChildProcess>()
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

/** Starts one role's process without waiting for it to be ready (see startService). */
export async function launchService (role: ServiceRole, { env, nodeArgs = [], keepLines = false, onStderr }: LaunchOptions): Promise<LaunchedService> {
  const port = role === 'worker' ? 0 : await freePort()
  const portVariable = role === 'queue-dashboard' ? 'QUEUE_DASHBOARD_PORT' : 'PORT'
  const child = spawn(process.execPath, [...NODE_FLAGS[role], ...nodeArgs, SERVICE_ENTRY[role]], {
    cwd: ROOT,
    env: { ...process.env, [portVariable]: String(port), HOST: '127.0.0.1', DEMO_EVENT: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: string[] = []
  let buffered = ''
  // Read either way: a full pipe would block the service.
  child.stdout?.on('data', (chunk: Buffer) => {
    if (!keepLines) return
    buffered += chunk.toString()
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    lines.push(...parts)
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString()
    stderr = (stderr + text).slice(-20_000)
    onStderr?.(text)
  })
  running.add(child)
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  })
  const isRunning = (): boolean => child.exitCode === null && child.signalCode === null

  async function waitUntil (ready: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!(await ready())) {
      const output = `${stderr}${lines.join('\n')}`.slice(-4000)
      if (!isRunning()) throw new Error(`${role} exited during start-up (exit code ${child.exitCode ?? child.signalCode}): ${output}`)
      if (Date.now() > deadline) throw new Error(`${role}: ${what} did not happen within ${timeoutMs} ms: ${output}`)
      await sleep(20)
    }
  }

  async function stop ({ signal = 'SIGTERM', killAfterMs = 30_000 }: { signal?: NodeJS.Signals, killAfterMs?: number } = {}): Promise<Exit> {
    if (isRunning()) {
      child.kill(signal)
      const killing = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
      try {
        await exited
      } finally {
        clearTimeout(killing)
      }
    }
    return await exited
  }

  return { role, child, base: `http://127.0.0.1:${port}`, lines, exited, running: isRunning, waitUntil, stop }
}

/** True once GET /health answers 200 (the API listens and its database answers). */
export async function answersHealth (base: string): Promise<boolean> {
  try {
    const res = await fetch(`${base}/health`)
    await res.arrayBuffer()
    return res.ok
  } catch {
    return false // not listening yet
  }
}

export interface StartOptions extends LaunchOptions {
  /** Ready when this holds (default: the role's READY_LINE logged). */
  ready?: (service: LaunchedService) => Promise<boolean>
  timeoutMs?: number
}

/**
 * Starts one role's process and waits until it is ready: its READY_LINE logged (the default, which
 * needs LOG_LEVEL=info and keeps every line), or `ready` when given (the bench logs at warn: it
 * asks GET /health instead).
 */
export async function startService (role: ServiceRole, options: StartOptions): Promise<LaunchedService> {
  const { ready, timeoutMs, ...launch } = options
  const service = await launchService(role, ready === undefined ? { ...launch, keepLines: true, env: { LOG_LEVEL: 'info', ...launch.env } } : launch)
  try {
    await service.waitUntil(
      ready === undefined ? () => service.lines.some((line) => line.includes(READY_LINE[role])) : async () => await ready(service),
      ready === undefined ? `"${READY_LINE[role]}"` : 'ready', timeoutMs)
  } catch (err) {
    // The queue dashboard's launcher is asked to stop: killed, it would leave its server running.
    await service.stop({ signal: role === 'queue-dashboard' ? 'SIGTERM' : 'SIGKILL', killAfterMs: 10_000 })
    throw err
  }
  return service
}
