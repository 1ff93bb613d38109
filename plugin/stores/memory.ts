import {
  DEFAULT_SETUP_POLICY, LOCKED_UNTIL_UNLOCK, type AttemptInput, type AttemptResult, type CheckState, type GateQuery,
  type GateState, type LookItem, type LookResult, type SetupOffer, type RecoveryResult, type SetupResult,
  type StorePolicy, type TenantSettings, type UserRef
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
  /** The setup deadline of an enforced user without TOTP (R14). */
  d?: number
  /** Trusted devices: id → record, and when the set expires. */
  dv?: Map<string, string>
  dx?: number
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

  // gate.lua's rules, in its order
  async gate (ref: UserRef, q: GateQuery = { roles: [], device: null, mode: 'look' }): Promise<GateState> {
    let row = this.rows.get(this.id(ref))
    const t = this.tenants.get(ref.tenant)
    const roleEnforced = t !== undefined && q.roles.some((r) => t.enforceRoles.includes(r))
    const enforced = row?.e === true || t?.enforceAll === true || roleEnforced
    if (q.mode !== 'look' && row?.s === undefined && (row?.d ?? 0) === 0 && (t?.gracePeriod ?? 0) > 0 && enforced) {
      row = this.row(ref)
      row.d = Date.now() // first seen enforced: the deadline follows the grace period set now
    }
    const grace = t?.gracePeriod ?? 0
    if (row?.dx !== undefined && row.dx <= Date.now()) {
      delete row.dv
      delete row.dx
    }
    return {
      enabled: row?.s !== undefined,
      enforced: row?.e === true,
      gen: row?.g ?? 0,
      lockedUntil: row?.k ?? 0,
      enforceAll: t?.enforceAll === true,
      roleEnforced,
      setupDeadline: (row?.d ?? 0) > 0 && grace > 0 ? row!.d! + grace * 1000 : 0,
      device: q.device === null ? '' : row?.dv?.get(q.device) ?? ''
    }
  }

  async looks (items: LookItem[]): Promise<LookResult[]> {
    return Promise.all(items.map(async ({ ref, roles }) => ({
      state: await this.gate(ref, { roles, device: null, mode: 'look' }),
      recoveryCodesLeft: await this.recoveryCodesLeft(ref)
    })))
  }

  async check (ref: UserRef, q?: GateQuery): Promise<CheckState> {
    const gate = await this.gate(ref, q === undefined ? undefined : { ...q, mode: 'gate' })
    const row = this.rows.get(this.id(ref))
    return {
      gate,
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
    delete row.d
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
    delete row.dv
    delete row.dx
    this.pendings.delete(this.id(ref))
    row.g++
    return had
  }

  async trustDevice (ref: UserRef, id: string, record: string, ttlMs: number): Promise<void> {
    const row = this.row(ref)
    row.dv ??= new Map()
    row.dv.set(id, record)
    row.dx = Date.now() + ttlMs
  }

  async listDevices (ref: UserRef): Promise<Record<string, string>> {
    await this.gate(ref) // drops an expired set
    return Object.fromEntries(this.rows.get(this.id(ref))?.dv ?? [])
  }

  async forgetDevice (ref: UserRef, id: string): Promise<boolean> {
    return this.rows.get(this.id(ref))?.dv?.delete(id) === true
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
    else {
      delete row.e
      delete row.d
    }
  }

  async getSettings (tenant: string): Promise<TenantSettings> {
    const t = this.tenants.get(tenant)
    return {
      enforceAll: t?.enforceAll === true, enforceRoles: [...t?.enforceRoles ?? []], gracePeriod: t?.gracePeriod ?? 0
    }
  }

  async setSettings (tenant: string, s: TenantSettings): Promise<void> {
    const { enforceAll, enforceRoles, gracePeriod } = s
    this.tenants.set(tenant, { enforceAll, enforceRoles: [...enforceRoles], gracePeriod })
  }
}
