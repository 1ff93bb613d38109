import t from 'tap'
import fc from 'fast-check'
import { sign } from '@fastify/cookie'
import type { LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import { KeyLayout } from '../plugin/stores/keys.js'
import { Agent, awayFromStepEdge, build, codeFor, enrol, SESSION_SECRET, USERS } from './helpers.js'
import { startRedis } from './support/redis-servers.js'

// S7 and R3 under hostile input, property-based: generated bodies, params, headers and
// cookies at every route of the plugin and at a protected app route. Asserted for every
// request: never a 5xx, never a pass through the gate for a session that did not verify,
// and no change at all in Redis (TOTP state and sessions), compared key by key.

const RUNS = Number(process.env.HOSTILE_RUNS ?? 250)
const prototypes = [Object.prototype, Array.prototype, Function.prototype, String.prototype]
const protoKeys = prototypes.map((p) => Object.getOwnPropertyNames(p).sort().join(','))

// a private server: the snapshot is the whole keyspace
const server = await startRedis()
const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
t.teardown(async () => { redis.disconnect(); await server.stop() })

await awayFromStepEdge()
const { app } = await build(t, { redis })
const aliceEnrolled = await enrol(app, 'alice')
const admin = await enrol(app, 'admin') // enrolled and verified: the strongest actor
const aliceUnverified = new Agent(app)
await aliceUnverified.login('alice')
const bob = new Agent(app) // signed in, not enrolled, no roles
await bob.login('bob')
// each session's first gated request names its user in the session (see TotpSessionState), as
// the sign-in flow's first page does: done before the baseline, so that it is no "change"
for (const a of [aliceUnverified, bob]) await a.get('/totp/status')
const EXISTING = new Set(USERS.map((u) => u.id))

type Actor = 'anonymous' | 'tampered' | 'alice-unverified' | 'bob' | 'admin-verified'
const cookieOf: Record<Exclude<Actor, 'tampered'>, string | undefined> = {
  anonymous: undefined,
  'alice-unverified': aliceUnverified.cookie,
  bob: bob.cookie,
  'admin-verified': admin.agent.cookie
}

/** Everything in Redis, key by key (strings and hashes: all the plugin and the session store write). */
async function snapshot (): Promise<Map<string, string>> {
  const keys = (await redis.keys('*')).sort()
  const out = new Map<string, string>()
  for (const key of keys) {
    const type = await redis.type(key)
    if (type === 'string') out.set(key, (await redis.get(key))!)
    else if (type === 'hash') out.set(key, JSON.stringify(Object.entries(await redis.hgetall(key)).sort()))
    else out.set(key, type)
  }
  return out
}
const baseline = await snapshot()
t.ok([...baseline.keys()].some((k) => k.includes('}u:alice')) && [...baseline.keys()].some((k) => k.includes('sess:')), 'the baseline holds TOTP state and sessions')

async function unchanged (): Promise<string | null> {
  const now = await snapshot()
  const diff = [...new Set([...baseline.keys(), ...now.keys()])].filter((k) => baseline.get(k) !== now.get(k))
  return diff.length === 0 ? null : `Redis changed: ${diff.map((k) => `${k}: ${baseline.get(k) ?? '∅'} → ${now.get(k) ?? '∅'}`).join('; ')}`
}

interface Route { method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: 'code' | 'enforced' | 'enforceAll' | 'none' }
const ROUTES: Route[] = [
  { method: 'GET', path: '/totp/status' },
  { method: 'POST', path: '/totp/setup', body: 'none' },
  { method: 'POST', path: '/totp/setup/confirm', body: 'code' },
  { method: 'POST', path: '/totp/verify', body: 'code' },
  { method: 'GET', path: '/totp/users/:userId' },
  { method: 'DELETE', path: '/totp/users/:userId/secret' },
  { method: 'PUT', path: '/totp/users/:userId/enforcement', body: 'enforced' },
  { method: 'GET', path: '/totp/settings' },
  { method: 'PUT', path: '/totp/settings', body: 'enforceAll' },
  { method: 'GET', path: '/api/profile' }
]

/** Would the route's schema accept this body? Those are legitimate requests: left out. */
function wellFormed (route: Route, raw: string | undefined): boolean {
  if (route.body === undefined) return false
  if (route.body === 'none') return true
  let v: any
  try { v = JSON.parse(raw ?? '') } catch { return false }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const keys = Object.keys(v)
  if (keys.length !== 1 || keys[0] !== route.body) return false
  return route.body === 'code' ? typeof v.code === 'string' && /^[0-9]{6}$/.test(v.code) : typeof v[route.body] === 'boolean'
}

/** The answer's verdict: null when acceptable, else why not. */
function verdict (actor: Actor, route: Route, res: LightMyRequestResponse): string | null {
  if (res.statusCode >= 500) return `${res.statusCode} ${res.body.slice(0, 300)}`
  let body: any = null
  try { body = res.json() } catch {}
  const ok = res.statusCode < 300
  if (route.path === '/api/profile' && ok) {
    const expected = actor === 'bob' ? 'bob' : actor === 'admin-verified' ? 'admin' : null
    // the gate let it through: only as the session's own verified (or not enrolled) user, or as nobody
    return body?.user === expected ? null : `passed the gate as ${String(body?.user)}`
  }
  if (!ok) return null
  if (route.path === '/totp/status' && actor !== 'anonymous' && actor !== 'tampered') return null
  if (route.method === 'GET' && actor === 'admin-verified') return null // reads
  if (route.method === 'GET' && route.path === '/totp/users/:userId' && actor === 'bob') return null // R8 oneself
  return `${res.statusCode} for ${actor}: ${res.body.slice(0, 200)}`
}

/** Answers seen, `actor status code` → count: shows the runs reached past the gate and the schemas. */
const seen = new Map<string, number>()
const tally = (key: string): void => { seen.set(key, (seen.get(key) ?? 0) + 1) }

async function send (
  actor: Actor,
  cookie: string | undefined,
  route: Route,
  opts: { userId?: string, rawUserId?: string, body?: string, headers?: Record<string, string> }
): Promise<string | null> {
  const id = opts.rawUserId ?? encodeURIComponent(opts.userId ?? 'alice')
  const res = await app.inject({
    method: route.method,
    url: route.path.replace(':userId', id),
    headers: { ...(cookie !== undefined ? { cookie } : {}), ...opts.headers },
    ...(opts.body !== undefined ? { payload: opts.body } : {})
  })
  let code = ''
  try { code = res.json().code ?? '' } catch {}
  tally(`${actor} ${res.statusCode} ${code}`.trim())
  return verdict(actor, route, res) ?? await unchanged()
}

// ---- arbitraries ----
const unicodeDigits = fc.constantFrom('١٢٣٤٥٦', '１２３４５６', '𝟏𝟐𝟑𝟒𝟓𝟔', '੧੨੩੪੫੬', '١2٣4٥6', '12345６', '123456\n', ' 123456', '123456 ', '+12345', '-12345', '12345.', '1e5', '0x1234', '123 56', '123\u0000456', '1234567', '12345')
const protoKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'code', 'enforced', 'enforceAll', 'toString', 'hasOwnProperty', '', 'CODE', 'code ')
const huge = fc.integer({ min: 1_000, max: 100_000 }).chain((n) => fc.constantFrom('1'.repeat(n), 'x'.repeat(n), '١'.repeat(n)))
const scalar = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), unicodeDigits, huge)
const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(fc.oneof(protoKey, fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 3 }))
}))
const nastyRaw = fc.constantFrom(
  '{"__proto__":{"polluted":"yes"}}', '{"code":"123456","__proto__":{"polluted":"yes"}}', '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '{"code":{"__proto__":{"polluted":"yes"}}}', '{"enforceAll":true,"constructor":{"prototype":{"polluted":"yes"}}}', '{"enforced":true,"__proto__":null}',
  '{"code":123456}', '{"code":["123456"]}', '{"code":"123456","extra":1}', '{"code":"123456","code":"12345"}', '{"enforceAll":"true"}', '{"enforced":1}',
  '{"enforced":"false"}', '{"enforceAll":null}', '{', '[]', 'null', '"123456"', '123456', 'true', '', '{"code":"\\u0661\\u0662\\u0663\\u0664\\u0665\\u0666"}',
  '{"code":"12345\\u0000"}', 'code=123456', '--x\r\nContent-Disposition: form-data; name="code"\r\n\r\n123456\r\n--x--', '\u0000\u0001', '{"a":'.repeat(500) + '1' + '}'.repeat(500)
)
const body = fc.oneof(value.map((v) => JSON.stringify(v) ?? 'undefined'), nastyRaw, fc.string({ maxLength: 300 }), huge)
const contentType = fc.constantFrom<string | undefined>(
  'application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json; charset=utf-16', 'application/json;charset=latin1',
  'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/vnd.api+json', 'application/json, text/plain',
  'application/jsonx', ';;;', 'application/json; boundary=--', undefined
)
const actor = fc.constantFrom<Exclude<Actor, 'tampered'>>('anonymous', 'alice-unverified', 'bob', 'admin-verified')
const route = fc.constantFrom(...ROUTES)
const idPart = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.constantFrom('../', '..', '{', '}', ':', '%', '{default:0}', '}u:alice', 'p:alice', '..%2Fsettings', '\u0000', '١٢٣', '*', '?', '#', '/', '\\', ' ', 'ALICE', 'alice ', 'al\u0131ce'),
  fc.integer({ min: 200, max: 3_000 }).map((n) => 'a'.repeat(n))
)
const userId = fc.array(idPart, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('')).filter((id) => id !== '' && !EXISTING.has(id))
// raw path segments, not encoded by us: malformed escapes, dot segments, encoded slashes, NUL
const rawUserId = fc.constantFrom('..', '.', '%2e%2e', '%ZZ', '%', '%00', '%2F', 'x%2F..%2Fy', '..;', '%E0%A4%A', '%C0%AF', '%u0061', '%25', '%7B%7D', 'a%3Ab', '%EF%BF%BD', '%F0%9F%92%A9')

