import { createPublicKey, hash, KeyObject } from 'node:crypto'
import { createVerifier, TokenError } from 'fast-jwt'
import { createRemoteJWKSet, decodeProtectedHeader, errors, type CryptoKey } from 'jose'
import type { Config } from '../lib/config.ts'
import { buyerId } from '../lib/ids.ts'
import { AppError } from './errors.ts'

// Buyers proven by the seller's identity provider (BUYER_AUTH=jwt): a bearer token, verified
// against the provider's public key or its JWKS, names the buyer by (iss, sub), from which the
// service derives the buyer's user_id (lib/ids.ts, buyerId). docs/api.md, "Buyer identity".
// fast-jwt checks tokens (node:crypto, synchronous); jose finds the provider's keys in its JWKS
// (fetch, cache, cooldown). Why two libraries: docs/decisions/0014-buyer-token-verification.md.

/** Asymmetric algorithms only: `none` and HMAC (a shared secret anyone holding it could sign with) are refused. */
export const BUYER_TOKEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const
type BuyerTokenAlgorithm = typeof BUYER_TOKEN_ALGORITHMS[number]

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

/** A token's verified claims (signature, algorithm, iss, aud, exp, nbf); throws fast-jwt's TokenError. */
type TokenCheck = (token: string) => { sub?: unknown, exp?: unknown, iat?: unknown }

const invalid = (why: string, cause?: unknown): AppError =>
  new AppError('BUYER_TOKEN_INVALID', { message: `Invalid buyer token: ${why}. Send Authorization: Bearer <a token from the identity provider>`, cause })
const notAllowed = (): AppError => invalid(`algorithm not allowed (only ${BUYER_TOKEN_ALGORITHMS.join(', ')})`)
const unusableKey = (cause?: unknown): AppError =>
  invalid('the identity provider\'s key it names is not usable (not RS256 with 2048 bits or more, ES256 or EdDSA)', cause)

/** Why fast-jwt refused a token, in words that never repeat the token. */
function refusal (err: unknown): AppError {
  // The check reads nothing but the token: whatever else it throws (a date out of range, say) is
  // the token's doing, not a fault of ours.
  if (!(err instanceof TokenError)) return invalid('malformed token', err)
  // fast-jwt names the claim only in its message ("The iss claim value is not allowed.", "None of
  // aud claim values are allowed."); the tests pin each wording we rely on.
  const claim = /\b(\w+) claim\b/.exec(err.message)?.[1]
  switch (err.code) {
    case TokenError.codes.expired: return invalid('it has expired')
    case TokenError.codes.inactive: return invalid('it is not valid yet')
    case TokenError.codes.invalidAlgorithm: return notAllowed()
    case TokenError.codes.missingSignature: return invalid('it is not signed')
    case TokenError.codes.invalidSignature:
    case TokenError.codes.verifyError: return invalid('bad signature')
    case TokenError.codes.missingRequiredClaim: return claim === 'sub' ? invalid('it names no subject (sub)') : invalid(`it has no ${claim ?? 'required'} claim`)
    case TokenError.codes.invalidClaimValue:
    case TokenError.codes.invalidClaimType:
      if (claim === 'iss') return invalid('wrong issuer')
      if (claim === 'aud') return invalid('wrong audience')
      return invalid(claim === undefined ? 'a claim is not acceptable' : `its ${claim} claim is not acceptable`)
    default: return invalid('malformed token')
  }
}

/** Checks tokens signed with one key, for the one allowed algorithm its type signs with. */
function checkFor (key: KeyObject, algorithm: BuyerTokenAlgorithm, issuer: string, audience: string): TokenCheck {
  return createVerifier({
    key: key.export({ type: 'spki', format: 'pem' }).toString(),
    algorithms: [algorithm],
    allowedIss: issuer,
    allowedAud: audience,
    // fast-jwt checks a claim's value only when the claim is there: iss and aud must be required.
    requiredClaims: ['iss', 'aud', 'exp', 'sub'],
    // Our own cache below keeps the buyer, not the claims.
    cache: false
  })
}

/** RSA keys shorter than this are refused, as jose and NIST SP 800-131A do. */
const MIN_RSA_BITS = 2048

/** The one allowed algorithm a public key signs with, or undefined for any other key. */
function algorithmOf (key: KeyObject): BuyerTokenAlgorithm | undefined {
  if (key.asymmetricKeyType === 'rsa') return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= MIN_RSA_BITS ? 'RS256' : undefined
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  return undefined
}

