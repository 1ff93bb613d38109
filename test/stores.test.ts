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
  const a = new RedisTotpStore({ client: redis, keyPrefix: prefix, lock: { freeFailures: 5, lockMs: 1, maxLockMs: 1 }, ip: null })
  const b = new RedisTotpStore({ client: redis, keyPrefix: prefix, lock: { freeFailures: 5, lockMs: 1, maxLockMs: 1 }, ip: null })
  t.same(await a.gate({ tenant: 'x', userId: 'y' }), await b.gate({ tenant: 'x', userId: 'y' }))
})
