// Usage: imported by bench/flash-sale.ts: what the sale cost in CPU and memory, from /proc.
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { round } from './report.ts'

export async function rssKb (pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? undefined : Number(match[1])
}

// CPU time (user + system) from /proc, in clock ticks of 10 ms (Linux's USER_HZ is 100).
const TICK_S = 0.01

/** A process's CPU seconds so far, all its threads; with `children`, also its reaped children's. */
async function cpuSecondsOf (pid: number, { children = false } = {}): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15,
  // cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  const [utime = 0, stime = 0, cutime = 0, cstime = 0] = fields.slice(11, 15)
  return (utime + stime + (children ? cutime + cstime : 0)) * TICK_S
}

/** PostgreSQL's CPU seconds so far: the postmaster, its live backends, and those that ended. */
async function postgresCpuSeconds (clusterDir: string | undefined): Promise<number | undefined> {
  if (clusterDir === undefined) return undefined
  const pid = Number((await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
  if (!(pid > 0)) return undefined
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number)
  const times = await Promise.all([cpuSecondsOf(pid, { children: true }), ...children.map(async (child) => await cpuSecondsOf(child))])
  return times.reduce((a, b) => a + b, 0)
}

export interface CpuReading { service?: number | undefined, postgres?: number | undefined, generator: number }

/** CPU seconds of the service, PostgreSQL and this process (the load generator) so far. */
export async function cpuNow (servicePid: number | undefined, clusterDir: string | undefined): Promise<CpuReading> {
  const { user, system } = process.cpuUsage()
  return {
    service: servicePid === undefined ? undefined : await cpuSecondsOf(servicePid),
    postgres: await postgresCpuSeconds(clusterDir),
    generator: (user + system) / 1e6
  }
}

/** CPU per request between two readings `seconds` apart; the idle share only when all three are known. */
export function cpuPerRequest (start: CpuReading, end: CpuReading, requests: number, seconds: number): Record<string, number | null> {
  const spent = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined ? undefined : b - a
  const service = spent(start.service, end.service)
  const postgres = spent(start.postgres, end.postgres)
  const generator = end.generator - start.generator
  const per = (cpu: number | undefined): number | null => cpu === undefined || requests === 0 ? null : round(cpu * 1e6 / requests)
  return {
    sale_cpu_us_per_request_service: per(service),
    sale_cpu_us_per_request_postgres: per(postgres),
    sale_cpu_us_per_request_generator: per(generator),
    sale_cpu_idle_share: service === undefined || postgres === undefined || seconds <= 0
      ? null
      : round(Math.max(0, 1 - (service + postgres + generator) / (seconds * os.cpus().length)), 2)
  }
}
