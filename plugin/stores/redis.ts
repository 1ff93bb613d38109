import { readFileSync } from 'node:fs'
import type { Cluster, Redis, Result } from 'ioredis'
import {
  DEFAULT_SETUP_POLICY, type AttemptInput, type AttemptResult, type CheckState, type GateState, type SetupOffer,
  type GateQuery, type RecoveryResult, type SetupResult, type StorePolicy, type TenantSettings, type UserRef,
  type LookItem, type LookResult
} from '../types.js'
import { KeyLayout } from './keys.js'
import { prepareRedis, type PrepareOptions } from './layout.js'
import { checkPolicy, type TotpStore } from './store.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** KEYS: user, settings, pending, devices; ARGV: mode, device id, roles… */
    totpGate(...keysAndArgs: string[]): Result<unknown, Context>
    totpSetup(
      user: string, pending: string, sealed: string, qr: string, ttlMs: number, maxStarts: number, windowMs: number
    ): Result<unknown, Context>
    /** KEYS: user, pending, recovery[, ip]: the number of keys comes first. */
    totpAttempt(numKeys: number, ...keysAndArgs: Array<string | number>): Result<unknown, Context>
    totpIp(ip: string, op: 'check' | 'charge', windowMs: number, max: number): Result<unknown, Context>
    totpRevoke(user: string, pending: string, recovery: string, devices: string): Result<unknown, Context>
    /** KEYS: user, recovery: the number of keys comes first. */
    totpRecovery(numKeys: number, ...keysAndArgs: Array<string | number>): Result<unknown, Context>
  }
}

// Each script is one whole file; `keys` null: the caller passes the number of keys first.
const SCRIPTS = {
  totpGate: { file: 'gate', keys: 4 },
  totpSetup: { file: 'setup', keys: 2 },
  totpAttempt: { file: 'attempt', keys: null },
  totpIp: { file: 'ip', keys: 1 },
  totpRevoke: { file: 'revoke', keys: 4 },
  totpRecovery: { file: 'recovery', keys: null }
} as const

const lua = (file: string): string => readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), 'utf8')
const SOURCES = Object.fromEntries(Object.entries(SCRIPTS).map(([name, s]) => [name, lua(s.file)]))

/** A script answered something its decoder does not know: the store cannot answer (503). */
export class StoreReplyError extends Error {
  constructor (script: string, reply: unknown) {
    super(`unexpected reply from ${script}: ${JSON.stringify(reply)?.slice(0, 200)}`)
    this.name = 'StoreReplyError'
  }
}

// The decoders: one per script; anything else than what the script returns throws.
const int = (script: string, r: unknown, v: unknown): number => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n)) throw new StoreReplyError(script, r)
  return n
}
const str = (script: string, r: unknown, v: unknown): string => {
  if (typeof v !== 'string') throw new StoreReplyError(script, r)
  return v
}
const list = (script: string, r: unknown, length: number): unknown[] => {
  if (!Array.isArray(r) || r.length !== length) throw new StoreReplyError(script, r)
  return r
}

function decodeGate (s: string, r: unknown[], reply: unknown): GateState {
  return {
    enabled: int(s, reply, r[0]) === 1,
    enforced: int(s, reply, r[1]) === 1,
    gen: int(s, reply, r[2]),
    lockedUntil: int(s, reply, r[3]),
    enforceAll: int(s, reply, r[4]) === 1,
    roleEnforced: int(s, reply, r[5]) === 1,
    setupDeadline: int(s, reply, r[6]),
    device: str(s, reply, r[7])
  }
}

export function decodeGateReply (reply: unknown): GateState {
  return decodeGate('gate.lua', list('gate.lua', reply, 8), reply)
}

export function decodeCheckReply (reply: unknown): CheckState {
  const s = 'gate.lua'
  const r = list(s, reply, 11)
  return {
    gate: decodeGate(s, r, reply),
    secret: {
      sealed: str(s, reply, r[8]) || null, pending: str(s, reply, r[9]) || null, lastStep: int(s, reply, r[10])
    }
  }
}

