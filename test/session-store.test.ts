import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import Fastify, { type FastifyRequest, type Session } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionOptions } from '@fastify/session'
import { Redis } from 'ioredis'
import { RedisSessionStore, type RedisSessionStoreOptions } from '../plugin/session-store.js'
import { startRedis } from './support/redis-servers.js'

type LightResponse = { cookies: { name: string, value: string }[] }

const SECRET = 'a-session-secret-of-at-least-32-characters'
const shared = new Redis(6379, '127.0.0.1')
t.teardown(() => shared.quit())

// Fields written by these tests only; cast so as not to augment fastify's Session for everyone.
const bag = (request: FastifyRequest) => request.session as unknown as Record<string, unknown>

function uniquePrefix (t: Test): string {
  const prefix = `test:session-store:${randomUUID()}:`
  t.teardown(async () => {
    const keys = await shared.keys(`${prefix}*`)
    if (keys.length > 0) await shared.del(...keys)
  })
  return prefix
}

async function build (
  t: Test,
  store: Partial<RedisSessionStoreOptions> & { client: Redis },
  session: Partial<FastifySessionOptions> = {}
) {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: SECRET,
    cookie: { secure: false },
    store: new RedisSessionStore(store),
    ...session
  })
  app.get('/session', async (request) => ({ id: request.session.sessionId, value: bag(request).value ?? null }))
  app.post<{ Body: { value: string, other?: string } }>('/session', async (request) => {
    bag(request).value = request.body.value
    if (request.body.other) bag(request).other = request.body.other
    return { id: request.session.sessionId }
  })
  app.delete('/session', async (request) => {
    await request.session.destroy()
    return { destroyed: true }
  })
  app.post<{ Body: { keep: string[] } }>('/session/regenerate', async (request) => {
    const old = request.session.sessionId
    await request.session.regenerate(request.body.keep)
    return { old, id: request.session.sessionId, value: bag(request).value ?? null, other: bag(request).other ?? null }
  })
  t.teardown(() => app.close())
  return app
}

const sessionCookie = (res: LightResponse) => res.cookies.find((c) => c.name === 'sessionId')?.value

t.test('a value written in one request is read in the next, stored with a TTL', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })

  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'hello' } })
  t.equal(write.statusCode, 200)
  const cookie = sessionCookie(write)
  t.ok(cookie, 'a session cookie is set')
  const { id } = write.json()

  const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: cookie! } })
  t.same(read.json(), { id, value: 'hello' })

  const stored = JSON.parse((await shared.get(prefix + id))!)
  t.equal(stored.value, 'hello')
  t.ok(stored.cookie, 'the cookie is stored with the session')
  const ttl = await shared.pttl(prefix + id)
  t.ok(ttl > 86_390_000 && ttl <= 86_400_000, `default TTL of one day (${ttl} ms)`)
})

t.test('the TTL follows the cookie maxAge', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix }, { cookie: { secure: false, maxAge: 60_000 } })
  const res = await app.inject({ method: 'POST', url: '/session', payload: { value: 'x' } })
  const ttl = await shared.pttl(prefix + res.json().id)
  t.ok(ttl > 55_000 && ttl <= 60_000, `TTL of the cookie (${ttl} ms)`)
})

t.test('the ttl option applies to cookies without expiry', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix, ttl: 120 })
  const res = await app.inject({ method: 'POST', url: '/session', payload: { value: 'x' } })
  const ttl = await shared.pttl(prefix + res.json().id)
  t.ok(ttl > 115_000 && ttl <= 120_000, `TTL of the option (${ttl} ms)`)
})

t.test('session.destroy() removes the key', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })
  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'hello' } })
  const cookie = sessionCookie(write)!
  const { id } = write.json()
  t.equal(await shared.exists(prefix + id), 1)

  const destroyed = await app.inject({ method: 'DELETE', url: '/session', cookies: { sessionId: cookie } })
  t.same(destroyed.json(), { destroyed: true })
  t.equal(await shared.exists(prefix + id), 0, 'the key is gone')

  const after = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: cookie } })
  t.not(after.json().id, id, 'the old cookie starts a new session')
  t.equal(after.json().value, null)
})

