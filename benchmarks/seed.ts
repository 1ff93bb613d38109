// Seeding, pipelined: users' TOTP hashes written directly in the store's layout and
// sessions written directly in RedisSessionStore's format, with cookies signed the
// way @fastify/session signs them. No HTTP round trip per user.
import { randomBytes } from 'node:crypto'
import { Signer } from '@fastify/cookie'
import { seal, type KeyRing } from '../plugin/crypto/seal.js'
import { DEFAULT_SESSION_TTL } from '../plugin/session-store.js'
import type { KeyLayout } from '../plugin/stores/keys.js'
import type { TotpSessionState } from '../plugin/types.js'
import { SECRET_PURPOSE } from '../plugin/verification.js'
import { DEFAULT_TOTP_PARAMS, generateCode, timeStepAt } from '../plugin/totp/index.js'
import type { SessionUser } from './app.js'
import { RespPipe } from './resp-pipe.js'

export const TENANT = 'default'
/**
 * gate-policies' tenant, with enforcement policies set: TOTP enforced on the roles POLICY_ROLES
 * (R13) with a grace period of POLICY_GRACE seconds (R14). Its users hold USER_ROLES, one of them
 * enforced. The other scenarios' tenant (TENANT) has no settings, as before policies existed.
 */
export const POLICY_TENANT = 'policies'
export const POLICY_ROLES = ['ROLE_ADMIN', 'ROLE_BILLING']
export const POLICY_GRACE = 7 * 86400
export const USER_ROLES = ['ROLE_USER', 'ROLE_BILLING']
export const COOKIE_NAME = 'sessionId'
const SESSION_TTL = String(DEFAULT_SESSION_TTL * 1000)

// What @fastify/session stores for `cookie: { secure: false }` (Cookie#toJSON, undefined fields dropped).
const SESSION_COOKIE = {
  expires: null, originalMaxAge: null, sameSite: null, secure: false, path: '/', httpOnly: true, domain: null
}

export interface SeededUser {
  id: string
  /** The raw TOTP secret (enrolled users), known to the benchmark so it can compute codes. */
  secret: Buffer | null
  sessionId: string
  /** `sessionId=<signed, URI-encoded>`, as a browser sends it (signed on first use: most seeded users wait). */
  readonly cookie: string
}

class Seeded implements SeededUser {
  #cookie: string | null = null
  constructor (
    readonly id: string,
    readonly secret: Buffer | null,
    readonly sessionId: string,
    private readonly signer: Signer
  ) {}

  get cookie (): string {
    this.#cookie ??= sessionCookie(this.signer, this.sessionId)
    return this.#cookie
  }
}

export interface Population {
  /** The baseline's users: signed in, sessions as an app without the plugin keeps them (no `totp` mark). */
  base: SeededUser[]
  /** Enrolled users with a pending (signed-in, unverified) session: one per verification. */
  verify: SeededUser[]
  /** Enrolled users with a verified session. */
  gate: SeededUser[]
  /** Enrolled users of POLICY_TENANT holding an enforced role, with a session verified at `verifiedAt`. */
  policy: SeededUser[]
  /** Users neither enrolled nor enforced, signed in. */
  plain: SeededUser[]
  /** Enrolled users with a pending session, attacked with wrong codes. */
  flood: SeededUser[]
  /** The last accepted step written for every enrolled user. */
  seededStep: number
  /** When the verified sessions (gate, policy) verified, as their mark's `v` says (epoch ms). */
  verifiedAt: number
}

export interface SeedOptions {
  /** `redis://` URL: the writes go through a raw RESP pipe (see resp-pipe.ts). */
  redisUrl: string
  keys: KeyLayout
  keyRing: KeyRing
  sessionPrefix: string
  sessionSecret: string
  counts: { base: number, verify: number, gate: number, plain: number, flood: number, policy: number }
}

export interface SeedResult {
  population: Population
  ms: number
  users: number
  sessions: number
  /** Tenant settings hashes written (POLICY_TENANT's copy in every shard). */
  settings: number
  commands: number
}

/** `sessionId=...` for a session id, signed like @fastify/session (HMAC-SHA256 via @fastify/cookie's Signer). */
export function sessionCookie (signer: Signer, sessionId: string): string {
  return `${COOKIE_NAME}=${encodeURIComponent(signer.sign(sessionId))}`
}

/**
 * The app's session JSON as @fastify/session stores it: the app's own fields and, once the
 * session verified a code, the plugin's `totp` mark (tenant, user, generation and, as
 * markVerified writes it, when: `verifiedAt`, epoch ms).
 */
export function sessionValue (user: SessionUser, verifiedGen: number | null = null, verifiedAt = Date.now()): string {
  const totp: TotpSessionState | undefined = verifiedGen === null
    ? undefined
    : { t: user.tenant, u: user.id, g: verifiedGen, v: verifiedAt }
  return JSON.stringify({ cookie: SESSION_COOKIE, uid: user, cart: 'app data', totp })
}

