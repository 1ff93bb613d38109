import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Redis } from 'ioredis'
import totp, { MemoryTotpStore, type FastifyTotpOptions, type TotpStore } from '../plugin/index.js'
import { resolveOptions, DEFAULT_LOCKOUT } from '../plugin/options.js'
import { REDIS_URL, SESSION_SECRET, KEY } from './helpers.js'

const getUser = (): null => null

t.test('options: defaults', async (t) => {
  const o = resolveOptions({ getUser })
  t.match(o, {
    issuer: 'fastify-totp-gate',
    prefix: '/totp',
    keyPrefix: 'totp:',
    totp: { algorithm: 'sha1', digits: 6, period: 30, window: 1 },
    setupTtlMs: 600_000,
    lock: { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000, maxFailures: 20 },
    ip: { maxFailures: 50, windowMs: 900_000 },
    timeout: 2000,
    settingsShards: 64,
    keyRing: null
  })
  t.equal(DEFAULT_LOCKOUT.freeFailures, 5)
  t.equal(resolveOptions({ getUser, ipLimit: false }).ip, null)
})

t.test('options: bad ones fail fast with a clear message', async (t) => {
  const redis = {} as Redis
  const bad: Array<[string, Partial<FastifyTotpOptions>, RegExp]> = [
    ['no getUser', { getUser: undefined }, /getUser/],
    ['findUser not a function', { findUser: 1 as never }, /findUser/],
    ['onEvent not a function', { onEvent: 'x' as never }, /onEvent/],
    ['defineAbilities not a function', { defineAbilities: {} as never }, /defineAbilities/],
    ['issuer with colon', { issuer: 'a:b' }, /issuer/],
    ['prefix', { prefix: 'totp' }, /prefix/],
    ['keyPrefix with brace', { keyPrefix: 'a{' }, /keyPrefix/],
    ['algorithm', { algorithm: 'md5' as never }, /algorithm/],
    ['digits', { digits: 5 as never }, /digits/],
    ['period', { period: 0 }, /period/],
    ['window', { window: -1 }, /window/],
    ['lock', { lockout: { lockSeconds: 0 } }, /lockSeconds/],
    ['max lock', { lockout: { lockSeconds: 60, maxLockSeconds: 30 } }, /maxLockSeconds/],
    ['free failures', { lockout: { freeFailures: 0 } }, /freeFailures/],
    ['ip limit', { ipLimit: { maxFailures: -1 } }, /ipLimit/],
    ['setupTtl', { setupTtl: 1.5 }, /setupTtl/],
    ['timeout', { timeout: 0 }, /timeout/],
    ['S2 Redis without a key', { redis }, /encryptionKey is required/],
    ['a short key', { encryptionKey: Buffer.alloc(16) }, /encryptionKey/]
  ]
  for (const [name, o, msg] of bad) {
    t.throws(() => resolveOptions({ getUser, ...o } as FastifyTotpOptions), { code: 'FST_TOTP_OPTIONS', message: msg }, name)
  }
  t.throws(() => resolveOptions(null as never), /options must be an object/)
})

t.test('S2 with Redis and no key the plugin refuses to start', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true })
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  app.register(totp, { redis, getUser })
  await t.rejects(async () => { await app.ready() }, /encryptionKey is required/)
  redis.disconnect()
})

t.test('the plugin needs @fastify/session registered first', async (t) => {
  const app = Fastify()
  app.register(totp, { getUser, encryptionKey: KEY })
  await t.rejects(async () => { await app.ready() }, /@fastify\/cookie|@fastify\/session/)
})

t.test('in-memory store without a key: warns and works in one process', async (t) => {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } })
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  await app.register(totp, { getUser: () => ({ id: 'u', roles: [] }) })
  t.teardown(() => app.close())
  t.equal((await app.inject('/totp/status')).statusCode, 200)
  t.ok(lines.some((l) => l.includes('in-memory store')))
  t.ok(lines.some((l) => l.includes('no encryptionKey')))
})

