import t from 'tap'
import { Redis } from 'ioredis'
import { MemoryTotpStore } from '../plugin/stores/memory.js'
import { RedisTotpStore } from '../plugin/stores/redis.js'
import { deleteKeys, newPrefix, REDIS_URL } from './helpers.js'
import { storeContract } from './store-contract.js'

storeContract(t, 'memory', async (policy) => new MemoryTotpStore(policy))

const redis = new Redis(REDIS_URL)
const prefix = newPrefix()
t.teardown(async () => {
  await deleteKeys(redis, `${prefix}*`)
  redis.disconnect()
})
storeContract(t, 'redis', async (policy) => new RedisTotpStore({ client: redis, keyPrefix: prefix, ...policy }))

t.test('redis: scripts are defined once per client (guarded)', async (t) => {
  const a = new RedisTotpStore({
    client: redis, keyPrefix: prefix, lock: { freeFailures: 5, lockMs: 1, maxLockMs: 1, maxFailures: 20 }, ip: null
  })
  const b = new RedisTotpStore({
    client: redis, keyPrefix: prefix, lock: { freeFailures: 5, lockMs: 1, maxLockMs: 1, maxFailures: 20 }, ip: null
  })
  t.same(await a.gate({ tenant: 'x', userId: 'y' }), await b.gate({ tenant: 'x', userId: 'y' }))
})

t.test('redis: an enrolled user stays a compact listpack hash (memory per user)', async (t) => {
  const { seal, createKeyRing } = await import('../plugin/crypto/seal.js')
  const { generateSecret } = await import('../plugin/totp/index.js')
  const store = new RedisTotpStore({
    client: redis, keyPrefix: prefix, lock: { freeFailures: 5, lockMs: 1, maxLockMs: 1, maxFailures: 20 }, ip: null
  })
  const ref = { tenant: 'default', userId: 'user-0042' }
  const sealed = seal(createKeyRing(Buffer.alloc(32, 7)), generateSecret(), { ...ref, purpose: 'totp-secret' })
  await store.startSetup(ref, { sealed, qr: '', ttlMs: 60_000 })
  t.match(await store.attempt(ref, { kind: 'confirm', gen: 0, step: 100, pending: sealed, ip: null }), { ok: true })
  t.equal((await store.check(ref)).secret.sealed, sealed, 'the sealed secret reads back whole')
  const key = store.keys.user(ref)
  t.equal(await redis.object('ENCODING', key), 'listpack', 'no field over hash-max-listpack-value (64 bytes)')
  const bytes = Number(await redis.memory('USAGE', key))
  t.ok(bytes <= 256, `MEMORY USAGE ${bytes} <= 256 bytes`)
})
