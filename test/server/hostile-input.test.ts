import { STATUS_CODES } from 'node:http'
import net from 'node:net'
import t from 'tap'
import { sql } from 'kysely'
import { JOBS } from '../../db/pgboss-tables.ts'
import type { Db } from '../../db/client.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request } from '../fixtures/http.ts'

// A corpus of malformed and adversarial requests, sent over a real socket to the live server.
// Every one must be refused with a 4xx in the API's error shape, and none may store anything.

interface RequestSpec {
  name: string
  method: string
  /** The request target exactly as sent: no normalisation, no encoding. */
  path: string
  /** Sent in this order, duplicates kept; a Buffer value goes out byte for byte. */
  headers?: ReadonlyArray<readonly [string, string | Buffer]>
  body?: string | Buffer
  /** false: no Content-Length is added (the case frames the body itself). */
  contentLength?: false
  /** HTTP/1.1 unless given. */
  version?: string
}

interface HostileCase extends RequestSpec {
  status: number
  /**
   * The error code. MALFORMED_REQUEST and HEADERS_TOO_LARGE: Node's HTTP parser refused the request
   * before Fastify routed it (server/errors.ts clientErrorHandler answers those).
   */
  code: string
  /** The `error` label when it is not the status's own text. */
  error?: string
}

interface RawResponse { status: number, headers: Map<string, string>, body: string }

/**
 * Writes the request's bytes to a fresh connection exactly as given (fetch and node:http refuse
 * control characters in headers, and normalise `..` and invalid bytes out of URLs) and reads the
 * first response, also when the server closes the connection right after answering.
 */
async function send (port: number, c: RequestSpec): Promise<RawResponse> {
  const body = c.body === undefined ? Buffer.alloc(0) : Buffer.from(c.body)
  const head: Buffer[] = [Buffer.from(`${c.method} ${c.path} ${c.version ?? 'HTTP/1.1'}\r\nhost: 127.0.0.1\r\nconnection: close\r\n`, 'latin1')]
  for (const [name, value] of c.headers ?? []) head.push(Buffer.from(`${name}: `, 'latin1'), Buffer.from(value), Buffer.from('\r\n'))
  if (c.contentLength !== false && c.body !== undefined) head.push(Buffer.from(`content-length: ${body.length}\r\n`))
  head.push(Buffer.from('\r\n'))
  const bytes = Buffer.concat([...head, body])
  return await new Promise<RawResponse>((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect(port, '127.0.0.1')
    const timer = setTimeout(() => { socket.destroy(new Error('no answer within 10 s')) }, 10_000)
    const finish = (err?: Error): void => {
      clearTimeout(timer)
      const parsed = parseResponse(Buffer.concat(chunks))
      if (parsed !== undefined) resolve(parsed)
      else reject(err ?? new Error(`no complete HTTP response: ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`))
    }
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      // Answered (say 413) while the rest of the request is still being written: stop sending.
      if (parseResponse(Buffer.concat(chunks)) !== undefined) socket.destroy()
    })
    // A reset after the answer (the server drops a connection it refused) is not a failure.
    socket.on('error', (err) => { finish(err) })
    socket.on('close', () => { finish() })
    // Not end(): Node's HTTP server drops a request whose client half-closes before the answer.
    socket.write(bytes)
  })
}

function parseResponse (data: Buffer): RawResponse | undefined {
  const end = data.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = data.subarray(0, end).toString('latin1').split('\r\n')
  const headers = new Map<string, string>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  const length = Number(headers.get('content-length') ?? NaN)
  const rest = data.subarray(end + 4)
  if (!Number.isInteger(length) || rest.length < length) return undefined
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.subarray(0, length).toString('utf8') }
}

/** Everything the corpus could have written: row counts, and a digest of every row's content. */
async function snapshot (db: Db): Promise<Record<string, string>> {
  const { rows } = await sql<Record<string, string>>`
    SELECT (SELECT count(*) FROM events)::text AS events,
           (SELECT count(*) FROM bookings)::text AS bookings,
           (SELECT count(*) FROM ${JOBS})::text AS jobs,
           (SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY e.id), '')) FROM events e) AS events_digest,
           (SELECT md5(coalesce(string_agg(b::text, '|' ORDER BY b.id), '')) FROM bookings b) AS bookings_digest,
           (SELECT md5(coalesce(string_agg(j.id::text || j.state::text, '|' ORDER BY j.id), '')) FROM ${JOBS} j) AS jobs_digest`.execute(db)
  return rows[0] ?? {}
}

const SQL = "'; DROP TABLE bookings; --"
const UNKNOWN = '00000000-0000-4000-8000-000000000000'
const BODY_LIMIT = 16 * 1024

