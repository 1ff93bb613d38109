import type { FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import { createKeyRing, type KeyRing, type KeyRingInput } from './crypto/seal.js'
import { TotpOptionsError } from './errors.js'
import type { AbilityBuilder } from './policy/abilities.js'
import type { TotpStore } from './stores/store.js'
import { DEFAULT_TOTP_PARAMS, type HashAlgorithm, type TotpParams } from './totp/index.js'
import type { IpPolicy, LockPolicy, SetupPolicy, TotpEvent, TotpUser } from './types.js'

export interface LockoutOptions {
  /** Wrong or reused codes allowed before the first lock. @default 5 */
  freeFailures?: number
  /** First lock; doubles with each further failure. @default 30 */
  lockSeconds?: number
  /** Longest lock. @default 900 (15 min) */
  maxLockSeconds?: number
  /**
   * Failures in a row (no success between) after which the user stays locked until unlocked by
   * whoever may revoke their secret, or by an operator (NIST SP 800-63B: at most 100). @default 20
   */
  maxFailures?: number
}

export interface TrustDeviceOptions {
  /** Days a trusted browser passes without a code. @default 30 */
  days?: number
  /** The cookie that names the device. @default 'totp_device' */
  cookieName?: string
}

export interface RecoveryCodeOptions {
  /** Codes in a set. @default 10 */
  count?: number
}

export interface IpLimitOptions {
  /** Failures from one IP address (or IPv6 network), across all users, before it is refused. @default 50 */
  maxFailures?: number
  /** Window the IP failures are counted over (and the refusal lasts). @default 900 */
  windowSeconds?: number
  /** IPv6 addresses are counted by network: the prefix length of one. @default 64 */
  ipv6PrefixLength?: number
}

export interface SetupLimitOptions {
  /** New secrets a user may start within the window (a pending setup is answered again, not restarted). @default 10 */
  maxStarts?: number
  /** @default 3600 */
  windowSeconds?: number
}

export interface FastifyTotpOptions {
  /** The first-factor identity of a request, or null when not signed in. Required. */
  getUser: (request: FastifyRequest) => TotpUser | null | undefined | Promise<TotpUser | null | undefined>
  /** Looks up the target of admin calls, in the caller's tenant. Without it the admin routes are not registered. */
  findUser?: (tenant: string, id: string) => TotpUser | null | undefined | Promise<TotpUser | null | undefined>
  /**
   * An ioredis `Redis` or `Cluster` client shared by every instance. Without it (and without
   * `store`) an in-memory store is used: single process only.
   */
  redis?: Redis | Cluster
  /** A custom store (advanced); overrides `redis`. */
  store?: TotpStore
  /**
   * AES-256-GCM key(s) sealing secrets at rest: 32 bytes (Buffer or base64), or a key ring
   * `{ current, keys: { id: key } }` for rotation. Required with Redis; the in-memory store
   * makes a random one per process when absent.
   */
  encryptionKey?: Buffer | string | KeyRingInput
  /** Issuer shown in authenticator apps: set it to your product's name. @default 'fastify-totp-gate' */
  issuer?: string
  /** URL prefix of the plugin's routes. @default '/totp' */
  prefix?: string
  /** Prefix of every Redis key. @default 'totp:' */
  keyPrefix?: string
  /** HMAC algorithm; only SHA1 works with every authenticator app. @default 'sha1' */
  algorithm?: HashAlgorithm
  /** Code length. @default 6 */
  digits?: 6 | 7 | 8
  /** Seconds per code. @default 30 */
  period?: number
  /** Steps accepted either side of the current one. @default 1 */
  window?: number
  /** Seconds a started setup waits for its confirming code. @default 600 */
  setupTtl?: number
  /** How often a user may start a new secret. */
  setupLimit?: SetupLimitOptions
  /** Per-user brute-force lock. */
  lockout?: LockoutOptions
  /**
   * One-time recovery codes for a lost authenticator: a set is shown when a setup is confirmed
   * and on `POST /totp/recovery-codes`; `POST /totp/recover` signs in with one. @default off
   */
  recoveryCodes?: RecoveryCodeOptions | boolean
  /**
   * Seconds a verified session stays verified; after that it must verify again (a trusted
   * device passes it again). @default off
   */
  verifiedFor?: number
  /**
   * Trusted devices: `POST /totp/verify { code, trustDevice: true }` sets an HttpOnly cookie
   * with which later sign-ins in that browser pass without a code. @default off
   */
  trustDevice?: TrustDeviceOptions | boolean
  /** Per-IP failure budget across users; `false` turns it off. */
  ipLimit?: IpLimitOptions | false
  /** Milliseconds a store call may take before the request fails closed with 503. @default 2000 */
  timeout?: number
  /**
   * Which session plugin keeps `request.session`: `'session'` (@fastify/session, server-side) or
   * `'secure-session'` (@fastify/secure-session, an encrypted cookie). @default the one registered
   */
  session?: 'session' | 'secure-session'
  /**
   * Copies of each tenant's settings, spread over hash slots so a user's gate check is one Redis
   * command on a cluster. Recorded in Redis at the first start: changing it later needs the
   * migration command. @default 64
   */
  settingsShards?: number
  /**
   * Start under a `keyPrefix` this Redis has not seen although it holds another deployment's
   * state under another prefix. Off, the plugin refuses to start then: a changed `keyPrefix`
   * would let every enrolled user pass with the password alone. @default false
   */
  allowNewKeyPrefix?: boolean
  /**
   * Routes the app does not own (another plugin's swagger UI, health checks): `true` opts the
   * request out of the gate, as `config: { totp: false }` does. Keep it cheap: it runs on every request.
   */
  skip?: (request: FastifyRequest) => boolean
  /**
   * Merged into every route of the plugin: `config` (e.g. `rateLimit`), `schema` (`tags`,
   * `hide`), hooks (added before the plugin's own). The plugin's own settings win.
   */
  routeOptions?: Record<string, unknown>
  /** Builds a user's CASL ability; replaces the default rules. */
  defineAbilities?: AbilityBuilder
  /** Called with every audit event. Errors it throws are logged, not raised. */
  onEvent?: (event: TotpEvent) => void | Promise<void>
}

export const DEFAULT_ISSUER = 'fastify-totp-gate'
export const DEFAULT_PREFIX = '/totp'
export const DEFAULT_KEY_PREFIX = 'totp:'
export const DEFAULT_SETUP_TTL = 600
export const DEFAULT_SETUP_LIMIT: Required<SetupLimitOptions> = { maxStarts: 10, windowSeconds: 3600 }
export const DEFAULT_LOCKOUT: Required<LockoutOptions> = {
  freeFailures: 5, lockSeconds: 30, maxLockSeconds: 900, maxFailures: 20
}
export const DEFAULT_RECOVERY_CODES: Required<RecoveryCodeOptions> = { count: 10 }
export const DEFAULT_TRUST_DEVICE: Required<TrustDeviceOptions> = { days: 30, cookieName: 'totp_device' }
/** NIST SP 800-63B (rev. 3 5.2.2, rev. 4 3.2.2): at most 100 failed attempts in a row per account. */
export const MAX_FAILURES_LIMIT = 100
export const DEFAULT_IP_LIMIT: Required<IpLimitOptions> = { maxFailures: 50, windowSeconds: 900, ipv6PrefixLength: 64 }
export const DEFAULT_TIMEOUT = 2000
export const DEFAULT_SETTINGS_SHARDS = 64

export interface ResolvedOptions {
  getUser: FastifyTotpOptions['getUser']
  findUser?: FastifyTotpOptions['findUser']
  issuer: string
  /** The issuer was left at its default (the plugin warns once). */
  defaultIssuer: boolean
  prefix: string
  keyPrefix: string
  totp: TotpParams
  setupTtlMs: number
  setup: SetupPolicy
  lock: LockPolicy
  /** Codes in a recovery set; null: recovery codes are off. */
  recoveryCodes: number | null
  /** How long a verified session stays verified; null: until it ends. */
  verifiedForMs: number | null
  /** Trusted devices; null: off. */
  trustDevice: { ttlMs: number; cookieName: string } | null
  ip: IpPolicy | null
  /** IPv6 addresses are counted by networks of this prefix length. */
  ipv6PrefixLength: number
  timeout: number
  /** The session plugin named by the `session` option; null: the one registered. */
  session: 'session' | 'secure-session' | null
  settingsShards: number
  allowNewKeyPrefix: boolean
  keyRing: KeyRing | null
  defineAbilities?: AbilityBuilder
  onEvent?: FastifyTotpOptions['onEvent']
  skip?: (request: FastifyRequest) => boolean
  routeOptions: Record<string, unknown>
}

const KNOWN: Record<string, ReadonlyArray<string>> = {
  '': [
    'getUser', 'findUser', 'redis', 'store', 'encryptionKey', 'issuer', 'prefix', 'keyPrefix', 'algorithm', 'digits',
    'period', 'window', 'setupTtl', 'setupLimit', 'lockout', 'recoveryCodes', 'verifiedFor', 'trustDevice', 'ipLimit',
    'timeout', 'settingsShards', 'session',
    'allowNewKeyPrefix', 'skip', 'routeOptions', 'defineAbilities', 'onEvent'
  ],
  lockout: Object.keys(DEFAULT_LOCKOUT),
  ipLimit: Object.keys(DEFAULT_IP_LIMIT),
  setupLimit: Object.keys(DEFAULT_SETUP_LIMIT),
  recoveryCodes: Object.keys(DEFAULT_RECOVERY_CODES),
  trustDevice: Object.keys(DEFAULT_TRUST_DEVICE)
}

const fail = (message: string): never => { throw new TotpOptionsError(message) }
const ROUTE_OPTIONS = new Set(['config', 'schema', 'logLevel', 'onRequest', 'preParsing', 'preValidation', 'preHandler',
  'preSerialization', 'onSend', 'onResponse', 'onTimeout', 'onError', 'onRequestAbort'])
const int = (name: string, v: unknown, min: number, max: number): number =>
  (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max)
    ? v as number
    : fail(`${name} must be an integer between ${min} and ${max}, got ${String(v)}`)
const positiveInt = (name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number => int(name, v, 1, max)
const fn = (name: string, v: unknown): void => {
  if (v !== undefined && typeof v !== 'function') fail(`${name} must be a function`)
}

// A misspelt option (`ipLimits`, `lockout.freeFailure`) would silently keep a default: refused.
function checkNames (opts: Record<string, unknown>): void {
  for (const [group, names] of Object.entries(KNOWN)) {
    const obj = group === '' ? opts : opts[group]
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) continue
    for (const name of Object.keys(obj)) {
      const full = `${group === '' ? '' : `${group}.`}${name}`
      if (!names.includes(name)) fail(`unknown option ${full} (known: ${names.join(', ')})`)
    }
  }
}

/** Checks the options once at registration (fail fast) and fills in the defaults. */
export function resolveOptions (opts: FastifyTotpOptions): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') fail('options must be an object')
  checkNames(opts as unknown as Record<string, unknown>)
  if (typeof opts.getUser !== 'function') fail('getUser(request) is required')
  fn('findUser', opts.findUser)
  fn('onEvent', opts.onEvent)
  fn('defineAbilities', opts.defineAbilities)
  fn('skip', opts.skip)
  const ro = opts.routeOptions
  if (ro !== undefined && (ro === null || typeof ro !== 'object' || Array.isArray(ro))) {
    fail('routeOptions must be an object')
  }
  // only what cannot weaken the plugin's routes: no validator, error handler or body limit of the app's
  for (const [k, v] of Object.entries(ro ?? {})) {
    if (!ROUTE_OPTIONS.has(k)) fail(`routeOptions.${k} is not allowed (allowed: ${[...ROUTE_OPTIONS].join(', ')})`)
    if (k === 'schema') {
      for (const s of Object.keys(v as object)) {
        if (s !== 'tags' && s !== 'hide') fail(`routeOptions.schema.${s} is not allowed (allowed: tags, hide)`)
      }
    }
  }
  const issuer = opts.issuer ?? DEFAULT_ISSUER
  if (typeof issuer !== 'string' || issuer.trim() === '' || issuer.includes(':')) {
    fail('issuer must be a non-empty string without ":"')
  }
  const prefix = opts.prefix ?? DEFAULT_PREFIX
  if (typeof prefix !== 'string' || !/^\/[\w\-/]*$/.test(prefix) || prefix.endsWith('/')) fail('prefix must look like "/totp"')
  const keyPrefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX
  if (typeof keyPrefix !== 'string' || /[{}]/.test(keyPrefix)) fail('keyPrefix must be a string without "{" or "}"')
  const algorithm = opts.algorithm ?? DEFAULT_TOTP_PARAMS.algorithm
  if (!['sha1', 'sha256', 'sha512'].includes(algorithm)) fail('algorithm must be sha1, sha256 or sha512')
  const digits = opts.digits ?? DEFAULT_TOTP_PARAMS.digits
  if (![6, 7, 8].includes(digits)) fail('digits must be 6, 7 or 8')
  const period = positiveInt('period', opts.period ?? DEFAULT_TOTP_PARAMS.period, 300)
  const window = int('window', opts.window ?? DEFAULT_TOTP_PARAMS.window, 0, 10)
  const lockout = { ...DEFAULT_LOCKOUT, ...opts.lockout }
  const lockSeconds = typeof lockout.lockSeconds === 'number' && lockout.lockSeconds > 0
    ? lockout.lockSeconds
    : fail('lockout.lockSeconds must be > 0')
  const maxLockSeconds = typeof lockout.maxLockSeconds === 'number' && lockout.maxLockSeconds >= lockSeconds
    ? lockout.maxLockSeconds
    : fail('lockout.maxLockSeconds must be >= lockSeconds')
  const lock: LockPolicy = {
    freeFailures: positiveInt('lockout.freeFailures', lockout.freeFailures, 1000),
    lockMs: Math.round(1000 * lockSeconds),
    maxLockMs: Math.round(1000 * maxLockSeconds),
    maxFailures: int('lockout.maxFailures', lockout.maxFailures, 1, MAX_FAILURES_LIMIT)
  }
  let recoveryCodes: number | null = null
  const rc = opts.recoveryCodes
  if (rc !== undefined && typeof rc !== 'boolean' && (rc === null || typeof rc !== 'object' || Array.isArray(rc))) {
    fail('recoveryCodes must be true, false or { count }')
  }
  if (rc !== undefined && rc !== false) {
    const count = (rc === true ? DEFAULT_RECOVERY_CODES : { ...DEFAULT_RECOVERY_CODES, ...rc }).count
    recoveryCodes = int('recoveryCodes.count', count, 1, 50)
  }
  const verifiedForMs = opts.verifiedFor === undefined
    ? null
    : 1000 * positiveInt('verifiedFor', opts.verifiedFor, 86400 * 366)
  const td = opts.trustDevice
  if (td !== undefined && typeof td !== 'boolean' && (td === null || typeof td !== 'object' || Array.isArray(td))) {
    fail('trustDevice must be true, false or { days, cookieName }')
  }
  let trustDevice: ResolvedOptions['trustDevice'] = null
  if (td !== undefined && td !== false) {
    const t = td === true ? DEFAULT_TRUST_DEVICE : { ...DEFAULT_TRUST_DEVICE, ...td }
    if (typeof t.cookieName !== 'string' || !/^[\w-]{1,64}$/.test(t.cookieName)) {
      fail('trustDevice.cookieName must be 1 to 64 letters, digits, "_" or "-"')
    }
    trustDevice = { ttlMs: 86_400_000 * positiveInt('trustDevice.days', t.days, 400), cookieName: t.cookieName }
  }
  let ip: IpPolicy | null = null
  const ipLimit = { ...DEFAULT_IP_LIMIT, ...(opts.ipLimit === false ? {} : opts.ipLimit) }
  const ipv6PrefixLength = int('ipLimit.ipv6PrefixLength', ipLimit.ipv6PrefixLength, 16, 128)
  if (opts.ipLimit !== false) {
    ip = {
      maxFailures: positiveInt('ipLimit.maxFailures', ipLimit.maxFailures),
      windowMs: 1000 * positiveInt('ipLimit.windowSeconds', ipLimit.windowSeconds)
    }
  }
  const setupLimit = { ...DEFAULT_SETUP_LIMIT, ...opts.setupLimit }
  const setup: SetupPolicy = {
    maxStarts: positiveInt('setupLimit.maxStarts', setupLimit.maxStarts, 1000),
    windowMs: 1000 * positiveInt('setupLimit.windowSeconds', setupLimit.windowSeconds, 86400 * 30)
  }
  let keyRing: KeyRing | null = null
  if (opts.encryptionKey !== undefined) {
    try {
      keyRing = createKeyRing(opts.encryptionKey)
    } catch (err) {
      fail(`encryptionKey: ${(err as Error).message}`)
    }
  } else if (opts.redis !== undefined || opts.store !== undefined) {
    fail('encryptionKey is required with a Redis (or custom) store: secrets are sealed with AES-256-GCM at rest')
  }
  if (opts.session !== undefined && opts.session !== 'session' && opts.session !== 'secure-session') {
    fail(`session must be 'session' or 'secure-session', got ${String(opts.session)}`)
  }
  if (opts.allowNewKeyPrefix !== undefined && typeof opts.allowNewKeyPrefix !== 'boolean') {
    fail('allowNewKeyPrefix must be a boolean')
  }
  return {
    getUser: opts.getUser,
    findUser: opts.findUser,
    issuer,
    defaultIssuer: opts.issuer === undefined,
    prefix,
    keyPrefix,
    totp: { algorithm, digits, period, window },
    setupTtlMs: 1000 * positiveInt('setupTtl', opts.setupTtl ?? DEFAULT_SETUP_TTL, 86400),
    setup,
    lock,
    recoveryCodes,
    verifiedForMs,
    trustDevice,
    ip,
    ipv6PrefixLength,
    timeout: positiveInt('timeout', opts.timeout ?? DEFAULT_TIMEOUT, 60000),
    session: opts.session ?? null,
    settingsShards: positiveInt('settingsShards', opts.settingsShards ?? DEFAULT_SETTINGS_SHARDS, 16384),
    allowNewKeyPrefix: opts.allowNewKeyPrefix === true,
    keyRing,
    defineAbilities: opts.defineAbilities,
    onEvent: opts.onEvent,
    skip: opts.skip,
    routeOptions: ro ?? {}
  }
}

/** Checks a route's `config.totp` (R11, R12) as it is declared; throws FST_TOTP_OPTIONS. */
export function checkRouteConfig (url: string, c: unknown): void {
  if (c === undefined || c === false) return
  if (c === null || typeof c !== 'object') fail(`route ${url}: config.totp must be false or an object`)
  const o = c as Record<string, unknown>
  for (const k of ['allowUnverified', 'allowSetupRequired', 'required', 'readsCode']) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') fail(`route ${url}: config.totp.${k} must be a boolean`)
  }
  const maxAge = o.maxAge
  if (maxAge !== undefined && !(typeof maxAge === 'number' && Number.isFinite(maxAge) && maxAge > 0)) {
    fail(`route ${url}: config.totp.maxAge must be a number of seconds > 0, got ${JSON.stringify(maxAge)}`)
  }
}
