import { generateKeyPairSync, KeyObject, sign } from 'node:crypto'
import { createServer } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { buyerId } from '../../lib/ids.ts'
import { loadConfig } from '../../lib/config.ts'
import { ADMIN_TOKEN, startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { createEvent, newUserId } from '../fixtures/events.ts'
import { request, waitFor } from '../fixtures/http.ts'

// Buyers proven by a token from the seller's identity provider (BUYER_AUTH=jwt), through the real
// HTTP server: keys from a PEM, and from a JWKS served here and rotated.

const ISSUER = 'https://id.example.test/'
const AUDIENCE = 'boxoffice-tests'
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

interface Claims { sub?: string, iss?: string, aud?: string, exp?: number | string, nbf?: number | string }

async function token (key: CryptoKey, alg: string, claims: Claims = {}, kid?: string): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg, ...(kid === undefined ? {} : { kid }) })
    .setIssuer(claims.iss ?? ISSUER).setAudience(claims.aud ?? AUDIENCE).setIssuedAt()
  if (claims.sub !== undefined) jwt.setSubject(claims.sub)
  jwt.setExpirationTime(claims.exp ?? '10m')
  if (claims.nbf !== undefined) jwt.setNotBefore(claims.nbf)
  return await jwt.sign(key)
}

const bearer = (value: string): Record<string, string> => ({ authorization: `Bearer ${value}` })
const base64url = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An ES256 token signed as given, with no library checking what it says (jose would refuse to sign some of these). */
function rawToken (key: CryptoKey, header: object, payload: object, { signatureBytes = 64 } = {}): string {
  const input = `${base64url(header)}.${base64url(payload)}`
  const signature = sign('sha256', Buffer.from(input), { key: KeyObject.from(key), dsaEncoding: 'ieee-p1363' }).subarray(0, signatureBytes)
  return `${input}.${signature.toString('base64url')}`
}

