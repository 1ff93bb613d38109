// The example app without a browser: its first factor, CSRF, pages and configuration.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { build, type BuildOptions } from '../example/app.js'
import { ConfigError, configFromEnv, describeStore } from '../example/config.js'
import { codeFor, deleteKeys, REDIS_URL, wrongCode } from './helpers.js'

const ROOT = new URL('..', import.meta.url).pathname

/** A browser over app.inject: keeps the session cookie and sends the CSRF token like the pages do. */
class Client {
  cookie: string | undefined
  token: string | undefined
  constructor (readonly app: FastifyInstance) {}

  async request (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object, { csrf = true } = {}): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = {}
    if (method !== 'GET' && csrf) {
      this.token ??= (await this.request('GET', '/csrf')).json().token
      headers['x-csrf-token'] = this.token as string
    }
    if (this.cookie !== undefined) headers.cookie = this.cookie
    // as the pages do: POST and PUT always carry JSON
    const body = payload ?? (method === 'POST' || method === 'PUT' ? {} : undefined)
    const res = await this.app.inject({ method, url, headers, ...(body === undefined ? {} : { payload: body }) })
    const set = res.cookies.find((c) => c.name === 'sessionId')
    if (set !== undefined) this.cookie = `sessionId=${set.value}`
    return res
  }

  async login (username: string, password = 'demo'): Promise<LightMyRequestResponse> {
    const res = await this.request('POST', '/login', { username, password })
    this.token = undefined // the session (and its token) is new after sign-in
    return res
  }
}

async function app (t: Test, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = await build(options)
  t.teardown(() => app.close())
  return app
}

t.test('the pages are served from the app itself, with a CSP and the seed\'s words', async (t) => {
  const server = await app(t)
  const expected: Record<string, string[]> = {
    '/': ['<label for="username">Username</label>', '<label for="password">Password</label>', '>Sign in</button>'],
    '/verify': ['>Verification code</label>', 'Trust this browser for 30 days</label>', '>Verify</button>', '>Use a recovery code instead</button>', '>Recovery code</label>'],
    '/setup': ['<h1>Set up two-factor authentication</h1>', 'alt="QR code"', '>Verification code</label>', '>Confirm</button>', '>Recovery codes</h2>', '>Continue</button>'],
    '/home': ['Signed in as', '>User settings</a>', '>Administration</a>'],
    '/settings': ['>Set up two-factor authentication</button>', 'alt="QR code"', '>Recovery codes</h2>', '>Get new recovery codes</button>', '>Trusted browsers</h2>'],
    '/admin/users': ['Administration › Accounts › Users', '>TOTP</th>', 'href="/admin/settings"'],
    '/admin/settings': ['Administration › Settings › Authentication', 'Enforce TOTP for all users', 'Enforce TOTP for users with the role', '>Grace period (days)</label>', '>Save</button>'],
    '/admin/users/alice': ['Login options', 'Enforce TOTP for the user', '>Revoke TOTP secret</button>', '>Unlock</button>', '<dialog', '>Revoke</button>', '>Save</button>']
  }
  for (const [url, words] of Object.entries(expected)) {
    const res = await server.inject(url)
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], /^text\/html/)
    t.match(res.headers['content-security-policy'], /default-src 'self'/)
    for (const word of words) t.ok(res.body.includes(word), `${url} has ${word}`)
    t.notMatch(res.body, /(src|href)="(https?:)?\/\//, `${url} loads nothing from elsewhere`)
  }
  const js = await server.inject('/app.js')
  t.match(js.headers['content-type'], /^text\/javascript/)
  t.notMatch(js.body, /https?:\/\//, 'the script calls only its own origin')
  t.match((await server.inject('/style.css')).headers['content-type'], /^text\/css/)
  t.equal((await server.inject('/nope')).statusCode, 404)
})

