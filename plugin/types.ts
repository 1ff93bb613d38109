// The plugin's shared types: a leaf module (it imports nothing of the plugin).

/** The tenant of a user who names none. */
export const DEFAULT_TENANT = 'default'

/** The identity the app supplies after its own first factor. */
export interface TotpUser {
  id: string
  /** @default 'default' — every key and check is per tenant */
  tenant?: string
  /** The user who created/owns this user (the hierarchy behind revocation). */
  parentId?: string | null
  /** e.g. 'ROLE_USER_MANAGEMENT_ADMIN', 'ROLE_USER_MANAGEMENT_CREATE', 'ROLE_USER_MANAGEMENT_READ' */
  roles: string[]
  /** All ancestors up the hierarchy, for apps whose own ability rules need them. @default [] */
  ancestorIds?: string[]
  /** Account name shown in the authenticator app. @default id */
  label?: string
}

/** Who a record belongs to: every key and check is per tenant. */
export interface UserRef { tenant: string; userId: string }

export type TotpEventType =
  | 'setup.started' | 'setup.confirmed' | 'setup.failed'
  | 'verify.succeeded' | 'verify.failed' | 'attempt.refused' | 'locked' | 'ip.locked'
  | 'secret.revoked' | 'enforcement.changed' | 'settings.changed'
  | 'recovery.generated' | 'recovery.used' | 'recovery.failed' | 'unlocked'
  | 'device.trusted' | 'device.used' | 'device.forgotten'

/** An audit event, logged with the request's logger and passed to `onEvent`. */
export interface TotpEvent {
  type: TotpEventType
  tenant: string
  /** The user concerned (absent for tenant settings). */
  userId?: string
  /** Who did it, for admin actions (absent when an operator used `fastify.totp`). */
  actorId?: string
  ip?: string
  /** Failures in a row, for failures and locks. */
  failures?: number
  /** Lock length, for locks; absent for a lock that lasts until unlocked. */
  lockedForMs?: number
  /** A lock that lasts until unlocked (R10: the failure count reached `lockout.maxFailures`). */
  untilUnlock?: boolean
  /** Recovery codes the user has left, for recovery events. */
  recoveryCodesLeft?: number
  reason?: string
  enforced?: boolean
  enforceAll?: boolean
  enforceRoles?: string[]
  gracePeriod?: number
  /** The trusted device concerned, for device events. */
  deviceId?: string
}

/** What the gate reads for one request, in one store call (one Redis command). */
export interface GateState {
  /** An active (confirmed) secret exists. */
  enabled: boolean
  /** TOTP is enforced for this user. */
  enforced: boolean
  /** TOTP is enforced for the whole tenant. */
  enforceAll: boolean
  /** TOTP is enforced for a role the user holds (the tenant's `enforceRoles`, R13). */
  roleEnforced: boolean
  /**
   * Epoch ms until which an enforced user without TOTP may keep working (the tenant's
   * `gracePeriod` as set now, R14, counted from the first request the gate saw them enforced); 0: none.
   */
  setupDeadline: number
  /** Bumped by every activation and revocation: a verified session remembers it. */
  gen: number
  /** Epoch ms until which the user is locked out; 0 when not locked; `LOCKED_UNTIL_UNLOCK` until unlocked. */
  lockedUntil: number
  /** The record of the trusted device the request named (R15), '' when none or unknown. */
  device: string
}

/**
 * `GateState.lockedUntil` of a user locked until unlocked (R10), the largest time a Date holds.
 * The scripts write and compare the same number.
 */
export const LOCKED_UNTIL_UNLOCK = 8_640_000_000_000_000

/** The sealed secrets and replay state a code check needs. */
export interface SecretState {
  sealed: string | null
  pending: string | null
  /** The last accepted time step, -1 when none. */
  lastStep: number
}

/** What the routes that check a code read (in the gate's one store call). */
export interface CheckState { gate: GateState; secret: SecretState }

/** The deciding step of a code check, one atomic store call. */
export interface AttemptInput {
  /**
   * `verify` consumes a step of the active secret; `confirm` activates the pending one;
   * `recover` uses one recovery code of an active secret.
   */
  kind: 'verify' | 'confirm' | 'recover'
  /** The generation the code was checked under (`GateState.gen` of the read). */
  gen: number
  /** The time step the code matched; null when it matched none (a wrong code). */
  step: number | null
  /** `confirm`: the sealed pending secret the code was checked against. */
  pending?: string
  /** The IP's budget bucket, null when no IP budget applies. */
  ip: string | null
  /**
   * `confirm`: the keyed hashes of the new recovery codes (none: no codes); `recover`: the code's
   * keyed hash under each key of the ring, one of which may be stored.
   */
  recovery?: string[]
}