t.test('session.regenerate(keys) gives a new id, keeps only the listed keys, drops the old key', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })
  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'kept', other: 'dropped' } })
  const { id } = write.json()

  const res = await app.inject({ method: 'POST', url: '/session/regenerate', payload: { keep: ['value'] }, cookies: { sessionId: sessionCookie(write)! } })
  const body = res.json()
  t.equal(body.old, id)
  t.not(body.id, id, 'a new session id')
  t.equal(body.value, 'kept')
  t.equal(body.other, null, 'fields not listed are not carried over')
  t.equal(await shared.exists(prefix + id), 0, 'the old key is gone')
  t.equal(JSON.parse((await shared.get(prefix + body.id))!).value, 'kept')

  const newCookie = sessionCookie(res)!
  const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: newCookie } })
  t.same(read.json(), { id: body.id, value: 'kept' }, 'the new cookie reads the new session')
})

t.test('a stored value that is not a JSON object is no session', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })
  for (const garbage of ['{not json', 'null', '42']) {
    const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'v' } })
    const { id } = write.json()
    await shared.set(prefix + id, garbage)
    const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: sessionCookie(write)! } })
    t.equal(read.statusCode, 200, `${garbage}: no crash`)
    t.not(read.json().id, id, `${garbage}: a new session`)
    t.equal(read.json().value, null)
  }
})

t.test('store API: missing key, expired cookie, default prefix', async (t) => {
  const prefix = uniquePrefix(t)
  const store = new RedisSessionStore({ client: shared, prefix })
  const get = promisify(store.get.bind(store))
  const set = promisify(store.set.bind(store))
  const destroy = promisify(store.destroy.bind(store))

  t.equal(await get('missing'), null, 'a missing key is no session')
  t.equal(await destroy('missing'), undefined, 'destroying a missing key is fine')

  const live = { cookie: { originalMaxAge: 1000, expires: new Date(Date.now() + 1000) }, v: 1 } as unknown as Session
  await set('live', live)
  t.match(await get('live'), { v: 1 })
  const ttl = await shared.pttl(prefix + 'live')
  t.ok(ttl > 0 && ttl <= 1000, `TTL of the expiry (${ttl} ms)`)

  const expired = {
    cookie: { originalMaxAge: null, expires: new Date(Date.now() - 1000).toISOString() }
  } as unknown as Session
  await set('live', expired)
  t.equal(await shared.exists(prefix + 'live'), 0, 'a session already expired is deleted, not stored')

  const bad = { cookie: { originalMaxAge: null, expires: 'not a date' } } as unknown as Session
  await set('bad', bad)
  t.ok(await shared.pttl(prefix + 'bad') > 86_000_000, 'an unreadable expiry falls back to the ttl option')

  const id = randomUUID()
  const defaults = new RedisSessionStore({ client: shared })
  await promisify(defaults.set.bind(defaults))(id, { cookie: { originalMaxAge: null } } as unknown as Session)
  t.teardown(() => shared.del(`sess:${id}`))
  t.equal(await shared.exists(`sess:${id}`), 1, "default prefix 'sess:'")
})

t.test('options are checked', async (t) => {
  const make = (opts: unknown) => () => new RedisSessionStore(opts as RedisSessionStoreOptions)
  t.throws(make(undefined), /client/)
  t.throws(make({}), /client/)
  t.throws(make({ client: {} }), /client/)
  t.throws(make({ client: shared, prefix: 1 }), /prefix/)
  t.throws(make({ client: shared, ttl: 0 }), /ttl/)
  t.throws(make({ client: shared, ttl: 1.5 }), /ttl/)
  t.throws(make({ client: shared, timeout: -1 }), /timeout/)
})

