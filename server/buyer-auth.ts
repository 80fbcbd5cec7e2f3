import { createHash, createPublicKey } from 'node:crypto'
import { createRemoteJWKSet, errors, importSPKI, jwtVerify, type CryptoKey, type JWTVerifyGetKey } from 'jose'
import type { Config } from '../lib/config.ts'
import { buyerId } from '../lib/ids.ts'
import { AppError } from './errors.ts'

// Buyers proven by the seller's identity provider (BUYER_AUTH=jwt): a bearer token, verified with
// jose against the provider's public key or its JWKS, names the buyer by (iss, sub), from which the
// service derives the buyer's user_id (lib/ids.ts, buyerId). docs/api.md, "Buyer identity".

/** Asymmetric algorithms only: `none` and HMAC (a shared secret anyone holding it could sign with) are refused. */
export const BUYER_TOKEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const

// Verified tokens are kept until they expire (at most this long, at most this many, by their
// SHA-256: a few MB): a crowd polling its bookings sends the same token again and again. A token is
// never kept past its exp; one whose key the provider has since withdrawn stays good for as long.
const CACHE_MAX_MS = 10 * 60_000
const CACHE_MAX_TOKENS = 50_000

const BEARER = /^bearer +(\S+) *$/i

export interface BuyerVerifier {
  /** The buyer's user_id from an `Authorization: Bearer <token>` header; throws BUYER_TOKEN_INVALID (or BUYER_KEYS_UNAVAILABLE). */
  verify: (authorization: string | undefined) => Promise<string>
}

type BuyerAuthConfig = Pick<Config, 'BUYER_AUTH' | 'BUYER_JWT_ISSUER' | 'BUYER_JWT_AUDIENCE' | 'BUYER_JWT_PUBLIC_KEY' | 'BUYER_JWT_JWKS_URL' | 'BUYER_JWT_JWKS_COOLDOWN_MS'>

const invalid = (why: string): AppError => new AppError('BUYER_TOKEN_INVALID', { message: `Invalid buyer token: ${why}. Send Authorization: Bearer <a token from the identity provider>` })

/** Why jose refused a token, in words that never repeat the token. */
function refusal (err: unknown, fetchingKeys: boolean): AppError {
  if (err instanceof errors.JWTExpired) return invalid('it has expired')
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return invalid('it is not valid yet')
    if (err.claim === 'iss') return invalid('wrong issuer')
    if (err.claim === 'aud') return invalid('wrong audience')
    if (err.claim === 'sub') return invalid('it names no subject (sub)')
    return invalid(`its ${err.claim} claim is not acceptable`)
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return invalid(`algorithm not allowed (only ${BUYER_TOKEN_ALGORITHMS.join(', ')})`)
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('bad signature')
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return invalid('no key of the identity provider matches it')
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof TypeError && fetchingKeys)) {
    // The provider's keys could not be fetched: not the client's fault.
    return new AppError('BUYER_KEYS_UNAVAILABLE', { cause: err })
  }
  if (err instanceof errors.JOSEError) return invalid('malformed token')
  // WebCrypto's own refusal: an algorithm of another key type than the provider's key (RS256 against an EC key).
  if (err instanceof DOMException) return invalid('its algorithm does not fit the identity provider\'s key')
  throw err
}

/** The one allowed algorithm a PEM public key signs with; throws for any other key. */
function algorithmOf (pem: string): typeof BUYER_TOKEN_ALGORITHMS[number] {
  let key
  try {
    key = createPublicKey(pem)
  } catch (err) {
    throw new Error(`BUYER_JWT_PUBLIC_KEY is not a PEM public key: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  if (key.asymmetricKeyType === 'rsa') return 'RS256'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  throw new Error(`BUYER_JWT_PUBLIC_KEY is a ${key.asymmetricKeyType ?? 'symmetric'} key; RS256 (RSA), ES256 (EC P-256) and EdDSA (Ed25519) keys are accepted`)
}

/**
 * The verifier for BUYER_AUTH=jwt, undefined for `none`. Throws at once when the configured key is
 * not a usable PEM public key, so a misconfigured service does not start.
 */
export async function createBuyerVerifier (config: BuyerAuthConfig): Promise<BuyerVerifier | undefined> {
  if (config.BUYER_AUTH !== 'jwt') return undefined
  const issuer = config.BUYER_JWT_ISSUER as string
  const audience = config.BUYER_JWT_AUDIENCE as string
  let key: CryptoKey | JWTVerifyGetKey
  let algorithms: string[] = [...BUYER_TOKEN_ALGORITHMS]
  if (config.BUYER_JWT_JWKS_URL !== undefined) {
    // Fetched when first needed, cached, and fetched again on a kid it does not know, at most once
    // per cooldown (an unknown kid must not become a way to make us hammer the provider).
    key = createRemoteJWKSet(new URL(config.BUYER_JWT_JWKS_URL), { cooldownDuration: config.BUYER_JWT_JWKS_COOLDOWN_MS, timeoutDuration: 5000 })
  } else {
    // One line in an env file: "\n" escapes stand for the PEM's line breaks.
    const pem = (config.BUYER_JWT_PUBLIC_KEY as string).replaceAll('\\n', '\n')
    // Imported once, for the one algorithm its type signs with: a key object handed to jose on
    // every call cost about twice the CPU of a first token's check.
    const alg = algorithmOf(pem)
    key = await importSPKI(createPublicKey(pem).export({ type: 'spki', format: 'pem' }).toString(), alg)
    algorithms = [alg]
  }
  const verified = new Map<string, { buyer: string, until: number }>()

  return {
    async verify (authorization) {
      if (authorization === undefined || authorization === '') throw invalid('missing')
      const token = BEARER.exec(authorization)?.[1]
      if (token === undefined) throw invalid('malformed Authorization header')
      const now = Date.now()
      const digest = createHash('sha256').update(token).digest('base64')
      const known = verified.get(digest)
      if (known !== undefined && now < known.until) return known.buyer
      let payload: { sub?: string, exp?: number }
      try {
        ({ payload } = await jwtVerify(token, key as JWTVerifyGetKey, { issuer, audience, algorithms, requiredClaims: ['exp', 'sub'] }))
      } catch (err) {
        throw refusal(err, config.BUYER_JWT_JWKS_URL !== undefined)
      }
      const buyer = buyerId(issuer, payload.sub as string)
      if (verified.size >= CACHE_MAX_TOKENS) verified.clear()
      verified.set(digest, { buyer, until: Math.min((payload.exp as number) * 1000, now + CACHE_MAX_MS) })
      return buyer
    }
  }
}
