import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { MemoryTotpStore, RedisTotpStore } from '../plugin/index.js'
import { Agent, awayFromStepEdge, build, codeFor, enrol, KEY, newPrefix, REDIS_URL, wrongCode } from './helpers.js'

// R9 recovery codes and R10 the lock that ends in recovery, over HTTP against real Redis.

const redis = new Redis(REDIS_URL)
t.teardown(() => redis.disconnect())

const RECOVERY = { recoveryCodes: { count: 10 } }
const SHAPE = /^[a-km-np-z2-9]{5}-[a-km-np-z2-9]{5}$/

/** Every value under `prefix`, whatever its type, as one text. */
async function dump (redis: Redis, prefix: string): Promise<string> {
  const keys = await redis.keys(`${prefix}*`)
  const out: string[] = []
  for (const key of keys) {
    const type = await redis.type(key)
    if (type === 'string') out.push(String(await redis.get(key)))
    else if (type === 'hash') out.push(JSON.stringify(await redis.hgetall(key)))
    else if (type === 'set') out.push((await redis.smembers(key)).join('\n'))
    else out.push(`${key}: ${type}`)
  }
  return out.join('\n')
}

t.test('R9 recovery codes are shown once at setup and stored only as keyed hashes: no code nor a plain hash of one in Redis', async (t) => {
  const { app, keyPrefix, events } = await build(t, { plugin: RECOVERY })
  const { agent, recoveryCodes } = await enrol(app, 'alice')
  t.equal(recoveryCodes.length, 10)
  t.ok(recoveryCodes.every((c) => SHAPE.test(c)), 'abcde-fghij, from an alphabet without look-alikes')
  t.equal(new Set(recoveryCodes).size, 10)
  const status = await agent.get('/totp/status')
  t.match(status.json(), { recoveryCodesLeft: 10 })
  t.notOk(recoveryCodes.some((c) => status.body.includes(c)), 'not shown again')
  const all = await dump(redis, keyPrefix)
  const forms = (c: string): string[] => {
    const plain = c.replace('-', '')
    const hashes = ['sha1', 'sha256', 'sha512'].flatMap((alg) => [c, plain].flatMap((v) => {
      const d = createHash(alg).update(v).digest()
      return [d.toString('hex'), d.toString('base64'), d.toString('base64url')]
    }))
    return [c, plain, plain.toUpperCase(), ...hashes]
  }
  const leaked = recoveryCodes.flatMap(forms).filter((f) => all.includes(f))
  t.same(leaked, [], 'a Redis dump holds no code and no unkeyed hash of one')
  // what is stored is exactly HMAC-SHA256 under a key derived from the encryption key, bound to
  // tenant, user and generation: recomputed here without the plugin's code
  const [setKey] = await redis.keys(`${keyPrefix}*r:alice`)
  const gen = Number(await redis.hget(setKey.replace(/r:alice$/, 'u:alice'), 'g'))
  const keyed = (key: Buffer, code: string): string => {
    const k = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'fastify-totp/recovery-codes/v1', 32))
    return `k1:${createHmac('sha256', k).update(JSON.stringify(['default', 'alice', gen, code.replace('-', '')])).digest('base64url')}`
  }
  t.same((await redis.smembers(setKey)).sort(), recoveryCodes.map((c) => keyed(KEY, c)).sort(), 'keyed hashes only')
  const other = randomBytes(32)
  t.notOk((await redis.smembers(setKey)).some((h) => recoveryCodes.some((c) => keyed(other, c) === h)),
    'another key matches nothing: without the encryption key no guess can be checked')
  t.match(events.find((e) => e.type === 'recovery.generated'), { userId: 'alice', recoveryCodesLeft: 10 })
})

