// Usage: node bench/profile.ts DIR   (or imported: summarizeProfiles(dir) by bench/flash-sale.ts --profile)
//
// Reads the V8 CPU profiles (`node --cpu-prof`) in DIR and prints where the CPU time went: self time
// by owner (our code by folder, each npm package, Node's internals, GC, idle) and the top functions.
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number } }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

/** Who a frame belongs to: an npm package, a folder of ours, Node itself, or V8's bookkeeping. */
function ownerOf ({ functionName, url }: ProfileNode['callFrame']): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  if (url.startsWith('node:')) return 'node internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1] as string
  const ours = /\/(server|worker|db|lib|bench)\/[^/]+$/.exec(url)
  return ours !== null ? `ours: ${ours[1] as string}/` : url
}

/** One summary per profile in `dir` (each process of a run writes its own). */
export async function summarizeProfiles (dir: string, top = 12): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()
  const parts: string[] = []
  for (const file of files) parts.push(`== ${file}\n${await summarizeProfile(path.join(dir, file), top)}`)
  return parts.length === 0 ? `no profiles in ${dir}` : parts.join('\n')
}

export async function summarizeProfile (file: string, top: number): Promise<string> {
  const byOwner = new Map<string, number>()
  const byFunction = new Map<string, number>()
  let total = 0
  {
    const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
    profile.samples.forEach((id, i) => {
      const node = nodes.get(id)
      const us = profile.timeDeltas[i] ?? 0
      if (node === undefined || us <= 0) return
      total += us
      const owner = ownerOf(node.callFrame)
      byOwner.set(owner, (byOwner.get(owner) ?? 0) + us)
      const { functionName, url, lineNumber } = node.callFrame
      const where = url === '' ? '' : ` ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(server|worker|db|lib|bench)\//, '$1/')}:${lineNumber + 1}`
      const key = `${functionName === '' ? '(anonymous)' : functionName}${where}`
      byFunction.set(key, (byFunction.get(key) ?? 0) + us)
    })
  }
  if (total === 0) return 'no samples'
  const share = (us: number): string => `${(100 * us / total).toFixed(1).padStart(5)}%`
  const list = (map: Map<string, number>, n: number): string =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, us]) => `  ${share(us)}  ${name}`).join('\n')
  return [
    `${(total / 1e6).toFixed(1)} s of samples`,
    'by owner (self time):', list(byOwner, top),
    'top functions (self time):', list(byFunction, top)
  ].join('\n')
}

if (import.meta.main) {
  const dir = process.argv[2]
  if (dir === undefined) {
    process.stderr.write('Usage: node bench/profile.ts DIR\n')
    process.exit(2)
  }
  process.stdout.write(await summarizeProfiles(dir) + '\n')
}
