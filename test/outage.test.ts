import t from 'tap'
import { Redis } from 'ioredis'
import { Agent, awayFromStepEdge, build, codeFor, enrol } from './helpers.js'
import { startRedis } from './support/redis-servers.js'

t.test('S6 fail closed: with Redis stopped a protected route answers 503, not 200; service resumes by itself', async (t) => {
  await awayFromStepEdge(8000)
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 })
  t.teardown(() => redis.disconnect())
  // sessions in memory, so that the gate itself (not the session store) meets the outage
  const { app } = await build(t, { redis, sessions: 'memory', plugin: { timeout: 500 } })
  const { agent, secret } = await enrol(app, 'alice')
  const bob = new Agent(app)
  await bob.login('bob')
  const fresh = new Agent(app)
  await fresh.login('alice')
  t.equal((await agent.get('/api/profile')).statusCode, 200)

  await server.stop()
  for (const [who, a] of [['verified alice', agent], ['plain bob', bob], ['unverified alice', fresh]] as const) {
    const res = await a.get('/api/profile')
    t.equal(res.statusCode, 503, `${who}: 503`)
    t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
  }
  const verify = await fresh.post('/totp/verify', { code: codeFor(secret) })
  t.equal(verify.statusCode, 503, 'verification fails closed')
  t.equal((await fresh.get('/totp/status')).statusCode, 503)
  t.equal((await agent.get('/public')).statusCode, 200, 'opted-out routes still answer')
  await t.rejects(app.totp.status('alice'), { code: 'FST_TOTP_UNAVAILABLE', statusCode: 503 }, 'the operator API fails with 503 too')
  await t.rejects(app.totp.revoke('alice'), { code: 'FST_TOTP_UNAVAILABLE' })

  await server.start()
  let status = 0
  for (let i = 0; i < 50 && status !== 200; i++) {
    status = (await bob.get('/api/profile')).statusCode
    if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(status, 200, 'resumes without a restart')
})

t.test('S6 a hung Redis does not hang requests past the timeout, and nothing passes', async (t) => {
  await awayFromStepEdge(8000)
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => redis.disconnect())
  const { app } = await build(t, { redis, sessionTimeout: 300, plugin: { timeout: 300 } })
  const { agent, secret } = await enrol(app, 'alice')
  const fresh = new Agent(app)
  await fresh.login('alice')
  await server.freeze()
  const started = Date.now()
  const results = await Promise.all([agent.get('/api/profile'), fresh.post('/totp/verify', { code: codeFor(secret) })])
  const took = Date.now() - started
  await server.thaw()
  t.same(results.map((r) => r.statusCode), [503, 503])
  t.ok(took < 2000, `answered within the bound (${took} ms; session store 300 ms + plugin 300 ms, generous margin)`)
  t.equal((await agent.get('/api/profile')).statusCode, 200, 'thawed: the verified session still passes')
  t.equal((await fresh.get('/api/profile')).statusCode, 401, 'the unverified one is still gated')
  t.equal((await fresh.post('/totp/verify', { code: codeFor(secret) })).statusCode, 200, 'the code was not consumed by the failed attempt')
})

t.test('S6 the Redis session store fails closed too', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 })
  t.teardown(() => redis.disconnect())
  const { app } = await build(t, { redis })
  const bob = new Agent(app)
  await bob.login('bob')
  await server.stop()
  const res = await bob.get('/api/profile')
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'FST_TOTP_UNAVAILABLE')
})
