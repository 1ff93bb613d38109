import {
  DEFAULT_SETUP_POLICY, LOCKED_UNTIL_UNLOCK, type AttemptInput, type AttemptResult, type CheckState, type GateState,
  type SetupOffer,
  type RecoveryResult, type SetupResult, type StorePolicy, type TenantSettings, type UserRef
} from '../types.js'
import { checkPolicy, type TotpStore } from './store.js'

interface Row {
  s?: string;
  l?: number;
  f?: number;
  k?: number;
  e?: boolean;
  g: number;
  sw?: number;
  sc?: number
  /** Keyed hashes of the recovery codes. */
  r?: Set<string>
}
interface Pending { sealed: string; qr: string; expiresAt: number }

/**
 * Single-process store for development and the example's default. Same rules
 * as the Redis store; each method runs without awaiting, so it is atomic in
 * one process. State is lost on restart and not shared between instances.
 */
export class MemoryTotpStore implements TotpStore {
  private readonly rows = new Map<string, Row>()
  private readonly pendings = new Map<string, Pending>()
  private readonly ips = new Map<string, { count: number; expiresAt: number }>()
  private readonly tenants = new Map<string, TenantSettings>()

  constructor (private readonly policy: StorePolicy) {
    checkPolicy(policy)
  }

  private id (ref: UserRef): string { return JSON.stringify([ref.tenant, ref.userId]) }
  private row (ref: UserRef): Row {
    const id = this.id(ref)
    let row = this.rows.get(id)
    if (row === undefined) this.rows.set(id, row = { g: 0 })
    return row
  }

  private pendingOf (ref: UserRef): Pending | null {
    const p = this.pendings.get(this.id(ref))
    if (p === undefined) return null
    if (p.expiresAt <= Date.now()) {
      this.pendings.delete(this.id(ref))
      return null
    }
    return p
  }

  private pending (ref: UserRef): string | null {
    return this.pendingOf(ref)?.sealed ?? null
  }

  async gate (ref: UserRef): Promise<GateState> {
    const row = this.rows.get(this.id(ref))
    return {
      enabled: row?.s !== undefined,
      enforced: row?.e === true,
      gen: row?.g ?? 0,
      lockedUntil: row?.k ?? 0,
      enforceAll: this.tenants.get(ref.tenant)?.enforceAll === true
    }
  }

  async check (ref: UserRef): Promise<CheckState> {
    const row = this.rows.get(this.id(ref))
    return {
      gate: await this.gate(ref),
      secret: { sealed: row?.s ?? null, pending: this.pending(ref), lastStep: row?.l ?? -1 }
    }
  }

  // setup.lua's rules, in its order
  async startSetup (ref: UserRef, offer: SetupOffer | null): Promise<SetupResult> {
    if (this.rows.get(this.id(ref))?.s !== undefined) return { status: 'already-enabled' }
    const p = this.pendingOf(ref)
    if (p !== null) return { status: 'pending', ...p }
    const now = Date.now()
    const { maxStarts, windowMs } = this.policy.setup ?? DEFAULT_SETUP_POLICY
    const row = this.row(ref)
    if (now - (row.sw ?? 0) >= windowMs) {
      row.sw = now
      row.sc = 0
    }
    if ((row.sc ?? 0) >= maxStarts) return { status: 'throttled', retryAfterMs: row.sw! + windowMs - now }
    if (offer === null) return { status: 'none' }
    row.sc = (row.sc ?? 0) + 1
    const expiresAt = now + offer.ttlMs
    this.pendings.set(this.id(ref), { sealed: offer.sealed, qr: offer.qr, expiresAt })
    return { status: 'started', expiresAt }
  }

