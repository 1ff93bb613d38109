import { readFileSync } from 'node:fs'
import { inspect } from 'node:util'
import type { Cluster, Redis, Result } from 'ioredis'
import { StoreUnavailable } from '../errors.js'
import { DEFAULT_KEY_PREFIX, DEFAULT_SETTINGS_SHARDS, DEFAULT_TIMEOUT } from '../options.js'
import { KeyLayout } from './keys.js'
import type { TotpSessionState } from '../augment.js'
import type { SessionReadAlong } from './session-store.js'
import type { AttemptResult, CheckState, ReadAlong, FailureResult, GateState, SecretState, StorePolicy, TenantSettings, TotpStore, UserRef } from './store.js'

type Reply = Array<number | string>

declare module 'ioredis' {
  interface RedisCommander<Context> {
    totpGate(user: string, settings: string): Result<Reply, Context>
    /** KEYS: user, settings, pending[, ip] (numkeys first). */
    totpCheck(numKeys: number, ...keysAndArgs: Array<string | number>): Result<Reply, Context>
    totpSetup(user: string, pending: string, sealed: string, ttlMs: number): Result<number, Context>
    /** KEYS: user, pending[, ip] (numkeys first). */
    totpConfirm(numKeys: number, ...keysAndArgs: Array<string | number>): Result<Reply, Context>
    /** KEYS: user[, ip] (numkeys first). */
    totpConsume(numKeys: number, ...keysAndArgs: Array<string | number>): Result<Reply, Context>
    totpFail(user: string, ...args: Array<string | number>): Result<Reply, Context>
    totpIpFail(ip: string, windowMs: number, max: number): Result<number, Context>
    totpIpCheck(ip: string, max: number): Result<number, Context>
    totpFailBoth(user: string, ip: string, free: number, lockMs: number, maxMs: number, windowMs: number, max: number, gen: number): Result<Reply, Context>
    totpRevoke(user: string, pending: string): Result<number, Context>
  }
}

const lua = (name: string): string => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
// keys null: the caller passes the number of keys first; uses: shared files prepended (lib, read)
const SCRIPTS: Record<string, { keys: number | null; file: string; uses: string[] }> = {
  totpGate: { keys: 2, file: 'gate', uses: ['read'] },
  totpCheck: { keys: null, file: 'check', uses: ['lib', 'read'] },
  totpSetup: { keys: 2, file: 'setup', uses: [] },
  totpConfirm: { keys: null, file: 'confirm', uses: ['lib'] },
  totpConsume: { keys: null, file: 'consume', uses: ['lib'] },
  totpFail: { keys: 1, file: 'fail', uses: ['lib'] },
  totpIpFail: { keys: 1, file: 'ipfail', uses: ['lib'] },
  totpIpCheck: { keys: 1, file: 'ipcheck', uses: ['lib'] },
  totpFailBoth: { keys: 2, file: 'failboth', uses: ['lib'] },
  totpRevoke: { keys: 2, file: 'revoke', uses: [] }
}
const source = (file: string, uses: string[]): string => [...uses, file].map(lua).join('\n')
const SOURCES = Object.fromEntries(Object.entries(SCRIPTS).map(([name, s]) => [name, source(s.file, s.uses)]))
/** RedisSessionStore's read of a session with its user's gate state (see session.lua). */
export const SESSION_READ_LUA = source('session-check', ['session', 'lib', 'read'])

export interface RedisTotpStoreOptions extends StorePolicy {
  client: Redis | Cluster
  /** @default 'totp:' */
  keyPrefix?: string
  /** @default 64 */
  settingsShards?: number
  /** Milliseconds before a call fails with StoreUnavailable. @default 2000 */
  timeout?: number
}

/** Maps a script reply to an attempt result. */
export function attemptResult (r: Reply): AttemptResult {
  switch (Number(r[0])) {
    case 1: return { ok: true, gen: Number(r[1]) }
    case 6: return { ok: false, reason: 'ip-locked', retryAfterMs: Number(r[1]) }
    case 0: return { ok: false, reason: 'locked', retryAfterMs: Number(r[1]) }
    case 2: return { ok: false, reason: 'failed', failures: Number(r[1]), lockedForMs: Number(r[2]) }
    case 3: return { ok: false, reason: 'already-enabled' }
    case 4: return { ok: false, reason: 'no-pending' }
    case 7: return { ok: false, reason: 'changed' }
    default: return { ok: false, reason: 'not-enabled' }
  }
}

