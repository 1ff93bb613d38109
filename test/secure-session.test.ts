// The same flows as flow/replay/lockout/admin, on @fastify/secure-session: the session is an
// encrypted cookie (no session store), the TOTP state stays in the real Redis.
import { randomBytes } from 'node:crypto'
import fastifyCookie from '@fastify/cookie'
import fastifySecureSession, { type Session as CookieSession } from '@fastify/secure-session'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance, type FastifyRequest, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import totp, { type FastifyTotpOptions, type TotpSessionState, type TotpUser } from '../plugin/index.js'
import {
  Agent as ServerAgent, awayFromStepEdge, codeFor, deleteKeys, KEY, newPrefix, REDIS_URL, SESSION_SECRET, USERS,
  wrongCode
} from './helpers.js'

interface AppData { uid?: { id: string; tenant: string }; cart?: string; totp?: TotpSessionState }
// both session plugins' typings claim request.session: this app's is the cookie one
const cookieSession = (request: FastifyRequest): CookieSession<AppData> =>
  request.session as unknown as CookieSession<AppData>

/**
 * helpers.ts's browser, for this cookie: its value (`cipher;nonce`, base64) is sent back encoded,
 * as it was set (light-my-request hands it over decoded).
 */
class Agent extends ServerAgent {
  override async request (
    method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}
  ): Promise<LightMyRequestResponse> {
    const res = await super.request(method, url, payload, headers)
    const set = res.cookies.find((c) => c.name === 'sessionId')
    if (set !== undefined) this.cookie = `sessionId=${encodeURIComponent(set.value)}`
    return res
  }
}

/** helpers.ts's `enrol` with this Agent: signs `username` in and enrols TOTP; the agent is verified. */
async function enrol (app: FastifyInstance, username: string): Promise<{ agent: Agent; secret: string }> {
  const agent = new Agent(app)
  await agent.login(username)
  const { secret } = (await agent.post('/totp/setup')).json()
  // the previous step's code, so that the current one stays free for the test
  const confirm = await agent.post('/totp/setup/confirm', { code: codeFor(secret, -1) })
  if (confirm.statusCode !== 200) throw new Error(`confirm failed: ${confirm.statusCode} ${confirm.body}`)
  return { agent, secret }
}

const find = (tenant: string, id: string): TotpUser | null =>
  USERS.find((u) => u.id === id && (u.tenant ?? 'default') === tenant) ?? null

/**
 * test/helpers.ts's `build` with @fastify/secure-session instead of @fastify/session: the same
 * routes, and the cookie named `sessionId` so that `Agent` keeps it. Sign-out removes the user
 * from the cookie (the app's data stays).
 */
async function build (t: Test, plugin: Partial<FastifyTotpOptions> = {}): Promise<{ app: FastifyInstance }> {
  const keyPrefix = newPrefix()
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  const app = Fastify({ logger: false })
  await app.register(fastifyCookie)
  await app.register(fastifySecureSession, {
    key: randomBytes(32),
    cookieName: 'sessionId',
    cookie: { path: '/', httpOnly: true, sameSite: 'lax', secure: false }
  })
  await app.register(totp, {
    redis,
    encryptionKey: KEY,
    keyPrefix,
    allowNewKeyPrefix: true,
    getUser: (request) => {
      const uid = cookieSession(request).get('uid')
      return uid === undefined ? null : find(uid.tenant, uid.id)
    },
    findUser: find,
    ...plugin
  })
  app.post<{ Body: { username: string } }>('/login', { config: { totp: false } }, async (request) => {
    const user = find('default', request.body.username)
    if (user === null) throw Object.assign(new Error('no such user'), { statusCode: 401 })
    cookieSession(request).set('uid', { id: user.id, tenant: 'default' })
    cookieSession(request).set('cart', 'app data')
    return { user: user.id }
  })
  app.post('/logout', { config: { totp: false } }, async (request) => {
    cookieSession(request).set('uid', undefined)
    return { ok: true }
  })
  app.get('/api/profile', async (request) =>
    ({ user: request.totp?.user.id ?? null, cart: cookieSession(request).get('cart') ?? null }))
  app.get('/public', { config: { totp: false } }, async () => ({ ok: true }))
  t.teardown(async () => {
    await app.close()
    await deleteKeys(redis, `${keyPrefix}*`)
    redis.disconnect()
  })
  await app.ready()
  return { app }
}

// What an agent's cookie holds: the session decrypted with the app's key.
const markIn = (app: FastifyInstance, agent: Agent): TotpSessionState | undefined =>
  app.decodeSecureSession(decodeURIComponent(agent.cookie!.slice('sessionId='.length)))?.get('totp')

