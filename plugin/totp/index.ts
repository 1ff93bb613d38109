import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
// @otplib/totp directly: otplib's umbrella verifySync rebuilds its options per call (about 2x slower)
import { generateSync, verifySync, type VerifyResult as TotpVerifyResult } from '@otplib/totp'
import { NodeCryptoPlugin } from '@otplib/plugin-crypto-node'

/** HMAC hash of the TOTP algorithm (RFC 6238 §1.2). */
export type HashAlgorithm = 'sha1' | 'sha256' | 'sha512'

/** TOTP parameters; `window` is the number of steps accepted on each side of the current one. */
export interface TotpParams {
  /** @default 'sha1' */
  algorithm: HashAlgorithm
  /** @default 6 */
  digits: 6 | 7 | 8
  /** Time step in seconds. @default 30 */
  period: number
  /** Steps accepted before and after the current one. @default 1 */
  window: number
}

/** What Google Authenticator honours: SHA1, 6 digits, 30 s, window ±1 (S1). */
export const DEFAULT_TOTP_PARAMS: Readonly<TotpParams> = Object.freeze({
  algorithm: 'sha1',
  digits: 6,
  period: 30,
  window: 1
})

/** Length of a new secret in bytes: 160 bits, RFC 4226 §4's recommendation. */
export const SECRET_BYTES = 20

/** Result of {@link verifyCode}; `delta` is the matched step minus the current step. */
export type VerifyResult = { valid: true, delta: number, timeStep: number } | { valid: false }

/**
 * otplib's node:crypto plugin, minus per-HMAC work the verifier does not need:
 * the algorithm is checked once by otplib before the loop, the digest is used
 * as it comes, and the code comparison stays constant-time.
 */
class HotPathNodeCrypto extends NodeCryptoPlugin {
  override hmac (algorithm: string, key: Uint8Array, data: Uint8Array): Uint8Array {
    return createHmac(algorithm, key).update(data).digest()
  }

  override constantTimeEqual (a: string | Uint8Array, b: string | Uint8Array): boolean {
    const x = typeof a === 'string' ? Buffer.from(a, 'latin1') : a
    const y = typeof b === 'string' ? Buffer.from(b, 'latin1') : b
    return x.length === y.length && timingSafeEqual(x, y)
  }
}
const crypto = new HotPathNodeCrypto()
const INVALID: VerifyResult = Object.freeze({ valid: false })
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const ASCII_DIGITS = /^[0-9]+$/

/** A new random secret from the CSPRNG. @default bytes 20 */
export function generateSecret (bytes: number = SECRET_BYTES): Buffer {
  return randomBytes(bytes)
}

/** RFC 4648 base32, upper case, without padding. */
export function encodeSecret (secret: Uint8Array): string {
  let out = ''
  let value = 0
  let bits = 0
  for (const byte of secret) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += BASE32[(value >>> bits) & 31]
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31]
  return out
}

/** Decodes base32, ignoring case, white space and trailing padding; throws a TypeError when invalid. */
export function decodeSecret (base32: string): Buffer {
  if (typeof base32 !== 'string') throw new TypeError('base32 secret must be a string')
  const text = base32.replace(/\s+/g, '').replace(/=+$/, '').toUpperCase()
  // 1, 3 or 6 characters left over cannot come from whole bytes (RFC 4648 §6).
  if (text.length === 0 || [1, 3, 6].includes(text.length % 8)) {
    throw new TypeError('base32 secret is empty or has an impossible length')
  }
  const out = Buffer.alloc(Math.floor(text.length * 5 / 8))
  let value = 0
  let bits = 0
  let index = 0
  for (let i = 0; i < text.length; i++) {
    const digit = BASE32.indexOf(text[i])
    if (digit < 0) throw new TypeError(`base32 secret has an invalid character at position ${i}`)
    value = (value << 5) | digit
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out[index++] = (value >>> bits) & 0xff
      value &= (1 << bits) - 1
    }
  }
  return out
}

/**
 * The `otpauth://totp/Issuer:account?...` URI of Google's Key Uri Format.
 * Colons are removed from `issuer` and `account` (a colon would split the label),
 * which are then trimmed; a TypeError is thrown if either is left empty or `secret` is not base32.
 */
export function keyUri (o: { issuer: string, account: string, secret: string, params?: TotpParams }): string {
  const issuer = labelPart(o.issuer, 'issuer')
  const account = labelPart(o.account, 'account')
  const secret = encodeSecret(decodeSecret(o.secret))
  const { algorithm, digits, period } = o.params ?? DEFAULT_TOTP_PARAMS
  return `otpauth://totp/${encodeURIComponent(issuer)}:${encodeURIComponent(account)}` +
    `?secret=${secret}&issuer=${encodeURIComponent(issuer)}` +
    `&algorithm=${algorithm.toUpperCase()}&digits=${digits}&period=${period}`
}

function labelPart (value: string, name: string): string {
  const part = typeof value === 'string' ? value.replaceAll(':', '').trim() : ''
  if (part === '') throw new TypeError(`keyUri: ${name} must be a non-empty string`)
  return part
}

/** The RFC 6238 time step T at a time. @default epochSeconds now */
export function timeStepAt (params: TotpParams, epochSeconds: number = Date.now() / 1000): number {
  return Math.floor(epochSeconds / params.period)
}

/** The code of the time step at `epochSeconds`. @default params DEFAULT_TOTP_PARAMS, epochSeconds now */
export function generateCode (secret: Uint8Array, params: TotpParams = DEFAULT_TOTP_PARAMS, epochSeconds: number = Date.now() / 1000): string {
  return generateSync({
    secret,
    crypto,
    algorithm: params.algorithm,
    digits: params.digits,
    period: params.period,
    epoch: epochSeconds
  })
}

/**
 * Checks a code against the steps current ± window, refusing steps <= `afterTimeStep` (RFC 6238 §5.2);
 * never throws for a bad code: anything but exactly `digits` ASCII digits is `{ valid: false }`.
 * @default params DEFAULT_TOTP_PARAMS, opts.epochSeconds now
 */
export function verifyCode (
  secret: Uint8Array,
  code: string,
  params: TotpParams = DEFAULT_TOTP_PARAMS,
  opts: { afterTimeStep?: number, epochSeconds?: number } = {}
): VerifyResult {
  // otplib throws on malformed tokens; same test as its validateToken, answered with { valid: false }.
  if (typeof code !== 'string' || code.length !== params.digits || !ASCII_DIGITS.test(code)) return INVALID
  const epoch = opts.epochSeconds ?? Date.now() / 1000
  let afterTimeStep = opts.afterTimeStep
  if (afterTimeStep !== undefined) {
    // otplib throws when afterTimeStep is past the window; a corrupt (NaN) replay mark fails closed.
    if (Number.isNaN(afterTimeStep) || afterTimeStep >= timeStepAt(params, epoch) + params.window) return INVALID
    afterTimeStep = afterTimeStep < 0 ? undefined : Math.floor(afterTimeStep)
  }
  // Without `strategy`, otplib runs TOTP, whose result carries the matched timeStep.
  const result = verifySync({
    secret,
    token: code,
    crypto,
    algorithm: params.algorithm,
    digits: params.digits,
    period: params.period,
    epoch,
    // otplib's tolerance is in seconds and defaults to 0.
    epochTolerance: params.window * params.period,
    afterTimeStep
  }) as TotpVerifyResult
  if (!result.valid) return INVALID
  return { valid: true, delta: result.delta, timeStep: result.timeStep }
}