const LOOK: GateQuery = { roles: [], device: null, mode: 'look' }
// roles go into the script as they are; one with a newline can match nothing (the stored list is newline-separated)
const rolesOf = (q: GateQuery): string[] => q.roles.filter((r) => typeof r === 'string' && !r.includes('\n'))

export function decodeAttemptReply (reply: unknown): AttemptResult {
  const s = 'attempt.lua'
  const r = Array.isArray(reply) ? reply : []
  switch (r[0]) {
    case 'ok':
      list(s, reply, 3)
      return { ok: true, gen: int(s, reply, r[1]), recoveryCodesLeft: int(s, reply, r[2]) }
    case 'locked': {
      const ms = int(s, reply, list(s, reply, 2)[1])
      return { ok: false, reason: 'locked', retryAfterMs: ms < 0 ? null : ms }
    }
    case 'ip-locked': return { ok: false, reason: r[0], retryAfterMs: int(s, reply, list(s, reply, 2)[1]) }
    case 'failed': {
      list(s, reply, 4)
      const lock = int(s, reply, r[2])
      return {
        ok: false,
        reason: 'failed',
        failures: int(s, reply, r[1]),
        lockedForMs: lock < 0 ? null : lock,
        ipLockedForMs: int(s, reply, r[3])
      }
    }
    case 'changed':
    case 'not-enabled':
    case 'already-enabled':
    case 'no-pending':
      list(s, reply, 1)
      return { ok: false, reason: r[0] }
    default: throw new StoreReplyError(s, reply)
  }
}

export function decodeSetupReply (reply: unknown): SetupResult {
  const s = 'setup.lua'
  const r = Array.isArray(reply) ? reply : []
  switch (r[0]) {
    case 'already-enabled':
    case 'none':
      list(s, reply, 1)
      return { status: r[0] }
    case 'started': return { status: 'started', expiresAt: int(s, reply, list(s, reply, 2)[1]) }
    case 'throttled': return { status: 'throttled', retryAfterMs: int(s, reply, list(s, reply, 2)[1]) }
    case 'pending':
      list(s, reply, 4)
      return { status: 'pending', sealed: str(s, reply, r[1]), qr: str(s, reply, r[2]), expiresAt: int(s, reply, r[3]) }
    default: throw new StoreReplyError(s, reply)
  }
}

export function decodeRecoveryReply (reply: unknown): RecoveryResult {
  const s = 'recovery.lua'
  const r = Array.isArray(reply) ? reply : []
  switch (r[0]) {
    case 'ok': return { ok: true, count: int(s, reply, list(s, reply, 2)[1]) }
    case 'not-enabled':
    case 'changed':
      list(s, reply, 1)
      return { ok: false, reason: r[0] }
    default: throw new StoreReplyError(s, reply)
  }
}

/** The tenant settings as stored: `a` 1, `r` the roles newline-separated (with one at each end), `p` seconds. */
function decodeSettings (a: string | null, r: string | null, p: string | null): TenantSettings {
  return {
    enforceAll: a === '1',
    enforceRoles: r === null ? [] : r.split('\n').filter((x) => x !== ''),
    gracePeriod: p === null ? 0 : int('settings', p, p)
  }
}

export interface RedisTotpStoreOptions extends StorePolicy {
  client: Redis | Cluster
  /** @default 'totp:' */
  keyPrefix?: string
  /** @default 64 */
  settingsShards?: number
}

/** The shared store: a standalone Redis or a Redis Cluster, one atomic script per security step. */
export class RedisTotpStore implements TotpStore {
  readonly keys: KeyLayout
  private readonly client: Redis | Cluster
  private readonly policy: StorePolicy
  // Standalone Redis: the deciding script also reads and charges the IP's counter (on a
  // cluster it lives in another slot)
  private readonly standalone: boolean

  constructor (opts: RedisTotpStoreOptions) {
    this.client = opts.client
    this.policy = checkPolicy({ lock: opts.lock, ip: opts.ip, setup: opts.setup })
    this.keys = new KeyLayout(opts.keyPrefix ?? 'totp:', opts.settingsShards ?? 64)
    this.standalone = !this.client.isCluster
    for (const [name, s] of Object.entries(SCRIPTS)) {
      // defined once per client, whichever store instance comes first
      if (typeof (this.client as unknown as Record<string, unknown>)[name] !== 'function') {
        const definition = s.keys === null ? { lua: SOURCES[name] } : { numberOfKeys: s.keys, lua: SOURCES[name] }
        this.client.defineCommand(name, definition)
      }
    }
  }

