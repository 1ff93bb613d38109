import t from 'tap'
import { randomBytes } from 'node:crypto'
import { SealError, createKeyRing, open, seal, type KeyRing, type SealContext } from '../plugin/crypto/seal.js'
import { encodeSecret, generateSecret } from '../plugin/totp/index.js'

const ctx: SealContext = { tenant: 'acme', userId: 'alice', purpose: 'totp-secret' }
const sealError = { name: 'SealError' }

function flipByte (sealed: string, index: (length: number) => number): string {
  const [id, text] = sealed.split('.')
  const body = Buffer.from(text, 'base64url')
  body[index(body.length)] ^= 0x01
  return `${id}.${body.toString('base64url')}`
}

t.test('S2 round trip: what is sealed opens with the same ring and context', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const secret = generateSecret()
  const sealed = seal(ring, secret, ctx)
  t.match(sealed, /^k1\.[A-Za-z0-9_-]+$/)
  t.equal(sealed.length, 'k1.'.length + 64, 'key id, dot, base64url of 12 + 20 + 16 bytes')
  t.same(open(ring, sealed, ctx), secret)
  t.same(open(ring, seal(ring, Buffer.alloc(0), ctx), ctx), Buffer.alloc(0), 'empty plaintext')
  t.same(open(ring, seal(ring, new Uint8Array([1, 2, 3]), ctx), ctx), Buffer.from([1, 2, 3]), 'a plain Uint8Array')
  t.not(seal(ring, secret, ctx), sealed, 'a fresh IV every time')
})

t.test('S2 the sealed text contains no form of the secret', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const secret = generateSecret()
  const sealed = seal(ring, secret, ctx)
  const forms = [encodeSecret(secret), secret.toString('hex'), secret.toString('base64'), secret.toString('base64url')]
  for (const form of forms) {
    t.notOk(sealed.includes(form), 'whole form absent')
    t.notOk(sealed.toUpperCase().includes(form.slice(0, 12).toUpperCase()), 'no long piece either')
  }
})

t.test('S2 a ciphertext copied to another tenant, user or purpose does not open', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const sealed = seal(ring, generateSecret(), ctx)
  for (const other of [
    { ...ctx, tenant: 'other' },
    { ...ctx, userId: 'bob' },
    { ...ctx, purpose: 'totp-pending' },
    { ...ctx, userId: 'Alice' }
  ]) {
    t.throws(() => open(ring, sealed, other), sealError, JSON.stringify(other))
  }
  const ab = seal(ring, generateSecret(), { tenant: 'a', userId: 'bc', purpose: 'p' })
  t.throws(() => open(ring, ab, { tenant: 'ab', userId: 'c', purpose: 'p' }), sealError, "('a','bc') is not ('ab','c')")
  const quoted = seal(ring, generateSecret(), { tenant: 'a","b', userId: 'c', purpose: 'p' })
  t.throws(() => open(ring, quoted, { tenant: 'a', userId: 'b","c', purpose: 'p' }), sealError, 'quotes cannot shift fields')
  t.throws(() => open(ring, sealed, { ...ctx, tenant: 1 } as unknown as SealContext), TypeError, 'a non-string context is a bug')
  t.throws(() => seal(ring, generateSecret(), { ...ctx, userId: undefined } as unknown as SealContext), TypeError)
})

t.test('S2 a tampered byte in IV, ciphertext or tag does not open', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const sealed = seal(ring, generateSecret(), ctx)
  for (const [where, index] of [
    ['IV', () => 0],
    ['ciphertext', () => 12],
    ['ciphertext end', (n: number) => n - 17],
    ['tag', (n: number) => n - 1]
  ] as const) {
    const tampered = flipByte(sealed, index)
    t.not(tampered, sealed)
    t.throws(() => open(ring, tampered, ctx), sealError, where)
  }
  t.throws(() => open(ring, sealed.slice(0, -4), ctx), sealError, 'truncated tag')
  t.throws(() => open(ring, sealed + 'AAAA', ctx), sealError, 'appended bytes')
})

t.test('S2 malformed sealed text is a SealError', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const sealed = seal(ring, new Uint8Array([7]), ctx) // 29 bytes: the last base64url character has spare bits
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  // same bytes, non-canonical text
  const sameBytes = sealed.slice(0, -1) + alphabet[alphabet.indexOf(sealed.at(-1)!) | 1]
  t.same(Buffer.from(sameBytes.split('.')[1], 'base64url'), Buffer.from(sealed.split('.')[1], 'base64url'))
  const bad: unknown[] = [
    '', 'k1', 'k1.', '.' + sealed.split('.')[1], sealed.replace('.', ':'), sealed + '=', sealed + '.x', 'k1.' + 'A'.repeat(36),
    'k1.abc$def', sameBytes, null, undefined, 42
  ]
  for (const text of bad) t.throws(() => open(ring, text as string, ctx), sealError, JSON.stringify(text))
  const err = t.throws(() => open(ring, 'k1.!', ctx))
  t.ok(err instanceof SealError && err instanceof Error, 'a SealError is an Error')
})

