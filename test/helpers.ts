import { randomBytes } from 'node:crypto'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type SessionStore } from '@fastify/session'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type LightMyRequestResponse } from 'fastify'
import { Redis, type Cluster } from 'ioredis'
import type { Test } from 'tap'
import totp, { type FastifyTotpOptions, type TotpUser } from '../plugin/index.js'
import { RedisSessionStore } from '../plugin/session-store.js'
import { decodeSecret, generateCode, DEFAULT_TOTP_PARAMS, timeStepAt } from '../plugin/totp/index.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
export const KEY = randomBytes(32)
export const SESSION_SECRET = 'a-test-session-secret-of-at-least-32-chars'

/** The SPEC's demo hierarchy, plus a user of another tenant. */
export const USERS: TotpUser[] = [
  { id: 'admin', parentId: null, roles: ['ROLE_USER_MANAGEMENT_ADMIN', 'ROLE_USER_MANAGEMENT_CREATE', 'ROLE_USER_MANAGEMENT_READ'] },
  { id: 'manager', parentId: 'admin', roles: ['ROLE_USER_MANAGEMENT_CREATE', 'ROLE_USER_MANAGEMENT_READ'] },
  { id: 'alice', parentId: 'manager', roles: [] },
  { id: 'carol', parentId: 'manager', roles: [] },
  { id: 'bob', parentId: 'admin', roles: [] },
  { id: 'reader', parentId: 'admin', roles: ['ROLE_USER_MANAGEMENT_READ'] },
  { id: 'dave', parentId: 'reader', roles: [] },
  { id: 'creator', parentId: 'admin', roles: ['ROLE_USER_MANAGEMENT_CREATE'] },
  { id: 'frank', parentId: 'creator', roles: [] },
  { id: 'eve', tenant: 'other', parentId: null, roles: ['ROLE_USER_MANAGEMENT_ADMIN', 'ROLE_USER_MANAGEMENT_CREATE', 'ROLE_USER_MANAGEMENT_READ'] },
  { id: 'alice', tenant: 'other', parentId: 'eve', roles: [] }
]

export interface Built {
  app: FastifyInstance
  redis: Redis | Cluster
  keyPrefix: string
  users: TotpUser[]
  events: Array<Record<string, unknown>>
}

export interface BuildOptions {
  redis?: Redis | Cluster
  /** Share state with another instance: pass its keyPrefix. */
  keyPrefix?: string
  users?: TotpUser[]
  plugin?: Partial<FastifyTotpOptions>
  /**
   * Where sessions live: a RedisSessionStore on `redis`, @fastify/session's memory store, or this one (given the
   * RedisSessionStore). @default 'redis'
   */
  sessions?: 'redis' | 'memory' | ((redisStore: RedisSessionStore) => SessionStore)
  /** Where TOTP state lives. @default 'redis' */
  store?: 'redis' | 'memory'
  /** Milliseconds the Redis session store waits for Redis. @default the store's own (2000) */
  sessionTimeout?: number
  /** Called before the app is ready: a test's own hooks. */
  before?: (app: FastifyInstance) => void
  /** Called before anything is registered: plugins an app registers first (rate limiting…). */
  preRegister?: (app: FastifyInstance) => Promise<void>
  /** Fastify's own options. @default logger off */
  logger?: FastifyServerOptions['logger']
  trustProxy?: boolean
}

/** A fresh prefix per test: tests never see each other's keys. */
export const newPrefix = (): string => `t:${randomBytes(6).toString('hex')}:`

export async function deleteKeys (redis: Redis, pattern: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
}

/**
 * An app as teams write it: their own first factor (POST /login, session.uid),
 * @fastify/session on the project's Redis session store, then the plugin.
 */