/** A JWKS server on 127.0.0.1 answering `answer()` each time; the URL and how many fetches it served. */
interface JwksAnswer { status: number, type: string, body: string }
async function startJwksServer (t: { teardown: (fn: () => unknown) => void }, answer: () => JwksAnswer): Promise<{ url: string, fetches: () => number }> {
  let fetches = 0
  const server = createServer((_req, res) => {
    fetches++
    const { status, type, body } = answer()
    res.writeHead(status, { 'content-type': type }).end(body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`, fetches: () => fetches }
}

t.test('configuration: BUYER_AUTH=jwt needs an issuer, an audience and exactly one key source', async (t) => {
  t.throws(() => loadConfig({ BUYER_AUTH: 'jwt' }, { dotenv: false }), /BUYER_JWT_ISSUER.*BUYER_JWT_AUDIENCE.*exactly one of BUYER_JWT_PUBLIC_KEY/)
  t.throws(() => loadConfig({ BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: 'x', BUYER_JWT_JWKS_URL: 'https://a/' }, { dotenv: false }), /exactly one/)
  t.equal(loadConfig({}, { dotenv: false }).BUYER_AUTH, 'none')
  const database = await createTestDatabase(t)
  await t.rejects(startTestApp(t, database, { buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: 'not a key' } }),
    /BUYER_JWT_PUBLIC_KEY is not a PEM public key/, 'a key that cannot be used stops the start')
  const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  await t.rejects(startTestApp(t, database, { buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: short } }),
    /an RSA key of 1024 bits/, 'nor does an RSA key shorter than 2048 bits')
})

t.test('buyer tokens checked against a PEM public key', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const pem = await exportSPKI(publicKey)
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, {
    worker: true,
    // One line, as an env file holds it.
    buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: pem.replaceAll('\n', '\\n') }
  })
  const eventId = await createEvent(database.db, 10, 'Tokens', { max_per_user: 2 })
  const alice = await token(privateKey, 'ES256', { sub: 'alice' })
  const bob = await token(privateKey, 'ES256', { sub: 'bob' })
  const aliceId = buyerId(ISSUER, 'alice')

  t.test('a valid token buys as its (iss, sub); the booking is read and cancelled with it; another buyer\'s is a 404', async (t) => {
    const bought = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(alice) })
    t.equal(bought.status, 202)
    t.equal(bought.headers.get('location'), `/bookings/${bought.body.booking_id}?user_id=${aliceId}`, 'the Location names the derived buyer')
    const id = bought.body.booking_id as string
    const read = await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${id}?wait=5`, { headers: bearer(alice) })
      return res.body.status === 'pending' ? undefined : res
    }, { what: 'the decision' })
    t.match(read, { status: 200, body: { booking_id: id, user_id: aliceId, status: 'success' } })
    t.match(await request(base, 'GET', `/bookings/${id}?user_id=${aliceId}`, { headers: bearer(alice) }), { status: 200 }, '?user_id= may name the same buyer')
    t.match(await request(base, 'GET', `/bookings/${id}?user_id=${newUserId()}`, { headers: bearer(alice) }), { status: 403, body: { code: 'BUYER_MISMATCH' } })
    t.match(await request(base, 'GET', `/bookings/${id}`, { headers: bearer(bob) }), { status: 404, body: { code: 'BOOKING_NOT_FOUND' } }, 'another buyer\'s booking')
    t.match(await request(base, 'DELETE', `/bookings/${id}`, { headers: bearer(bob) }), { status: 404 }, 'nor can another buyer cancel it')
    t.match(await request(base, 'GET', `/bookings/${id}?user_id=${aliceId}`), { status: 401, body: { code: 'BUYER_TOKEN_INVALID' } }, '?user_id= alone is no proof any more')
    t.match(await request(base, 'GET', `/bookings/${id}`, { headers: admin }), { status: 200 }, 'the admin reads any booking')
    t.match(await request(base, 'DELETE', `/bookings/${id}`, { headers: bearer(alice) }), { status: 202 })
  })

  t.test('user_id in the body: the derived id is accepted, any other is a 403 and stores nothing', async (t) => {
    t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: aliceId.toUpperCase() }, headers: bearer(alice) })).status, 202)
    const other = await request(base, 'POST', '/buy', { json: { event_id: eventId, user_id: newUserId() }, headers: bearer(alice) })
    t.match(other, { status: 403, body: { code: 'BUYER_MISMATCH' } })
  })

  t.test('an audience list that names us is accepted; a remembered token is refused once it expires', async (t) => {
    const listed = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('dora').setIssuer(ISSUER).setAudience(['another-service', AUDIENCE]).setExpirationTime('10m').sign(privateKey)
    t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(listed) })).status, 202)
    const exp = Math.floor(Date.now() / 1000) + 2
    const brief = await token(privateKey, 'ES256', { sub: 'eve', exp })
    const bought = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(brief) })
    t.equal(bought.status, 202, 'good while it lasts')
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 100))
    const late = await request(base, 'GET', `/bookings/${bought.body.booking_id as string}`, { headers: bearer(brief) })
    t.match(late, { status: 401, body: { code: 'BUYER_TOKEN_INVALID', message: /expired/ } }, 'not served from the cache past its exp')
  })

  t.test('the per-user cap counts the token\'s buyer', async (t) => {
    const carol = await token(privateKey, 'ES256', { sub: 'carol' })
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(carol) })).body.booking_id)
    const outcomes = await Promise.all(ids.map(async (id) => await waitFor(async () => {
      const res = await request(base, 'GET', `/bookings/${id}?wait=5`, { headers: bearer(carol) })
      return res.body.status === 'pending' ? undefined : res.body
    }, { what: 'the decision' })))
    t.same(outcomes.map((o) => o.reason), [null, null, 'limit_exceeded'])
  })

  t.test('every bad token is a 401 that says why, never echoing the token, and stores nothing', async (t) => {
    const { privateKey: stranger } = await generateKeyPair('ES256')
    const { privateKey: rsa } = await generateKeyPair('RS256')
    const hmac = new TextEncoder().encode('a shared secret of thirty-two bytes!!')
    const now = Math.floor(Date.now() / 1000)
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['missing', {}, /missing/],
      ['not a bearer token', { authorization: 'Basic YWxpY2U6cGFzcw==' }, /malformed Authorization/],
      ['malformed', bearer('not.a.jwt'), /malformed token/],
      ['expired', bearer(await token(privateKey, 'ES256', { sub: 'alice', exp: now - 60 })), /expired/],
      ['not valid yet', bearer(await token(privateKey, 'ES256', { sub: 'alice', nbf: now + 3600 })), /not valid yet/],
      ['wrong issuer', bearer(await token(privateKey, 'ES256', { sub: 'alice', iss: 'https://evil.example/' })), /wrong issuer/],
      ['wrong audience', bearer(await token(privateKey, 'ES256', { sub: 'alice', aud: 'another-service' })), /wrong audience/],
      ['no subject', bearer(await token(privateKey, 'ES256')), /sub/],
      // Each claim the service checks must be there: a check that only compares a claim when it is present would let these in.
      ['no issuer', bearer(await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setAudience(AUDIENCE).setExpirationTime('10m').sign(privateKey)), /no iss claim/],
      ['no audience', bearer(await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setIssuer(ISSUER).setExpirationTime('10m').sign(privateKey)), /no aud claim/],
      ['no expiry', bearer(await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setIssuer(ISSUER).setAudience(AUDIENCE).sign(privateKey)), /no exp claim/],
      ['a subject that is not a string', bearer(await new SignJWT({ sub: 42 } as unknown as JWTPayload).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('10m').sign(privateKey)), /sub/],
      ['an audience list without ours', bearer(await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setIssuer(ISSUER).setAudience(['another-service', 'a-third']).setExpirationTime('10m').sign(privateKey)), /wrong audience/],
      ['signed with another key', bearer(await token(stranger, 'ES256', { sub: 'alice' })), /bad signature/],
      ['an RSA key for an EC key', bearer(await token(rsa, 'RS256', { sub: 'alice' })), /algorithm not allowed/],
      ['alg none', bearer(`${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}.`), /algorithm not allowed|not signed|malformed/],
      ['an allowed alg with no signature', bearer(`${base64url({ alg: 'ES256' })}.${base64url({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}.`), /not signed/],
      ['a signature of the wrong length', bearer(rawToken(privateKey, { alg: 'ES256' }, { sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600 }, { signatureBytes: 40 })), /bad signature/],
      ['a critical header we do not know', bearer(rawToken(privateKey, { alg: 'ES256', crit: ['x-must-know'], 'x-must-know': 1 }, { sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })), /malformed/],
      ['an expiry out of any date\'s range', bearer(rawToken(privateKey, { alg: 'ES256' }, { sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: -1e20 })), /expired|malformed/],
      ['an expiry that is not a number', bearer(rawToken(privateKey, { alg: 'ES256' }, { sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: 'tomorrow' })), /exp/],
      ['an iat that is not a number', bearer(rawToken(privateKey, { alg: 'ES256' }, { sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600, iat: 'x' })), /iat/],
      ['a payload that is not an object', bearer(rawToken(privateKey, { alg: 'ES256' }, ['alice'])), /malformed/],
      ['HS256', bearer(await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('10m').sign(hmac)), /algorithm not allowed/]
    ]
    for (const [what, headers, why] of cases) {
      const res = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers })
      t.equal(res.status, 401, what)
      t.equal(res.body.code, 'BUYER_TOKEN_INVALID', what)
      t.match(res.body.message, why, `${what}: ${res.body.message as string}`)
      const sent = headers.authorization?.split(' ')[1]
      if (sent !== undefined && sent.length > 20) t.notOk((res.body.message as string).includes(sent), `${what}: the token is not echoed`)
      const read = await request(base, 'GET', `/bookings/${newUserId()}`, { headers })
      t.match(read, { status: 401, body: { code: 'BUYER_TOKEN_INVALID' } }, `${what}: GET /bookings/:id too`)
    }
    const { rows: [row] } = await database.db.selectFrom('bookings').select((eb) => eb.fn.countAll<string>().as('n'))
      .where('event_id', '=', eventId).where('user_id', 'not in', [aliceId, ...['carol', 'dora', 'eve'].map((sub) => buyerId(ISSUER, sub))]).execute().then((rows) => ({ rows }))
    t.equal(Number(row?.n), 0, 'nothing stored for a refused token')
  })
})