// read.lua's fields, from offset o of a reply: numbers from a script's table, strings from the
// read along's tab-joined fields (numbers as the scripts read them, with tonumber)
const gateState = (r: Reply, o = 0): GateState =>
  ({ enabled: Number(r[o]) === 1, enforced: Number(r[o + 1]) === 1, gen: Number(r[o + 2]), lockedUntil: Number(r[o + 3]), enforceAll: Number(r[o + 4]) === 1 })

// read_check's fields after the gate's five
const secretState = (r: Reply, o = 0): SecretState =>
  ({ sealed: (r[o + 5] as string) || null, pending: (r[o + 6] as string) || null, lastStep: Number(r[o + 7]), lockedForMs: Number(r[o + 8]), gen: Number(r[o + 2]) })

// Where a session holds what was read along with it: on its `totp` mark, under a symbol, so
// that the session's JSON never carries it (and its class keeps it out of logs of the mark).
const READ_ALONG = Symbol('fastify-totp read along')
// `header`: the header line the session was read by (what readAlong checks the user against).
class ReadAlongReply {
  constructor (readonly owner: RedisTotpStore, readonly fields: string, readonly header: string) {}
  // mode 'c' fields hold a sealed secret: keep them out of util.inspect / console.log of a session
  [inspect.custom] (): string { return '[fastify-totp read along]' }
}

/**
 * The header line a linked RedisSessionStore writes before a session's JSON (see session.lua):
 * the keys of the user the session's `totp` mark names, and 'c' (an enrolled user's session not
 * verified yet: also what checking a code needs) or 'g' (any other: the gate's fields). '' when
 * the mark names no user.
 */
export function readAlongHeader (keys: KeyLayout, mark: TotpSessionState | undefined | null): string {
  if (mark === undefined || mark === null || typeof mark.u !== 'string' || typeof mark.t !== 'string') return ''
  const names = keys.readAlongNames({ tenant: mark.t, userId: mark.u })
  if (names === null) return ''
  // 'c' while a code check may come next (no verified generation, the user has a secret), else 'g'
  return `!${typeof mark.g !== 'number' && mark.p === 1 ? 'c' : 'g'}\t${names}\n`
}

/** The shared store: a standalone Redis or a Redis Cluster, one atomic script per security step. */
export class RedisTotpStore implements TotpStore {
  readonly keys: KeyLayout
  private readonly client: Redis | Cluster
  private readonly policy: StorePolicy
  private readonly timeout: number
  // Standalone Redis: scripts may also touch the IP's counter (another slot on a cluster)
  private readonly standalone: boolean

  constructor (opts: RedisTotpStoreOptions) {
    this.client = opts.client
    this.policy = { lock: opts.lock, ip: opts.ip }
    this.keys = new KeyLayout(opts.keyPrefix ?? DEFAULT_KEY_PREFIX, opts.settingsShards ?? DEFAULT_SETTINGS_SHARDS)
    this.timeout = opts.timeout ?? DEFAULT_TIMEOUT
    this.standalone = !this.client.isCluster
    for (const [name, s] of Object.entries(SCRIPTS)) {
      if (typeof (this.client as any)[name] !== 'function') {
        this.client.defineCommand(name, s.keys === null ? { lua: SOURCES[name] } : { numberOfKeys: s.keys, lua: SOURCES[name] })
      }
    }
  }