t.test('S6 Redis down: 503 FST_TOTP_UNAVAILABLE, then service resumes by itself', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const app = await build(t, { client, prefix: 'sess:' })

  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'v' } })
  const cookie = sessionCookie(write)!
  t.equal(write.statusCode, 200)

  await server.stop()
  const started = Date.now()
  const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: cookie } })
  t.equal(read.statusCode, 503, 'reading a session answers 503')
  t.match(read.json(), { statusCode: 503, code: 'FST_TOTP_UNAVAILABLE', error: 'Service Unavailable' })
  t.ok(Date.now() - started < 2_000, 'without hanging')

  const fresh = await app.inject({ method: 'POST', url: '/session', payload: { value: 'v' } })
  t.equal(fresh.statusCode, 503, 'saving a new session answers 503')
  t.equal(fresh.json().code, 'FST_TOTP_UNAVAILABLE')

  await server.start()
  if (client.status !== 'ready') await once(client, 'ready')
  const again = await app.inject({ method: 'POST', url: '/session', payload: { value: 'back' } })
  t.equal(again.statusCode, 200, 'works again after the restart')
  const reread = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: sessionCookie(again)! } })
  t.equal(reread.json().value, 'back')
})

t.test('S6 Redis hung: 503 after the timeout, then service resumes by itself', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const client = new Redis(server.port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const app = await build(t, { client, prefix: 'sess:', timeout: 300 })

  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'v' } })
  const cookie = sessionCookie(write)!

  await server.freeze()
  const started = Date.now()
  const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: cookie } })
  const elapsed = Date.now() - started
  t.equal(read.statusCode, 503)
  t.equal(read.json().code, 'FST_TOTP_UNAVAILABLE')
  t.equal(read.json().message, 'Session store unavailable, try again shortly', 'no internals in the answer')
  t.ok(elapsed >= 290 && elapsed < 1_500, `bounded wait (${elapsed} ms)`)

  await server.thaw()
  const after = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: cookie } })
  t.equal(after.statusCode, 200)
  t.equal(after.json().value, 'v', 'the session survived the hang')
})

t.test('a value stored by the previous release (a header line before the JSON) is read back, and written back as plain JSON', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })
  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'hello' } })
  const { id } = write.json()
  const json = (await shared.get(prefix + id))!
  await shared.set(prefix + id, `!c\tu-key\tt-key\tp-key\n${json}`)
  const read = await app.inject({ method: 'GET', url: '/session', cookies: { sessionId: sessionCookie(write)! } })
  t.same(read.json(), { id, value: 'hello' })
  await app.inject({ method: 'POST', url: '/session', payload: { value: 'again' }, cookies: { sessionId: sessionCookie(write)! } })
  t.same(JSON.parse((await shared.get(prefix + id))!).value, 'again', 'plain JSON again')
})

t.test('a session value in Redis is plain JSON, readable by any other reader', async (t) => {
  const prefix = uniquePrefix(t)
  const app = await build(t, { client: shared, prefix })
  const { id } = (await app.inject({ method: 'POST', url: '/session', payload: { value: 'hello' } })).json()
  t.match(JSON.parse((await shared.get(prefix + id))!), { value: 'hello', cookie: { path: '/' } })
})

t.test('a session saved again unchanged in the same request is written once (regenerate, then the save on send)', async (t) => {
  const prefix = uniquePrefix(t)
  const client = new Redis(6379, '127.0.0.1')
  t.teardown(() => client.disconnect())
  const app = await build(t, { client, prefix })
  app.post('/session/regenerate-and-change', async (request) => {
    await request.session.regenerate(['value'])
    bag(request).value = 'changed'
    return { id: request.session.sessionId }
  })
  const write = await app.inject({ method: 'POST', url: '/session', payload: { value: 'kept' } })
  const cookies = { sessionId: sessionCookie(write)! }
  const writes: string[] = []
  const set = client.set.bind(client) as (...args: unknown[]) => Promise<unknown>
  ;(client as unknown as { set: (...args: unknown[]) => Promise<unknown> }).set = (...args) => {
    writes.push(String(args[0]))
    return set(...args)
  }

  const same = await app.inject({ method: 'POST', url: '/session/regenerate', payload: { keep: ['value'] }, cookies })
  t.same(writes, [prefix + same.json().id], 'one write of the new session')
  writes.length = 0
  const changed = await app.inject({ method: 'POST', url: '/session/regenerate-and-change', cookies: { sessionId: sessionCookie(same)! } })
  t.same(writes, [prefix + changed.json().id, prefix + changed.json().id], 'changed after regenerate: written again')
  t.equal(JSON.parse((await client.get(prefix + changed.json().id))!).value, 'changed')
})