/**
 * The tenant settings hash as the store's setSettings writes it, copied into every shard (the
 * gate reads the copy in the user's slot): `a` '1' (enforce all; absent here), `r` the roles
 * newline-separated with a newline at each end, `p` the grace period in seconds.
 */
export function settingsCommands (keys: KeyLayout, tenant: string, roles: string[], grace: number): string[][] {
  const out: string[][] = []
  for (let shard = 0; shard < keys.shards; shard++) {
    out.push(['HSET', keys.settings(tenant, shard), 'r', `\n${roles.join('\n')}\n`, 'p', String(grace)])
  }
  return out
}

export async function seed (opts: SeedOptions): Promise<SeedResult> {
  const started = performance.now()
  const signer = new Signer(opts.sessionSecret, 'sha256')
  // confirmed a while ago: the last accepted step is well behind the current one
  const seededStep = timeStepAt(DEFAULT_TOTP_PARAMS) - 100
  const verifiedAt = Date.now()
  type Group = {
    name: keyof Omit<Population, 'seededStep' | 'verifiedAt'>
    prefix: string
    enrolled: boolean
    verified: boolean
    tenant: string
    roles?: string[]
  }
  const groups: Group[] = [
    { name: 'base', prefix: 'b', enrolled: false, verified: false, tenant: TENANT },
    { name: 'verify', prefix: 'v', enrolled: true, verified: false, tenant: TENANT },
    { name: 'gate', prefix: 'g', enrolled: true, verified: true, tenant: TENANT },
    { name: 'plain', prefix: 'p', enrolled: false, verified: false, tenant: TENANT },
    { name: 'flood', prefix: 'f', enrolled: true, verified: false, tenant: TENANT },
    { name: 'policy', prefix: 'r', enrolled: true, verified: true, tenant: POLICY_TENANT, roles: USER_ROLES }
  ]
  const population: Population = {
    base: [], verify: [], gate: [], plain: [], flood: [], policy: [], seededStep, verifiedAt
  }
  const pipe = await RespPipe.connect(opts.redisUrl)
  let users = 0
  let sessions = 0
  let settings = 0
  try {
    for (const command of settingsCommands(opts.keys, POLICY_TENANT, POLICY_ROLES, POLICY_GRACE)) {
      pipe.send(command)
      settings++
    }
    for (const group of groups) {
      const n = opts.counts[group.name]
      const secrets = group.enrolled ? randomBytes(20 * n) : null
      // session ids as @fastify/session makes them: 24 random bytes, base64url
      const ids = randomBytes(24 * n)
      for (let i = 0; i < n; i++) {
        const id = `${group.prefix}${i}`
        const user: SessionUser = group.roles === undefined
          ? { id, tenant: group.tenant }
          : { id, tenant: group.tenant, roles: group.roles }
        let secret: Buffer | null = null
        if (secrets !== null) {
          secret = secrets.subarray(20 * i, 20 * (i + 1))
          const ref = { tenant: group.tenant, userId: id }
          const sealed = seal(opts.keyRing, secret, { ...ref, purpose: SECRET_PURPOSE })
          // fields as attempt.lua leaves them: s = sealed secret (body), v = its key id,
          // l = last step, g = generation; sw, sc = setup.lua's window of setup starts
          const dot = sealed.indexOf('.')
          pipe.send([
            'HSET', opts.keys.user(ref),
            's', sealed.slice(dot + 1), 'v', sealed.slice(0, dot), 'l', String(seededStep), 'g', '1',
            'sw', String(Date.now()), 'sc', '1'
          ])
          users++
        }
        const sessionId = ids.subarray(24 * i, 24 * (i + 1)).toString('base64url')
        const value = sessionValue(user, group.verified ? 1 : null, verifiedAt)
        pipe.send(['SET', opts.sessionPrefix + sessionId, value, 'PX', SESSION_TTL])
        sessions++
        population[group.name].push(new Seeded(id, secret, sessionId, signer))
        await pipe.maybeFlush()
      }
    }
    await pipe.sync()
  } finally {
    pipe.close()
  }
  return {
    population, ms: performance.now() - started, users, sessions, settings, commands: users + sessions + settings
  }
}

/** A 6-digit code that no step from now-2 to now+3 accepts, so a flood cannot verify by luck within a run. */
export function wrongCode (secret: Buffer, epochSeconds = Date.now() / 1000): string {
  const taken = new Set<string>()
  for (let k = -2; k <= 3; k++) {
    taken.add(generateCode(secret, DEFAULT_TOTP_PARAMS, epochSeconds + k * DEFAULT_TOTP_PARAMS.period))
  }
  for (let c = 0; ; c++) {
    const code = String(c).padStart(DEFAULT_TOTP_PARAMS.digits, '0')
    if (!taken.has(code)) return code
  }
}