// ---- properties ----

t.test('S7 hostile bodies and content types at every route, from every kind of session: never 5xx, never a pass, no change', async (t) => {
  await fc.assert(fc.asyncProperty(actor, route, body, contentType, async (who, r, b, ct) => {
    fc.pre(!(wellFormed(r, b) && (r.body === 'code' || who === 'admin-verified' || (who === 'bob' && r.path === '/totp/setup'))))
    if (r.path === '/totp/setup' && who === 'bob') return // a legitimate setup whatever the body: creates a pending secret
    const why = await send(who, cookieOf[who], r, { body: b, headers: ct === undefined ? {} : { 'content-type': ct } })
    if (why !== null) throw new Error(`${who} ${r.method} ${r.path} [${ct}] ${b.slice(0, 120)}: ${why}`)
  }), { numRuns: RUNS + 100 })
  t.comment([...seen].sort().map(([k, n]) => `${k}: ${n}`).join(', '))
  for (const expected of ['alice-unverified 401 FST_TOTP_REQUIRED', 'alice-unverified 400 FST_TOTP_BAD_REQUEST', 'admin-verified 400 FST_TOTP_BAD_REQUEST', 'anonymous 401 FST_TOTP_UNAUTHENTICATED', 'bob 403 FST_TOTP_FORBIDDEN']) {
    t.ok(seen.has(expected), `reached: ${expected}`)
  }
  t.ok([...seen.keys()].some((k) => k.includes(' 413 ')), 'reached: 413 for bodies over the limit')
  seen.clear()
})