t.test('buyer tokens checked against a JWKS, with the provider rotating its keys', async (t) => {
  const first = await generateKeyPair('RS256')
  const second = await generateKeyPair('EdDSA')
  const jwk = async (key: CryptoKey, kid: string, alg: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' })
  let keys: JWK[] = [await jwk(first.publicKey, 'k1', 'RS256')]
  const jwks = await startJwksServer(t, () => ({ status: 200, type: 'application/json', body: JSON.stringify({ keys }) }))
  const jwksUrl = jwks.url

  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, {
    buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_JWKS_URL: jwksUrl, BUYER_JWT_JWKS_COOLDOWN_MS: 200 }
  })
  const eventId = await createEvent(database.db, 100, 'JWKS')
  const buy = async (jwt: string): Promise<{ status: number, body: any }> => await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(jwt) })

  t.equal((await buy(await token(first.privateKey, 'RS256', { sub: 'dave' }, 'k1'))).status, 202, 'a token signed with the published key')
  t.equal(jwks.fetches(), 1, 'the keys were fetched once')
  t.equal((await buy(await token(first.privateKey, 'RS256', { sub: 'erin' }, 'k1'))).status, 202)
  t.equal(jwks.fetches(), 1, 'and then served from the cache')

  // Rotation: the provider publishes a new key and withdraws the old one.
  keys = [await jwk(second.publicKey, 'k2', 'EdDSA')]
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal((await buy(await token(second.privateKey, 'EdDSA', { sub: 'frank' }, 'k2'))).status, 202, 'a token with the new kid is accepted: the keys are fetched again')
  t.equal(jwks.fetches(), 2)
  const old = await buy(await token(first.privateKey, 'RS256', { sub: 'grace' }, 'k1'))
  t.match(old, { status: 401, body: { code: 'BUYER_TOKEN_INVALID' } }, 'a new token signed with the withdrawn key is refused')
  t.match(old.body.message, /no key/)

  // A flood of made-up kids fetches the keys at most once per cooldown.
  const before = jwks.fetches()
  for (let i = 0; i < 20; i++) t.equal((await buy(await token(second.privateKey, 'EdDSA', { sub: 'mallory' }, `made-up-${i}`))).status, 401)
  t.ok(jwks.fetches() - before <= 2, `${jwks.fetches() - before} fetches for 20 unknown kids`)
})

