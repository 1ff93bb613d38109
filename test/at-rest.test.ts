import t from 'tap'
import type { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'
import { decodeSecret } from '../plugin/totp/index.js'

async function dump (redis: Redis, prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const keys = await redis.keys(`${prefix}*`)
  for (const key of keys) {
    const type = await redis.type(key)
    if (type === 'string') out.set(key, (await redis.getBuffer(key))!.toString('latin1'))
    if (type === 'hash') out.set(key, JSON.stringify(await redis.hgetall(key)))
  }
  return out
}

t.test('S2 no Redis key or value holds a secret in plaintext (active or pending)', async (t) => {
  const { app, redis, keyPrefix } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const carol = new Agent(app)
  await carol.login('carol')
  const pending = (await carol.post('/totp/setup')).json().secret
  const all = await dump(redis as Redis, keyPrefix)
  t.ok(all.size > 0)
  for (const s of [secret, pending]) {
    const raw = decodeSecret(s)
    for (const [key, value] of all) {
      t.notOk(value.includes(s) || value.includes(s.toLowerCase()), `${key} has no base32 secret`)
      t.notOk(value.includes(raw.toString('latin1')) || value.includes(raw.toString('hex')) || value.includes(raw.toString('base64')), `${key} has no raw secret`)
      t.notOk(key.includes(s), 'nor a key name')
    }
  }
})

t.test('S2 a sealed secret copied to another user\'s key does not open', async (t) => {
  await awayFromStepEdge()
  const { app, redis, keyPrefix } = await build(t)
  const { secret } = await enrol(app, 'alice')
  await enrol(app, 'carol')
  const keys = await (redis as Redis).keys(`${keyPrefix}*u:*`)
  const aliceKey = keys.find((k) => k.endsWith('u:alice'))!
  const carolKey = keys.find((k) => k.endsWith('u:carol'))!
  await (redis as Redis).hset(carolKey, 's', (await (redis as Redis).hget(aliceKey, 's'))!)
  const c = new Agent(app)
  await c.login('carol')
  const res = await c.post('/totp/verify', { code: codeFor(secret) })
  t.equal(res.statusCode, 503, 'fails closed, never accepts alice\'s code for carol')
  t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
  t.equal((await c.get('/api/profile')).statusCode, 401)
})