  // Fail closed within a bounded time: a down or hung Redis must not hang requests.
  private run<T> (op: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreUnavailable(`Redis did not answer within ${this.timeout} ms`)), this.timeout)
      op.then(
        (v) => { clearTimeout(timer); resolve(v) },
        (err) => { clearTimeout(timer); reject(new StoreUnavailable(`Redis error: ${(err as Error).message}`, { cause: err })) }
      )
    })
  }

  /**
   * What a RedisSessionStore on the same standalone client runs instead of GET: the session
   * named by `session.totp` also gets its user's gate state (and, until verified, what checking
   * a code needs). Null on a cluster, where the session and the user live in different slots,
   * and on a client with a `keyPrefix` (ioredis prefixes KEYS, not the names in the header).
   */
  sessionReader (): SessionReadAlong | null {
    // a client keyPrefix is added to KEYS, not to the key names the header carries: read apart
    if (!this.standalone || (this.client as Redis).options.keyPrefix) return null
    return this.reader ??= {
      client: this.client,
      lua: SESSION_READ_LUA,
      // built from the mark on every save: the names are remembered per user (KeyLayout)
      header: (session) => readAlongHeader(this.keys, session.totp),
      attach: (session, fields, header) => {
        const mark = session.totp as { [READ_ALONG]?: ReadAlongReply } | null | undefined
        if (mark === null || typeof mark !== 'object') return
        mark[READ_ALONG] = new ReadAlongReply(this, fields, header)
      }
    }
  }

  private reader: SessionReadAlong | undefined

  readAlong (ref: UserRef, session: { totp?: unknown } | null | undefined, check: boolean): ReadAlong | null {
    const mark = session?.totp
    if (mark === null || typeof mark !== 'object') return null
    const along = (mark as { [READ_ALONG]?: ReadAlongReply })[READ_ALONG]
    // read by another store, or for another user (the app changed the session's user since)
    if (along === undefined || along.owner !== this) return null
    // the header line is the one session.lua matched and read the keys of ('!', mode, '\t',
    // names, '\n'): they must be this user's (a line naming another user, or this user with
    // another tenant's settings, is read apart and named again on the next write)
    const names = this.keys.readAlongNames(ref)
    const header = along.header
    if (names === null || header.length !== names.length + 4 || !header.startsWith(names, 3)) return null
    // session.lua's fields: the gate's five, then (mode 'c') the check's four, as check.lua's
    const f = along.fields.split('\t')
    if (f.length === 9) return { gate: gateState(f), secret: secretState(f) }
    // anything but the gate's five fields is no state to pass on: read apart (fail closed)
    if (f.length !== 5) return null
    return check ? null : { gate: gateState(f), secret: null }
  }

  async gate (ref: UserRef): Promise<GateState> {
    const tag = this.keys.userTag(ref)
    return gateState(await this.run(this.client.totpGate(this.keys.user(ref, tag), this.keys.settingsFor(ref, tag))))
  }

  async load (ref: UserRef): Promise<SecretState> {
    return secretState(await this.run(this.client.totpCheck(3, ...this.checkKeys(ref))))
  }

  private checkKeys (ref: UserRef): [string, string, string] {
    const tag = this.keys.userTag(ref)
    return [this.keys.user(ref, tag), this.keys.settingsFor(ref, tag), this.keys.pending(ref, tag)]
  }

  // One command on standalone Redis; on a cluster the IP's counter lives in another slot,
  // so its check is a second command sent at the same time.
  async check (ref: UserRef, ip: string): Promise<CheckState> {
    const keys = this.checkKeys(ref)
    const max = this.policy.ip?.maxFailures
    const inScript = max !== undefined && this.standalone
    const [r, ipMs] = await this.run(Promise.all([
      inScript ? this.client.totpCheck(4, ...keys, this.keys.ip(ip), max) : this.client.totpCheck(3, ...keys),
      max === undefined || inScript ? null : this.client.totpIpCheck(this.keys.ip(ip), max)
    ]))
    // check.lua answers -1 for the IP when it did not read it
    return { gate: gateState(r), secret: secretState(r), ipBlockedMs: Math.max(0, Number(ipMs ?? r[9])) }
  }

  async startSetup (ref: UserRef, sealedPending: string, ttlMs: number): Promise<'ok' | 'already-enabled'> {
    const r = await this.run(this.client.totpSetup(this.keys.user(ref), this.keys.pending(ref), sealedPending, ttlMs))
    return r === 1 ? 'ok' : 'already-enabled'
  }

  async confirmSetup (ref: UserRef, sealedPending: string, timeStep: number, ip?: string): Promise<AttemptResult> {
    const { lock } = this.policy
    return this.decide('totpConfirm', [this.keys.user(ref), this.keys.pending(ref)], [sealedPending, timeStep, lock.freeFailures, lock.lockMs, lock.maxLockMs], ip)
  }

  async consume (ref: UserRef, timeStep: number, gen: number, ip?: string): Promise<AttemptResult> {
    const { lock } = this.policy
    return this.decide('totpConsume', [this.keys.user(ref)], [timeStep, lock.freeFailures, lock.lockMs, lock.maxLockMs, gen], ip)
  }

  // A deciding script (confirm, consume); with `ip`, refused while the IP is over its budget:
  // checked in the script on standalone Redis, read first on a cluster (another slot).
  private async decide (script: 'totpConfirm' | 'totpConsume', keys: string[], args: Array<string | number>, ip?: string): Promise<AttemptResult> {
    const ipPolicy = this.policy.ip
    if (ip !== undefined && ipPolicy !== null) {
      if (this.standalone) return attemptResult(await this.run(this.client[script](keys.length + 1, ...keys, this.keys.ip(ip), ...args, ipPolicy.maxFailures)))
      const refused = await this.ipRefusal(ip)
      if (refused !== null) return refused
    }
    return attemptResult(await this.run(this.client[script](keys.length, ...keys, ...args)))
  }

  async fail (ref: UserRef, gen?: number): Promise<AttemptResult> {
    const { lock } = this.policy
    const args: Array<string | number> = [lock.freeFailures, lock.lockMs, lock.maxLockMs]
    if (gen !== undefined) args.push(gen)
    return attemptResult(await this.run(this.client.totpFail(this.keys.user(ref), ...args)))
  }

  async ipBlocked (ip: string): Promise<number> {
    if (this.policy.ip === null) return 0
    return Math.max(0, Number(await this.run(this.client.totpIpCheck(this.keys.ip(ip), this.policy.ip.maxFailures))))
  }

  async failIp (ip: string): Promise<number> {
    if (this.policy.ip === null) return 0
    return Math.max(0, Number(await this.run(this.client.totpIpFail(this.keys.ip(ip), this.policy.ip.windowMs, this.policy.ip.maxFailures))))
  }

  // On a cluster (the IP's counter in another slot): an IP over its budget refuses a decision outright.
  private async ipRefusal (ip: string): Promise<AttemptResult | null> {
    const left = await this.ipBlocked(ip)
    return left > 0 ? { ok: false, reason: 'ip-locked', retryAfterMs: left } : null
  }

  async failAttempt (ref: UserRef, ip: string, gen: number): Promise<FailureResult> {
    const { lock, ip: ipPolicy } = this.policy
    if (ipPolicy === null) return { user: await this.fail(ref, gen), ipBlockedMs: 0 }
    if (!this.standalone) {
      // a cluster keeps the IP's counter in another slot: read it first, charge it once the user is
      const refused = await this.ipRefusal(ip)
      if (refused !== null) return { user: refused, ipBlockedMs: 0 }
      const user = await this.fail(ref, gen)
      if (!user.ok && user.reason === 'changed') return { user, ipBlockedMs: 0 }
      return { user, ipBlockedMs: await this.failIp(ip) }
    }
    const r = await this.run(this.client.totpFailBoth(this.keys.user(ref), this.keys.ip(ip), lock.freeFailures, lock.lockMs, lock.maxLockMs, ipPolicy.windowMs, ipPolicy.maxFailures, gen))
    return { user: attemptResult(r), ipBlockedMs: Math.max(0, Number(r[3])) }
  }

  async revoke (ref: UserRef): Promise<boolean> {
    return (await this.run(this.client.totpRevoke(this.keys.user(ref), this.keys.pending(ref)))) > 0
  }

  async setEnforced (ref: UserRef, enforced: boolean): Promise<void> {
    const key = this.keys.user(ref)
    await this.run(enforced ? this.client.hset(key, 'e', '1') : this.client.hdel(key, 'e'))
  }

  async getSettings (tenant: string): Promise<TenantSettings> {
    return { enforceAll: (await this.run(this.client.hget(this.keys.settings(tenant, 0), 'a'))) === '1' }
  }

  // Copies go to every shard; shard 0 is written last and is what getSettings reads,
  // so a failure half-way reports the old value and the call can simply be retried.
  async setSettings (tenant: string, settings: TenantSettings): Promise<void> {
    const write = (shard: number): Promise<number> => settings.enforceAll
      ? this.client.hset(this.keys.settings(tenant, shard), 'a', '1')
      : this.client.hdel(this.keys.settings(tenant, shard), 'a')
    const rest: Promise<number>[] = []
    for (let shard = 1; shard < this.keys.shards; shard++) rest.push(write(shard))
    await this.run(Promise.all(rest))
    await this.run(write(0))
  }
}
