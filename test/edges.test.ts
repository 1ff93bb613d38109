import { connect } from 'node:net'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import totp, { LAYOUT_REGISTRY, migrateLayout, TotpRequiredError, TotpUnavailableError } from '../plugin/index.js'
import { KeyLayout } from '../plugin/stores/keys.js'
import {
  Agent, awayFromStepEdge, build, codeFor, deleteKeys, enrol, KEY, newPrefix, REDIS_URL, SESSION_SECRET, USERS,
  wrongCode
} from './helpers.js'
import { startRedis } from './support/redis-servers.js'

// Fail closed at the edges: each test reproduces a way past the gate, or a way to shut users
// out, found by a review or a trial integration, and fails without its fix.

const redis = new Redis(REDIS_URL)
t.teardown(() => redis.disconnect())

const getUser = () => ({ id: 'u', roles: [] })

async function bare (): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  return app
}

/** Sends a request's headers now and its body when `send` is called; `held` resolves once the headers were read. */
async function holdRequest (app: FastifyInstance, method: string, path: string, cookie: string, length: number) {
  if (app.server.listening !== true) await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { received += chunk })
  const answered = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  socket.write(`${method} ${path} HTTP/1.1\r\nhost: localhost\r\ncookie: ${cookie}\r\n` +
    `content-type: application/json\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`)
  return {
    async send (body: string): Promise<{ status: number; body: Record<string, unknown> }> {
      socket.write(body)
      await answered
      return { status: Number(received.split(' ')[1]), body: JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) }
    }
  }
}

t.test('R3 the gate covers the whole app: registering in an encapsulated child scope refuses to start', async (t) => {
  const app = await bare()
  app.register(async (child) => { await child.register(totp, { getUser, encryptionKey: KEY }) })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_TOTP_OPTIONS', message: /root of the app/ })
  await app.close().catch(() => {})
  // inside a fastify-plugin wrapped plugin it is the root's: the gate guards every route
  const root = await bare()
  const fp = (await import('fastify-plugin')).default
  await root.register(fp(async (inner) => { await inner.register(totp, { getUser, encryptionKey: KEY }) }))
  await root.ready()
  t.equal(typeof root.totp?.status, 'function', 'app.totp at the root')
  await root.close()
})