t.test('CSRF: every state-changing request needs the session\'s token in x-csrf-token', async (t) => {
  const server = await app(t)
  const c = new Client(server)
  const noSession = await c.request('POST', '/login', { username: 'bob', password: 'demo' }, { csrf: false })
  t.equal(noSession.statusCode, 403)
  t.equal(noSession.json().code, 'EXAMPLE_CSRF')
  const token = (await c.request('GET', '/csrf')).json().token
  t.match(token, /^[\w-]{43}$/)
  t.equal((await c.request('GET', '/csrf')).json().token, token, 'one token per session')
  t.equal((await c.request('POST', '/login', { username: 'bob', password: 'demo' }, { csrf: false })).statusCode, 403, 'no header')
  const forged = await server.inject({ method: 'POST', url: '/login', payload: { username: 'bob', password: 'demo' }, headers: { cookie: c.cookie!, 'x-csrf-token': `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}` } })
  t.equal(forged.statusCode, 403, 'a wrong token')
  const other = new Client(server)
  const foreign = await server.inject({ method: 'POST', url: '/login', payload: { username: 'bob', password: 'demo' }, headers: { cookie: c.cookie!, 'x-csrf-token': (await other.request('GET', '/csrf')).json().token } })
  t.equal(foreign.statusCode, 403, 'another session\'s token')
  t.equal((await c.login('bob')).statusCode, 200, 'with the token')

  t.equal((await c.request('POST', '/totp/setup', undefined, { csrf: false })).statusCode, 403, 'setup needs it too')
  t.equal((await c.request('POST', '/logout', undefined, { csrf: false })).statusCode, 403, 'and sign-out')
  const admin = new Client(server)
  await admin.login('admin')
  t.equal((await admin.request('PUT', '/totp/users/bob/enforcement', { enforced: true }, { csrf: false })).statusCode, 403)
  t.equal((await server.totp.status('bob')).enforced, false, 'nothing changed')
  t.equal((await admin.request('PUT', '/totp/users/bob/enforcement', { enforced: true })).statusCode, 200)
})

t.test('login: a wrong password and an unknown user get the same 401', async (t) => {
  const server = await app(t)
  for (const [username, password] of [['alice', 'nope'], ['mallory', 'demo'], ['alice', 'Demo']]) {
    const res = await new Client(server).login(username, password)
    t.equal(res.statusCode, 401, `${username}/${password}`)
    t.same(res.json(), { statusCode: 401, code: 'EXAMPLE_BAD_CREDENTIALS', error: 'Unauthorized', message: 'Wrong username or password' })
  }
  t.equal((await new Client(server).login('alice', 'x'.repeat(300))).statusCode, 400, 'over-long input is refused before hashing')
  const c = new Client(server)
  await c.login('alice', 'nope')
  t.equal((await c.request('GET', '/api/profile')).statusCode, 401, 'not signed in')
})

t.test('login says what comes next: none, verify (R3) or setup (R5, R7)', async (t) => {
  const server = await app(t)
  const alice = new Client(server)
  const first = await alice.login('alice')
  t.equal(first.statusCode, 200)
  t.same(first.json(), { user: { id: 'alice', tenant: 'default', parentId: 'manager', roles: [] }, totp: 'none' })
  t.equal((await alice.request('GET', '/api/profile')).json().user.id, 'alice')
  const { secret } = (await alice.request('POST', '/totp/setup')).json()
  t.equal((await alice.request('POST', '/totp/setup/confirm', { code: codeFor(secret, -1) })).statusCode, 200)

  const again = new Client(server)
  t.equal((await again.login('alice')).json().totp, 'verify')
  t.equal((await again.request('GET', '/api/profile')).json().code, 'FST_TOTP_REQUIRED', 'the gate holds the app\'s routes')
  t.equal((await again.request('POST', '/totp/verify', { code: codeFor(secret) })).statusCode, 200)
  t.equal((await again.request('GET', '/api/profile')).statusCode, 200)

  await server.totp.setEnforced('carol', true)
  const carol = new Client(server)
  t.equal((await carol.login('carol')).json().totp, 'setup')
  t.equal((await carol.request('GET', '/api/profile')).json().code, 'FST_TOTP_SETUP_REQUIRED')
  t.equal((await carol.request('GET', '/api/users')).statusCode, 403)

  await server.totp.setSettings({ enforceAll: true })
  t.equal((await new Client(server).login('bob')).json().totp, 'setup', 'enforced tenant-wide')
  t.equal((await new Client(server).login('alice')).json().totp, 'verify', 'enrolled users still verify')
})

t.test('R9 the example hands out 10 recovery codes at setup; one signs in instead of a code, once', async (t) => {
  const server = await app(t)
  const alice = new Client(server)
  await alice.login('alice')
  const { secret } = (await alice.request('POST', '/totp/setup')).json()
  const confirmed = await alice.request('POST', '/totp/setup/confirm', { code: codeFor(secret) })
  const codes: string[] = confirmed.json().recoveryCodes
  t.equal(codes.length, 10)
  t.ok(codes.every((code) => /^[a-z2-9]{5}-[a-z2-9]{5}$/.test(code)), 'each like abcde-fghij')

  const again = new Client(server)
  t.equal((await again.login('alice')).json().totp, 'verify')
  const recovered = await again.request('POST', '/totp/recover', { code: codes[0] })
  t.equal(recovered.statusCode, 200)
  t.same(recovered.json(), { verified: true, recoveryCodesLeft: 9 })
  t.equal((await again.request('GET', '/api/profile')).statusCode, 200, 'past the gate')
  t.equal((await again.request('GET', '/totp/status')).json().recoveryCodesLeft, 9, 'what the home page shows')

  const reused = new Client(server)
  await reused.login('alice')
  t.equal((await reused.request('POST', '/totp/recover', { code: codes[0] })).json().code, 'FST_TOTP_INVALID_CODE', 'used up')
  const fresh = await again.request('POST', '/totp/recovery-codes')
  t.equal(fresh.statusCode, 201, 'User settings > Get new recovery codes')
  t.equal(fresh.json().recoveryCodes.length, 10)
  t.equal((await reused.request('POST', '/totp/recover', { code: codes[1] })).statusCode, 401, 'the old set is gone')
})

