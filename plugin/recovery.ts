import { createHmac, hkdfSync, randomBytes } from 'node:crypto'
import type { KeyRing } from './crypto/seal.js'
import type { UserRef } from './types.js'

// R9 recovery codes: 10 characters of a 32-character alphabet without look-alikes (no 0, o,
// 1, l): 50 bits from the CSPRNG, shown as `abcde-fghij`. Stored only as keyed hashes.
const ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789'
const LENGTH = 10
const SHAPE = new RegExp(`^[${ALPHABET}]{${LENGTH}}$`)
const INFO = 'fastify-totp/recovery-codes/v1'

/** `count` new codes, each shown as `abcde-fghij`. */
export function generateRecoveryCodes (count: number): string[] {
  const codes: string[] = []
  for (let n = 0; n < count; n++) {
    // 256 is a multiple of 32: each character is uniform
    const chars = [...randomBytes(LENGTH)].map((b) => ALPHABET[b & 31]).join('')
    codes.push(`${chars.slice(0, 5)}-${chars.slice(5)}`)
  }
  return codes
}

/** The code as stored: case, spaces and dashes forgiven; null for anything of another shape. */
export function normalizeRecoveryCode (input: string): string | null {
  const code = input.toLowerCase().replace(/[\s-]/g, '')
  return SHAPE.test(code) ? code : null
}

// A key for the hashes, derived from each encryption key (never the sealing key itself).
const derived = new WeakMap<KeyRing, Map<string, Buffer>>()
function hashKey (ring: KeyRing, keyId: string): Buffer {
  let keys = derived.get(ring)
  if (keys === undefined) derived.set(ring, keys = new Map())
  let key = keys.get(keyId)
  if (key === undefined) {
    key = Buffer.from(hkdfSync('sha256', ring.keys.get(keyId)!, Buffer.alloc(0), INFO, 32))
    keys.set(keyId, key)
  }
  return key
}

// `keyId:base64url(HMAC-SHA256)`, bound to tenant, user and the secret's generation: a Redis
// dump allows no offline guess, a hash copied to another user's set matches nothing there, and
// a set left behind by an earlier secret matches nothing under the next one.
const hash = (ring: KeyRing, keyId: string, ref: UserRef, gen: number, code: string): string =>
  `${keyId}:${createHmac('sha256', hashKey(ring, keyId)).update(JSON.stringify([ref.tenant, ref.userId, gen, code]))
    .digest('base64url')}`

/** What a new set for the secret of generation `gen` stores: each code's hash under the current key. */
export const recoveryHashes = (ring: KeyRing, ref: UserRef, gen: number, codes: string[]): string[] =>
  codes.map((c) => hash(ring, ring.current, ref, gen, normalizeRecoveryCode(c)!))

/** What a code may be stored as: its hash under every key of the ring (a set made before a rotation). */
export const recoveryCandidates = (ring: KeyRing, ref: UserRef, gen: number, code: string): string[] =>
  [...ring.keys.keys()].map((id) => hash(ring, id, ref, gen, code))