t.test('S8 an onEvent hook that throws or rejects is logged, not raised', async (t) => {
  const lines: string[] = []
  for (const onEvent of [() => { throw new Error('boom') }, async () => { throw new Error('boom') }]) {
    const app = Fastify({ logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } })
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
    await app.register(totp, { getUser: () => ({ id: 'u', roles: [] }), encryptionKey: KEY, onEvent })
    t.equal((await app.inject({ method: 'POST', url: '/totp/setup', payload: {} })).statusCode, 201)
    await new Promise((resolve) => setImmediate(resolve))
    await app.close()
  }
  t.equal(lines.filter((l) => l.includes('onEvent failed')).length, 2)
})

// An app with the plugin on a custom store (sessions in memory) and one protected route, /api.
async function customStoreApp (t: Test, store: TotpStore, getUser: FastifyTotpOptions['getUser'] = () => ({ id: 'u', roles: [] })): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  await app.register(totp, { getUser, store, encryptionKey: KEY })
  app.get('/api', async () => ({ ok: true }))
  t.teardown(() => app.close())
  return app
}

// A memory store in which user 'u' is enforced and has no secret: the gate answers 403.
async function enforcedStore (): Promise<MemoryTotpStore> {
  const store = new MemoryTotpStore({
    lock: { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000, maxFailures: 20 }, ip: null
  })
  await store.setEnforced({ tenant: 'default', userId: 'u' }, true)
  return store
}

t.test('R3 getUser may answer at once or with a promise; one that throws or rejects fails the request, never passes it', async (t) => {
  const store = await enforcedStore()
  const cases: Array<[string, FastifyTotpOptions['getUser'], number]> = [
    ['a user at once', () => ({ id: 'u', roles: [] }), 403],
    ['a user by promise', async () => ({ id: 'u', roles: [] }), 403],
    ['a thenable', () => ({ then: (resolve: (u: unknown) => void) => resolve({ id: 'u', roles: [] }) }) as never, 403],
    ['nobody by promise', async () => null, 200],
    ['a throw', () => { throw new Error('boom') }, 500],
    ['a rejection', async () => { throw new Error('boom') }, 500]
  ]
  for (const [name, getUser, status] of cases) {
    const app = await customStoreApp(t, store, getUser)
    t.equal((await app.inject('/api')).statusCode, status, `${name}: ${status} (the user is enforced without a secret: 403)`)
  }
})

t.test('S6 a custom store that throws instead of rejecting fails closed with 503', async (t) => {
  const store = new MemoryTotpStore({
    lock: { freeFailures: 5, lockMs: 30_000, maxLockMs: 900_000, maxFailures: 20 }, ip: null
  })
  store.gate = () => { throw new Error('store broken') }
  const app = await customStoreApp(t, store)
  const res = await app.inject('/api')
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
})

t.test('S6 a custom store answering with another promise implementation is awaited; an answer that is no gate state fails closed', async (t) => {
  // a thenable with its own catch, as Bluebird or another realm's Promise has
  class OtherPromise<T> {
    constructor (private readonly value: T) {}
    then<R> (onFulfilled?: (v: T) => R): OtherPromise<R | T> {
      return new OtherPromise(onFulfilled ? onFulfilled(this.value) : this.value)
    }

    catch (): this { return this }
  }
  const store = await enforcedStore()
  const state = await store.gate({ tenant: 'default', userId: 'u' })
  let answer: 'state' | 'nothing' = 'state'
  store.gate = () => new OtherPromise(answer === 'state' ? state : undefined) as never
  const app = await customStoreApp(t, store)
  t.equal((await app.inject('/api')).statusCode, 403, 'the state came through: the enforced user must set up first')
  answer = 'nothing'
  const res = await app.inject('/api')
  t.equal(res.statusCode, 503, 'no state: no pass')
  t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
})

t.test('S10 durability (replica acknowledgement) is not offered yet: the option is refused at start, never silently ignored', async (t) => {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  app.register(totp, { getUser, encryptionKey: KEY, durability: { replicas: 1, timeout: 100 } } as never)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_TOTP_OPTIONS', message: /unknown option durability/ })
})
