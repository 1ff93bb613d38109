import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import type { FastifyInstance } from 'fastify'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import type { Test } from 'tap'
import type { FastifyTotpOptions } from '../plugin/index.js'
import totp from '../plugin/index.js'
import { randomBytes } from 'node:crypto'
import {
  behindProxy, cookieSessions, documented, errorHandler, injectTest, rateLimited, skipOthers
} from './fixtures/works-with.js'
import { generateCode, nextCode } from '../plugin/testing.js'
import { Agent, deleteKeys, enrol, KEY, newPrefix, REDIS_URL, SESSION_SECRET, USERS } from './helpers.js'

// The README's "Works with" snippets (test/fixtures/works-with.ts), run.

const redis = new Redis(REDIS_URL)
t.teardown(() => redis.disconnect())

// the plugin's options of these apps: both session plugins answer session.get('uid')
const options = (keyPrefix: string): FastifyTotpOptions => ({
  redis,
  keyPrefix,
  allowNewKeyPrefix: true,
  encryptionKey: KEY,
  issuer: 'Acme',
  getUser: (request) => {
    const id = (request.session as unknown as { get: (k: string) => string | undefined }).get('uid')
    return USERS.find((u) => u.id === id && u.tenant === undefined) ?? null
  }
})

async function app (t: Test, register: (app: FastifyInstance, options: FastifyTotpOptions) => Promise<void>,
  base: FastifyInstance = Fastify(), extra: Partial<FastifyTotpOptions> = {}): Promise<FastifyInstance> {
  const keyPrefix = newPrefix()
  t.teardown(async () => { await base.close(); await deleteKeys(redis, `${keyPrefix}*`) })
  await base.register(fastifyCookie)
  await base.register(fastifySession, { secret: SESSION_SECRET, cookie: { secure: false } })
  await register(base, { ...options(keyPrefix), ...extra })
  base.post<{ Body: { username: string } }>('/login', { config: { totp: false } }, async (request) => {
    request.session.set('uid' as never, request.body.username as never)
    return { ok: true }
  })
  base.get('/api/profile', async () => ({ ok: true }))
  base.get('/documentation/json', async () => ({ openapi: '3.0.3' }))
  await base.ready()
  return base
}

const plain = async (a: FastifyInstance, o: FastifyTotpOptions): Promise<void> => { await a.register(totp, o) }

t.test('Works with @fastify/rate-limit: code attempts and gate refusals are limited', async (t) => {
  // no lock here, to see the rate limit alone
  const a = await app(t, rateLimited, Fastify(), { lockout: { freeFailures: 100 } })
  await enrol(a, 'alice')
  const browser = new Agent(a, '10.1.1.1')
  await browser.login('alice')
  const codes = []
  for (let i = 0; i < 6; i++) codes.push((await browser.post('/totp/verify', { code: '000000' })).statusCode)
  t.same(codes, [401, 401, 401, 401, 401, 429], 'the 6th attempt in the minute is refused by the rate limit')
  const gated = new Agent(a, '10.1.1.2')
  await gated.login('alice')
  const refusals = []
  for (let i = 0; i < 100; i++) refusals.push((await gated.get('/api/profile')).statusCode)
  t.equal(refusals.at(-1), 429, 'gate refusals count toward the global limit')
})

t.test('Works with proxies: trustProxy gives each client its own IP budget', async (t) => {
  const base = behindProxy()
  const ips: string[] = []
  base.addHook('onResponse', async (request) => { ips.push(request.ip) })
  const a = await app(t, plain, base)
  await a.inject({ url: '/api/profile', headers: { 'x-forwarded-for': '203.0.113.7' } })
  t.same(ips, ['203.0.113.7'])
})

t.test('Works with an error handler: the plugin\'s refusals keep their status and code', async (t) => {
  const base = Fastify()
  errorHandler(base)
  const a = await app(t, plain, base)
  await enrol(a, 'alice')
  const browser = new Agent(a)
  await browser.login('alice')
  const res = await browser.get('/api/profile')
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_TOTP_REQUIRED')
})

t.test('Works with inject tests: fastify-totp-gate/testing computes the codes', async (t) => {
  const a = await app(t, plain)
  const login = await a.inject({ method: 'POST', url: '/login', payload: { username: 'alice' } })
  const cookie = `sessionId=${login.cookies.find((c) => c.name === 'sessionId')!.value}`
  t.equal(await injectTest(a, cookie), 200)
})

t.test('Works with other plugins\' routes: skip() lets them answer', async (t) => {
  const a = await app(t, skipOthers)
  await enrol(a, 'alice')
  const browser = new Agent(a)
  await browser.login('alice')
  t.equal((await browser.get('/documentation/json')).statusCode, 200)
  t.equal((await browser.get('/api/profile')).statusCode, 401)
})

t.test('Works with @fastify/swagger: the plugin\'s routes are documented, with the app\'s tags', async (t) => {
  const a = await app(t, documented)
  type Spec = { paths: Record<string, Record<string, { tags?: string[], responses: object }>> }
  const spec = a.swagger() as unknown as Spec
  t.same(spec.paths['/totp/verify'].post.tags, ['auth'])
  t.ok(Object.keys(spec.paths['/totp/verify'].post.responses).includes('200'))
})

t.test('Works with @fastify/secure-session: sign in, enrol, a new session needs the code, verify', async (t) => {
  const keyPrefix = newPrefix()
  const a = Fastify()
  t.teardown(async () => { await a.close(); await deleteKeys(redis, `${keyPrefix}*`) })
  await cookieSessions(a, options(keyPrefix), randomBytes(32))
  a.post<{ Body: { username: string } }>('/login', { config: { totp: false } }, async (request) => {
    (request.session as unknown as { set: (k: string, v: string) => void }).set('uid', request.body.username)
    return { ok: true }
  })
  a.get('/api/profile', async () => ({ ok: true }))
  await a.ready()
  let cookie = ''
  const call = async (method: 'GET' | 'POST', url: string, payload?: object) => {
    const res = await a.inject({ method, url, payload: payload ?? (method === 'POST' ? {} : undefined), headers: { cookie } })
    const set = res.headers['set-cookie']
    const first = Array.isArray(set) ? set[0] : set
    if (first !== undefined) cookie = first.split(';')[0]
    return res
  }
  await call('POST', '/login', { username: 'alice' })
  const { secret } = (await call('POST', '/totp/setup')).json()
  t.equal((await call('POST', '/totp/setup/confirm', { code: generateCode(secret) })).statusCode, 200)
  cookie = ''
  await call('POST', '/login', { username: 'alice' })
  t.equal((await call('GET', '/api/profile')).json().code, 'FST_TOTP_REQUIRED')
  t.equal((await call('POST', '/totp/verify', { code: nextCode(secret) })).statusCode, 200)
  t.equal((await call('GET', '/api/profile')).statusCode, 200)
})
