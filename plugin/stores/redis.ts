import { readFileSync } from 'node:fs'
import type { Cluster, Redis, Result } from 'ioredis'
import { StoreUnavailable } from '../errors.js'
import { DEFAULT_KEY_PREFIX, DEFAULT_SETTINGS_SHARDS, DEFAULT_TIMEOUT } from '../options.js'
import { KeyLayout } from './keys.js'
import type { AttemptResult, CheckState, FailureResult, GateState, SecretState, StorePolicy, TenantSettings, TotpStore, UserRef } from './store.js'

type Reply = Array<number | string>

declare module 'ioredis' {
  interface RedisCommander<Context> {
    totpGate(user: string, settings: string): Result<Reply, Context>
    /** KEYS: user, settings, pending[, ip] (numkeys first). */
    totpCheck(numKeys: number, ...keysAndArgs: Array<string | number>): Result<Reply, Context>
    totpSetup(user: string, pending: string, sealed: string, ttlMs: number): Result<number, Context>
    totpConfirm(user: string, pending: string, sealed: string, step: number, free: number, lockMs: number, maxMs: number, consumer: string): Result<Reply, Context>
    totpConsume(user: string, step: number, free: number, lockMs: number, maxMs: number, consumer: string): Result<Reply, Context>
    totpFail(user: string, free: number, lockMs: number, maxMs: number): Result<Reply, Context>
    totpIpFail(ip: string, windowMs: number, max: number): Result<number, Context>
    totpIpCheck(ip: string, max: number): Result<number, Context>
    totpFailBoth(user: string, ip: string, free: number, lockMs: number, maxMs: number, windowMs: number, max: number): Result<Reply, Context>
    totpRevoke(user: string, pending: string): Result<number, Context>
  }
}

const lua = (name: string): string => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
const LIB = lua('lib')
// keys null: the caller passes the number of keys first
const SCRIPTS: Record<string, { keys: number | null; file: string; lib: boolean }> = {
  totpGate: { keys: 2, file: 'gate', lib: false },
  totpCheck: { keys: null, file: 'check', lib: true },
  totpSetup: { keys: 2, file: 'setup', lib: false },
  totpConfirm: { keys: 2, file: 'confirm', lib: true },
  totpConsume: { keys: 1, file: 'consume', lib: true },
  totpFail: { keys: 1, file: 'fail', lib: true },
  totpIpFail: { keys: 1, file: 'ipfail', lib: true },
  totpIpCheck: { keys: 1, file: 'ipcheck', lib: true },
  totpFailBoth: { keys: 2, file: 'failboth', lib: true },
  totpRevoke: { keys: 2, file: 'revoke', lib: false }
}
const SOURCES = Object.fromEntries(Object.entries(SCRIPTS).map(([name, s]) => [name, (s.lib ? LIB + '\n' : '') + lua(s.file)]))

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
    case 0: return { ok: false, reason: 'locked', retryAfterMs: Number(r[1]) }
    case 2: return { ok: false, reason: 'failed', failures: Number(r[1]), lockedForMs: Number(r[2]) }
    case 3: return { ok: false, reason: 'already-enabled' }
    case 4: return { ok: false, reason: 'no-pending' }
    default: return { ok: false, reason: 'not-enabled' }
  }
}

const gateState = (r: Reply): GateState =>
  ({ enabled: r[0] === 1, enforced: r[1] === 1, gen: Number(r[2]), lockedUntil: Number(r[3]), enforceAll: r[4] === 1 })

// check.lua's reply after the gate's five fields
const secretState = (r: Reply): SecretState =>
  ({ sealed: (r[5] as string) || null, pending: (r[6] as string) || null, lastStep: Number(r[7]), lockedForMs: Number(r[8]), gen: Number(r[2]), consumer: (r[9] as string) || null })

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
    return { gate: gateState(r), secret: secretState(r), ipBlockedMs: Math.max(0, Number(ipMs ?? r[10])) }
  }

  async startSetup (ref: UserRef, sealedPending: string, ttlMs: number): Promise<'ok' | 'already-enabled'> {
    const r = await this.run(this.client.totpSetup(this.keys.user(ref), this.keys.pending(ref), sealedPending, ttlMs))
    return r === 1 ? 'ok' : 'already-enabled'
  }

  async confirmSetup (ref: UserRef, sealedPending: string, timeStep: number, consumer = ''): Promise<AttemptResult> {
    const { lock } = this.policy
    return attemptResult(await this.run(this.client.totpConfirm(this.keys.user(ref), this.keys.pending(ref), sealedPending, timeStep, lock.freeFailures, lock.lockMs, lock.maxLockMs, consumer)))
  }

  async consume (ref: UserRef, timeStep: number, consumer = ''): Promise<AttemptResult> {
    const { lock } = this.policy
    return attemptResult(await this.run(this.client.totpConsume(this.keys.user(ref), timeStep, lock.freeFailures, lock.lockMs, lock.maxLockMs, consumer)))
  }

  async fail (ref: UserRef): Promise<AttemptResult> {
    const { lock } = this.policy
    return attemptResult(await this.run(this.client.totpFail(this.keys.user(ref), lock.freeFailures, lock.lockMs, lock.maxLockMs)))
  }

  async ipBlocked (ip: string): Promise<number> {
    if (this.policy.ip === null) return 0
    return Math.max(0, Number(await this.run(this.client.totpIpCheck(this.keys.ip(ip), this.policy.ip.maxFailures))))
  }

  async failIp (ip: string): Promise<number> {
    if (this.policy.ip === null) return 0
    return Math.max(0, Number(await this.run(this.client.totpIpFail(this.keys.ip(ip), this.policy.ip.windowMs, this.policy.ip.maxFailures))))
  }

  async failAttempt (ref: UserRef, ip: string): Promise<FailureResult> {
    const { lock, ip: ipPolicy } = this.policy
    if (ipPolicy === null || !this.standalone) {
      const [user, ipBlockedMs] = await Promise.all([this.fail(ref), this.failIp(ip)])
      return { user, ipBlockedMs }
    }
    const r = await this.run(this.client.totpFailBoth(this.keys.user(ref), this.keys.ip(ip), lock.freeFailures, lock.lockMs, lock.maxLockMs, ipPolicy.windowMs, ipPolicy.maxFailures))
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