  /** The checks at start: the recorded key layout and the eviction policy (see `prepareRedis`). */
  async prepare (opts: PrepareOptions): Promise<void> {
    await prepareRedis(this.client, { keyPrefix: this.keys.prefix, settingsShards: this.keys.shards }, opts)
  }

  private gateArgs (ref: UserRef, mode: 'gate' | 'look' | 'check' | 'peek', q: GateQuery): string[] {
    const k = this.keys
    const tag = k.userTag(ref)
    return [k.user(ref, tag), k.settingsFor(ref, tag), k.pending(ref, tag), k.devices(ref, tag), mode, q.device ?? '',
      ...rolesOf(q)]
  }

  async gate (ref: UserRef, q: GateQuery = LOOK): Promise<GateState> {
    return decodeGateReply(await this.client.totpGate(...this.gateArgs(ref, q.mode, q)))
  }

  async check (ref: UserRef, q: GateQuery = LOOK): Promise<CheckState> {
    // without a request of the user (no query): the secrets only, nothing started
    return decodeCheckReply(await this.client.totpGate(...this.gateArgs(ref, q.mode === 'look' ? 'peek' : 'check', q)))
  }

  // many users' reads in pipelines, one per slot (a cluster pipeline stays in one slot)
  async looks (items: LookItem[]): Promise<LookResult[]> {
    const bySlot = new Map<string, number[]>()
    items.forEach(({ ref }, i) => {
      const slot = this.standalone ? '' : this.keys.userTag(ref)
      const group = bySlot.get(slot)
      if (group === undefined) bySlot.set(slot, [i])
      else group.push(i)
    })
    const out: LookResult[] = new Array(items.length)
    await Promise.all([...bySlot.values()].map(async (indexes) => {
      const p = this.client.pipeline()
      for (const i of indexes) {
        const { ref, roles } = items[i]
        p.totpGate(...this.gateArgs(ref, 'look', { roles, device: null, mode: 'look' }))
        p.scard(this.keys.recovery(ref))
      }
      const replies = (await p.exec()) ?? []
      indexes.forEach((i, n) => {
        const [gateErr, gate] = replies[2 * n] ?? [new Error('no reply')]
        const [countErr, count] = replies[2 * n + 1] ?? [new Error('no reply')]
        if (gateErr !== null || countErr !== null) throw gateErr ?? countErr
        out[i] = { state: decodeGateReply(gate), recoveryCodesLeft: int('SCARD', count, count) }
      })
    }))
    return out
  }

  async trustDevice (ref: UserRef, id: string, record: string, ttlMs: number): Promise<void> {
    const key = this.keys.devices(ref)
    await this.client.multi().hset(key, id, record).pexpire(key, ttlMs).exec()
  }

  async listDevices (ref: UserRef): Promise<Record<string, string>> {
    return this.client.hgetall(this.keys.devices(ref))
  }

  async forgetDevice (ref: UserRef, id: string): Promise<boolean> {
    return (await this.client.hdel(this.keys.devices(ref), id)) > 0
  }

  async startSetup (ref: UserRef, offer: SetupOffer | null): Promise<SetupResult> {
    const tag = this.keys.userTag(ref)
    const { maxStarts, windowMs } = this.policy.setup ?? DEFAULT_SETUP_POLICY
    const reply = await this.client.totpSetup(this.keys.user(ref, tag), this.keys.pending(ref, tag),
      offer?.sealed ?? '', offer?.qr ?? '', offer?.ttlMs ?? 1, maxStarts, windowMs)
    return decodeSetupReply(reply)
  }