/** The corpus: `event` and `booking` exist (the booking belongs to `user`). */
function corpus ({ event, booking, user }: { event: string, booking: string, user: string }): HostileCase[] {
  const json = [['content-type', 'application/json']] as const
  const admin = ['authorization', `Bearer ${ADMIN_TOKEN}`] as const
  const adminJson = [...json, admin] as const
  const buyBody = (fields: Record<string, unknown>): string => JSON.stringify({ event_id: event, user_id: user, ...fields })
  const buy = (name: string, body: string | Buffer, status: number, code: string, headers: HostileCase['headers'] = json): HostileCase =>
    ({ name: `POST /buy: ${name}`, method: 'POST', path: '/buy', headers, body, status, code })
  const createEventCase = (name: string, body: string, status: number, code: string, headers: HostileCase['headers'] = adminJson): HostileCase =>
    ({ name: `POST /events: ${name}`, method: 'POST', path: '/events', headers, body, status, code })
  const patch = (name: string, body: string, status: number, code: string, { id = event, headers = adminJson }: { id?: string, headers?: HostileCase['headers'] } = {}): HostileCase =>
    ({ name: `PATCH /events/:id: ${name}`, method: 'PATCH', path: `/events/${id}`, headers, body, status, code })
  const get = (name: string, path: string, status: number, code: string, headers: HostileCase['headers'] = []): HostileCase =>
    ({ name: `GET ${path.length > 60 ? `${path.slice(0, 60)}...` : path}: ${name}`, method: 'GET', path, headers, status, code })
  const del = (name: string, path: string, status: number, code: string, headers: HostileCase['headers'] = []): HostileCase =>
    ({ name: `DELETE ${path.length > 60 ? `${path.slice(0, 60)}...` : path}: ${name}`, method: 'DELETE', path, headers, status, code })
  const close = (name: string, path: string, status: number, code: string, headers: HostileCase['headers'] = []): HostileCase =>
    ({ name: `POST ${path}: ${name}`, method: 'POST', path, headers, status, code })
  // The text with `marker` replaced by raw bytes (invalid UTF-8 cannot be written in a JS string).
  const bytesIn = (text: string, marker: string, bytes: number[]): Buffer => {
    const at = text.indexOf(marker)
    return Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from(bytes), Buffer.from(text.slice(at + marker.length))])
  }
  const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
  const ids = [
    ['SQL', SQL],
    ['a uuid followed by SQL', `${UNKNOWN}' OR '1'='1`],
    ['a NUL byte', `${UNKNOWN}\u0000`],
    ['an RTL override', `\u202e${UNKNOWN}`],
    ['a zero-width space', `${UNKNOWN}\u200b`],
    ['an emoji', '\u{1f3ab}\u{1f3ab}'],
    ['fullwidth digits', '\uff10'.repeat(8) + UNKNOWN.slice(8)],
    ['a Cyrillic homoglyph', `${UNKNOWN.slice(0, 35)}\u0430`],
    ['a lone surrogate', `${UNKNOWN.slice(0, 35)}\ud800`],
    ['braces', `{${UNKNOWN}}`],
    ['path traversal', '../../../etc/passwd'],
    ['16,000 characters', 'a'.repeat(16_000)]
  ] as const
  const numbers = [
    ['negative', '-1'], ['zero', '0'], ['negative zero', '-0'], ['fractional', '1.5'], ['tiny', '1e-7'],
    ['enormous', '1e308'], ['past double range (Infinity)', '1e400'], ['negative past range', '-1e400'],
    ['past 2^53', '9007199254740993'], ['a 40-digit integer', '1' + '0'.repeat(39)], ['an exponent over the maximum', '1e8'],
    ['"NaN"', '"NaN"'], ['"Infinity"', '"Infinity"'], ['a numeric string', '"2"'], ['a hex string', '"0x10"'],
    ['null', 'null'], ['true', 'true'], ['an array', '[1]'], ['an object', '{"$gt":0}'], ['an empty string', '""']
  ] as const
  // Valid JSON numbers for every field would be stored; these are invalid JSON instead.
  const notJsonNumbers = [['NaN', 'NaN'], ['Infinity', 'Infinity'], ['hex', '0x10'], ['a leading plus', '+1'], ['leading zeros', '007'], ['a bare minus', '-']] as const
  // Percent-encoded as a browser would; a lone surrogate cannot be, so it becomes U+FFFD.
  const path = (id: string): string => encodeURIComponent(id.toWellFormed())

  const cases: HostileCase[] = [
    // Broken JSON.
    buy('truncated JSON', '{"event_id": ', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('a trailing comma', buyBody({}).replace(/}$/, ',}'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('single quotes', `{'event_id': '${event}', 'user_id': '${user}'}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('unquoted keys', `{event_id: "${event}", user_id: "${user}"}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('a comment', `/* hi */${buyBody({})}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('two documents back to back', buyBody({}) + buyBody({}), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('an invalid escape', buyBody({}).replace('"user_id"', '"user\\x5fid"'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('a raw NUL byte inside a string', buyBody({}).replace(user, `${user}\u0000`), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('an empty body', '', 400, 'FST_ERR_CTP_EMPTY_JSON_BODY'),
    buy('whitespace only', ' \r\n\t ', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('a bare string', '"buy"', 400, 'VALIDATION_FAILED'),
    buy('null', 'null', 400, 'VALIDATION_FAILED'),
    buy('a number', '1', 400, 'VALIDATION_FAILED'),
    createEventCase('truncated JSON', '{"name":"Hostile","total_quota":', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    patch('truncated JSON', '{"name":', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    { ...close('a broken JSON body', `/events/${event}/close`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY', adminJson), body: '{"force":' },
    { ...del('a broken JSON body', `/bookings/${booking}?user_id=${user}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY', json), body: '{"reason":' },
    // Deeply nested JSON: 10,000 levels cannot fit the body limit; 8,000 can and reach the parser.
    buy('arrays nested 10,000 levels', nested(10_000), 413, 'FST_ERR_CTP_BODY_TOO_LARGE'),
    buy('arrays nested 8,000 levels', nested(8_000), 400, 'VALIDATION_FAILED'),
    buy('8,000 unclosed arrays', '['.repeat(8_000), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('objects nested 2,500 levels in a field', `{"event_id":${'{"a":'.repeat(2_500)}1${'}'.repeat(2_500)},"user_id":"${user}"}`, 400, 'VALIDATION_FAILED'),
    createEventCase('arrays nested 8,000 levels as the name', `{"name":${nested(8_000)},"total_quota":10}`, 400, 'VALIDATION_FAILED'),
    patch('objects nested 2,500 levels as max_per_user', `{"max_per_user":${'{"a":'.repeat(2_500)}1${'}'.repeat(2_500)}}`, 400, 'VALIDATION_FAILED'),
    buy('arrays nested 7,900 levels in a field', buyBody({ quantity: 0 }).replace('0}', `${nested(7_900)}}`), 400, 'VALIDATION_FAILED'),
    // Huge bodies, around the 16 KB limit.
    buy('a body exactly at the limit', buyBody({ padding: '' }).replace('""', `"${'x'.repeat(BODY_LIMIT - buyBody({ padding: '' }).length)}"`), 400, 'VALIDATION_FAILED'),
    buy('a body one byte over the limit', buyBody({ padding: '' }).replace('""', `"${'x'.repeat(BODY_LIMIT + 1 - buyBody({ padding: '' }).length)}"`), 413, 'FST_ERR_CTP_BODY_TOO_LARGE'),
    createEventCase('a 16,000-character name', JSON.stringify({ name: 'n'.repeat(16_000), total_quota: 10 }), 400, 'VALIDATION_FAILED'),
    patch('a 16,000-character name', JSON.stringify({ name: 'n'.repeat(16_000) }), 400, 'VALIDATION_FAILED'),
    patch('a 1 MB name', JSON.stringify({ name: 'n'.repeat(1024 * 1024) }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE'),
    buy('a 1 MB body', buyBody({ padding: 'x'.repeat(1024 * 1024) }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE'),
    { ...buy('a 1 MB body, chunked', `${(1024 * 1024).toString(16)}\r\n${'x'.repeat(1024 * 1024)}\r\n0\r\n\r\n`, 413, 'FST_ERR_CTP_BODY_TOO_LARGE', [...json, ['transfer-encoding', 'chunked']]), contentLength: false },
    { ...buy('a Content-Length of 10 GB', buyBody({}), 413, 'FST_ERR_CTP_BODY_TOO_LARGE', [...json, ['content-length', String(10 * 1024 ** 3)]]), contentLength: false },
    // The bytes past the declared length are parsed as a second request, and refused at once.
    { ...buy('a Content-Length shorter than the body', buyBody({}), 400, 'MALFORMED_REQUEST', [...json, ['content-length', '10']]), contentLength: false },
    { ...buy('two different Content-Lengths', buyBody({}), 400, 'MALFORMED_REQUEST', [...json, ['content-length', '10'], ['content-length', String(buyBody({}).length)]]), contentLength: false },
    { ...buy('Content-Length and Transfer-Encoding together (request smuggling)', `0\r\n\r\n${buyBody({})}`, 400, 'MALFORMED_REQUEST', [...json, ['transfer-encoding', 'chunked'], ['content-length', String(`0\r\n\r\n${buyBody({})}`.length)]]), contentLength: false },
    // Wrong and missing content types.
    buy('no content type', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', []),
    buy('text/plain', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'text/plain']]),
    buy('a form', `event_id=${event}&user_id=${user}`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'application/x-www-form-urlencoded']]),
    buy('multipart', `--x\r\ncontent-disposition: form-data; name="event_id"\r\n\r\n${event}\r\n--x--`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'multipart/form-data; boundary=x']]),
    buy('XML', `<buy event_id="${event}" user_id="${user}"/>`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'application/xml']]),
    buy('application/jsonx', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'application/jsonx']]),
    buy('an empty content type', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', '']]),
    buy('a 10 KB content type', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', `application/${'x'.repeat(10 * 1024)}`]]),
    buy('text/plain first, then application/json', buyBody({}), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'text/plain'], ...json]),
    createEventCase('text/plain', '{"name":"Hostile","total_quota":10}', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'text/plain'], admin]),
    createEventCase('no content type', '{"name":"Hostile","total_quota":10}', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [admin]),
    patch('no content type', '{"name":"Renamed"}', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', { headers: [admin] }),
    patch('a form', 'name=Renamed', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', { headers: [['content-type', 'application/x-www-form-urlencoded'], admin] }),
    { ...close('a text/plain body', `/events/${event}/close`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'text/plain'], admin]), body: 'close it' },
    { ...del('a text/plain body', `/bookings/${booking}?user_id=${user}`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', [['content-type', 'text/plain']]), body: 'cancel it' },
    buy('UTF-16 bytes declared as JSON', Buffer.from(buyBody({}), 'utf16le'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    // Unicode tricks in the body.
    ...ids.flatMap(([what, id]) => [
      buy(`event_id with ${what}`, buyBody({ event_id: id }), 400, 'VALIDATION_FAILED'),
      buy(`user_id with ${what}`, buyBody({ user_id: id }), 400, 'VALIDATION_FAILED')
    ]),
    buy('an overlong UTF-8 "/" in user_id', bytesIn(buyBody({ user_id: '@' }), '@', [0xc0, 0xaf]), 400, 'VALIDATION_FAILED'),
    buy('invalid UTF-8 bytes as a key', bytesIn(buyBody({ '@': 1 }), '@', [0xff, 0xfe, 0xfd]), 400, 'VALIDATION_FAILED'),
    buy('invalid UTF-8 bytes outside strings', bytesIn(`@${buyBody({})}`, '@', [0xef, 0xbb]), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('an encoded surrogate (CESU-8) in event_id', bytesIn(buyBody({ event_id: '@' }), '@', [0xed, 0xa0, 0x80]), 400, 'VALIDATION_FAILED'),
    buy('a UTF-8 BOM before an invalid purchase', `\ufeff${buyBody({ quantity: 0 })}`, 400, 'VALIDATION_FAILED'),
    // Numbers.
    ...numbers.flatMap(([what, value]) => [
      buy(`quantity ${what}`, buyBody({ quantity: 0 }).replace('"quantity":0', `"quantity":${value}`), 400, 'VALIDATION_FAILED'),
      buy(`max_wait_seconds ${what}`, buyBody({ max_wait_seconds: 0 }).replace('"max_wait_seconds":0', `"max_wait_seconds":${value}`), 400, 'VALIDATION_FAILED'),
      createEventCase(`total_quota ${what}`, `{"name":"Hostile","total_quota":${value}}`, 400, 'VALIDATION_FAILED'),
      createEventCase(`max_per_user ${what}`, `{"name":"Hostile","total_quota":10,"max_per_user":${value}}`, 400, 'VALIDATION_FAILED'),
      patch(`total_quota ${what}`, `{"total_quota":${value}}`, 400, 'VALIDATION_FAILED'),
      // null clears the cap: valid in a PATCH.
      ...value === 'null' ? [] : [patch(`max_per_user ${what}`, `{"max_per_user":${value}}`, 400, 'VALIDATION_FAILED')]
    ]),
    buy('quantity 11, written 1.1e1', buyBody({ quantity: 0 }).replace('"quantity":0', '"quantity":1.1e1'), 400, 'VALIDATION_FAILED'),
    buy('max_wait_seconds one over a day, written 8.6401e4', buyBody({ max_wait_seconds: 0 }).replace('"max_wait_seconds":0', '"max_wait_seconds":8.6401e4'), 400, 'VALIDATION_FAILED'),
    ...notJsonNumbers.map(([what, value]) => buy(`quantity ${what} (not JSON)`, buyBody({ quantity: 0 }).replace('"quantity":0', `"quantity":${value}`), 400, 'FST_ERR_CTP_INVALID_JSON_BODY')),
    // Prototype pollution.
    buy('__proto__ setting quantity', buyBody({}).replace('{', '{"__proto__":{"quantity":5},'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('__proto__ written with unicode escapes', buyBody({}).replace('{', '{"\\u005f_pro\\u0074o__":{"admin":true},'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('constructor.prototype', buyBody({}).replace('{', '{"constructor":{"prototype":{"quantity":5}},'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    buy('a constructor key', buyBody({}).replace('{', '{"constructor":1,'), 400, 'VALIDATION_FAILED'),
    buy('__proto__ nested in a field', buyBody({ quantity: 0 }).replace('"quantity":0', '"quantity":{"__proto__":{"x":1}}'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    createEventCase('__proto__ setting max_per_user', '{"name":"Hostile","total_quota":10,"__proto__":{"max_per_user":1}}', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    patch('constructor.prototype', '{"name":"x","constructor":{"prototype":{"total_quota":1}}}', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'),
    // Arrays where objects are expected, and duplicate keys (the last one wins, and is invalid).
    buy('an empty array', '[]', 400, 'VALIDATION_FAILED'),
    buy('an array holding a valid purchase', `[${buyBody({})}]`, 400, 'VALIDATION_FAILED'),
    buy('event_id as an array', buyBody({ event_id: [event] }), 400, 'VALIDATION_FAILED'),
    buy('user_id as an object', buyBody({ user_id: { id: user } }), 400, 'VALIDATION_FAILED'),
    createEventCase('an array of events', '[{"name":"Hostile","total_quota":10}]', 400, 'VALIDATION_FAILED'),
    patch('an array', '[{"name":"x"}]', 400, 'VALIDATION_FAILED'),
    patch('an empty object', '{}', 400, 'VALIDATION_FAILED'),
    buy('a duplicate quantity, the last one 0', buyBody({ quantity: 1 }).replace('}', ',"quantity":0}'), 400, 'VALIDATION_FAILED'),
    buy('a duplicate user_id, the last one SQL', buyBody({}).replace('}', `,"user_id":${JSON.stringify(SQL)}}`), 400, 'VALIDATION_FAILED'),
    createEventCase('a duplicate total_quota, the last one a string', '{"name":"Hostile","total_quota":10,"total_quota":"10"}', 400, 'VALIDATION_FAILED'),
    // SQL-looking strings everywhere a string goes.
    createEventCase('SQL as the name, no token', JSON.stringify({ name: SQL, total_quota: 10 }), 401, 'UNAUTHORIZED', json),
    createEventCase('SQL as sales_open_at', JSON.stringify({ name: 'Hostile', total_quota: 10, sales_open_at: SQL }), 400, 'VALIDATION_FAILED'),
    createEventCase('SQL as sales_close_at', JSON.stringify({ name: 'Hostile', total_quota: 10, sales_close_at: `2026-12-01T10:00:00Z${SQL}` }), 400, 'VALIDATION_FAILED'),
    createEventCase('SQL as total_quota', JSON.stringify({ name: 'Hostile', total_quota: SQL }), 400, 'VALIDATION_FAILED'),
    createEventCase('SQL as a key', JSON.stringify({ name: 'Hostile', total_quota: 10, [SQL]: 1 }), 400, 'VALIDATION_FAILED'),
    patch('SQL as the name, reaching the database (unknown event)', JSON.stringify({ name: SQL }), 404, 'EVENT_NOT_FOUND', { id: UNKNOWN }),
    patch('SQL as sales_close_at', JSON.stringify({ sales_close_at: SQL }), 400, 'VALIDATION_FAILED'),
    patch('SQL as max_per_user', JSON.stringify({ max_per_user: SQL }), 400, 'VALIDATION_FAILED'),
    buy('SQL as the Idempotency-Key, reaching the database (unknown event)', buyBody({ event_id: UNKNOWN }), 404, 'EVENT_NOT_FOUND', [...json, ['idempotency-key', SQL]]),
    buy('SQL as quantity', buyBody({ quantity: SQL }), 400, 'VALIDATION_FAILED'),
    // Names: control characters are refused; other unicode is a valid name, refused here for the token.
    createEventCase('a NUL byte in the name', JSON.stringify({ name: 'Con\u0000cert', total_quota: 10 }), 400, 'VALIDATION_FAILED'),
    createEventCase('an escape sequence in the name', JSON.stringify({ name: 'Concert\u001b[2J', total_quota: 10 }), 400, 'VALIDATION_FAILED'),
    createEventCase('a blank name of wide spaces', JSON.stringify({ name: '\u3000\u3000', total_quota: 10 }), 400, 'VALIDATION_FAILED'),
    createEventCase('a 201-character emoji name', JSON.stringify({ name: '\u{1f3ab}'.repeat(201), total_quota: 10 }), 400, 'VALIDATION_FAILED'),
    createEventCase('an RTL override in the name, no token', JSON.stringify({ name: 'Concert \u202egnp.exe', total_quota: 10 }), 401, 'UNAUTHORIZED', json),
    patch('a DEL character in the name', JSON.stringify({ name: 'Con\u007fcert' }), 400, 'VALIDATION_FAILED'),
    patch('an RTL override in the name (unknown event)', JSON.stringify({ name: '\u202eConcert' }), 404, 'EVENT_NOT_FOUND', { id: UNKNOWN }),
    // Ids in paths.
    ...ids.filter(([what]) => what !== '16,000 characters').flatMap(([what, id]) => [
      get(`an id with ${what}`, `/bookings/${path(id)}?user_id=${user}`, 400, 'VALIDATION_FAILED'),
      get(`an id with ${what}`, `/events/${path(id)}`, 400, 'VALIDATION_FAILED'),
      del(`an id with ${what}`, `/bookings/${path(id)}?user_id=${user}`, 400, 'VALIDATION_FAILED'),
      patch(`an id with ${what}`, '{"name":"x"}', 400, 'VALIDATION_FAILED', { id: path(id) }),
      close(`an id with ${what}`, `/events/${path(id)}/close`, 400, 'VALIDATION_FAILED', [admin])
    ]),
    get('an id over 100 characters', `/bookings/${'a'.repeat(101)}`, 414, 'FST_ERR_MAX_PARAM_LENGTH'),
    get('an id of 8 KB', `/events/${'a'.repeat(8 * 1024)}`, 414, 'FST_ERR_MAX_PARAM_LENGTH'),
    get('invalid percent-encoding', '/bookings/%ZZ', 400, 'FST_ERR_BAD_URL'),
    get('a truncated percent-encoded character', '/events/%E0%A4%A', 400, 'FST_ERR_BAD_URL'),
    get('a percent-encoded overlong "/"', '/events/%C0%AF', 400, 'FST_ERR_BAD_URL'),
    get('a percent-encoded NUL', '/events/%00', 400, 'VALIDATION_FAILED'),
    get('a percent-encoded surrogate (CESU-8)', '/bookings/%ED%A0%80', 400, 'FST_ERR_BAD_URL'),
    get('raw UTF-8 emoji bytes in the path', `/bookings/${Buffer.from('\u{1f3ab}').toString('latin1')}`, 400, 'MALFORMED_REQUEST'),
    get('an uppercase uuid with a trailing newline (encoded)', `/events/${event.toUpperCase()}%0A`, 400, 'VALIDATION_FAILED'),
    // Path traversal.
    get('dot segments', '/bookings/../events', 404, 'ROUTE_NOT_FOUND'),
    get('an encoded traversal', `/bookings/${path('../../etc/passwd')}`, 400, 'VALIDATION_FAILED'),
    get('encoded dots', '/events/%2e%2e', 400, 'VALIDATION_FAILED'),
    get('a traversal to the events list', `/events/${event}/../../events`, 404, 'ROUTE_NOT_FOUND'),
    get('backslashes', '/bookings/..\\..\\windows\\win.ini', 400, 'VALIDATION_FAILED'),
    get('an encoded slash inside the id', `/events/${event}%2Fclose`, 400, 'VALIDATION_FAILED'),
    get('a semicolon parameter', `/bookings/${booking};user_id=${user}`, 400, 'VALIDATION_FAILED'),
    get('a traversal out of health', '/health/../events', 404, 'ROUTE_NOT_FOUND'),
    get('an encoded NUL after health', '/health%00', 404, 'ROUTE_NOT_FOUND'),
    get('a double slash', '//events', 404, 'ROUTE_NOT_FOUND'),
    close('dot segments back to /buy', `/events/${event}/close/../../../buy`, 404, 'ROUTE_NOT_FOUND', [admin]),
    del('dot segments', `/bookings/${booking}/..?user_id=${user}`, 404, 'ROUTE_NOT_FOUND'),
    // Query strings.
    ...[['31', '31'], ['-1', '-1'], ['1e1', '1e1'], ['NaN', 'NaN'], ['a fraction', '1.5'], ['SQL', encodeURIComponent(SQL)], ['an encoded NUL', '1%00'], ['a leading zero', '01'], ['spaces', '%201']].map(([what, value]) =>
      get(`?wait= ${what}`, `/bookings/${booking}?user_id=${user}&wait=${value}`, 400, 'VALIDATION_FAILED')),
    get('?wait= twice', `/bookings/${booking}?user_id=${user}&wait=1&wait=2`, 400, 'VALIDATION_FAILED'),
    get('?wait[]=', `/bookings/${booking}?user_id=${user}&wait[]=1`, 400, 'VALIDATION_FAILED'),
    get('an unknown parameter', `/bookings/${booking}?user_id=${user}&debug=1`, 400, 'VALIDATION_FAILED'),
    get('?__proto__[wait]=', `/bookings/${booking}?user_id=${user}&__proto__[wait]=30`, 400, 'VALIDATION_FAILED'),
    // ?user_id= abuse, on reading and on cancelling (both ask for it).
    ...[del, get].flatMap((send) => [
      send('?user_id= SQL', `/bookings/${booking}?user_id=${encodeURIComponent(SQL)}`, 400, 'VALIDATION_FAILED'),
      send('?user_id= an emoji', `/bookings/${booking}?user_id=${encodeURIComponent('\u{1f3ab}')}`, 400, 'VALIDATION_FAILED'),
      send('?user_id= with an encoded NUL', `/bookings/${booking}?user_id=${user}%00`, 400, 'VALIDATION_FAILED'),
      send('?user_id= twice', `/bookings/${booking}?user_id=${user}&user_id=${user}`, 400, 'VALIDATION_FAILED'),
      send('?user_id= empty', `/bookings/${booking}?user_id=`, 400, 'VALIDATION_FAILED'),
      send('no ?user_id= and no token', `/bookings/${booking}`, 400, 'BOOKING_OWNER_REQUIRED'),
      send('?__proto__=', `/bookings/${booking}?__proto__=${user}`, 400, 'VALIDATION_FAILED'),
      send('?constructor=', `/bookings/${booking}?user_id=${user}&constructor=1`, 400, 'VALIDATION_FAILED'),
      send('an unknown booking', `/bookings/${UNKNOWN}?user_id=${user}`, 404, 'BOOKING_NOT_FOUND')
    ]),
    // Another user: not allowed to cancel it, and not even told that it exists when reading it.
    del('?user_id= of another user', `/bookings/${booking}?user_id=${UNKNOWN}`, 404, 'BOOKING_NOT_FOUND'),
    get('?user_id= of another user', `/bookings/${booking}?user_id=${UNKNOWN}`, 404, 'BOOKING_NOT_FOUND'),
    get('?user_id= of another user, waiting', `/bookings/${booking}?user_id=${UNKNOWN}&wait=30`, 404, 'BOOKING_NOT_FOUND'),
    get('a 12 KB query string', `/bookings/${booking}?user_id=${user}&${'x'.repeat(12 * 1024)}=1`, 400, 'VALIDATION_FAILED'),
    get('a 20 KB query string', `/events?${'x'.repeat(20 * 1024)}=1`, 431, 'HEADERS_TOO_LARGE'),
    // The operators' check of the books: its query and its token.
    ...[
      ['event_id SQL', `event_id=${encodeURIComponent(SQL)}`], ['event_id an emoji', `event_id=${encodeURIComponent('\u{1f3ab}')}`],
      ['event_id with an encoded NUL', `event_id=${event}%00`], ['event_id twice', `event_id=${event}&event_id=${event}`],
      ['limit 0', 'limit=0'], ['limit 1001', 'limit=1001'], ['limit -1', 'limit=-1'], ['limit 1e3', 'limit=1e3'], ['limit 1.5', 'limit=1.5'],
      ['limit NaN', 'limit=NaN'], ['limit 40 digits', `limit=${'9'.repeat(40)}`], ['limit SQL', `limit=${encodeURIComponent(`1; ${SQL}`)}`],
      ['limit[]', 'limit[]=1'], ['an unknown parameter', 'all=true'], ['?__proto__=', '__proto__=1']
    ].map(([what, query]) => get(`?${String(what)}`, `/admin/invariants?${String(query)}`, 400, 'VALIDATION_FAILED', [admin])),
    get('an unknown event', `/admin/invariants?event_id=${UNKNOWN}`, 404, 'EVENT_NOT_FOUND', [admin]),
    get('dot segments', '/admin/invariants/../../events', 404, 'ROUTE_NOT_FOUND', [admin]),
    get('a trailing slash', '/admin/invariants/', 404, 'ROUTE_NOT_FOUND', [admin]),
    get('another path under /admin', '/admin/../admin/invariants', 404, 'ROUTE_NOT_FOUND', [admin]),
    // Authorization abuse on the admin routes (and on the bookings' GET and DELETE, which take the admin token too).
    ...[
      ['no token', undefined],
      ['Basic', `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`],
      ['Bearer with nothing', 'Bearer'],
      ['Bearer and spaces', 'Bearer    '],
      ['another scheme', `Token ${ADMIN_TOKEN}`],
      ['the token with a suffix', `Bearer ${ADMIN_TOKEN}x`],
      ['a prefix of the token', `Bearer ${ADMIN_TOKEN.slice(0, -1)}`],
      ['SQL', `Bearer ' OR '1'='1' --`],
      ['the token twice', `Bearer ${ADMIN_TOKEN} ${ADMIN_TOKEN}`],
      ['a 10 KB token', `Bearer ${'a'.repeat(10 * 1024)}`],
      ['non-ASCII bytes', Buffer.from(`Bearer \u202e${ADMIN_TOKEN}`)]
    ].flatMap(([what, value]) => {
      const headers = value === undefined ? [] : [['authorization', value] as const]
      return [
        close(`authorization: ${String(what)}`, `/events/${event}/close`, 401, 'UNAUTHORIZED', headers),
        patch(`authorization: ${String(what)}`, '{"name":"Renamed"}', 401, 'UNAUTHORIZED', { headers: [...json, ...headers] }),
        createEventCase(`authorization: ${String(what)}`, '{"name":"Hostile","total_quota":10}', 401, 'UNAUTHORIZED', [...json, ...headers]),
        get(`authorization: ${String(what)}`, '/admin/invariants', 401, 'UNAUTHORIZED', headers),
        // With the buyer's own user_id: a token that is not the admin's is refused, not ignored.
        ...value === undefined ? [] : [del, get].map((send) => send(`authorization: ${String(what)}`, `/bookings/${booking}?user_id=${user}`, 401, 'UNAUTHORIZED', headers))
      ]
    }),
    close('an authorization header with a NUL byte', `/events/${event}/close`, 400, 'MALFORMED_REQUEST', [['authorization', Buffer.from(`Bearer ${ADMIN_TOKEN}\u0000`)]]),
    close('an authorization header with CR in it', `/events/${event}/close`, 400, 'MALFORMED_REQUEST', [['authorization', Buffer.from(`Bearer ${ADMIN_TOKEN}\rx`)]]),
    close('the admin token against an unknown event', `/events/${UNKNOWN}/close`, 404, 'EVENT_NOT_FOUND', [admin]),
    // Idempotency-Key abuse (each with a valid purchase: the key alone must stop it).
    ...[
      ['a tab', 'order\t1'],
      ['a 10 KB key', 'k'.repeat(10 * 1024)],
      ['256 characters', 'k'.repeat(256)],
      ['an empty key', ''],
      ['non-ASCII bytes', Buffer.from('ключ-\u{1f3ab}')],
      ['Latin-1 bytes', Buffer.from([0x6b, 0xe9, 0x79])]
    ].map(([what, key]) => buy(`Idempotency-Key with ${String(what)}`, buyBody({}), 400, 'VALIDATION_FAILED', [...json, ['idempotency-key', key as string | Buffer]])),
    ...[
      ['a NUL byte', Buffer.from('order\u00001')],
      ['a bell character', Buffer.from('order\u00071')],
      ['an escape character', Buffer.from('order\u001b[31m')],
      ['a bare CR', Buffer.from('order\r1')],
      ['a DEL character', Buffer.from('order\u007f1')]
    ].map(([what, key]) => buy(`Idempotency-Key with ${String(what)}`, buyBody({}), 400, 'MALFORMED_REQUEST', [...json, ['idempotency-key', key as Buffer]])),
    // Other header abuse.
    get('a 20 KB header', '/health', 431, 'HEADERS_TOO_LARGE', [['x-junk', 'j'.repeat(20 * 1024)]]),
    get('2,000 headers (over 16 KB in all)', '/events', 431, 'HEADERS_TOO_LARGE', Array.from({ length: 2_000 }, (_, i) => [`x-h-${i}`, 'vvvv'] as const)),
    buy('500 headers and an invalid body', buyBody({ quantity: 0 }), 400, 'VALIDATION_FAILED', [...json, ...Array.from({ length: 500 }, (_, i) => [`x-h-${i}`, 'v'] as const)]),
    get('a space in a header name', '/health', 400, 'MALFORMED_REQUEST', [['x bad', '1']]),
    get('an obsolete folded header', `/events/${event}`, 400, 'MALFORMED_REQUEST', [['x-folded', 'a\r\n b']]),
    get('a header without a colon', '/health', 400, 'MALFORMED_REQUEST', [['x-no-colon\r\nx', '1']]),
    // Wrong HTTP methods, and methods and versions the parser refuses.
    ...([
      ['/buy', ['GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE']],
      [`/bookings/${booking}`, ['POST', 'PUT', 'PATCH', 'OPTIONS']],
      ['/events', ['PUT', 'PATCH', 'DELETE', 'OPTIONS']],
      [`/events/${event}`, ['POST', 'PUT', 'DELETE', 'OPTIONS']],
      [`/events/${event}/close`, ['GET', 'PUT', 'PATCH', 'DELETE']],
      ['/health', ['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND']],
      ['/admin/invariants', ['POST', 'PUT', 'PATCH', 'DELETE']]
    ] satisfies Array<[string, string[]]>).flatMap(([route, methods]) => methods.map((method): HostileCase =>
      ({ name: `${method} ${route}: a method the route does not have`, method, path: route, headers: [admin], status: 404, code: 'ROUTE_NOT_FOUND' }))),
    { name: 'FOO /health: a method HTTP does not have', method: 'FOO', path: '/health', status: 400, code: 'MALFORMED_REQUEST' },
    { name: 'GET /health over HTTP/9.9', method: 'GET', path: '/health', version: 'HTTP/9.9', status: 400, code: 'MALFORMED_REQUEST' },
    { name: 'POST /buy as an absolute URL to another host, with an invalid body', method: 'POST', path: 'http://evil.example/buy', headers: json, body: buyBody({ quantity: 0 }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'OPTIONS *', method: 'OPTIONS', path: '*', status: 404, code: 'ROUTE_NOT_FOUND' }
  ]
  return cases
}

/**
 * Odd but harmless requests that are answered normally: parameters and headers a route does not
 * use are ignored there, ids are case-insensitive, and HTTP allows absolute URLs and old versions.
 * Read-only, so they too must leave the data as it was.
 */
function acceptedAsNormal ({ event, booking, user }: { event: string, booking: string, user: string }): Array<RequestSpec & { status: number }> {
  return [
    { name: 'GET /events?name= SQL (no query parameters there: ignored)', method: 'GET', path: `/events?name=${encodeURIComponent(SQL)}`, status: 200 },
    { name: 'GET /health?SQL', method: 'GET', path: `/health?${encodeURIComponent(SQL)}`, status: 200 },
    { name: 'GET /events/:id?SQL', method: 'GET', path: `/events/${event}?${encodeURIComponent(SQL)}=1`, status: 200 },
    { name: 'GET /events/:id with the id in upper case', method: 'GET', path: `/events/${event.toUpperCase()}`, status: 200 },
    { name: 'GET /bookings/:id with the user_id in upper case', method: 'GET', path: `/bookings/${booking}?user_id=${user.toUpperCase()}`, status: 200 },
    { name: 'GET /bookings/:id with the admin token and another user_id', method: 'GET', path: `/bookings/${booking}?user_id=${UNKNOWN}`, headers: [['authorization', `Bearer ${ADMIN_TOKEN}`]], status: 200 },
    { name: 'GET /events with a Basic authorization', method: 'GET', path: '/events', headers: [['authorization', 'Basic Zm9vOmJhcg==']], status: 200 },
    { name: 'GET /events/:id as an absolute URL to another host', method: 'GET', path: `http://evil.example/events/${event}`, status: 200 },
    { name: 'GET /health over HTTP/1.0', method: 'GET', path: '/health', version: 'HTTP/1.0', status: 200 },
    { name: 'GET /health over HTTP/0.9', method: 'GET', path: '/health', version: 'HTTP/0.9', status: 200 },
    { name: 'GET /events with a body', method: 'GET', path: '/events', headers: [['content-type', 'application/json']], body: '{"name": "\'; DROP TABLE events; --"', status: 200 }
  ]
}

t.test('hostile input: every malformed or adversarial request gets a 4xx in the error shape, and stores nothing', async (t) => {
  const database = await createTestDatabase(t)
  const { db } = database
  const { app, base } = await startTestApp(t, database)
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const event = await createEvent(db, 10, 'Hostile Input')
  const user = newUserId()
  const stored = await request(base, 'POST', '/buy', { json: { event_id: event, user_id: user } })
  t.equal(stored.status, 202, 'a booking to aim at')
  const booking: string = stored.body.booking_id
  const cases = corpus({ event, booking, user })
  const before = await snapshot(db)

  t.test(`the corpus (${cases.length} requests)`, async (t) => {
    const names = new Set<string>()
    for (const c of cases) {
      if (names.has(c.name)) throw new Error(`two cases are named "${c.name}"`)
      names.add(c.name)
      t.test(c.name, async (t) => {
        const res = await send(port, c)
        t.ok(res.status >= 400 && res.status < 500, `a 4xx (${res.status})`)
        t.equal(res.status, c.status, `status ${c.status}`)
        t.match(res.headers.get('content-type'), /^application\/json/, 'JSON')
        t.equal(res.headers.get('x-content-type-options'), 'nosniff', 'the security headers, even on a refusal before routing')
        let body: unknown
        t.doesNotThrow(() => { body = JSON.parse(res.body) }, 'the body parses')
        t.match(body, { statusCode: res.status, error: c.error ?? STATUS_CODES[res.status], message: /./ }, 'the error shape')
        const keys = Object.keys(body as object).sort()
        t.same(keys, ['code', 'error', 'message', 'statusCode'], 'no other fields')
        t.equal((body as { code?: unknown }).code, c.code, c.code)
      })
    }
  })

  t.test('odd but harmless requests are answered normally', async (t) => {
    for (const c of acceptedAsNormal({ event, booking, user })) {
      const res = await send(port, c)
      t.equal(res.status, c.status, c.name)
      t.doesNotThrow(() => JSON.parse(res.body), `${c.name}: JSON`)
    }
  })

  t.test('afterwards, nothing was stored and nothing changed', async (t) => {
    t.same(await snapshot(db), before)
  })

  t.test('afterwards, the server still takes a normal purchase', async (t) => {
    const res = await request(base, 'POST', '/buy', { json: { event_id: event, user_id: newUserId(), quantity: 2 } })
    t.equal(res.status, 202)
    const followed = await request(base, 'GET', res.headers.get('location') ?? '')
    t.match(followed, { status: 200, body: { event_id: event, quantity: 2, status: 'pending' } })
    const after = await snapshot(db)
    t.same([Number(after.events), Number(after.bookings), Number(after.jobs)], [Number(before.events), Number(before.bookings) + 1, Number(before.jobs) + 1],
      'one booking and one job more, exactly')
    const health = await request(base, 'GET', '/health')
    t.same([health.status, health.body], [200, { status: 'ok' }])
  })
})