t.test('S11 cross-site: the plugin\'s state-changing routes take same-site JSON only; a forged setup changes nothing', async (t) => {
  const { app, keyPrefix } = await build(t)
  const alice = new Agent(app)
  await alice.login('alice')
  const pending = new KeyLayout(keyPrefix, 64).pending({ tenant: 'default', userId: 'alice' })
  const forged = [
    { headers: {}, payload: undefined, why: 'no body, no content type (a no-cors fetch)' },
    { headers: { 'content-type': 'text/plain' }, payload: '{}', why: 'text/plain (a form with enctype text/plain)' },
    { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=1', why: 'a form' },
    { headers: { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' }, payload: '{}', why: 'JSON, but cross-site' }
  ]
  for (const f of forged) {
    const res = await app.inject({ method: 'POST', url: '/totp/setup', payload: f.payload, headers: { cookie: alice.cookie!, ...f.headers } })
    t.ok(res.statusCode === 400 || res.statusCode === 403, `${f.why}: refused (${res.statusCode})`)
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(await redis.exists(pending), 0, `${f.why}: no pending secret`)
  }
  const cross = await app.inject({ method: 'PUT', url: '/totp/settings', payload: { enforceAll: true }, headers: { cookie: alice.cookie!, 'sec-fetch-site': 'cross-site' } })
  t.equal(cross.json().code, 'FST_TOTP_CROSS_SITE')
  const same = await app.inject({ method: 'POST', url: '/totp/setup', payload: '', headers: { cookie: alice.cookie!, 'content-type': 'application/json; charset=utf-8', 'sec-fetch-site': 'same-origin' } })
  t.equal(same.statusCode, 201, 'same-origin JSON with an empty body starts the setup')
  t.equal(await redis.exists(pending), 1)
})

t.test('S4 IPv6: failures count per /64 network, across the addresses in it; another network keeps its budget', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t, {
    plugin: { ipLimit: { maxFailures: 3, windowSeconds: 60 }, lockout: { freeFailures: 100 } }
  })
  const alice = await enrol(app, 'alice')
  const carol = await enrol(app, 'carol')
  const bob = await enrol(app, 'bob')
  const from = async (who: { secret: string }, user: string, ip: string) => {
    const a = new Agent(app, ip)
    await a.login(user)
    return a.post('/totp/verify', { code: wrongCode(who.secret) })
  }
  t.equal((await from(alice, 'alice', '2001:db8:1:1::1')).statusCode, 401)
  t.equal((await from(carol, 'carol', '2001:db8:1:1::2')).statusCode, 401)
  t.equal((await from(alice, 'alice', '2001:db8:1:1:ffff::3')).statusCode, 401, 'the third failure from the /64 spends it')
  t.equal((await from(bob, 'bob', '2001:db8:1:1::4')).statusCode, 429, 'a fourth address of the network is refused')
  t.equal((await from(bob, 'bob', '2001:db8:1:2::1')).statusCode, 401, 'the next /64 is another budget')
})

t.test('S4 a request without an IP address (unix socket, no trustProxy) skips the IP budget, never shares one key', async (t) => {
  await awayFromStepEdge()
  const { app, keyPrefix } = await build(t, {
    plugin: { ipLimit: { maxFailures: 2, windowSeconds: 60 }, lockout: { freeFailures: 100 } },
    before: (app) => app.addHook('onRequest', async (request) => { Object.defineProperty(request, 'ip', { value: undefined }) })
  })
  const alice = await enrol(app, 'alice')
  const carol = await enrol(app, 'carol')
  for (let i = 0; i < 3; i++) t.equal((await alice.agent.post('/totp/verify', { code: wrongCode(alice.secret) })).statusCode, 401)
  const res = await carol.agent.post('/totp/verify', { code: wrongCode(carol.secret) })
  t.equal(res.statusCode, 401, 'alice\'s failures did not spend carol\'s budget')
  t.same(await redis.keys(`${keyPrefix}ip:*`), [], 'no IP key at all')
})

t.test('S4 a locked user\'s held attempts check nothing and charge nothing (neither the user nor the IP); each is audited', async (t) => {
  await awayFromStepEdge(10_000)
  const { app, keyPrefix, events } = await build(t, { plugin: { lockout: { freeFailures: 3, lockSeconds: 60 } } })
  const alice = await enrol(app, 'alice')
  const attacker = new Agent(app)
  await attacker.login('alice')
  const user = new KeyLayout(keyPrefix, 64).user({ tenant: 'default', userId: 'alice' })
  const body = JSON.stringify({ code: codeFor(alice.secret) })
  const held = []
  for (let i = 0; i < 4; i++) held.push(await holdRequest(app, 'POST', '/totp/verify', attacker.cookie!, body.length))
  for (let i = 0; i < 3; i++) await attacker.post('/totp/verify', { code: wrongCode(alice.secret) })
  t.equal((await attacker.post('/totp/verify', { code: wrongCode(alice.secret) })).statusCode, 429, 'locked')
  const before = await redis.hgetall(user)
  const ipBefore = await redis.get(`${keyPrefix}ip:127.0.0.1`)
  const refusedBefore = events.filter((e) => e.type === 'attempt.refused').length
  // the held bodies carry the right code: each is refused before any comparison counts
  for (const h of held) {
    const r = await h.send(body)
    t.equal(r.status, 429)
    t.equal(r.body.code, 'FST_TOTP_LOCKED')
  }
  t.same(await redis.hgetall(user), before, 'no failure counted, no step consumed')
  t.equal(await redis.get(`${keyPrefix}ip:127.0.0.1`), ipBefore, 'the IP was not charged')
  t.equal(events.filter((e) => e.type === 'attempt.refused').length - refusedBefore, 4, 'every refused attempt is audited')
})

t.test('R4 a request whose body is held is decided once the body arrived: a revocation during the upload counts', async (t) => {
  const { app } = await build(t, { before: (app) => app.post('/api/notes', async () => ({ saved: true })) })
  const alice = await enrol(app, 'alice')
  const body = JSON.stringify({ note: 'x' })
  const h = await holdRequest(app, 'POST', '/api/notes', alice.agent.cookie!, body.length)
  await app.totp.revoke('alice')
  await app.totp.setEnforced('alice', true)
  const r = await h.send(body)
  t.equal(r.status, 403, 'the verified session lost its secret: setup required, not a pass')
  t.equal(r.body.code, 'FST_TOTP_SETUP_REQUIRED')
})

t.test('S7 POST /totp/setup while a setup is pending answers it again (same secret and QR); new setups are capped per user', async (t) => {
  const { app } = await build(t, { plugin: { setupLimit: { maxStarts: 2, windowSeconds: 3600 } } })
  const alice = new Agent(app)
  await alice.login('alice')
  const first = await alice.post('/totp/setup')
  t.equal(first.statusCode, 201)
  const again = await alice.post('/totp/setup')
  t.equal(again.statusCode, 201)
  t.same(again.json(), first.json(), 'the same secret, URI, QR code and expiry')
  await app.totp.revoke('alice')
  t.not((await alice.post('/totp/setup')).json().secret, first.json().secret, 'after a revocation: a new secret')
  await app.totp.revoke('alice')
  const throttled = await alice.post('/totp/setup')
  t.equal(throttled.statusCode, 429)
  t.equal(throttled.json().code, 'FST_TOTP_SETUP_THROTTLED')
  t.ok(Number(throttled.headers['retry-after']) > 0)
})

t.test('S7 ids over 256 bytes are refused with a clear error (getUser: 500 FST_TOTP_BAD_USER; a :userId param: 400)', async (t) => {
  const long = 'x'.repeat(30_000)
  const { app } = await build(t, { users: [...USERS, { id: long, parentId: null, roles: [] }] })
  const a = new Agent(app)
  await a.login(long)
  const res = await a.get('/api/profile')
  t.equal(res.statusCode, 500)
  t.equal(res.json().code, 'FST_TOTP_BAD_USER')
  const admin = await enrol(app, 'admin')
  // Fastify itself refuses params over maxParamLength (414); the plugin refuses one of 1-256
  // characters and over 256 bytes
  const param = await admin.agent.get(`/totp/users/${encodeURIComponent('é'.repeat(129))}`)
  t.ok([400, 414].includes(param.statusCode), `refused (${param.statusCode})`)
})

t.test('S7 an account name the key URI cannot carry answers 400 before anything is stored', async (t) => {
  const { app, keyPrefix } = await build(t, { users: [...USERS, { id: '::', parentId: null, roles: [] }] })
  const a = new Agent(app)
  await a.login('::')
  const res = await a.post('/totp/setup')
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'FST_TOTP_BAD_REQUEST')
  t.same(await redis.keys(`${keyPrefix}*p:*`), [], 'no pending setup stored')
})

