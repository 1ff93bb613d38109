// The example app: its own first factor (username + password), then fastify-totp-gate.
// In your app, import from 'fastify-totp-gate' instead of '../plugin/index.js'.
import { randomBytes } from 'node:crypto'
import { subject } from '@casl/ability'
import fastifyCookie from '@fastify/cookie'
import createError from '@fastify/error'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import totp, {
  DEFAULT_TENANT, TotpUnauthenticatedError, TotpUnavailableError, type LockoutOptions, type TotpRequestState,
  type TotpUser, type TotpUserStatus
} from '../plugin/index.js'
import { RedisSessionStore } from '../plugin/session-store.js'
import { csrfProtection } from './csrf.js'
import { servePages } from './pages.js'
import { createDirectory } from './users.js'

declare module 'fastify' {
  interface Session {
    /** Who passed the first factor (the password) in this session. */
    auth?: { id: string; tenant: string }
  }
}

export interface BuildOptions {
  /** Where TOTP state and sessions live; without it, both stay in this process. */
  redis?: Redis | Cluster
  /** Fastify's logger option. @default false */
  logger?: FastifyServerOptions['logger']
  /** Base64 of 32 bytes. Required with Redis; without, the plugin makes one per process. */
  encryptionKey?: string
  /** Signs the session cookie (at least 32 characters). @default a random one per process */
  sessionSecret?: string
  /** Prefix of every Redis key; sessions go under `<keyPrefix>sess:`. @default 'totp:' */
  keyPrefix?: string
  /** Start under a keyPrefix new to a Redis that holds another deployment's (the plugin's option). @default false */
  allowNewKeyPrefix?: boolean
  /** The plugin's brute-force lock (tests lower `maxFailures`). @default the plugin's */
  lockout?: LockoutOptions
}

/** Recovery codes in a set: shown once after setup, and again for each new set (User settings). */
export const RECOVERY_CODES = 10

/** What `POST /login` says comes next: nothing, the code, or enrolment first. */
export type NextStep = 'none' | 'verify' | 'setup'

const BadCredentialsError = createError('EXAMPLE_BAD_CREDENTIALS', 'Wrong username or password', 401)

const loginBody = {
  type: 'object',
  additionalProperties: false,
  required: ['username', 'password'],
  properties: {
    username: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: 256 }
  }
}

/** What pages may see of a user (no secrets exist here, but say so explicitly). */
const publicUser = (u: TotpUser) =>
  ({ id: u.id, tenant: u.tenant ?? DEFAULT_TENANT, parentId: u.parentId ?? null, roles: u.roles })

/** The TOTP column of the Users page (R13, R14): which of these apply, in this order. */
export type TotpLabel = 'enabled' | 'enforced' | 'setup pending' | 'locked'

/** How long a verified browser may skip the code at sign-in (R15). */
export const TRUST_DAYS = 30

/** The gate sets `request.totp` for a signed-in user on a protected route. */
function signedIn (request: FastifyRequest): TotpRequestState {
  if (request.totp === null) throw new TotpUnauthenticatedError()
  return request.totp
}

/** A status's labels; `byTenant`: enforced for all or by a role (the status's `enforced` is the user's own flag). */
function totpLabels (s: TotpUserStatus, byTenant: boolean): TotpLabel[] {
  const labels: TotpLabel[] = []
  if (s.enabled) labels.push('enabled')
  if (s.enforced || byTenant) labels.push('enforced')
  if (s.setupRequired) labels.push('setup pending')
  if (s.locked) labels.push('locked')
  return labels
}

/** Builds the app (not listening): `server.ts` listens, tests inject or listen on port 0. */
export async function build (options: BuildOptions = {}): Promise<FastifyInstance> {
  const { redis, keyPrefix = 'totp:' } = options
  const app = Fastify({ logger: options.logger ?? false })
  const directory = await createDirectory()

  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: options.sessionSecret ?? randomBytes(32).toString('base64url'),
    // 'auto': Secure over https (set Fastify's trustProxy behind a TLS proxy), SameSite=Lax over http
    cookie: { secure: 'auto', httpOnly: true, sameSite: 'strict', path: '/' },
    saveUninitialized: false,
    store: redis === undefined ? undefined : new RedisSessionStore({ client: redis, prefix: `${keyPrefix}sess:` })
  })
  csrfProtection(app)
  await app.register(totp, {
    redis,
    encryptionKey: options.encryptionKey,
    keyPrefix,
    allowNewKeyPrefix: options.allowNewKeyPrefix,
    issuer: 'fastify-totp-gate demo',
    lockout: options.lockout,
    recoveryCodes: { count: RECOVERY_CODES },
    // "Trust this browser for 30 days" on the verification page; User settings lists and forgets them
    trustDevice: { days: TRUST_DAYS },
    getUser: (request) => {
      const auth = request.session.auth
      return auth === undefined ? null : directory.find(auth.tenant, auth.id)
    },
    findUser: (tenant, id) => directory.find(tenant, id)
  })

  async function nextStep (user: TotpUser): Promise<NextStep> {
    const scope = { tenant: user.tenant ?? DEFAULT_TENANT }
    try {
      // the user object, not the id: a role in the tenant's enforceRoles counts (R13)
      const status = await app.totp.status(user, scope)
      return status.enabled ? 'verify' : status.setupRequired ? 'setup' : 'none'
    } catch (err) {
      throw new TotpUnavailableError({ cause: err })
    }
  }

  app.post<{ Body: { username: string; password: string } }>('/login', {
    config: { totp: false },
    schema: { body: loginBody }
  }, async (request) => {
    const { username, password } = request.body
    const user = await directory.authenticate(DEFAULT_TENANT, username, password)
    if (user === null) throw new BadCredentialsError()
    const totp = await nextStep(user)
    // a new session id at sign-in (session fixation); the old CSRF token goes with the old id
    await request.session.regenerate()
    request.session.auth = { id: user.id, tenant: user.tenant }
    return { user: publicUser(user), totp }
  })

  app.post('/logout', { config: { totp: false } }, async (request) => {
    await request.session.destroy()
    return { signedOut: true }
  })

  // Protected (the default): the gate answers 401 FST_TOTP_REQUIRED / 403 FST_TOTP_SETUP_REQUIRED first.
  app.get('/api/profile', async (request) => ({ user: publicUser(signedIn(request).user) }))

  // The Administration page lists every user of the tenant to any signed-in user: what each
  // one may do with TOTP is the plugin's decision (CASL abilities), and the page shows its answer.
  // `totp` is the TOTP column: null for the users whose status the plugin does not let this user read (R8).
  app.get('/api/users', async (request) => {
    const { user: actor, ref } = signedIn(request)
    const users = directory.list(ref.tenant)
    const ability = app.totp.abilityFor(actor)
    const [statuses, settings] = await Promise.all([
      app.totp.statuses(users, { tenant: ref.tenant }), app.totp.getSettings({ tenant: ref.tenant })
    ])
    return {
      users: users.map((u, i) => {
        const readable = ability.can('read', subject('TotpStatus', {
          tenant: u.tenant, userId: u.id, parentId: u.parentId, ancestorIds: u.ancestorIds ?? []
        }))
        const byTenant = settings.enforceAll || u.roles.some((r) => settings.enforceRoles.includes(r))
        return { ...publicUser(u), totp: readable ? totpLabels(statuses[i], byTenant) : null }
      })
    }
  })

  servePages(app)
  return app
}