t.test('S5/R3 secure-session: enrol (setup + confirm), a new sign-in needs the code, verify passes the gate; ' +
  'the cookie changes on verification, the app data survives', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { agent: enrolled, secret } = await enrol(app, 'alice')
  t.equal((await enrolled.get('/api/profile')).statusCode, 200, 'the enrolling session is verified')
  t.match(markIn(app, enrolled), { t: 'default', u: 'alice' }, 'its mark is in the cookie')

  const agent = new Agent(app)
  await agent.login('alice')
  const gated = await agent.get('/api/profile')
  t.equal(gated.statusCode, 401)
  t.equal(gated.json().code, 'FST_TOTP_REQUIRED')
  t.equal((await agent.get('/public')).statusCode, 200, 'config: { totp: false } opts out')
  t.equal((await agent.get('/totp/status')).json().verified, false)
  const before = agent.cookie
  const copy = new Agent(app)
  copy.cookie = before // the cookie before verification, kept by someone else
  const verify = await agent.post('/totp/verify', { code: codeFor(secret) })
  t.equal(verify.statusCode, 200)
  t.same(verify.json(), { verified: true })
  t.not(agent.cookie, before, 'a new cookie on verification')
  t.match(markIn(app, agent), { t: 'default', u: 'alice', g: Number }, 'the mark is in the new cookie')
  const profile = await agent.get('/api/profile')
  t.equal(profile.statusCode, 200)
  t.same(profile.json(), { user: 'alice', cart: 'app data' }, 'first-factor and app data kept')
  t.equal((await agent.get('/totp/status')).json().verified, true)
  t.equal((await copy.get('/api/profile')).statusCode, 401, 'the old cookie is not verified')
})

t.test('S3 secure-session: a code verifies once: the same code again, from another cookie session, ' +
  'is refused', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const first = new Agent(app)
  await first.login('alice')
  const code = codeFor(secret)
  t.equal((await first.post('/totp/verify', { code })).statusCode, 200)
  const second = new Agent(app)
  await second.login('alice')
  const replay = await second.post('/totp/verify', { code })
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'FST_TOTP_INVALID_CODE')
  t.equal((await second.get('/api/profile')).statusCode, 401, 'the replaying session stays unverified')
  t.equal(markIn(app, second), undefined)
  t.equal((await second.post('/totp/verify', { code: codeFor(secret, 1) })).statusCode, 200, 'the next code works')
})

t.test('S4 secure-session: 5 wrong codes, then 429 FST_TOTP_LOCKED, even for the right code', async (t) => {
  await awayFromStepEdge(5000)
  const { app } = await build(t)
  const { secret } = await enrol(app, 'alice')
  const agent = new Agent(app)
  await agent.login('alice')
  for (let i = 1; i <= 5; i++) {
    t.equal((await agent.post('/totp/verify', { code: wrongCode(secret) })).statusCode, 401, `failure ${i} is 401`)
  }
  const locked = await agent.post('/totp/verify', { code: codeFor(secret) })
  t.equal(locked.statusCode, 429)
  t.equal(locked.json().code, 'FST_TOTP_LOCKED')
  t.equal(locked.headers['retry-after'], '30')
  t.equal((await agent.get('/api/profile')).statusCode, 401, 'not verified')
  const other = new Agent(app)
  await other.login('alice')
  t.equal((await other.post('/totp/verify', { code: codeFor(secret) })).statusCode, 429, 'the lock is the user\'s')
})

t.test('R4/R3 secure-session: revocation by the parent makes the still-verified cookie unverified on its next ' +
  'request (generation check)', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { agent: alice } = await enrol(app, 'alice')
  const copy = new Agent(app)
  copy.cookie = alice.cookie // a copy of the verified cookie: it has its own mark
  t.equal((await copy.get('/api/profile')).statusCode, 200, 'the copy is verified too')
  const manager = new Agent(app)
  await manager.login('manager')
  t.equal((await manager.delete('/totp/users/alice/secret')).statusCode, 204)
  const status = await alice.get('/totp/status')
  t.match(status.json(), { enabled: false, verified: false }, 'unverified on its next request')
  t.equal(markIn(app, alice), undefined, 'and the mark is gone from the cookie it gets back')
  // alice enrols again (a new generation): the copy's mark names an old one
  const again = new Agent(app)
  await again.login('alice')
  const { secret } = (await again.post('/totp/setup')).json()
  t.equal((await again.post('/totp/setup/confirm', { code: codeFor(secret, -1) })).statusCode, 200)
  const stale = await copy.get('/api/profile')
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_TOTP_REQUIRED')
  t.equal((await again.get('/api/profile')).statusCode, 200, 'the new enrolment\'s session passes')
})

