import type { IpPolicy, LockPolicy } from '../options.js'
import type { SessionReadAlong } from './session-store.js'

/** Who a record belongs to: every key and check is per tenant. */
export interface UserRef { tenant: string; userId: string }

/** What the gate needs for one request, read in one store call (one Redis command). */
export interface GateState {
  /** An active (confirmed) secret exists. */
  enabled: boolean
  /** TOTP is enforced for this user (R5). */
  enforced: boolean
  /** TOTP is enforced for the whole tenant (R7). */
  enforceAll: boolean
  /** Bumped by every activation and revocation: a verified session remembers it. */
  gen: number
  /** Epoch ms until which the user is locked out; 0 when not locked. */
  lockedUntil: number
}

/** The sealed secrets and replay/lock state a verification needs. */
export interface SecretState {
  sealed: string | null
  pending: string | null
  /** The last accepted time step, -1 when none. */
  lastStep: number
  /** Milliseconds the lock still lasts; 0 when not locked. */
  lockedForMs: number
  /** The generation this was read under: `consume` takes it back (see there). */
  gen: number
}

/**
 * What the routes that check a code (/verify, /setup/confirm) read before checking it: the
 * gate's answer, the user's secrets and the IP's budget, in one round trip where the backend can.
 */
export interface CheckState {
  gate: GateState
  secret: SecretState
  /** Milliseconds the IP is still refused for; 0 when within its budget. */
  ipBlockedMs: number
}

/** The user's state as a linked session store read it along with the session (see `readAlong`). */
export interface ReadAlong {
  gate: GateState
  /** What checking a code needs: read along until the session is verified, else null. */
  secret: SecretState | null
}

/** A wrong code charged to the user and to the IP at once. */
export interface FailureResult {
  user: AttemptResult
  /** Milliseconds the IP is refused for when this failure spent its budget, else 0. */
  ipBlockedMs: number
}

export type AttemptResult =
  | { ok: true; gen: number }
  /** Locked: the attempt was not charged nor checked. */
  | { ok: false; reason: 'locked'; retryAfterMs: number }
  /** The IP is over its failure budget: nothing was consumed nor charged. */
  | { ok: false; reason: 'ip-locked'; retryAfterMs: number }
  /** Wrong or reused code: charged; `lockedForMs` > 0 when this failure set a lock. */
  | { ok: false; reason: 'failed'; failures: number; lockedForMs: number }
  /** The secret was revoked or replaced since the code was checked: nothing consumed nor charged (IP included). */
  | { ok: false; reason: 'changed' }
  | { ok: false; reason: 'not-enabled' | 'already-enabled' | 'no-pending' }

export interface TenantSettings { enforceAll: boolean }

export interface StorePolicy { lock: LockPolicy; ip: IpPolicy | null }

/**
 * The state behind the plugin. Every method that changes security state is
 * atomic (one Lua script in Redis). Errors mean "the store cannot answer":
 * the plugin fails closed with 503.
 */
export interface TotpStore {
  gate(ref: UserRef): Promise<GateState>
  load(ref: UserRef): Promise<SecretState>
  /** `gate`, `load` and `ipBlocked` at once: the gate of the routes that check a code. */
  check(ref: UserRef, ip: string): Promise<CheckState>
  /** Starts (or restarts) a pending setup; refuses when a secret is active. */
  startSetup(ref: UserRef, sealedPending: string, ttlMs: number): Promise<'ok' | 'already-enabled'>
  /**
   * Activates the pending secret `sealedPending` with its confirming step (which counts as used).
   * With `ip`, refuses with 'ip-locked' while that IP is over its budget, as `consume` does.
   */
  confirmSetup(ref: UserRef, sealedPending: string, timeStep: number, ip?: string): Promise<AttemptResult>
  /**
   * Consumes a time step: succeeds only if it is newer than the last accepted one (a step is
   * consumed once, whoever asks again), and only while the user's generation is still `gen`, the
   * one the code was checked under (`SecretState.gen`): a secret revoked or replaced meanwhile
   * answers 'changed', consuming and charging nothing.
   * With `ip` (its budget not read yet), refuses with 'ip-locked' while that IP is over its budget,
   * atomically with the consume where the backend can (memory, standalone Redis).
   */
  consume(ref: UserRef, timeStep: number, gen: number, ip?: string): Promise<AttemptResult>
  /** Charges a failure (wrong or reused code); with `gen`, only while that is still the user's generation (else 'changed'). */
  fail(ref: UserRef, gen?: number): Promise<AttemptResult>
  /** Milliseconds this IP is still refused for; 0 when within its budget. */
  ipBlocked(ip: string): Promise<number>
  /** Charges a failure to an IP; returns ms refused for when the budget is now spent, else 0. */
  failIp(ip: string): Promise<number>
  /**
   * `fail` and `failIp` at once: a wrong code, checked against a read of generation `gen`. An IP
   * already over its budget is charged no further, nor is the user: the answer is
   * `{ user: 'ip-locked', ipBlockedMs: 0 }`; a secret revoked or replaced since that read charges
   * nobody: `{ user: 'changed', ipBlockedMs: 0 }` (the caller checks the code again).
   */
  failAttempt(ref: UserRef, ip: string, gen: number): Promise<FailureResult>
  /** Deletes secret, pending setup, replay and lock state at once; returns whether a secret or setup existed. */
  revoke(ref: UserRef): Promise<boolean>
  setEnforced(ref: UserRef, enforced: boolean): Promise<void>
  getSettings(tenant: string): Promise<TenantSettings>
  setSettings(tenant: string, settings: TenantSettings): Promise<void>
  close?(): Promise<void>
  /**
   * What a `RedisSessionStore` can read along with each session (one command for the session
   * and the gate); null or absent when this store cannot share the session's command.
   */
  sessionReader?(): SessionReadAlong | null
  /**
   * The state read along with this request's session for `ref`; null when none was, or it was
   * read for another user or store, or `check` asks for the secrets and only the gate's was read.
   * Synchronous: no store call.
   */
  readAlong?(ref: UserRef, session: { totp?: unknown } | null | undefined, check: boolean): ReadAlong | null
}
