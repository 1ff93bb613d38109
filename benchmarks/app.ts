// The benchmarked app: one Fastify instance, one Redis client, the plugin on the root.
//
//   /health          no session read (no cookie), opted out of the gate (the ceiling)
//   /base/profile    @fastify/session on RedisSessionStore, opted out of the gate (the baseline)
//   /app/profile     the same route and session, gated by fastify-totp-gate (gate, gate-plain)
//   /app/step-up/profile  the same handler, a step-up route (config.totp.maxAge) (gate-policies)
//   /app/totp/*      the plugin's routes (verify, flood)
//
// The baseline and the gated route share everything (client, session store, cookie, handler);
// the baseline's route says `config: { totp: false }`, so the gate only looks at its config.
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import totp, { type TotpUser } from '../plugin/index.js'
import { RedisSessionStore } from '../plugin/session-store.js'

export const BASE_PREFIX = '/base'
export const APP_PREFIX = '/app'
/** The step-up route of gate-policies: a session must have verified a code within STEP_UP_MAX_AGE seconds. */
export const STEP_UP_PATH = `${APP_PREFIX}/step-up/profile`
/** Longer than any run: the sessions seeded as verified at the start stay fresh enough throughout. */
export const STEP_UP_MAX_AGE = 3600

export interface BenchAppOptions {
  redis: Redis | Cluster
  /** fastify-totp-gate key prefix. */
  keyPrefix: string
  /** RedisSessionStore prefix. */
  sessionPrefix: string
  /** AES-256-GCM key, base64. */
  encryptionKey: string
  sessionSecret: string
}

/** The app's first-factor identity, as a team would keep it in the session (roles: for `enforceRoles`). */
export interface SessionUser { id: string; tenant: string; roles?: string[] }

// The app's own protected route: the same function behind /base and /app.
async function profile (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const uid = request.session.get('uid' as never) as unknown as SessionUser | undefined
  if (uid === undefined) return reply.code(401).send({ error: 'sign in first' })
  return { user: uid.id, cart: request.session.get('cart' as never) }
}

export async function buildBenchApp (opts: BenchAppOptions): Promise<FastifyInstance> {
  // Only loopback is a trusted proxy: the flood scenario names its (many) client IPs in X-Forwarded-For.
  const app = Fastify({ logger: false, trustProxy: '127.0.0.1' })
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: opts.sessionSecret,
    cookie: { secure: false },
    saveUninitialized: false,
    store: new RedisSessionStore({ client: opts.redis, prefix: opts.sessionPrefix })
  })
  await app.register(totp, {
    redis: opts.redis,
    encryptionKey: opts.encryptionKey,
    keyPrefix: opts.keyPrefix,
    allowNewKeyPrefix: true, // a bench run's own prefix on a shared Redis
    prefix: `${APP_PREFIX}/totp`,
    getUser: (request): TotpUser | null => {
      const uid = request.session.get('uid' as never) as unknown as SessionUser | undefined
      return uid === undefined ? null : { id: uid.id, tenant: uid.tenant, roles: uid.roles ?? [] }
    }
  })
  app.get('/health', { config: { totp: false } }, async () => ({ ok: true }))
  app.get(`${BASE_PREFIX}/profile`, { config: { totp: false } }, profile)
  app.get(`${APP_PREFIX}/profile`, profile)
  app.get(STEP_UP_PATH, { config: { totp: { maxAge: STEP_UP_MAX_AGE } } }, profile)
  await app.ready()
  return app
}
