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

t.test('configuration: BUYER_AUTH=jwt needs an issuer, an audience and exactly one key source', async (t) => {
  t.throws(() => loadConfig({ BUYER_AUTH: 'jwt' }, { dotenv: false }), /BUYER_JWT_ISSUER.*BUYER_JWT_AUDIENCE.*exactly one of BUYER_JWT_PUBLIC_KEY/)
  t.throws(() => loadConfig({ BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: 'x', BUYER_JWT_JWKS_URL: 'https://a/' }, { dotenv: false }), /exactly one/)
  t.equal(loadConfig({}, { dotenv: false }).BUYER_AUTH, 'none')
  const database = await createTestDatabase(t)
  await t.rejects(startTestApp(t, database, { buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: 'not a key' } }),
    /BUYER_JWT_PUBLIC_KEY is not a PEM public key/, 'a key that cannot be used stops the start')
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
      ['alg none', bearer(`${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}.`), /algorithm not allowed|malformed/],
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
      .where('event_id', '=', eventId).where('user_id', 'not in', [aliceId, buyerId(ISSUER, 'carol')]).execute().then((rows) => ({ rows }))
    t.equal(Number(row?.n), 0, 'nothing stored for a refused token')
  })
})

t.test('buyer tokens checked against a JWKS, with the provider rotating its keys', async (t) => {
  const first = await generateKeyPair('RS256')
  const second = await generateKeyPair('EdDSA')
  const jwk = async (key: CryptoKey, kid: string, alg: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' })
  let keys: JWK[] = [await jwk(first.publicKey, 'k1', 'RS256')]
  let fetches = 0
  const server = createServer((_req, res) => {
    fetches++
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`

  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database, {
    buyerAuth: { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_JWKS_URL: jwksUrl, BUYER_JWT_JWKS_COOLDOWN_MS: 200 }
  })
  const eventId = await createEvent(database.db, 100, 'JWKS')
  const buy = async (jwt: string): Promise<{ status: number, body: any }> => await request(base, 'POST', '/buy', { json: { event_id: eventId }, headers: bearer(jwt) })

  t.equal((await buy(await token(first.privateKey, 'RS256', { sub: 'dave' }, 'k1'))).status, 202, 'a token signed with the published key')
  t.equal(fetches, 1, 'the keys were fetched once')
  t.equal((await buy(await token(first.privateKey, 'RS256', { sub: 'erin' }, 'k1'))).status, 202)
  t.equal(fetches, 1, 'and then served from the cache')

  // Rotation: the provider publishes a new key and withdraws the old one.
  keys = [await jwk(second.publicKey, 'k2', 'EdDSA')]
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal((await buy(await token(second.privateKey, 'EdDSA', { sub: 'frank' }, 'k2'))).status, 202, 'a token with the new kid is accepted: the keys are fetched again')
  t.equal(fetches, 2)
  const old = await buy(await token(first.privateKey, 'RS256', { sub: 'grace' }, 'k1'))
  t.match(old, { status: 401, body: { code: 'BUYER_TOKEN_INVALID' } }, 'a new token signed with the withdrawn key is refused')
  t.match(old.body.message, /no key/)

  // A flood of made-up kids fetches the keys at most once per cooldown.
  const before = fetches
  for (let i = 0; i < 20; i++) t.equal((await buy(await token(second.privateKey, 'EdDSA', { sub: 'mallory' }, `made-up-${i}`))).status, 401)
  t.ok(fetches - before <= 2, `${fetches - before} fetches for 20 unknown kids`)
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