t.test('R10 after lockout.maxFailures wrong codes bob stays locked until admin, his parent, clicks Unlock', async (t) => {
  const server = await app(t, { lockout: { maxFailures: 3 } })
  const setup = new Client(server)
  await setup.login('bob')
  const { secret } = (await setup.request('POST', '/totp/setup')).json()
  const codes: string[] = (await setup.request('POST', '/totp/setup/confirm', { code: codeFor(secret) })).json().recoveryCodes

  const bob = new Client(server)
  await bob.login('bob')
  const answers: number[] = []
  for (let i = 0; i < 4; i++) answers.push((await bob.request('POST', '/totp/verify', { code: wrongCode(secret) })).statusCode)
  t.same(answers, [401, 401, 401, 429], 'three failures in a row, then locked')
  const refused = await bob.request('POST', '/totp/verify', { code: codeFor(secret, 1) })
  t.equal(refused.json().code, 'FST_TOTP_LOCKED', 'even the right code')
  t.equal(refused.headers['retry-after'], undefined, 'no end to wait for')
  t.equal((await bob.request('POST', '/totp/recover', { code: codes[0] })).statusCode, 429, 'nor a recovery code')
  t.match((await bob.request('GET', '/totp/status')).json(), { locked: true, lockedUntil: null }, 'the verify page says so')

  const admin = new Client(server)
  await admin.login('admin')
  t.same((await admin.request('GET', '/totp/users/bob')).json(), {
    userId: 'bob', enabled: true, enforced: false, setupRequired: false, setupDeadline: null, locked: true, lockedUntil: null, recoveryCodesLeft: 10
  }, 'the user page data: locked until unlocked')
  const manager = new Client(server)
  await manager.login('manager')
  t.equal((await manager.request('DELETE', '/totp/users/bob/lock')).statusCode, 403, 'not bob\'s parent')
  t.equal((await admin.request('DELETE', '/totp/users/admin/lock')).statusCode, 403, 'never oneself')
  t.equal((await admin.request('DELETE', '/totp/users/bob/lock', undefined, { csrf: false })).statusCode, 403, 'CSRF token needed')
  t.equal((await admin.request('DELETE', '/totp/users/bob/lock')).statusCode, 204, 'Unlock')
  t.match((await admin.request('GET', '/totp/users/bob')).json(), { locked: false, lockedUntil: null })

  const recovered = await bob.request('POST', '/totp/recover', { code: codes[0] })
  t.same(recovered.json(), { verified: true, recoveryCodesLeft: 9 }, 'the same session signs in again')
  t.equal((await bob.request('GET', '/api/profile')).statusCode, 200)
})

t.test('sign-in gives a new session id; sign-out ends the session', async (t) => {
  const server = await app(t)
  const c = new Client(server)
  await c.request('GET', '/csrf')
  const before = c.cookie
  await c.login('bob')
  t.not(c.cookie, before, 'session fixation: a new id')
  t.equal((await c.request('GET', '/api/profile')).statusCode, 200)
  const out = await c.request('POST', '/logout')
  t.same(out.json(), { signedOut: true })
  const after = await c.request('GET', '/api/profile')
  t.equal(after.statusCode, 401)
  t.equal(after.json().code, 'FST_TOTP_UNAUTHENTICATED')
})

t.test('/api/users lists the demo hierarchy to a signed-in user only', async (t) => {
  const server = await app(t)
  t.equal((await server.inject('/api/users')).statusCode, 401)
  const c = new Client(server)
  await c.login('bob')
  t.same((await c.request('GET', '/api/users')).json().users.map((u: { id: string; parentId: string | null }) => [u.id, u.parentId]),
    [['admin', null], ['manager', 'admin'], ['alice', 'manager'], ['carol', 'manager'], ['bob', 'admin']])
})