t.test('S7/R4 hostile user ids in the path, encoded and raw, at the admin routes: never 5xx, never 2xx on a write, no change', async (t) => {
  const adminRoutes = ROUTES.filter((r) => r.path.includes(':userId'))
  const anyId = fc.oneof(userId.map((id) => ({ userId: id })), rawUserId.map((raw) => ({ rawUserId: raw })))
  await fc.assert(fc.asyncProperty(actor, fc.constantFrom(...adminRoutes), anyId, fc.boolean(),
    async (who, r, id, enforced) => {
      const why = await send(who, cookieOf[who], r, {
        ...id,
        ...(r.method === 'PUT' ? { body: JSON.stringify({ enforced }), headers: { 'content-type': 'application/json' } } : {})
      })
      if (why !== null) throw new Error(`${who} ${r.method} ${JSON.stringify(id).slice(0, 120)}: ${why}`)
    }), { numRuns: RUNS })
  t.comment([...seen].sort().map(([k, n]) => `${k}: ${n}`).join(', '))
  t.ok(seen.has('admin-verified 404 FST_TOTP_USER_NOT_FOUND'), 'reached the user lookup')
  t.ok([...seen.keys()].some((k) => / (400 FST_ERR_BAD_URL|414 FST_ERR_MAX_PARAM_LENGTH)$/.test(k)), 'and the router\'s own refusals (malformed escapes, params over 100 characters)')
})