t.test('the identity provider\'s keys out of reach: 503 with Retry-After, nothing stored, not a 401', async (t) => {
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const port = (closed.address() as AddressInfo).port
  closed.close()
  const { privateKey } = await generateKeyPair('ES256')
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, {
    buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks`, BUYER_JWT_JWKS_COOLDOWN_MS: 0 }
  })
  const eventId = await createEvent(database.db, 1, 'No keys')
  const res = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(await token(privateKey, 'ES256', { sub: 'ivan' }, 'k1')) })
  t.match(res, { status: 503, body: { code: 'BUYER_KEYS_UNAVAILABLE' } })
  t.equal(res.headers.get('retry-after'), '5')
})

t.test('with a JWKS, every bad token is refused as with a PEM key, and a key the set holds but cannot be used is a 401', async (t) => {
  const good = await generateKeyPair('ES256')
  const stranger = await generateKeyPair('ES256')
  const shortRsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const goodJwk = { ...(await exportJWK(good.publicKey)), kid: 'good', alg: 'ES256', use: 'sig' }
  // A point off the P-256 curve: the set is well formed, the key in it cannot be imported.
  const offCurve = { ...goodJwk, kid: 'broken', y: Buffer.alloc(32, 7).toString('base64url') }
  const short = { ...shortRsa.publicKey.export({ format: 'jwk' }), kid: 'short', alg: 'RS256', use: 'sig' }
  const jwks = await startJwksServer(t, () => ({ status: 200, type: 'application/json', body: JSON.stringify({ keys: [goodJwk, offCurve, short] }) }))
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, {
    buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_JWKS_URL: jwks.url, BUYER_JWT_JWKS_COOLDOWN_MS: 30_000 }
  })
  const eventId = await createEvent(database.db, 10, 'JWKS refusals')
  const now = Math.floor(Date.now() / 1000)
  const hmac = new TextEncoder().encode('a shared secret of thirty-two bytes!!')
  const shortToken = `${base64url({ alg: 'RS256', kid: 'short' })}.${base64url({ sub: 'zed', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}`
  const cases: Array<[string, string, RegExp]> = [
    ['malformed', 'not.a.jwt', /malformed/],
    ['alg none', `${base64url({ alg: 'none', kid: 'good' })}.${base64url({ sub: 'zed', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}.`, /algorithm not allowed/],
    ['HS256', await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'good' }).setSubject('zed').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('10m').sign(hmac), /algorithm not allowed/],
    ['signed with another key under the set\'s kid', await token(stranger.privateKey, 'ES256', { sub: 'zed' }, 'good'), /bad signature/],
    ['expired', await token(good.privateKey, 'ES256', { sub: 'zed', exp: now - 60 }, 'good'), /expired/],
    ['wrong issuer', await token(good.privateKey, 'ES256', { sub: 'zed', iss: 'https://evil.example/' }, 'good'), /wrong issuer/],
    ['a key off its curve', await token(stranger.privateKey, 'ES256', { sub: 'zed' }, 'broken'), /not usable/],
    ['an RSA key of 1024 bits', `${shortToken}.${sign('sha256', Buffer.from(shortToken), shortRsa.privateKey).toString('base64url')}`, /not usable/]
  ]
  for (const [what, jwt, why] of cases) {
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(jwt) })
    t.match(res, { status: 401, body: { code: 'BUYER_TOKEN_INVALID', message: why } }, `${what}: ${res.body.message as string}`)
  }
  t.equal((await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(await token(good.privateKey, 'ES256', { sub: 'zed' }, 'good')) })).status, 202, 'while a good token is accepted')
  t.equal(jwks.fetches(), 1, 'the set fetched once for all of them')
})

t.test('a JWKS that answers an error or not a JWKS is the provider\'s fault: 503, not 401', async (t) => {
  const { privateKey } = await generateKeyPair('ES256')
  const answers = [
    { status: 500, type: 'text/plain', body: 'Internal Server Error' },
    { status: 200, type: 'text/html', body: '<html>maintenance</html>' },
    { status: 200, type: 'application/json', body: '{"keys": "none"}' }
  ]
  for (const answer of answers) {
    const jwks = await startJwksServer(t, () => answer)
    const database = await createTestDatabase(t)
    const { base } = await startTestApp(t, database, {
      buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_JWKS_URL: jwks.url, BUYER_JWT_JWKS_COOLDOWN_MS: 0 }
    })
    const eventId = await createEvent(database.db, 1, 'Provider down')
    const res = await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(await token(privateKey, 'ES256', { sub: 'ivan' }, 'k1')) })
    t.match(res, { status: 503, body: { code: 'BUYER_KEYS_UNAVAILABLE' } }, `${answer.status} ${answer.type}`)
    t.equal(jwks.fetches(), 1)
  }
})