  async attempt (ref: UserRef, a: AttemptInput): Promise<AttemptResult> {
    const { lock, ip: ipPolicy } = this.policy
    const tag = this.keys.userTag(ref)
    const keys = [this.keys.user(ref, tag), this.keys.pending(ref, tag), this.keys.recovery(ref, tag)]
    const ipKey = ipPolicy !== null && a.ip !== null ? this.keys.ip(a.ip) : null
    const args = [a.kind, a.gen, a.step ?? -1, a.pending ?? '', lock.freeFailures, lock.lockMs, lock.maxLockMs,
      ipPolicy?.windowMs ?? 0, ipPolicy?.maxFailures ?? 0, lock.maxFailures, ...(a.recovery ?? [])]
    if (ipKey === null || this.standalone) {
      if (ipKey !== null) keys.push(ipKey)
      return decodeAttemptReply(await this.client.totpAttempt(keys.length, ...keys, ...args))
    }
    // a cluster: the IP's counter is read first and charged after a failure, by its own script
    const refusedMs = await this.ip(ipKey, 'check')
    if (refusedMs > 0) return { ok: false, reason: 'ip-locked', retryAfterMs: refusedMs }
    const r = decodeAttemptReply(await this.client.totpAttempt(keys.length, ...keys, ...args))
    if (r.ok || r.reason !== 'failed') return r
    return { ...r, ipLockedForMs: await this.ip(ipKey, 'charge') }
  }

  private async ip (key: string, op: 'check' | 'charge'): Promise<number> {
    const { windowMs, maxFailures } = this.policy.ip!
    const reply = await this.client.totpIp(key, op, windowMs, maxFailures)
    return int('ip.lua', reply, reply)
  }

  async revoke (ref: UserRef): Promise<boolean> {
    const tag = this.keys.userTag(ref)
    const reply = await this.client.totpRevoke(this.keys.user(ref, tag), this.keys.pending(ref, tag),
      this.keys.recovery(ref, tag), this.keys.devices(ref, tag))
    return int('revoke.lua', reply, reply) === 1
  }

  async setRecoveryCodes (ref: UserRef, gen: number, hashes: string[]): Promise<RecoveryResult> {
    const tag = this.keys.userTag(ref)
    return decodeRecoveryReply(
      await this.client.totpRecovery(2, this.keys.user(ref, tag), this.keys.recovery(ref, tag), gen, ...hashes)
    )
  }

  async recoveryCodesLeft (ref: UserRef): Promise<number> {
    return this.client.scard(this.keys.recovery(ref))
  }

  // one command: failures and lock go together
  async unlock (ref: UserRef): Promise<boolean> {
    return (await this.client.hdel(this.keys.user(ref), 'f', 'k')) > 0
  }

  async setEnforced (ref: UserRef, enforced: boolean): Promise<void> {
    const key = this.keys.user(ref)
    // un-enforced, a grace period's deadline goes with it (R14)
    await (enforced ? this.client.hset(key, 'e', '1') : this.client.hdel(key, 'e', 'd'))
  }

  async getSettings (tenant: string): Promise<TenantSettings> {
    const [a, r, p] = await this.client.hmget(this.keys.settings(tenant, 0), 'a', 'r', 'p')
    return decodeSettings(a, r, p)
  }

  // Copies go to every shard (each one atomic: a MULTI); shard 0 is written last and is what
  // getSettings reads, so a failure half-way reports the old value and the call can be retried.
  async setSettings (tenant: string, settings: TenantSettings): Promise<void> {
    const roles = settings.enforceRoles.length > 0 ? `\n${settings.enforceRoles.join('\n')}\n` : null
    const write = async (shard: number): Promise<void> => {
      const key = this.keys.settings(tenant, shard)
      const m = this.client.multi()
      if (settings.enforceAll) m.hset(key, 'a', '1')
      else m.hdel(key, 'a')
      if (roles !== null) m.hset(key, 'r', roles)
      else m.hdel(key, 'r')
      if (settings.gracePeriod > 0) m.hset(key, 'p', String(settings.gracePeriod))
      else m.hdel(key, 'p')
      const replies = await m.exec()
      const failed = replies?.find(([err]) => err !== null)
      if (replies === null || failed !== undefined) throw failed?.[0] ?? new Error('settings write aborted')
    }
    const rest: Array<Promise<void>> = []
    for (let shard = 1; shard < this.keys.shards; shard++) rest.push(write(shard))
    await Promise.all(rest)
    await write(0)
  }
}