t.test('R9 a recovery code verifies an unverified session once (S5: new id, app data kept); case, spaces and dashes forgiven', async (t) => {
  const { app, events } = await build(t, { plugin: RECOVERY })
  const { secret, recoveryCodes } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED')
  const before = a.cookie
  const typed = ` ${recoveryCodes[0].toUpperCase().replace('-', ' - ')} `
  const res = await a.post('/totp/recover', { code: typed })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { verified: true, recoveryCodesLeft: 9 })
  t.not(a.cookie, before, 'a new session id')
  t.same((await a.get('/api/profile')).json(), { user: 'alice', cart: 'app data' })
  t.match((await a.get('/totp/status')).json(), { enabled: true, verified: true, recoveryCodesLeft: 9 })

  const b = new Agent(app)
  await b.login('alice')
  const again = await b.post('/totp/recover', { code: recoveryCodes[0] })
  t.equal(again.statusCode, 401, 'used once')
  t.equal(again.json().code, 'FST_TOTP_INVALID_CODE')
  for (const code of ['abcde-fghi', 'abcde-fghij-k', 'abcd0-fghij', 'abcde_fghij', '123456']) {
    t.equal((await b.post('/totp/recover', { code })).json().code, 'FST_TOTP_BAD_REQUEST', `wrong shape: ${code}`)
  }
  t.equal((await b.post('/totp/recover', { code: 12345 })).statusCode, 400)
  t.match(events.filter((e) => e.type === 'recovery.used'), [{ userId: 'alice', recoveryCodesLeft: 9 }])
  t.match(events.filter((e) => e.type === 'recovery.failed'), [{ userId: 'alice', failures: 1 }])
  await awayFromStepEdge()
  t.equal((await b.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'R2 the secret still verifies')
  const plain = new Agent(app)
  await plain.login('bob')
  t.equal((await plain.post('/totp/recover', { code: recoveryCodes[1] })).json().code, 'FST_TOTP_NOT_ENABLED')
})

t.test('R9 20 parallel uses of one recovery code across two instances: exactly one 200', async (t) => {
  const keyPrefix = newPrefix()
  const one = await build(t, { keyPrefix, plugin: RECOVERY })
  const two = await build(t, { keyPrefix, plugin: { ...RECOVERY, lockout: { freeFailures: 100 } } })
  const { recoveryCodes } = await enrol(one.app, 'alice')
  const agents = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const a = new Agent(i % 2 === 0 ? one.app : two.app)
    await a.login('alice')
    return a
  }))
  const res = await Promise.all(agents.map((a) => a.post('/totp/recover', { code: recoveryCodes[3] })))
  t.equal(res.filter((r) => r.statusCode === 200).length, 1)
  t.ok(res.every((r) => [200, 401, 429].includes(r.statusCode)), 'the others are refused')
  t.match((await one.app.totp.status('alice')), { recoveryCodesLeft: 9 })
})

t.test('R9 a new set replaces the old one, from a verified session only; R4 revocation deletes the codes', async (t) => {
  const { app, events } = await build(t, { plugin: RECOVERY })
  const { agent, recoveryCodes } = await enrol(app, 'alice')
  const fresh = await agent.post('/totp/recovery-codes', {})
  t.equal(fresh.statusCode, 201)
  const next = fresh.json().recoveryCodes as string[]
  t.equal(next.length, 10)
  t.same(next.filter((c) => recoveryCodes.includes(c)), [])
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/recovery-codes', {})).json().code, 'FST_TOTP_REQUIRED', 'an unverified session cannot')
  t.equal((await a.post('/totp/recover', { code: recoveryCodes[0] })).statusCode, 401, 'the old set is gone')
  t.equal((await a.post('/totp/recover', { code: next[0] })).statusCode, 200)
  t.equal(events.filter((e) => e.type === 'recovery.generated').length, 2)
  const plain = new Agent(app)
  await plain.login('bob')
  t.equal((await plain.post('/totp/recovery-codes', {})).json().code, 'FST_TOTP_NOT_ENABLED')

  const manager = await enrol(app, 'manager')
  t.equal((await manager.agent.delete('/totp/users/alice/secret')).statusCode, 204)
  t.match(await app.totp.status('alice'), { enabled: false, recoveryCodesLeft: 0 })
  const b = new Agent(app)
  await b.login('alice')
  t.equal((await b.post('/totp/recover', { code: next[1] })).json().code, 'FST_TOTP_NOT_ENABLED')
  const again = await enrol(app, 'alice')
  const c = new Agent(app)
  await c.login('alice')
  t.equal((await c.post('/totp/recover', { code: next[1] })).statusCode, 401, 're-enrolled: only the new set counts')
  t.equal((await c.post('/totp/recover', { code: again.recoveryCodes[0] })).statusCode, 200)
})

