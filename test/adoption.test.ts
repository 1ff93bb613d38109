import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import t from 'tap'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'
import { generateCode, nextCode } from '../plugin/testing.js'

// Adopting the plugin in an app that already has its own plugins and tests.

t.test('skip(request): routes the app does not own pass as if opted out; others stay gated', async (t) => {
  const { app } = await build(t, {
    plugin: { skip: (request) => request.url.startsWith('/docs') },
    before: (a) => {
      a.get('/docs/json', async () => ({ openapi: '3.0.0' }))
      a.get('/api/other', async () => ({ ok: true }))
    }
  })
  await enrol(app, 'alice')
  const a = new Agent(app)
  await a.login('alice')
  t.equal((await a.get('/docs/json')).statusCode, 200, 'skipped: an unverified session gets it')
  t.equal((await a.get('/api/other')).json().code, 'FST_TOTP_REQUIRED', 'the rest is gated')
  await t.rejects(build(t, { plugin: { skip: 'yes' as never } }), { code: 'FST_TOTP_OPTIONS' })
})

t.test('routeOptions are merged into every plugin route: config and hooks; the plugin\'s own settings (and its gate) win', async (t) => {
  const seen: string[] = []
  const { app } = await build(t, {
    plugin: {
      routeOptions: {
        config: { audit: 'totp', totp: false },
        schema: { tags: ['security'] },
        onRequest: async (request: FastifyRequest) => {
          seen.push(`${request.url} ${String((request.routeOptions.config as { audit?: string }).audit)}`)
        }
      }
    }
  })
  const { agent } = await enrol(app, 'alice')
  t.ok(seen.includes('/totp/setup totp') && seen.includes('/totp/setup/confirm totp'), 'the app\'s hook and config on plugin routes')
  t.equal((await agent.post('/totp/verify', { code: '123456' })).statusCode, 401)
  const weakening = [{ bodyLimit: 10 }, { attachValidation: true }, { errorHandler: () => {} },
    { schema: { body: {} } }]
  for (const bad of weakening) {
    await t.rejects(build(t, { plugin: { routeOptions: bad } }), { code: 'FST_TOTP_OPTIONS' },
      `routeOptions ${Object.keys(bad)[0]} refused: it could weaken the plugin's routes`)
  }
  const unverified = new Agent(app)
  await unverified.login('admin')
  await enrol(app, 'admin')
  t.equal((await unverified.get('/totp/settings')).json().code, 'FST_TOTP_REQUIRED', 'config.totp from routeOptions is ignored: still gated')
  t.notOk(seen.some((s) => s.startsWith('/api/')), 'only the plugin\'s routes')
  const tagged: unknown[] = []
  const docs = await build(t, {
    plugin: { routeOptions: { schema: { tags: ['security'], hide: true } } },
    preRegister: async (a) => { a.addHook('onRoute', (r) => { if (r.url.startsWith('/totp')) tagged.push(r.schema) }) }
  })
  t.ok(docs.app.hasRoute({ method: 'GET', url: '/totp/status' }))
  t.ok(tagged.length >= 8 && tagged.every((s) => (s as { tags?: string[] }).tags?.[0] === 'security' &&
    (s as { hide?: boolean }).hide === true), 'the app\'s tags and hide win over the plugin\'s documentation')
})

t.test('rate limiting recipe: @fastify/rate-limit before the plugin limits gate refusals and /totp/verify', async (t) => {
  const { app } = await build(t, {
    before: () => {},
    plugin: { routeOptions: { config: { rateLimit: { max: 3, timeWindow: 60_000 } } } },
    preRegister: async (a) => { await a.register(fastifyRateLimit, { global: true, max: 5, timeWindow: 60_000 }) }
  })
  await enrol(app, 'alice')
  const a = new Agent(app, '10.9.9.9')
  await a.login('alice')
  const verify = []
  for (let i = 0; i < 4; i++) verify.push((await a.post('/totp/verify', { code: '000000' })).statusCode)
  t.same(verify.slice(0, 3).every((s) => s === 401), true)
  t.equal(verify[3], 429, 'the 4th /totp/verify is refused by the rate limit (routeOptions)')
  const b = new Agent(app, '10.9.9.8')
  await b.login('alice')
  const gated = []
  for (let i = 0; i < 6; i++) gated.push((await b.get('/api/profile')).statusCode)
  t.same(gated.slice(0, 4), [401, 401, 401, 401], 'the gate refuses (login counted as the first request)')
  t.equal(gated.at(-1), 429, 'then the global limit refuses before the gate')
})

t.test('a warning when X-Forwarded-For arrives and trustProxy is off (every client would share the proxy\'s IP budget)', async (t) => {
  const lines: string[] = []
  const { app } = await build(t, { logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } })
  await app.inject({ url: '/public', headers: { 'x-forwarded-for': '1.2.3.4' } })
  await app.inject({ url: '/public', headers: { 'x-forwarded-for': '1.2.3.5' } })
  t.equal(lines.filter((l) => l.includes('trustProxy is off')).length, 1, 'once')
  const quiet: string[] = []
  const trusted = await build(t, {
    trustProxy: true,
    logger: { level: 'warn', stream: { write: (l: string) => { quiet.push(l) } } }
  })
  await trusted.app.inject({ url: '/public', headers: { 'x-forwarded-for': '1.2.3.4' } })
  t.equal(quiet.filter((l) => l.includes('trustProxy')).length, 0, 'not with trustProxy')
})

t.test('fastify-totp-gate/testing: generateCode and nextCode give the codes an authenticator app shows', async (t) => {
  await awayFromStepEdge(5000)
  const { app } = await build(t)
  const a = new Agent(app)
  await a.login('alice')
  const { secret } = (await a.post('/totp/setup')).json()
  t.equal(generateCode(secret), codeFor(secret))
  t.equal(generateCode(secret, { at: new Date('2026-01-01T00:00:00Z') }), codeFor(secret, 0, Date.parse('2026-01-01T00:00:00Z') / 1000))
  t.equal(generateCode(secret, { at: 1_000_000, steps: -1 }), codeFor(secret, -1, 1000))
  t.equal((await a.post('/totp/setup/confirm', { code: generateCode(secret) })).statusCode, 200)
  const b = new Agent(app)
  await b.login('alice')
  t.equal((await b.post('/totp/verify', { code: generateCode(secret) })).statusCode, 401, 'a code verifies once')
  t.equal((await b.post('/totp/verify', { code: nextCode(secret) })).statusCode, 200, 'the next step\'s code verifies')
  t.match(generateCode(secret, { digits: 8 }), /^\d{8}$/)
})