t.test('R13 R14 the Users page data: a TOTP column from app.totp.statuses, roles counted, only where R8 lets one read', async (t) => {
  const server = await app(t, { lockout: { maxFailures: 3 } })
  const CREATE = 'ROLE_USER_MANAGEMENT_CREATE'
  const enrol = async (username: string): Promise<{ c: Client; secret: string }> => {
    const c = new Client(server)
    await c.login(username)
    const { secret } = (await c.request('POST', '/totp/setup')).json()
    t.equal((await c.request('POST', '/totp/setup/confirm', { code: codeFor(secret) })).statusCode, 200, `${username} enrols`)
    return { c, secret }
  }
  const admin = new Client(server)
  await admin.login('admin')
  const refused = await admin.request('PUT', '/totp/settings', { enforceRoles: [CREATE], gracePeriod: 86_400 })
  t.equal(refused.json().code, 'FST_TOTP_ENROL_FIRST', 'admin holds the role: his own TOTP first')
  const { c: admin2 } = await enrol('admin')
  await enrol('alice')
  const carol = await enrol('carol')
  const locker = new Client(server)
  await locker.login('carol')
  for (let i = 0; i < 3; i++) await locker.request('POST', '/totp/verify', { code: wrongCode(carol.secret) })
  await server.totp.setEnforced('bob', true)
  // what Settings > Authentication sends: only the fields that changed
  const saved = await admin2.request('PUT', '/totp/settings', { enforceRoles: [CREATE], gracePeriod: 86_400 })
  t.same(saved.json(), { enforceAll: false, enforceRoles: [CREATE], gracePeriod: 86_400 })

  const column = async (c: Client): Promise<Array<[string, string[] | null]>> => {
    const res = await c.request('GET', '/api/users')
    t.equal(res.statusCode, 200)
    return res.json().users.map((u: { id: string; totp: string[] | null }) => [u.id, u.totp])
  }
  const all = [
    ['admin', ['enabled', 'enforced']],
    ['manager', ['enforced', 'setup pending']],
    ['alice', ['enabled']],
    ['carol', ['enabled', 'locked']],
    ['bob', ['enforced', 'setup pending']]
  ]
  t.same(await column(admin2), all, 'admin sees every user\'s TOTP column')
  t.equal((await server.totp.status('manager')).setupDeadline, null, 'R14 the Users page\'s look starts no grace period')

  const manager = new Client(server)
  t.equal((await manager.login('manager')).json().totp, 'setup', 'R13 his role is enforced: login says setup')
  t.equal((await manager.request('GET', '/api/profile')).statusCode, 200, 'R14 but within the grace period he may go on')
  t.same(await column(manager), all, 'READ: every row')
  const deadline = Date.parse((await manager.request('GET', '/totp/status')).json().setupDeadline)
  t.ok(Math.abs(deadline - (Date.now() + 86_400_000)) < 60_000, 'R14 a deadline a day after he was first seen enforced')

  const bob = new Client(server)
  await bob.login('bob')
  t.same(await column(bob), [['admin', null], ['manager', null], ['alice', null], ['carol', null], ['bob', ['enforced', 'setup pending']]],
    'R8 bob (no roles) sees only his own')
})

t.test('with Redis, TOTP state and sessions share the Redis and the key prefix', async (t) => {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  const keyPrefix = `ex:${randomBytes(6).toString('hex')}:`
  t.teardown(async () => {
    await deleteKeys(redis, `${keyPrefix}*`)
    redis.disconnect()
  })
  await t.rejects(build({ redis, keyPrefix }), /encryptionKey is required/, 'no key, no start')
  const server = await build({ redis, keyPrefix, allowNewKeyPrefix: true, encryptionKey: randomBytes(32).toString('base64'), sessionSecret: 'x'.repeat(32) })
  t.teardown(() => server.close())
  const c = new Client(server)
  await c.login('admin')
  t.equal((await c.request('PUT', '/totp/users/carol/enforcement', { enforced: true })).statusCode, 200)
  const keys = await redis.keys(`${keyPrefix}*`)
  t.ok(keys.some((k) => k.startsWith(`${keyPrefix}sess:`)), 'sessions under <prefix>sess:')
  t.ok(keys.some((k) => !k.startsWith(`${keyPrefix}sess:`)), 'TOTP state under <prefix>')
  t.equal((await new Client(server).login('carol')).json().totp, 'setup')
})