t.test('S2 key rotation: old seals open after a new current key is added; new seals use it', async (t) => {
  const k1 = randomBytes(32)
  const k2 = randomBytes(32)
  const before = createKeyRing({ current: 'k1', keys: { k1 } })
  const secret = generateSecret()
  const old = seal(before, secret, ctx)
  const after = createKeyRing({ current: '2026-01', keys: { k1, '2026-01': k2.toString('base64') } })
  t.equal(after.current, '2026-01')
  t.same(open(after, old, ctx), secret, 'sealed under k1, opened with the rotated ring')
  const fresh = seal(after, secret, ctx)
  t.match(fresh, /^2026-01\./)
  t.same(open(after, fresh, ctx), secret)
  t.throws(() => open(before, fresh, ctx), { name: 'SealError', message: /unknown key id "2026-01"/ }, 'the old ring lacks the new key')
  const swapped = 'k1' + fresh.slice(fresh.indexOf('.'))
  t.throws(() => open(after, swapped, ctx), sealError, 'the key id is authenticated: relabelling fails')
  const sameBytesOtherId = createKeyRing({ current: 'k9', keys: { k1, k9: k1 } })
  t.throws(() => open(sameBytesOtherId, 'k9' + old.slice(2), ctx), sealError, 'even with the same key bytes under another id')
})

t.test('S2 an unknown key id is a SealError', async (t) => {
  const ring = createKeyRing(randomBytes(32))
  const other = createKeyRing({ current: 'k7', keys: { k7: randomBytes(32) } })
  t.throws(() => open(ring, seal(other, generateSecret(), ctx), ctx), { name: 'SealError', message: /unknown key id "k7"/ })
  const handMade: KeyRing = { current: 'gone', keys: new Map() }
  t.throws(() => seal(handMade, generateSecret(), ctx), sealError, 'a ring whose current key is missing')
})

t.test('S2 createKeyRing accepts a lone key as Buffer or base64 and copies keys', async (t) => {
  const key = randomBytes(32)
  for (const input of [key, key.toString('base64'), `  ${key.toString('base64')}\n`, key.toString('base64url'), key.toString('base64').replace(/=+$/, '')]) {
    const ring = createKeyRing(input)
    t.equal(ring.current, 'k1')
    t.same([...ring.keys.keys()], ['k1'])
    t.same(ring.keys.get('k1'), key)
  }
  const ring = createKeyRing(Buffer.from(key))
  t.ok(Object.isFrozen(ring))
  const sealed = seal(ring, generateSecret(), ctx)
  const input = Buffer.from(key)
  const copied = createKeyRing(input)
  input.fill(0)
  t.doesNotThrow(() => open(copied, sealed, ctx), 'wiping the caller\'s buffer does not change the ring')
})

t.test('S2 createKeyRing refuses invalid rings with a clear TypeError', async (t) => {
  const key = randomBytes(32)
  const cases: Array<[string, unknown, RegExp]> = [
    ['31-byte key', randomBytes(31), /must be 32 bytes \(AES-256\), got 31/],
    ['33-byte key', randomBytes(33), /must be 32 bytes \(AES-256\), got 33/],
    ['16-byte base64 key', randomBytes(16).toString('base64'), /expected base64 of 32 bytes \(openssl rand -base64 32\), got base64 of 16 bytes/],
    ['empty string', '', /expected base64 of 32 bytes.*not base64/],
    ['a passphrase', 'correct horse battery staple', /expected base64 of 32 bytes \(openssl rand -base64 32\), got a string that is not base64 \(a passphrase\?\)/],
    ['a hex key', key.toString('hex'), /expected base64 of 32 bytes \(openssl rand -base64 32\), got what looks like hex/],
    ['hex is not base64', key.toString('hex') + '!', /not base64/],
    ['empty ring', { current: 'k1', keys: {} }, /key ring is empty/],
    ['current not in ring', { current: 'k2', keys: { k1: key } }, /current key id "k2" is not in the key ring/],
    ['no current', { keys: { k1: key } }, /current key id undefined is not in the key ring/],
    ['dot in id', { current: 'a.b', keys: { 'a.b': key } }, /key id "a.b" must be non-empty and contain no '.' or ':'/],
    ['colon in id', { current: 'a', keys: { a: key, 'b:c': key } }, /key id "b:c"/],
    ['empty id', { current: '', keys: { '': key } }, /key id ""/],
    ['bad key in ring', { current: 'k1', keys: { k1: key, old: randomBytes(8) } }, /key "old" must be 32 bytes/],
    ['number as key', { current: 'k1', keys: { k1: 42 } }, /key "k1" must be a Buffer or a base64 string/],
    ['null', null, /32-byte key or \{ current, keys \}/],
    ['number', 42, /32-byte key or \{ current, keys \}/],
    ['no keys', { current: 'k1' }, /32-byte key or \{ current, keys \}/],
    ['null keys', { current: 'k1', keys: null }, /32-byte key or \{ current, keys \}/]
  ]
  for (const [name, input, message] of cases) {
    t.throws(() => createKeyRing(input as Buffer), { name: 'TypeError', message }, name)
  }
  const err = t.throws(() => createKeyRing(randomBytes(31)))
  t.notMatch(String((err as Error).message), key.toString('base64'), 'messages never show key material')
})