t.test('R3 secure-session: sign-out (the app removes its user from the cookie) drops the mark: signing in again ' +
  'needs a code; a copy of the verified cookie stays verified until revoked', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t)
  const { agent: alice, secret } = await enrol(app, 'alice')
  const copy = new Agent(app)
  copy.cookie = alice.cookie
  t.equal((await alice.post('/logout')).statusCode, 200)
  t.equal((await alice.get('/public')).statusCode, 200)
  t.equal(markIn(app, alice), undefined, 'the signed-out cookie loses its mark on its next request')
  await alice.login('alice')
  t.equal((await alice.get('/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'signed in again: a code is asked')
  t.equal((await alice.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  t.equal((await alice.get('/api/profile')).statusCode, 200)
  // what the README says: the server cannot end a cookie it no longer sees; the generation does
  t.equal((await copy.get('/api/profile')).statusCode, 200, 'a copy made before sign-out is still verified')
  await app.totp.revoke('alice')
  t.equal((await copy.get('/totp/status')).json().verified, false, 'until the secret is revoked')
})

t.test('R15 secure-session: a trusted device verifies a new cookie session (the device mark `d`)', async (t) => {
  await awayFromStepEdge()
  const { app } = await build(t, { trustDevice: true })
  const { secret } = await enrol(app, 'alice')
  const first = new Agent(app)
  await first.login('alice')
  const res = await first.post('/totp/verify', { code: codeFor(secret), trustDevice: true })
  const device = res.cookies.find((c) => c.name === 'totp_device')!.value
  const later = new Agent(app)
  await later.login('alice')
  const before = later.cookie
  const cookie = `${later.cookie!}; totp_device=${device}`
  t.equal((await later.request('GET', '/api/profile', undefined, { cookie })).statusCode, 200)
  t.not(later.cookie, before, 'a new cookie')
  t.match(markIn(app, later), { u: 'alice', d: 1 })
  t.equal((await later.get('/api/profile')).statusCode, 200, 'verified without the device cookie now')
})

t.test('options: session picks the plugin; without a session plugin, or the wrong one, FST_TOTP_OPTIONS', async (t) => {
  const getUser = (): null => null
  // registered without waiting: a refusal comes with ready()
  const ready = async (session: 'none' | 'session' | 'secure-session', opts: Partial<FastifyTotpOptions> = {}) => {
    const app = Fastify({ logger: false })
    t.teardown(() => app.close())
    await app.register(fastifyCookie)
    if (session === 'session') await app.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
    if (session === 'secure-session') await app.register(fastifySecureSession, { key: randomBytes(32) })
    app.register(totp, { getUser, issuer: 'Test', ...opts })
    await app.ready()
  }
  await t.rejects(ready('none'),
    { code: 'FST_TOTP_OPTIONS', message: /register @fastify\/session or @fastify\/secure-session/ }, 'neither')
  await t.rejects(ready('session', { session: 'secure-session' }),
    { code: 'FST_TOTP_OPTIONS', message: /@fastify\/secure-session is not registered/ }, 'the other one registered')
  await t.rejects(ready('secure-session', { session: 'session' }),
    { code: 'FST_TOTP_OPTIONS', message: /@fastify\/session is not registered/ }, 'the other one registered')
  await t.rejects(ready('session', { session: 'cookie' as never }),
    { code: 'FST_TOTP_OPTIONS', message: /session must be 'session' or 'secure-session'/ }, 'an unknown kind')
  const both = Fastify({ logger: false })
  t.teardown(() => both.close())
  await both.register(fastifyCookie)
  await both.register(fastifySession, { secret: SESSION_SECRET })
  await both.register(fastifySecureSession, { key: randomBytes(32), sessionName: 'cookieSession' })
  both.register(totp, { getUser, issuer: 'Test', session: 'secure-session' })
  await t.rejects(async () => { await both.ready() },
    { code: 'FST_TOTP_OPTIONS', message: /request\.session is not @fastify\/secure-session's/ },
    'both registered: request.session is @fastify/session\'s')
  await t.resolves(ready('secure-session'), 'detected: @fastify/secure-session')
  await t.resolves(ready('secure-session', { session: 'secure-session' }), 'named: @fastify/secure-session')
  await t.resolves(ready('session', { session: 'session' }), 'named: @fastify/session')
})