/** Tampered forms of a real signed session cookie. */
function tamper (cookie: string, how: { kind: number, at: number, char: string, secret: string }): string {
  const value = decodeURIComponent(cookie.slice('sessionId='.length))
  const dot = value.lastIndexOf('.')
  const id = value.slice(0, dot)
  const flip = (s: string, i: number): string => {
    const at = i % s.length
    const c = s[at] === how.char ? (how.char === 'A' ? 'B' : 'A') : how.char
    return s.slice(0, at) + c + s.slice(at + 1)
  }
  const forms = [
    () => flip(value, how.at), // one character anywhere
    () => `${flip(id, how.at)}${value.slice(dot)}`, // the id, keeping the signature
    () => sign(id, how.secret), // the right id signed with another secret
    () => id, // unsigned
    () => `${id}.`, // empty signature
    () => `${value}${how.char}`, // appended
    () => value.slice(0, -1), // truncated
    () => sign(`${id}x`, SESSION_SECRET.slice(1)) // a near-miss secret
  ]
  const kind = how.kind % (forms.length + 1)
  // the cookie twice: a tampered one next to the real one, either order
  if (kind === forms.length) {
    const pair = [`sessionId=${encodeURIComponent(flip(value, how.at))}`, `sessionId=${encodeURIComponent(value)}`]
    return (how.at % 2 === 0 ? pair : pair.reverse()).join('; ')
  }
  return `sessionId=${encodeURIComponent(forms[kind]())}`
}

t.test('R3/S5 tampered session cookies (flipped characters, other signatures) and odd cookie headers: never a pass, never 5xx, no change', async (t) => {
  const how = fc.record({ kind: fc.nat(), at: fc.nat(), char: fc.constantFrom('A', 'z', '0', '.', '%', '-', '_', '+', '/', '='), secret: fc.string({ minLength: 32, maxLength: 40 }) })
  const oddCookie = fc.oneof(
    fc.string({ maxLength: 200 }).map((s) => `sessionId=${s}`),
    fc.constantFrom('sessionId=', 'sessionId', '=', ';;;', 'sessionId=%', 'sessionId=%ZZ', 'sessionId="x"', `sessionId=${'a'.repeat(8000)}`, '__proto__=x; constructor=y', 'sessionId=__proto__.x'),
    fc.string({ unit: 'grapheme', maxLength: 100 })
  )
  // one side of the coin: alice's unverified session, tampered; the other: odd cookies from nobody
  const anyCookie = fc.oneof(how.map((h) => ({ tampered: h })), oddCookie.map((c) => ({ odd: c })))
  await fc.assert(fc.asyncProperty(route, anyCookie, async (r, c) => {
    const cookie = 'tampered' in c ? tamper(aliceUnverified.cookie!, c.tampered) : c.odd
    const res = await app.inject({ method: r.method, url: r.path.replace(':userId', 'alice'), headers: { cookie } })
    let why = res.statusCode >= 500 ? `${res.statusCode} ${res.body.slice(0, 200)}` : null
    if (why === null && res.statusCode < 300) {
      const user = (() => { try { return res.json().user } catch { return undefined } })()
      // a session that is not alice's verified one: at most "nobody" on the app route, nothing elsewhere
      if (!(r.path === '/api/profile' && user === null) && !(r.path === '/totp/status' && res.json().verified === false)) why = `${res.statusCode}: ${res.body.slice(0, 200)}`
    }
    why ??= await unchanged()
    if (why !== null) throw new Error(`${r.method} ${r.path} cookie ${cookie.slice(0, 120)}: ${why}`)
  }), { numRuns: RUNS })
  t.pass(`${RUNS} runs`)
})

