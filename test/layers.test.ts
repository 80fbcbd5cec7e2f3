import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'

// The layers, read from the import statements of the source itself: who may import whom.
//   app/      executables and the composition root: imports anything, imported by nothing else
//   server/   HTTP; worker/: settlement. Neither imports the other.
//   purchase/ the domain (its words, rules and job payloads are pure: they import nothing else)
//             and the queue; db/ the repositories. These two use each other's types and functions.
//   lib/      leaves: they import no other folder of ours.

const ROOT = path.resolve(import.meta.dirname, '..')
const SOURCE_DIRS = ['app', 'server', 'worker', 'purchase', 'db', 'lib'] as const
type Layer = typeof SOURCE_DIRS[number]

const FORBIDDEN: Record<Layer, readonly Layer[]> = {
  app: [],
  server: ['app', 'worker'],
  worker: ['app', 'server'],
  purchase: ['app', 'server', 'worker'],
  db: ['app', 'server', 'worker'],
  lib: ['app', 'server', 'worker', 'purchase', 'db']
}

// The purchase domain's pure part: the words, the rules and the job payloads.
const PURE = ['purchase/vocabulary.ts', 'purchase/rules.ts', 'purchase/jobs.ts']

const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm

function sourceFiles (dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)))
}

/** The specifiers a file imports: relative ones resolved to paths from the root, packages as named. */
function importsOf (file: string): { files: string[], packages: string[] } {
  const text = readFileSync(path.join(ROOT, file), 'utf8')
  const files: string[] = []
  const packages: string[] = []
  for (const match of text.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? match[3] ?? ''
    if (specifier.startsWith('.')) files.push(path.relative(ROOT, path.resolve(ROOT, path.dirname(file), specifier)))
    else if (!specifier.startsWith('node:')) packages.push(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0] as string)
  }
  return { files, packages }
}

const layerOf = (file: string): Layer | undefined => SOURCE_DIRS.find((dir) => file.startsWith(`${dir}/`))

t.test('no layer imports one above it, and server/ and worker/ never import each other', async (t) => {
  const files = SOURCE_DIRS.flatMap(sourceFiles)
  t.ok(files.length > 30, `${files.length} source files read`)
  const breaches: string[] = []
  for (const file of files) {
    const layer = layerOf(file) as Layer
    for (const imported of importsOf(file).files) {
      const target = layerOf(imported)
      if (target !== undefined && FORBIDDEN[layer].includes(target)) breaches.push(`${file} imports ${imported}`)
    }
  }
  t.same(breaches, [], 'no import breaks the layering')
})

t.test('the purchase rules, their words and the job payloads import nothing but each other', async (t) => {
  const outside = PURE.flatMap((file) => importsOf(file).files.filter((f) => !PURE.includes(f)).map((f) => `${file} imports ${f}`))
  t.same(outside, [], 'no I/O, no database, no framework under the rules')
  t.same(PURE.flatMap((file) => importsOf(file).packages.filter((p) => p !== '@sinclair/typebox')), [], 'no package but the payload schemas\' TypeBox')
})

t.test('npm run db:migrate loads no HTTP code and no worker', async (t) => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const { files, packages: used } = importsOf(file)
    for (const p of used) packages.add(p)
    for (const f of files) visit(f)
  }
  visit('app/migrate.ts')
  t.ok(seen.size > 3, `${seen.size} files loaded`)
  t.same([...seen].filter((f) => f.startsWith('server/') || f.startsWith('worker/') || f === 'app/service.ts'), [], 'none of server/, worker/ or the composition root')
  t.same([...packages].filter((p) => p === 'fastify' || p.startsWith('@fastify/')), [], 'no Fastify package')
})

t.test('the production image holds every source folder', async (t) => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
  const copied = new Set([...dockerfile.matchAll(/^COPY\s+(?!--from)(\S+)\s+\.\/\1\s*$/gm)].map((m) => m[1]))
  t.same(SOURCE_DIRS.filter((dir) => !copied.has(dir)), [], 'each of app/, server/, worker/, purchase/, db/, lib/ is copied')
})
