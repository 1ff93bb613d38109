import type { AttemptResult, CheckState, FailureResult, GateState, SecretState, StorePolicy, TenantSettings, TotpStore, UserRef } from './store.js'

interface Row { s?: string; l?: number; f?: number; k?: number; e?: boolean; g: number }

/**
 * Single-process store for development and the example's default. Same rules
 * as the Redis store; each method runs without awaiting, so it is atomic in
 * one process. State is lost on restart and not shared between instances.
 */
export class MemoryTotpStore implements TotpStore {
  private readonly rows = new Map<string, Row>()
  private readonly pendings = new Map<string, { sealed: string; expiresAt: number }>()
  private readonly ips = new Map<string, { count: number; expiresAt: number }>()
  private readonly tenants = new Map<string, TenantSettings>()

  constructor (private readonly policy: StorePolicy) {}

  private id (ref: UserRef): string { return JSON.stringify([ref.tenant, ref.userId]) }
  private row (ref: UserRef): Row {
    const id = this.id(ref)
    let row = this.rows.get(id)
    if (row === undefined) this.rows.set(id, row = { g: 0 })
    return row
  }

  private pending (ref: UserRef): string | null {
    const p = this.pendings.get(this.id(ref))
    if (p === undefined) return null
    if (p.expiresAt <= Date.now()) { this.pendings.delete(this.id(ref)); return null }
    return p.sealed
  }

  private lockLeft (row: Row, now: number): number { return (row.k ?? 0) > now ? row.k! - now : 0 }

  private charge (row: Row, now: number): AttemptResult {
    const { freeFailures, lockMs, maxLockMs } = this.policy.lock
    const failures = row.f = (row.f ?? 0) + 1
    let lockedForMs = 0
    if (failures >= freeFailures) {
      lockedForMs = Math.min(lockMs * 2 ** Math.min(failures - freeFailures, 40), maxLockMs)
      row.k = now + lockedForMs
    }
    return { ok: false, reason: 'failed', failures, lockedForMs }
  }

  async gate (ref: UserRef): Promise<GateState> { return this.gateNow(ref) }

  private gateNow (ref: UserRef): GateState {
    const row = this.rows.get(this.id(ref))
    return {
      enabled: row?.s !== undefined,
      enforced: row?.e === true,
      gen: row?.g ?? 0,
      lockedUntil: row?.k ?? 0,
      enforceAll: this.tenants.get(ref.tenant)?.enforceAll === true
    }
  }

  async load (ref: UserRef): Promise<SecretState> { return this.loadNow(ref) }

  private loadNow (ref: UserRef): SecretState {
    const row = this.rows.get(this.id(ref))
    return { sealed: row?.s ?? null, pending: this.pending(ref), lastStep: row?.l ?? -1, lockedForMs: row ? this.lockLeft(row, Date.now()) : 0, gen: row?.g ?? 0 }
  }

  async startSetup (ref: UserRef, sealedPending: string, ttlMs: number): Promise<'ok' | 'already-enabled'> {
    if (this.rows.get(this.id(ref))?.s !== undefined) return 'already-enabled'
    this.pendings.set(this.id(ref), { sealed: sealedPending, expiresAt: Date.now() + ttlMs })
    return 'ok'
  }

  async confirmSetup (ref: UserRef, sealedPending: string, timeStep: number, ip?: string): Promise<AttemptResult> {
    const refused = this.ipRefusal(ip)
    if (refused !== null) return refused
    const now = Date.now()
    const row = this.row(ref)
    const left = this.lockLeft(row, now)
    if (left > 0) return { ok: false, reason: 'locked', retryAfterMs: left }
    if (row.s !== undefined) return { ok: false, reason: 'already-enabled' }
    if (this.pending(ref) !== sealedPending) return { ok: false, reason: 'no-pending' }
    if (timeStep <= (row.l ?? -1)) return this.charge(row, now)
    row.s = sealedPending
    row.l = timeStep
    delete row.f
    delete row.k
    this.pendings.delete(this.id(ref))
    return { ok: true, gen: ++row.g }
  }

  async consume (ref: UserRef, timeStep: number, gen: number, ip?: string): Promise<AttemptResult> {
    const refused = this.ipRefusal(ip)
    if (refused !== null) return refused
    const now = Date.now()
    const row = this.row(ref)
    const left = this.lockLeft(row, now)
    if (left > 0) return { ok: false, reason: 'locked', retryAfterMs: left }
    if (row.s === undefined) return { ok: false, reason: 'not-enabled' }
    if (row.g !== gen) return { ok: false, reason: 'changed' }
    if (timeStep <= (row.l ?? -1)) return this.charge(row, now)
    row.l = timeStep
    delete row.f
    delete row.k
    return { ok: true, gen: row.g }
  }

  async fail (ref: UserRef, gen?: number): Promise<AttemptResult> { return this.failNow(ref, gen) }

  private failNow (ref: UserRef, gen?: number): AttemptResult {
    const now = Date.now()
    const row = this.row(ref)
    if (gen !== undefined && row.g !== gen) return { ok: false, reason: 'changed' }
    const left = this.lockLeft(row, now)
    if (left > 0) return { ok: false, reason: 'locked', retryAfterMs: left }
    return this.charge(row, now)
  }

  async check (ref: UserRef, ip: string): Promise<CheckState> {
    return { gate: this.gateNow(ref), secret: this.loadNow(ref), ipBlockedMs: this.ipBlockedNow(ip) }
  }

  async failAttempt (ref: UserRef, ip: string, gen: number): Promise<FailureResult> {
    const refused = this.ipRefusal(ip)
    if (refused !== null) return { user: refused, ipBlockedMs: 0 }
    const user = this.failNow(ref, gen)
    if (!user.ok && user.reason === 'changed') return { user, ipBlockedMs: 0 }
    return { user, ipBlockedMs: this.failIpNow(ip) }
  }

  private ipEntry (ip: string, now: number): { count: number; expiresAt: number } | undefined {
    const e = this.ips.get(ip)
    if (e !== undefined && e.expiresAt <= now) { this.ips.delete(ip); return undefined }
    return e
  }

  async ipBlocked (ip: string): Promise<number> { return this.ipBlockedNow(ip) }

  // An IP over its budget refuses a decision (consume, confirm, charge) outright.
  private ipRefusal (ip: string | undefined): AttemptResult | null {
    const left = ip === undefined ? 0 : this.ipBlockedNow(ip)
    return left > 0 ? { ok: false, reason: 'ip-locked', retryAfterMs: left } : null
  }

  private ipBlockedNow (ip: string): number {
    if (this.policy.ip === null) return 0
    const now = Date.now()
    const e = this.ipEntry(ip, now)
    return e !== undefined && e.count >= this.policy.ip.maxFailures ? e.expiresAt - now : 0
  }

  async failIp (ip: string): Promise<number> { return this.failIpNow(ip) }

  private failIpNow (ip: string): number {
    if (this.policy.ip === null) return 0
    const now = Date.now()
    let e = this.ipEntry(ip, now)
    if (e === undefined) this.ips.set(ip, e = { count: 0, expiresAt: now + this.policy.ip.windowMs })
    e.count++
    return e.count >= this.policy.ip.maxFailures ? e.expiresAt - now : 0
  }

  async revoke (ref: UserRef): Promise<boolean> {
    const row = this.row(ref)
    const had = row.s !== undefined || this.pending(ref) !== null
    delete row.s
    delete row.l
    delete row.f
    delete row.k
    this.pendings.delete(this.id(ref))
    row.g++
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