t.test('R9/S4 a wrong recovery code counts toward the lock, like a wrong TOTP code; while locked, 429 without checking', async (t) => {
  const { app } = await build(t, { plugin: { ...RECOVERY, lockout: { freeFailures: 3, lockSeconds: 60 } } })
  const { secret, recoveryCodes } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401)
  t.equal((await a.post('/totp/recover', { code: 'aaaaa-aaaaa' })).statusCode, 401)
  const third = await a.post('/totp/recover', { code: 'bbbbb-bbbbb' })
  t.equal(third.statusCode, 401, 'the third failure sets the lock')
  const locked = await a.post('/totp/recover', { code: recoveryCodes[0] })
  t.equal(locked.statusCode, 429)
  t.equal(locked.json().code, 'FST_TOTP_LOCKED')
  t.ok(Number(locked.headers['retry-after']) > 50)
  t.match(await app.totp.status('alice'), { locked: true, recoveryCodesLeft: 10 }, 'the right code was not used')
})

t.test('R10 after lockout.maxFailures the lock lasts until unlocked: right codes refused, no Retry-After; unlock by the parent only', async (t) => {
  const lockout = { freeFailures: 2, lockSeconds: 0.001, maxLockSeconds: 0.001, maxFailures: 4 }
  const plugin = { ...RECOVERY, lockout }
  const { app, events } = await build(t, { plugin })
  await awayFromStepEdge(6000)
  const { secret, recoveryCodes } = await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  for (let i = 0; i < 4; i++) {
    t.equal((await a.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.match(events.find((e) => e.type === 'locked' && e.untilUnlock === true), { userId: 'alice', failures: 4 })
  await new Promise((resolve) => setTimeout(resolve, 20))
  for (const [path, code] of [['/totp/verify', codeFor(secret)], ['/totp/recover', recoveryCodes[0]]]) {
    const res = await a.post(path, { code })
    t.equal(res.statusCode, 429, `${path}: a right code is refused`)
    t.equal(res.json().code, 'FST_TOTP_LOCKED')
    t.equal(res.headers['retry-after'], undefined, 'no Retry-After: waiting does not end it')
    t.match(res.json().message, /administrator must unlock/)
  }
  t.match((await a.get('/totp/status')).json(), { locked: true, lockedUntil: null, recoveryCodesLeft: 10 })

  const self = await enrol(app, 'manager')
  const outsider = await enrol(app, 'bob')
  t.equal((await outsider.agent.delete('/totp/users/alice/lock')).statusCode, 403, 'not the parent')
  t.equal((await self.agent.delete('/totp/users/manager/lock')).statusCode, 403, 'never oneself')
  const admin = await enrol(app, 'admin')
  t.equal((await admin.agent.delete('/totp/users/manager/lock')).statusCode, 204, 'the parent may')
  t.match((await self.agent.get('/totp/users/alice')).json(), { userId: 'alice', locked: true, lockedUntil: null })
  const unlock = await self.agent.delete('/totp/users/alice/lock')
  t.equal(unlock.statusCode, 204)
  t.match(events.filter((e) => e.type === 'unlocked'), [{ userId: 'manager' }, { userId: 'alice', actorId: 'manager' }])
  t.match(await app.totp.status('alice'), { locked: false, lockedUntil: null })
  t.equal((await a.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'after the unlock the code verifies')

  const b = new Agent(app)
  await b.login('alice')
  for (let i = 0; i < 4; i++) {
    await b.post('/totp/recover', { code: 'ccccc-ccccc' })
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.match(await app.totp.status('alice'), { locked: true, lockedUntil: null }, 'wrong recovery codes count toward it too')
  t.equal(await app.totp.unlock('alice'), true, 'an operator unlocks')
  t.equal(await app.totp.unlock('alice'), false)
  t.equal((await b.post('/totp/recover', { code: recoveryCodes[1] })).statusCode, 200)
  for (let i = 0; i < 4; i++) {
    await b.post('/totp/verify', { code: wrongCode(secret) })
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.equal((await self.agent.delete('/totp/users/alice/secret')).statusCode, 204)
  t.match(await app.totp.status('alice'), { enabled: false, locked: false, recoveryCodesLeft: 0 }, 'revocation ends the lock')
})

t.test('R10 options: lockout.maxFailures is 1 to 100 (NIST SP 800-63B), recoveryCodes.count 1 to 50', async (t) => {
  const bad = [{ lockout: { maxFailures: 101 } }, { lockout: { maxFailures: 0 } }, { recoveryCodes: { count: 0 } },
    { recoveryCodes: { count: 51 } }, { recoveryCodes: { cout: 5 } }]
  for (const plugin of bad) {
    // refused before the plugin touches Redis
    await t.rejects(build(t, { redis, plugin: plugin as never }), { code: 'FST_TOTP_OPTIONS' }, JSON.stringify(plugin))
  }
  const off = await build(t)
  const { agent } = await enrol(off.app, 'alice')
  t.equal((await agent.post('/totp/recovery-codes', {})).statusCode, 404, 'off by default: no route')
  t.match((await agent.get('/totp/status')).json(), { recoveryCodesLeft: 0 })
})

t.test('R9 a set made before a key rotation still works; a set of an earlier secret matches nothing under the next one', async (t) => {
  const k2 = randomBytes(32)
  const keyPrefix = newPrefix()
  const before = await build(t, { keyPrefix, plugin: { ...RECOVERY, encryptionKey: { current: 'k1', keys: { k1: KEY } } } })
  const { recoveryCodes } = await enrol(before.app, 'alice')
  const after = await build(t, { keyPrefix, plugin: { ...RECOVERY, encryptionKey: { current: 'k2', keys: { k1: KEY, k2 } } } })
  const a = new Agent(after.app)
  await a.login('alice')
  t.same((await a.post('/totp/recover', { code: recoveryCodes[0] })).json(), { verified: true, recoveryCodesLeft: 9 })
  const fresh = (await a.post('/totp/recovery-codes', {})).json().recoveryCodes as string[]
  const [setKey] = await redis.keys(`${keyPrefix}*r:alice`)
  t.ok((await redis.smembers(setKey)).every((h) => h.startsWith('k2:')), 'a new set under the current key')
  // an earlier secret's set, left behind (as an older instance's revocation would): it matches nothing
  const stale = await redis.smembers(setKey)
  const manager = await enrol(after.app, 'manager')
  t.equal((await manager.agent.delete('/totp/users/alice/secret')).statusCode, 204)
  await enrol(after.app, 'alice')
  await redis.sadd(setKey, ...stale)
  const b = new Agent(after.app)
  await b.login('alice')
  t.equal((await b.post('/totp/recover', { code: fresh[0] })).statusCode, 401, 'bound to the generation')
})

t.test('R10 a store refuses a policy its scripts cannot read (a lock policy without maxFailures would lock nobody)', async (t) => {
  const lock = { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000 }
  t.throws(() => new RedisTotpStore({ client: redis, lock: lock as never, ip: null }), { code: 'FST_TOTP_OPTIONS', message: /maxFailures/ })
  t.throws(() => new MemoryTotpStore({ lock: lock as never, ip: null }), { code: 'FST_TOTP_OPTIONS', message: /maxFailures/ })
  t.throws(() => new MemoryTotpStore({ lock: { ...lock, maxFailures: 101 }, ip: null }), { code: 'FST_TOTP_OPTIONS' })
  t.throws(() => new MemoryTotpStore({ lock: { ...lock, maxFailures: 20 }, ip: { maxFailures: 0, windowMs: 1 } }), { code: 'FST_TOTP_OPTIONS' })
  t.throws(() => new MemoryTotpStore(undefined as never), { code: 'FST_TOTP_OPTIONS' })
})