t.test('configFromEnv: in-memory by default with generated development secrets', async (t) => {
  const config = configFromEnv({})
  t.equal(config.port, 3000)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.redis, null)
  t.equal(Buffer.from(config.encryptionKey, 'base64').length, 32)
  t.ok(config.sessionSecret.length >= 32)
  t.equal(config.warnings.length, 2)
  t.not(configFromEnv({}).encryptionKey, config.encryptionKey, 'random each start')
  t.match(describeStore(null), /^store: in-memory/)
  t.equal(configFromEnv({ PORT: '8080' }).port, 8080)
  t.throws(() => configFromEnv({ PORT: 'http' }), ConfigError)
})

t.test('configFromEnv: Redis needs TOTP_ENCRYPTION_KEY and SESSION_SECRET', async (t) => {
  const key = randomBytes(32).toString('base64')
  const secret = 's'.repeat(32)
  t.throws(() => configFromEnv({ REDIS_URL: 'redis://127.0.0.1:6379', SESSION_SECRET: secret }), { name: 'ConfigError', message: /TOTP_ENCRYPTION_KEY is required with Redis/ })
  t.throws(() => configFromEnv({ REDIS_URL: 'redis://127.0.0.1:6379', TOTP_ENCRYPTION_KEY: key }), { message: /SESSION_SECRET .* is required with Redis/ })
  t.throws(() => configFromEnv({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', SESSION_SECRET: secret }), { message: /TOTP_ENCRYPTION_KEY is required/ })
  t.throws(() => configFromEnv({ TOTP_ENCRYPTION_KEY: randomBytes(16).toString('base64') }), { message: /base64 of 32 bytes/ })
  t.throws(() => configFromEnv({ SESSION_SECRET: 'short' }), { message: /at least 32/ })
  t.throws(() => configFromEnv({ REDIS_URL: 'redis://a', REDIS_CLUSTER_NODES: 'b:1', TOTP_ENCRYPTION_KEY: key, SESSION_SECRET: secret }), { message: /not both/ })
  t.throws(() => configFromEnv({ REDIS_CLUSTER_NODES: 'a:1,b', TOTP_ENCRYPTION_KEY: key, SESSION_SECRET: secret }), { message: /host:port/ })

  const standalone = configFromEnv({ REDIS_URL: 'redis://:hunter2@127.0.0.1:6379/0', TOTP_ENCRYPTION_KEY: key, SESSION_SECRET: secret })
  t.same(standalone.redis, { url: 'redis://:hunter2@127.0.0.1:6379/0' })
  t.same(standalone.warnings, [])
  t.equal(describeStore(standalone.redis), 'store: Redis redis://:***@127.0.0.1:6379/0 (TOTP state and sessions)', 'no password in the log')
  const cluster = configFromEnv({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001', TOTP_ENCRYPTION_KEY: key, SESSION_SECRET: secret })
  t.same(cluster.redis, { clusterNodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }] })
  t.match(describeStore(cluster.redis), /^store: Redis Cluster 10\.0\.0\.1:7000,10\.0\.0\.2:7001/)
})

/** Runs `npm start`'s command with `env`; resolves with its output once `until` matches it or it exits. */
function startServer (
  env: Record<string, string>,
  until: RegExp
): Promise<{ out: string; code: number | null; stop: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'example/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`server did not start: ${out}`)) }, 20_000)
    const done = (code: number | null) => {
      clearTimeout(timer)
      resolve({ out, code, stop: () => child.kill('SIGTERM') })
    }
    const read = (chunk: Buffer) => {
      out += chunk.toString()
      if (until.test(out)) done(null)
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
    child.on('exit', (code) => done(code))
  })
}

t.test('the server refuses to start with Redis but without TOTP_ENCRYPTION_KEY', async (t) => {
  const run = await startServer({ REDIS_URL: 'redis://127.0.0.1:6379', SESSION_SECRET: 's'.repeat(32), PORT: '0' }, /$^/)
  t.equal(run.code, 1)
  t.match(run.out, /fastify-totp-gate example: TOTP_ENCRYPTION_KEY is required with Redis/)
})

t.test('npm start: in-memory store, one line says so, the sign-in page is served', async (t) => {
  const run = await startServer({ PORT: '0' }, /Server listening at (http:\/\/127\.0\.0\.1:\d+)/)
  t.teardown(run.stop)
  const lines = run.out.trim().split('\n').map((line) => JSON.parse(line) as { msg: string })
  t.same(lines.filter((l) => l.msg.startsWith('store: ')).map((l) => l.msg), [describeStore(null)])
  t.ok(lines.some((l) => /TOTP_ENCRYPTION_KEY is not set: a development key/.test(l.msg)), 'warns about the generated key')
  const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(run.out)![1]
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200)
  t.match(await page.text(), /<h1>Sign in<\/h1>/)
})
