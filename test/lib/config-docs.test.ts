import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ConfigSchema } from '../../lib/config.ts'

// The schema is the one list of variables; docs/configuration.md's table and .env.example are
// checked against it, so neither can gain, lose or misstate a variable without this failing.

const ROOT = path.join(import.meta.dirname, '..', '..')
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8')

/** Each schema variable and its default as the docs write it: the value, or `unset` for none. */
const schemaDefaults = new Map(Object.entries(ConfigSchema.properties).map(([name, schema]) => {
  const value = (schema as { default?: string | number | boolean }).default
  return [name, value === undefined ? 'unset' : String(value)]
}))

/** Rows of the table whose header is `| variable | default | meaning |`: name -> default. */
function documentedDefaults (markdown: string): Map<string, string> {
  const lines = markdown.split('\n')
  const header = lines.findIndex((line) => /^\|\s*variable\s*\|\s*default\s*\|/.test(line))
  const rows = new Map<string, string>()
  if (header === -1) return rows
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break
    const [name = '', value = ''] = line.split('|').slice(1, 3).map((cell) => cell.trim().replace(/^`|`$/g, ''))
    rows.set(name, value)
  }
  return rows
}

t.test('docs/configuration.md: one row per schema variable, with its default', async (t) => {
  const rows = documentedDefaults(read('docs/configuration.md'))
  t.ok(rows.size > 0, 'the table is found')
  for (const [name, value] of schemaDefaults) {
    t.ok(rows.has(name), `${name} has a row`)
    if (rows.has(name)) t.equal(rows.get(name), value, `${name}: the documented default is the schema's`)
  }
  for (const name of rows.keys()) t.ok(schemaDefaults.has(name), `${name} is a variable of the schema`)
})

t.test('.env.example: every schema variable once, set to its default or left empty', async (t) => {
  const lines = [...read('.env.example').matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)]
  const names = lines.map((m) => m[1])
  t.same([...names].sort(), [...schemaDefaults.keys()].sort(), 'the same variables, each once')
  for (const [, name = '', value = ''] of lines) {
    const expected = schemaDefaults.get(name)
    if (expected !== undefined) t.equal(value === '' ? 'unset' : value, expected, `${name}: the example's value is the default`)
  }
})
