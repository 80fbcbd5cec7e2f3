import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'

// Every relative link in the README, docs/ and bench/README.md names a file or folder that exists.
// Web links and in-page anchors are not checked.

const ROOT = path.join(import.meta.dirname, '..')

function markdownFiles (dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => path.join(dir, file))
}

const files = ['README.md', 'bench/README.md', ...markdownFiles('docs')]

for (const file of files) {
  t.test(file, async (t) => {
    const text = readFileSync(path.join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '')
    const targets = [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? '')
      .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#'))
    for (const target of targets) {
      const resolved = path.join(path.dirname(path.join(ROOT, file)), decodeURIComponent(target.split('#')[0] ?? ''))
      t.ok(existsSync(resolved), `${target} exists`)
    }
    t.pass(`${targets.length} relative links`)
  })
}