t.test('R8 the admin routes check the permission before the lookup: a user without roles cannot tell which ids exist', async (t) => {
  const { app } = await build(t)
  const alice = new Agent(app)
  await alice.login('alice')
  for (const path of ['/totp/users/bob', '/totp/users/nobody']) {
    const res = await alice.get(path)
    t.equal(res.statusCode, 403, path)
    t.notMatch(res.json().message, /\bR\d+:/, 'no rule id in the message sent to the client')
  }
  t.equal((await alice.delete('/totp/users/nobody/secret')).statusCode, 403)
  t.equal((await alice.put('/totp/users/nobody/enforcement', { enforced: true })).statusCode, 403)
  const admin = await enrol(app, 'admin')
  t.equal((await admin.agent.get('/totp/users/nobody')).statusCode, 404, 'who may read: an unknown id is not found')
})

t.test('R7 an ADMIN without an active secret cannot turn on enforceAll (409), so cannot lock themselves out', async (t) => {
  const { app } = await build(t)
  const admin = new Agent(app)
  await admin.login('admin')
  const res = await admin.put('/totp/settings', { enforceAll: true })
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'FST_TOTP_ENROL_FIRST')
  t.same(await app.totp.getSettings(), { enforceAll: false, enforceRoles: [], gracePeriod: 0 }, 'unchanged')
  t.equal((await admin.put('/totp/settings', { enforceAll: false })).statusCode, 200, 'turning it off needs nothing')
  const enrolled = await enrol(app, 'admin')
  t.equal((await enrolled.agent.put('/totp/settings', { enforceAll: true })).statusCode, 200)
  t.equal((await enrolled.agent.get('/totp/settings')).statusCode, 200, 'still reachable')
})

t.test('S6 every gate refusal is no-store; refusals (4xx) carry no stack trace, faults (5xx) do', async (t) => {
  const { app } = await build(t)
  t.notMatch(new TotpRequiredError().stack ?? '', /\n\s+at /, 'a refusal: one short log line')
  t.match(new TotpUnavailableError().stack ?? '', /\n\s+at /, 'a fault keeps its stack')
  const alice = await enrol(app, 'alice')
  const again = new Agent(app)
  await again.login('alice')
  const res = await again.get('/api/profile')
  t.equal(res.statusCode, 401)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal((await alice.agent.get('/totp/status')).json().lockedUntil, null, 'lockedUntil: an ISO string or null')
})

