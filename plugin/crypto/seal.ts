import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

/** Key ring as given in options: the id of the sealing key and every key that may open. */
export interface KeyRingInput {
  /** Id of the key new seals use. */
  current: string
  /** Keys by id: 32 bytes, as a Buffer or base64. */
  keys: Record<string, Buffer | string>
}

/** A checked key ring (see {@link createKeyRing}). */
export interface KeyRing {
  readonly current: string
  readonly keys: ReadonlyMap<string, Buffer>
}

/** Where a secret is sealed: a ciphertext opens only with the same tenant, user id and purpose (S2). */
export interface SealContext {
  tenant: string
  userId: string
  purpose: string
}

/** A sealed value cannot be opened: unknown key id, malformed text, wrong context or tampering. */
export class SealError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'SealError'
  }
}

const ALGORITHM = 'aes-256-gcm'
const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16
const AAD_LABEL = 'fastify-totp/seal/v1'
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/
const BASE64URL = /^[A-Za-z0-9_-]+$/

/** Checks and copies keys; a lone key (Buffer or base64) gets the id 'k1'. Throws a TypeError when invalid. */
export function createKeyRing (input: Buffer | string | KeyRingInput): KeyRing {
  if (typeof input === 'string' || input instanceof Uint8Array) input = { current: 'k1', keys: { k1: input } }
  if (input === null || typeof input !== 'object' || input.keys === null || typeof input.keys !== 'object') {
    throw new TypeError('key ring must be a 32-byte key or { current, keys }')
  }
  const keys = new Map<string, Buffer>()
  for (const [id, key] of Object.entries(input.keys)) keys.set(checkKeyId(id), toKey(id, key))
  if (keys.size === 0) throw new TypeError('key ring is empty')
  if (typeof input.current !== 'string' || !keys.has(input.current)) {
    throw new TypeError(`current key id ${JSON.stringify(input.current)} is not in the key ring`)
  }
  return Object.freeze({ current: input.current, keys })
}

function checkKeyId (id: string): string {
  if (id === '' || id.includes('.') || id.includes(':')) {
    throw new TypeError(`key id ${JSON.stringify(id)} must be non-empty and contain no '.' or ':'`)
  }
  return id
}

function toKey (id: string, key: Buffer | string): Buffer {
  let bytes: Buffer
  if (typeof key === 'string') {
    const text = key.trim()
    // a hex key or a passphrase is the usual mistake: say what is expected and how to make one
    const expected = `key ${JSON.stringify(id)}: expected base64 of ${KEY_BYTES} bytes (openssl rand -base64 32)`
    if (/^[0-9a-f]{64}$/i.test(text)) throw new TypeError(`${expected}, got what looks like hex`)
    if (!BASE64.test(text)) throw new TypeError(`${expected}, got a string that is not base64 (a passphrase?)`)
    bytes = Buffer.from(text, 'base64')
    if (bytes.length !== KEY_BYTES) throw new TypeError(`${expected}, got base64 of ${bytes.length} bytes`)
  } else if (key instanceof Uint8Array) {
    // A copy: the caller may reuse or wipe its buffer.
    bytes = Buffer.from(key)
  } else {
    throw new TypeError(`key ${JSON.stringify(id)} must be a Buffer or a base64 string`)
  }
  if (bytes.length !== KEY_BYTES) {
    throw new TypeError(`key ${JSON.stringify(id)} must be ${KEY_BYTES} bytes (AES-256), got ${bytes.length}`)
  }
  return bytes
}

// JSON of strings is injective, so ('a', 'bc') and ('ab', 'c') give different data; the key id is bound too.
function additionalData (keyId: string, ctx: SealContext): Buffer {
  for (const field of ['tenant', 'userId', 'purpose'] as const) {
    if (typeof ctx[field] !== 'string') throw new TypeError(`seal context ${field} must be a string`)
  }
  return Buffer.from(JSON.stringify([AAD_LABEL, keyId, ctx.tenant, ctx.userId, ctx.purpose]), 'utf8')
}

/** Encrypts with the current key: `${keyId}.${base64url(iv ‖ ciphertext ‖ tag)}`. */
export function seal (ring: KeyRing, plaintext: Uint8Array, ctx: SealContext): string {
  const key = ring.keys.get(ring.current)
  if (key === undefined) throw new SealError('the current key id is not in the key ring')
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES })
  cipher.setAAD(additionalData(ring.current, ctx))
  const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
  return `${ring.current}.${body.toString('base64url')}`
}

/** Decrypts what {@link seal} made with the same context; throws a SealError otherwise. */
export function open (ring: KeyRing, sealed: string, ctx: SealContext): Buffer {
  const dot = typeof sealed === 'string' ? sealed.indexOf('.') : -1
  if (dot < 1) throw new SealError('malformed sealed value')
  const keyId = sealed.slice(0, dot)
  const text = sealed.slice(dot + 1)
  const key = ring.keys.get(keyId)
  if (key === undefined) throw new SealError(`unknown key id ${JSON.stringify(keyId.slice(0, 64))}`)
  if (!BASE64URL.test(text)) throw new SealError('malformed sealed value')
  const body = Buffer.from(text, 'base64url')
  if (body.length < IV_BYTES + TAG_BYTES || body.toString('base64url') !== text) {
    throw new SealError('malformed sealed value')
  }
  const aad = additionalData(keyId, ctx)
  const decipher = createDecipheriv(ALGORITHM, key, body.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES })
  decipher.setAAD(aad)
  decipher.setAuthTag(body.subarray(body.length - TAG_BYTES))
  try {
    return Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()])
  } catch {
    throw new SealError('sealed value does not open: wrong context or key, or tampered')
  }
}