export async function build (t: Test, opts: BuildOptions = {}): Promise<Built> {
  const keyPrefix = opts.keyPrefix ?? newPrefix()
  const ownRedis = opts.redis === undefined
  const redis = opts.redis ?? new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  const users = opts.users ?? USERS
  const events: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: opts.logger ?? false, trustProxy: opts.trustProxy })
  await opts.preRegister?.(app)
  const sessionStore = typeof opts.sessions === 'function' ? opts.sessions : (store: RedisSessionStore) => store
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: SESSION_SECRET,
    cookie: { secure: false },
    saveUninitialized: false,
    store: opts.sessions === 'memory' ? undefined : sessionStore(new RedisSessionStore({ client: redis, prefix: `${keyPrefix}sess:`, timeout: opts.sessionTimeout }))
  })
  const find = (tenant: string, id: string): TotpUser | null =>
    users.find((u) => u.id === id && (u.tenant ?? 'default') === tenant) ?? null
  // a registration that refuses (a test of bad options) leaves no client open
  try {
    await app.register(totp, {
      ...(opts.store === 'memory' ? {} : { redis }),
      encryptionKey: KEY,
      keyPrefix,
      // every test has its own prefix on the one Redis (their records go with their keys)
      allowNewKeyPrefix: true,
      getUser: (request) => {
        const s = request.session.get('uid' as never) as unknown as { id: string; tenant: string } | undefined
        return s === undefined ? null : find(s.tenant, s.id)
      },
      findUser: find,
      onEvent: (e) => { events.push({ ...e }) },
      ...opts.plugin
    })
  } catch (err) {
    if (ownRedis) redis.disconnect()
    throw err
  }
  app.post<{ Body: { username: string; tenant?: string } }>('/login', { config: { totp: false } }, async (request) => {
    const user = find(request.body.tenant ?? 'default', request.body.username)
    if (user === null) throw Object.assign(new Error('no such user'), { statusCode: 401 })
    request.session.set('uid' as never, { id: user.id, tenant: user.tenant ?? 'default' } as never)
    request.session.set('cart' as never, 'app data' as never)
    return { user: user.id }
  })
  app.post('/logout', { config: { totp: false } }, async (request) => {
    await request.session.destroy()
    return { ok: true }
  })
  app.get('/api/profile', async (request) => ({ user: request.totp?.user.id ?? null, cart: request.session.get('cart' as never) }))
  app.get('/public', { config: { totp: false } }, async () => ({ ok: true }))
  t.teardown(async () => {
    await app.close()
    if (ownRedis) {
      await deleteKeys(redis as Redis, `${keyPrefix}*`)
      redis.disconnect()
    }
  })
  opts.before?.(app)
  await app.ready()
  return { app, redis, keyPrefix, users, events }
}

/** A browser: keeps the session cookie between requests. */
export class Agent {
  cookie: string | undefined
  constructor (readonly app: FastifyInstance, readonly ip = '127.0.0.1') {}

  async request (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const res = await this.app.inject({
      method,
      url,
      remoteAddress: this.ip,
      // a JSON client: the plugin's POST and PUT routes take application/json only
      ...(payload === undefined && method !== 'POST' && method !== 'PUT' ? {} : { payload: (payload ?? {}) as any }),
      headers: { ...(this.cookie !== undefined ? { cookie: this.cookie } : {}), ...headers }
    })
    const set = res.cookies.find((c) => c.name === 'sessionId')
    if (set !== undefined) this.cookie = `sessionId=${set.value}`
    return res
  }

  get (url: string): Promise<LightMyRequestResponse> { return this.request('GET', url) }
  post (url: string, payload?: unknown): Promise<LightMyRequestResponse> { return this.request('POST', url, payload) }
  put (url: string, payload?: unknown): Promise<LightMyRequestResponse> { return this.request('PUT', url, payload) }
  delete (url: string): Promise<LightMyRequestResponse> { return this.request('DELETE', url) }

  async login (username: string, tenant?: string): Promise<LightMyRequestResponse> {
    return this.post('/login', { username, ...(tenant !== undefined ? { tenant } : {}) })
  }
}

/** The code an authenticator shows for `secret` at `epochSeconds` (default now), or `offset` steps away. */
export function codeFor (secret: string, offset = 0, epochSeconds = Date.now() / 1000): string {
  const at = Math.floor(epochSeconds) + offset * DEFAULT_TOTP_PARAMS.period
  return generateCode(decodeSecret(secret), DEFAULT_TOTP_PARAMS, at)
}

/** A code that is none of the codes the window accepts now (nor the next step's). */
export function wrongCode (secret: string): string {
  const good = new Set([-1, 0, 1, 2].map((o) => codeFor(secret, o)))
  for (let i = 0; ; i++) {
    const c = String(100000 + (i * 7919) % 900000).padStart(6, '0')
    if (!good.has(c)) return c
  }
}

export const currentStep = (): number => timeStepAt(DEFAULT_TOTP_PARAMS)

/** Signs `username` in on a new agent and enrols TOTP; returns the agent (verified) and the secret. */
export async function enrol (
  app: FastifyInstance,
  username: string,
  tenant?: string
): Promise<{ agent: Agent; secret: string; recoveryCodes: string[] }> {
  const agent = new Agent(app)
  await agent.login(username, tenant)
  const setup = await agent.post('/totp/setup')
  if (setup.statusCode !== 201) throw new Error(`setup failed: ${setup.statusCode} ${setup.body}`)
  const { secret } = setup.json()
  // confirm with the previous step's code so the current one stays free for the test
  const confirm = await agent.post('/totp/setup/confirm', { code: codeFor(secret, -1) })
  if (confirm.statusCode !== 200) throw new Error(`confirm failed: ${confirm.statusCode} ${confirm.body}`)
  return { agent, secret, recoveryCodes: confirm.json().recoveryCodes ?? [] }
}

/** Waits until the current time step has at least `ms` left, so a test does not straddle a step boundary. */
export async function awayFromStepEdge (ms = 3000): Promise<void> {
  const left = 30000 - (Date.now() % 30000)
  if (left < ms) await new Promise((resolve) => setTimeout(resolve, left + 50))
}