t.test('R3 the gate under hostile paths, methods and headers: an unverified session reaches nothing but /totp/status and opted-out routes', async (t) => {
  const path = fc.constantFrom(
    '/api/profile', '/api/profile/', '/api//profile', '//api/profile', '/API/profile', '/api/profile?x=1', '/api/profile#x', '/api/profile%00', '/api/%70rofile',
    '/totp/status/../../api/profile', '/totp/verify/../../api/profile', '/totp/%2e%2e/api/profile', '/totp/status?/../../api/profile', '/api/profile;totp=false',
    '/totp/users/alice', '/totp/settings', '/totp/setup', '/totp/setup/confirm', '/nope', '/totp', '/totp/', '/totp/status/', '/totp/STATUS', '/public/../api/profile'
  )
  const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH')
  const headers = fc.dictionary(fc.constantFrom('x-forwarded-for', 'x-forwarded-host', 'x-original-url', 'x-http-method-override', 'host', 'content-type', 'accept', 'x-totp', 'authorization'),
    fc.oneof(fc.constantFrom('127.0.0.1', 'GET', '/totp/status', 'application/json', '*/*', 'true'), fc.string({ maxLength: 30 })), { maxKeys: 3 })
  await fc.assert(fc.asyncProperty(path, method, headers, async (p, m, h) => {
    const res = await app.inject({ method: m as 'GET', url: p, headers: { ...h, cookie: aliceUnverified.cookie! } })
    let why = res.statusCode >= 500 ? `${res.statusCode} ${res.body.slice(0, 200)}` : null
    if (why === null && res.statusCode < 300) {
      // HEAD has no body: judge it by the GET of the same URL
      const seen = m === 'HEAD' ? await app.inject({ method: 'GET', url: p, headers: { ...h, cookie: aliceUnverified.cookie! } }) : res
      let b: any = null
      try { b = seen.json() } catch {}
      const statusRoute = b?.enabled === true && b?.verified === false
      const optedOut = b?.ok === true
      if (!statusRoute && !optedOut) why = `${res.statusCode}: ${res.body.slice(0, 200)}`
    }
    why ??= await unchanged()
    if (why !== null) throw new Error(`${m} ${p} ${JSON.stringify(h)}: ${why}`)
  }), { numRuns: RUNS })
  t.pass(`${RUNS} runs`)
})

t.test('key layout under hostile tenant and user ids (every key and check is per tenant): distinct users never share a key, and an id cannot move a user out of its slot', async (t) => {
  const layout = new KeyLayout('totp:', 64)
  const part = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.constantFrom('{', '}', ':', '%', '%7B', '{a}', '}u:', 'p:', 't', 'ip:', '.', '@', '-', '_', '%3A', '\u0000'))
  const id = fc.array(part, { maxLength: 4 }).map((p) => p.join(''))
  const ref = fc.record({ tenant: id, userId: id })
  const tagOf = (key: string): string => key.slice(key.indexOf('{') + 1, key.indexOf('}'))
  fc.assert(fc.property(ref, ref, (a, b) => {
    const keysOf = (r: typeof a): string[] => [layout.user(r), layout.pending(r)]
    if (a.tenant !== b.tenant || a.userId !== b.userId) {
      for (const k of keysOf(a)) if (keysOf(b).includes(k)) throw new Error(`shared key ${k}`)
    }
    for (const r of [a, b]) {
      const tag = `${layout.tag(r.tenant, layout.shardOf(r.userId)).slice('totp:{'.length, -1)}`
      for (const k of [...keysOf(r), layout.settingsFor(r)]) if (tagOf(k) !== tag) throw new Error(`${k}: hash tag ${tagOf(k)}, expected ${tag}`)
      if ([layout.settingsFor(r), layout.ip(r.userId)].some((k) => keysOf(r).includes(k) || keysOf(a === r ? b : a).includes(k))) throw new Error('a user key equals a settings or IP key')
    }
  }), { numRuns: 2000 })
  t.pass('2000 runs')
})

t.test('no prototype pollution, and the app still works for a legitimate user afterwards', async (t) => {
  t.equal(({} as any).polluted, undefined)
  t.equal((Object.prototype as any).polluted, undefined)
  t.same(prototypes.map((p) => Object.getOwnPropertyNames(p).sort().join(',')), protoKeys, 'no new properties on the built-in prototypes')
  t.equal(await unchanged(), null, 'Redis as before the runs')
  t.equal((await aliceUnverified.get('/api/profile')).statusCode, 401, 'alice still gated')
  await awayFromStepEdge()
  t.equal((await aliceUnverified.post('/totp/verify', { code: codeFor(aliceEnrolled.secret) })).statusCode, 200, 'and verifies normally')
  t.equal((await aliceUnverified.get('/api/profile')).statusCode, 200)
  t.not(await unchanged(), null, 'positive control: a legitimate verification shows in the snapshot')
})