t.test('S9 the key layout is recorded at the first start; another settingsShards or a new keyPrefix refuses to start', async (t) => {
  // a private Redis: whether a keyPrefix is new depends on every other record in that Redis
  const server = await startRedis()
  const client = new Redis(server.url)
  t.teardown(async () => { client.disconnect(); await server.stop() })
  const prefix = newPrefix()
  const other = newPrefix()
  const start = async (plugin: Record<string, unknown>) => {
    const app = await bare()
    await app.register(totp, { redis: client, encryptionKey: KEY, getUser, ...plugin })
    return app
  }
  await (await start({ keyPrefix: prefix, settingsShards: 8 })).close()
  t.equal(await client.hget(`${prefix}layout`, 'shards'), '8', 'recorded')
  await t.rejects(start({ keyPrefix: prefix, settingsShards: 16 }), { code: 'FST_TOTP_OPTIONS', message: /settingsShards is 16.*8 shards.*fastify-totp-gate-migrate/s })
  await t.rejects(start({ keyPrefix: other, settingsShards: 8 }), { code: 'FST_TOTP_OPTIONS', message: /new to this Redis/ })
  await (await start({ keyPrefix: other, settingsShards: 8, allowNewKeyPrefix: true })).close()
  t.equal(await client.hget(LAYOUT_REGISTRY, other), '8', 'a second deployment, allowed, is recorded too')
})

t.test('S9 fastify-totp-gate-migrate moves the keys to a new layout: the enrolled user still needs a code, and it verifies', async (t) => {
  await awayFromStepEdge()
  const prefix = newPrefix()
  const moved = newPrefix()
  t.teardown(async () => {
    await deleteKeys(redis, `${prefix}*`)
    await deleteKeys(redis, `${moved}*`)
    await redis.hdel(LAYOUT_REGISTRY, prefix, moved)
  })
  const first = await build(t, { keyPrefix: prefix, redis, plugin: { settingsShards: 4, recoveryCodes: true } })
  const alice = await enrol(first.app, 'alice')
  const admin = await enrol(first.app, 'admin')
  t.equal((await admin.agent.put('/totp/users/bob/enforcement', { enforced: true })).statusCode, 200)
  t.equal((await admin.agent.put('/totp/settings', { enforceAll: true })).statusCode, 200)
  await first.app.close()
  const r = await migrateLayout(
    redis,
    { keyPrefix: prefix, settingsShards: 4 },
    { keyPrefix: moved, settingsShards: 16 }
  )
  t.ok(r.moved > 0)
  t.same(await redis.keys(`${prefix}{*`), [], 'nothing left under the old layout')
  const second = await build(t, { keyPrefix: moved, redis, plugin: { settingsShards: 16, recoveryCodes: true } })
  const a = new Agent(second.app)
  await a.login('alice')
  t.equal((await a.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'still enrolled: the password alone does not pass')
  t.equal((await a.post('/totp/verify', { code: codeFor(alice.secret) })).statusCode, 200)
  const r9 = new Agent(second.app)
  await r9.login('alice')
  t.same((await r9.post('/totp/recover', { code: alice.recoveryCodes[0] })).json(), { verified: true, recoveryCodesLeft: 9 },
    'R9 the recovery codes moved too')
  const carol = new Agent(second.app)
  await carol.login('carol')
  t.equal((await carol.get('/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED', 'the tenant\'s enforceAll moved to every new shard')
  t.match((await second.app.totp.status('bob')), { enforced: true })
})

t.test('S9 a Redis that evicts any key (allkeys-*) refuses to start; one that does not let CONFIG run starts with a warning', async (t) => {
  const server = await startRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] })
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(async () => { client.disconnect(); await server.stop() })
  const app = await bare()
  await t.rejects(async () => { await app.register(totp, { redis: client, encryptionKey: KEY, getUser }) }, { code: 'FST_TOTP_OPTIONS', message: /allkeys-lru.*noeviction/s })
  await client.config('SET', 'maxmemory-policy', 'volatile-lru')
  const ok = await bare()
  await ok.register(totp, { redis: client, encryptionKey: KEY, getUser })
  await ok.close()
  // a user without CONFIG
  await client.call('ACL', 'SETUSER', 'app', 'on', '>pw', '~*', '&*', '+@all', '-config')
  const limited = new Redis(server.url, { username: 'app', password: 'pw', maxRetriesPerRequest: 1 })
  t.teardown(() => limited.disconnect())
  const warnings: string[] = []
  const w = Fastify({ logger: { level: 'warn', stream: { write: (l: string) => { warnings.push(l) } } } })
  await w.register(fastifyCookie)
  await w.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  await w.register(totp, { redis: limited, encryptionKey: KEY, getUser, issuer: 'Acme', allowNewKeyPrefix: true, keyPrefix: 'w:' })
  await w.close()
  t.equal(warnings.filter((l) => l.includes('maxmemory-policy')).length, 1, 'one warning')
})