/** The check for BUYER_JWT_PUBLIC_KEY; throws when it is not a PEM public key of an allowed type. */
function pemCheck (config: BuyerAuthConfig, issuer: string, audience: string): TokenCheck {
  // One line in an env file: "\n" escapes stand for the PEM's line breaks.
  const pem = (config.BUYER_JWT_PUBLIC_KEY as string).replaceAll('\\n', '\n')
  let key
  try {
    key = createPublicKey(pem)
  } catch (err) {
    throw new Error(`BUYER_JWT_PUBLIC_KEY is not a PEM public key: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  const algorithm = algorithmOf(key)
  if (algorithm === undefined) {
    const what = key.asymmetricKeyType === 'rsa' ? `an RSA key of ${key.asymmetricKeyDetails?.modulusLength ?? '?'} bits` : `a ${key.asymmetricKeyType ?? 'symmetric'} key`
    throw new Error(`BUYER_JWT_PUBLIC_KEY is ${what}; RS256 (RSA, ${MIN_RSA_BITS} bits or more), ES256 (EC P-256) and EdDSA (Ed25519) keys are accepted`)
  }
  return checkFor(key, algorithm, issuer, audience)
}

/** Why a key could not be found for a token in the provider's JWKS. */
function keyRefusal (err: unknown): AppError {
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return invalid('no key of the identity provider matches it')
  // The provider's keys could not be fetched: no answer, a refused connection (TypeError from
  // fetch), an answer other than 200, or not a JWKS. Not the client's fault.
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || err instanceof TypeError ||
    (err instanceof errors.JOSEError && err.code === errors.JOSEError.code)) {
    return new AppError('BUYER_KEYS_UNAVAILABLE', { cause: err })
  }
  // The key the token names is in the set but cannot be used: jose refused to import it, or
  // WebCrypto did (DOMException), e.g. an EC point off its curve.
  if (err instanceof errors.JOSEError || err instanceof DOMException) return unusableKey(err)
  throw err
}

/**
 * The check for BUYER_JWT_JWKS_URL: the token's header names its key (kid, alg), jose finds it in
 * the provider's JWKS, and each key found gets its own check, kept while jose keeps the key.
 */
function jwksCheck (config: BuyerAuthConfig, issuer: string, audience: string): (token: string) => Promise<ReturnType<TokenCheck>> {
  // Fetched when first needed, cached, and fetched again on a kid it does not know, at most once
  // per cooldown (an unknown kid must not become a way to make us hammer the provider).
  const keys = createRemoteJWKSet(new URL(config.BUYER_JWT_JWKS_URL as string), {
    cooldownDuration: config.BUYER_JWT_JWKS_COOLDOWN_MS, timeoutDuration: 5000
  })
  const checks = new WeakMap<CryptoKey, TokenCheck>()
  return async (token) => {
    let header
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw invalid('malformed token')
    }
    const alg = header.alg as BuyerTokenAlgorithm
    if (!BUYER_TOKEN_ALGORITHMS.includes(alg)) throw notAllowed()
    let key: CryptoKey
    try {
      // jose's key lookup reads only the header; the token's parts are not needed to pick a key.
      key = await keys({ ...header, alg }, { payload: '', signature: '' })
    } catch (err) {
      throw keyRefusal(err)
    }
    let check = checks.get(key)
    if (check === undefined) {
      const publicKey = KeyObject.from(key)
      // jose picked a key whose type fits the header's alg; a short RSA key is refused here.
      if (algorithmOf(publicKey) !== alg) throw unusableKey()
      check = checkFor(publicKey, alg, issuer, audience)
      checks.set(key, check)
    }
    return check(token)
  }
}

/**
 * The verifier for BUYER_AUTH=jwt, undefined for `none`. Throws at once when the configured key is
 * not a usable PEM public key, so a misconfigured service does not start.
 */
export async function createBuyerVerifier (config: BuyerAuthConfig): Promise<BuyerVerifier | undefined> {
  if (config.BUYER_AUTH !== 'jwt') return undefined
  const issuer = config.BUYER_JWT_ISSUER as string
  const audience = config.BUYER_JWT_AUDIENCE as string
  const check = config.BUYER_JWT_JWKS_URL !== undefined ? jwksCheck(config, issuer, audience) : pemCheck(config, issuer, audience)
  const verified = new Map<string, { buyer: string, until: number }>()

  return {
    async verify (authorization) {
      if (authorization === undefined || authorization === '') throw invalid('missing')
      const token = BEARER.exec(authorization)?.[1]
      if (token === undefined) throw invalid('malformed Authorization header')
      const now = Date.now()
      const digest = hash('sha256', token, 'base64')
      const known = verified.get(digest)
      if (known !== undefined && now < known.until) return known.buyer
      let claims
      try {
        claims = await check(token)
      } catch (err) {
        if (err instanceof AppError) throw err
        throw refusal(err)
      }
      if (typeof claims.sub !== 'string' || claims.sub === '') throw invalid('it names no subject (sub)')
      if (typeof claims.exp !== 'number') throw invalid('its exp claim is not a number')
      // fast-jwt reads iat only to enforce a maximum age, which we do not set; a malformed one is still refused.
      if (claims.iat !== undefined && typeof claims.iat !== 'number') throw invalid('its iat claim is not a number')
      const buyer = buyerId(issuer, claims.sub)
      if (verified.size >= CACHE_MAX_TOKENS) verified.clear()
      verified.set(digest, { buyer, until: Math.min(claims.exp * 1000, now + CACHE_MAX_MS) })
      return buyer
    }
  }
}
