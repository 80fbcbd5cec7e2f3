import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'

// Every relative link in the README, docs/ and bench/README.md names a file or folder that exists,
// and a `#fragment` into a Markdown file names one of its headings. Web links are not checked.

const ROOT = path.join(import.meta.dirname, '..')

function markdownFiles (dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => path.join(dir, file))
}

/** The text outside fenced code blocks, where a `](...)` is not a link. */
const prose = (file: string): string => readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '')

/** GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to dashes. */
function anchors (file: string): Set<string> {
  return new Set([...prose(file).matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) =>
    (m[1] ?? '').trim().toLowerCase().replace(/[^\p{L}\p{N}\- _]/gu, '').replace(/ /g, '-')))
}

const files = ['README.md', 'bench/README.md', ...markdownFiles('docs')]

for (const file of files) {
  t.test(file, async (t) => {
    const absolute = path.join(ROOT, file)
    const targets = [...prose(absolute).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? '')
      .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
    for (const target of targets) {
      const [where = '', fragment] = target.split('#')
      const resolved = where === '' ? absolute : path.join(path.dirname(absolute), decodeURIComponent(where))
      t.ok(existsSync(resolved), `${target}: the file exists`)
      if (fragment !== undefined && existsSync(resolved) && statSync(resolved).isFile() && resolved.endsWith('.md')) {
        t.ok(anchors(resolved).has(fragment), `${target}: the heading exists`)
      }
    }
    t.pass(`${targets.length} relative links`)
  })
}