  // attempt.lua's rules, in its order
  async attempt (ref: UserRef, a: AttemptInput): Promise<AttemptResult> {
    const now = Date.now()
    const row = this.row(ref)
    if ((row.k ?? 0) >= LOCKED_UNTIL_UNLOCK) return { ok: false, reason: 'locked', retryAfterMs: null }
    if ((row.k ?? 0) > now) return { ok: false, reason: 'locked', retryAfterMs: row.k! - now }
    const ip = this.policy.ip !== null && a.ip !== null ? this.ipEntry(a.ip, now) : undefined
    if (ip !== undefined && ip.count >= this.policy.ip!.maxFailures) {
      return { ok: false, reason: 'ip-locked', retryAfterMs: ip.expiresAt - now }
    }
    if (row.g !== a.gen) return { ok: false, reason: 'changed' }
    if (a.kind === 'confirm') {
      if (row.s !== undefined) return { ok: false, reason: 'already-enabled' }
      if (this.pending(ref) !== a.pending) return { ok: false, reason: 'no-pending' }
    } else if (row.s === undefined) {
      return { ok: false, reason: 'not-enabled' }
    }
    const right = a.kind === 'recover'
      ? (a.recovery ?? []).some((h) => row.r?.delete(h) === true)
      : a.step !== null && a.step > (row.l ?? -1)
    if (!right) return this.charge(row, a.ip, now)
    delete row.f
    delete row.k
    if (a.kind !== 'confirm') {
      if (a.kind === 'verify') row.l = a.step!
      return { ok: true, gen: row.g, recoveryCodesLeft: row.r?.size ?? 0 }
    }
    row.l = a.step!
    row.s = a.pending
    row.r = new Set(a.recovery)
    this.pendings.delete(this.id(ref))
    return { ok: true, gen: ++row.g, recoveryCodesLeft: row.r.size }
  }

  private charge (row: Row, ip: string | null, now: number): AttemptResult {
    const { freeFailures, lockMs, maxLockMs, maxFailures } = this.policy.lock
    const failures = row.f = (row.f ?? 0) + 1
    let lockedForMs: number | null = 0
    if (maxFailures > 0 && failures >= maxFailures) {
      lockedForMs = null
      row.k = LOCKED_UNTIL_UNLOCK
    } else if (failures >= freeFailures) {
      lockedForMs = Math.min(lockMs * 2 ** Math.min(failures - freeFailures, 40), maxLockMs)
      row.k = now + lockedForMs
    }
    let ipLockedForMs = 0
    const policy = this.policy.ip
    if (policy !== null && ip !== null) {
      let e = this.ipEntry(ip, now)
      if (e === undefined) this.ips.set(ip, e = { count: 0, expiresAt: now + policy.windowMs })
      if (++e.count >= policy.maxFailures) ipLockedForMs = e.expiresAt - now
    }
    return { ok: false, reason: 'failed', failures, lockedForMs, ipLockedForMs }
  }

  private ipEntry (ip: string, now: number): { count: number; expiresAt: number } | undefined {
    const e = this.ips.get(ip)
    if (e !== undefined && e.expiresAt <= now) {
      this.ips.delete(ip)
      return undefined
    }
    return e
  }

  async revoke (ref: UserRef): Promise<boolean> {
    const row = this.row(ref)
    const had = row.s !== undefined || this.pending(ref) !== null
    delete row.s
    delete row.l
    delete row.f
    delete row.k
    delete row.r
    this.pendings.delete(this.id(ref))
    row.g++
    return had
  }

  async setRecoveryCodes (ref: UserRef, gen: number, hashes: string[]): Promise<RecoveryResult> {
    const row = this.rows.get(this.id(ref))
    if (row?.s === undefined) return { ok: false, reason: 'not-enabled' }
    if (row.g !== gen) return { ok: false, reason: 'changed' }
    row.r = new Set(hashes)
    return { ok: true, count: row.r.size }
  }

  async recoveryCodesLeft (ref: UserRef): Promise<number> {
    return this.rows.get(this.id(ref))?.r?.size ?? 0
  }

  async unlock (ref: UserRef): Promise<boolean> {
    const row = this.rows.get(this.id(ref))
    const had = row?.f !== undefined || row?.k !== undefined
    delete row?.f
    delete row?.k
    return had
  }

  async setEnforced (ref: UserRef, enforced: boolean): Promise<void> {
    const row = this.row(ref)
    if (enforced) row.e = true
    else delete row.e
  }

  async getSettings (tenant: string): Promise<TenantSettings> {
    return { enforceAll: this.tenants.get(tenant)?.enforceAll === true }
  }

  async setSettings (tenant: string, settings: TenantSettings): Promise<void> {
    this.tenants.set(tenant, { enforceAll: settings.enforceAll })
  }
}
