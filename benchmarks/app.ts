// The benchmarked app: one Fastify instance, one Redis client, three sibling scopes.
//
//   /health          no session, no plugin (the ceiling)
//   /base/profile    @fastify/session on RedisSessionStore, no plugin (the baseline)
//   /app/profile     the same session options, store class and cookie, plus fastify-totp (gate, gate-plain)
//   /app/totp/*      the plugin's routes (verify, flood)
//
// The session plugin is registered in /base and in /app with the same options and a store
// instance of its own each: the plugin links the /app store to read the gate's state along
// with each session (one command for both), and the baseline's store stays the plain one an
// app without the plugin has. Both share the client, the key prefix, the cookie and the
// handler; fastify-totp is fastify-plugin wrapped, registered inside /app, so its gate
// hook runs there only.
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import totp, { RedisSessionStore, type TotpUser } from '../plugin/index.js'

export const BASE_PREFIX = '/base'
export const APP_PREFIX = '/app'

export interface BenchAppOptions {
  redis: Redis | Cluster
  /** fastify-totp key prefix. */
  keyPrefix: string
  /** RedisSessionStore prefix. */
  sessionPrefix: string
  /** AES-256-GCM key, base64. */
  encryptionKey: string
  sessionSecret: string
}

/** The app's first-factor identity, as a team would keep it in the session. */
export interface SessionUser { id: string; tenant: string }

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

  await app.register(async (outside) => {
    outside.get('/health', { config: { totp: false } }, async () => ({ ok: true }))
  })

  // The same session options in both scopes; each scope its own store instance, so that
  // the baseline's store stays a plain GET/SET store (the plugin links the gated one).
  const sessions = async (scope: FastifyInstance): Promise<void> => {
    await scope.register(fastifySession, {
      secret: opts.sessionSecret,
      cookie: { secure: false },
      saveUninitialized: false,
      store: new RedisSessionStore({ client: opts.redis, prefix: opts.sessionPrefix })
    })
  }

  await app.register(async (base) => {
    await sessions(base)
    base.get('/profile', profile)
  }, { prefix: BASE_PREFIX })

  await app.register(async (gated) => {
    await sessions(gated)
    await gated.register(totp, {
      redis: opts.redis,
      encryptionKey: opts.encryptionKey,
      keyPrefix: opts.keyPrefix,
      getUser: (request): TotpUser | null => {
        const uid = request.session.get('uid' as never) as unknown as SessionUser | undefined
        return uid === undefined ? null : { id: uid.id, tenant: uid.tenant, roles: [] }
      }
    })
    gated.get('/profile', profile)
  }, { prefix: APP_PREFIX })

  await app.ready()
  return app
}