export type AttemptResult =
  /** `recoveryCodesLeft`: after this attempt (a `confirm`: the new set). */
  | { ok: true; gen: number; recoveryCodesLeft: number }
  /** Locked: nothing was checked nor charged; `retryAfterMs` null: locked until unlocked. */
  | { ok: false; reason: 'locked'; retryAfterMs: number | null }
  /** The IP is over its failure budget: nothing was consumed nor charged. */
  | { ok: false; reason: 'ip-locked'; retryAfterMs: number }
  /**
   * Wrong or reused code, charged; `lockedForMs` > 0 when this failure set a lock (null: a lock
   * until unlocked), `ipLockedForMs` when it spent the IP's budget.
   */
  | { ok: false; reason: 'failed'; failures: number; lockedForMs: number | null; ipLockedForMs: number }
  /** The secret was revoked or replaced since the read the code was checked against: nothing consumed nor charged. */
  | { ok: false; reason: 'changed' }
  | { ok: false; reason: 'not-enabled' | 'already-enabled' | 'no-pending' }

/** A new set of recovery codes: stored, or refused (no active secret; revoked or re-enrolled since). */
export type RecoveryResult =
  | { ok: true; count: number }
  | { ok: false; reason: 'not-enabled' | 'changed' }

export interface TenantSettings {
  /** TOTP enforced on every user of the tenant (R7). */
  enforceAll: boolean
  /** TOTP enforced on every user holding any of these roles (R13). @default [] */
  enforceRoles: string[]
  /** Seconds an enforced user without TOTP may keep working, from the first request seen enforced (R14). @default 0 */
  gracePeriod: number
}

/** A user whose state an operator reads (`statuses`), with the roles that count for `enforceRoles`. */
export interface LookItem { ref: UserRef; roles: string[] }
/** A look's answer: the gate's state (nothing started) and the recovery codes left. */
export interface LookResult { state: GateState; recoveryCodesLeft: number }

/** What the gate tells the store about the request, besides who it is. */
export interface GateQuery {
  /** The user's roles, for the tenant's `enforceRoles`. */
  roles: string[]
  /** A trusted device's id the request's cookie names (R15), or null. */
  device: string | null
  /**
   * `gate`: a request of the user (starts the grace period of an enforced user without TOTP);
   * `look`: an operator's or an admin's read, which starts nothing.
   */
  mode: 'gate' | 'look'
}

/** `maxFailures`: failures in a row after which the lock lasts until unlocked (R10). */
export interface LockPolicy { freeFailures: number; lockMs: number; maxLockMs: number; maxFailures: number }
export interface IpPolicy { maxFailures: number; windowMs: number }
/** How many new secrets a user may start within a window. */
export interface SetupPolicy { maxStarts: number; windowMs: number }
export interface StorePolicy {
  lock: LockPolicy
  ip: IpPolicy | null
  /** @default { maxStarts: 10, windowMs: 3600000 } */
  setup?: SetupPolicy
}
export const DEFAULT_SETUP_POLICY: SetupPolicy = { maxStarts: 10, windowMs: 3_600_000 }

/** A new setup offered to the store: the sealed secret and its QR code (a data: URL). */
export interface SetupOffer { sealed: string; qr: string; ttlMs: number }

/**
 * `started`: the offer is now the pending setup. `pending`: one was pending already, answered
 * again (the offer, if any, was dropped). `none`: a look without an offer, nothing pending and a
 * start allowed. `throttled`: the user started too many setups in the window.
 */
export type SetupResult =
  | { status: 'started'; expiresAt: number }
  | { status: 'pending'; sealed: string; qr: string; expiresAt: number }
  | { status: 'none' }
  | { status: 'throttled'; retryAfterMs: number }
  | { status: 'already-enabled' }

/**
 * What a session remembers for the plugin: which user (tenant `t`, id `u`) verified under
 * which secret generation `g`, when (`v`, epoch ms), and whether by a trusted device (`d`)
 * rather than a code.
 */
export interface TotpSessionState {
  t: string
  u: string
  g: number
  /** When the session verified (a mark without it counts as verified long ago). */
  v?: number
  /** Verified by a trusted device: never enough for step-up (R12). */
  d?: 1
}

/** Per-route settings: `false` opts a route out of the gate (sign-in, sign-out, static assets). */
export interface TotpRouteConfig {
  /** Answer while the session has not verified its code (e.g. `/totp/status`, `/totp/verify`). @default false */
  allowUnverified?: boolean
  /** Answer while an enforced user still has to set TOTP up (the setup routes). @default false */
  allowSetupRequired?: boolean
  /** R11: users without an active secret get 403 `FST_TOTP_SETUP_REQUIRED` here, enforced or not. @default false */
  required?: boolean
  /**
   * R12 step-up: the session must have verified a code (not a trusted device) within this many
   * seconds, else 401 `FST_TOTP_STEP_UP_REQUIRED`; implies `required`.
   */
  maxAge?: number
  /** @internal Set by the plugin on the routes that check a code: the gate also reads the user's secrets. */
  readsCode?: boolean
}

/** What the gate learnt about the request, for the plugin's routes and the app. */
export interface TotpRequestState {
  user: TotpUser
  ref: UserRef
  state: GateState
  verified: boolean
}
