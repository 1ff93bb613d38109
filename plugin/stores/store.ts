import type {
  AttemptInput, AttemptResult, CheckState, GateQuery, GateState, LookItem, LookResult, RecoveryResult, SetupOffer,
  SetupResult, StorePolicy, TenantSettings, UserRef
} from '../types.js'

import { TotpOptionsError } from '../errors.js'

export type { StorePolicy }

/**
 * The state behind the plugin: what it calls, nothing more. Every method that changes
 * security state is atomic (one Lua script in Redis). A store that throws or rejects cannot
 * answer: the plugin fails closed with 503 (see `failClosed`).
 */
export interface TotpStore {
  /** The gate's read: one Redis command. Without a query: a look (no roles, no device). */
  gate(ref: UserRef, query?: GateQuery): Promise<GateState>
  /** The gate's read on the routes that check a code: also the sealed secrets and last step. */
  check(ref: UserRef, query?: GateQuery): Promise<CheckState>
  /** Many users' looks and recovery counts, pipelined. */
  looks(items: LookItem[]): Promise<LookResult[]>
  /**
   * Answers the pending setup if there is one; else starts `offer` (null: only looks), unless
   * the user started `setup.maxStarts` setups within the window. Refuses while a secret is active.
   */
  startSetup(ref: UserRef, offer: SetupOffer | null): Promise<SetupResult>
  /**
   * Decides a checked code, atomically: refuses while the user is locked or the IP is over its
   * budget (nothing charged), then while the generation is no longer `gen` ('changed'); then a
   * matched step newer than the last one is consumed (`confirm` also activates the pending
   * secret), and anything else is charged to the user and the IP.
   */
  attempt(ref: UserRef, input: AttemptInput): Promise<AttemptResult>
  /**
   * Deletes secret, pending setup, recovery codes, replay and lock state at once; returns whether
   * a secret or setup existed.
   */
  revoke(ref: UserRef): Promise<boolean>
  /** Replaces the recovery codes (keyed hashes) of the active secret of generation `gen`. */
  setRecoveryCodes(ref: UserRef, gen: number, hashes: string[]): Promise<RecoveryResult>
  recoveryCodesLeft(ref: UserRef): Promise<number>
  /** Ends a lock and its failure count (R10); returns whether there was either. */
  unlock(ref: UserRef): Promise<boolean>
  /** Stores a trusted device's record (R15); the user's devices expire `ttlMs` after the newest. */
  trustDevice(ref: UserRef, id: string, record: string, ttlMs: number): Promise<void>
  listDevices(ref: UserRef): Promise<Record<string, string>>
  forgetDevice(ref: UserRef, id: string): Promise<boolean>
  setEnforced(ref: UserRef, enforced: boolean): Promise<void>
  getSettings(tenant: string): Promise<TenantSettings>
  setSettings(tenant: string, settings: TenantSettings): Promise<void>
  /** Checks at registration (key layout, eviction policy); throwing refuses to start. */
  prepare?(opts: { allowNewKeyPrefix: boolean; warn: (message: string) => void }): Promise<void>
}

/** The methods `failClosed` bounds: every method of the contract. */
export const STORE_METHODS = [
  'gate', 'check', 'looks', 'startSetup', 'attempt', 'revoke', 'setRecoveryCodes', 'recoveryCodesLeft', 'unlock',
  'trustDevice', 'listDevices', 'forgetDevice', 'setEnforced', 'getSettings', 'setSettings'
] as const satisfies ReadonlyArray<keyof TotpStore>

const whole = (name: string, v: unknown, min: number, max: number): void => {
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
    throw new TotpOptionsError(`store policy ${name} must be an integer from ${min} to ${max}, got ${String(v)}`)
  }
}

/**
 * Checks a policy given to a store's constructor: a policy the scripts cannot read would turn
 * every wrong code into a 503 that locks nobody (unlimited guessing).
 */
export function checkPolicy (policy: StorePolicy): StorePolicy {
  const { lock, ip, setup } = policy ?? {}
  if (lock === null || typeof lock !== 'object') throw new TotpOptionsError('store policy lock is required')
  whole('lock.freeFailures', lock.freeFailures, 1, 1000)
  whole('lock.lockMs', lock.lockMs, 1, Number.MAX_SAFE_INTEGER)
  whole('lock.maxLockMs', lock.maxLockMs, lock.lockMs, Number.MAX_SAFE_INTEGER)
  whole('lock.maxFailures', lock.maxFailures, 1, 100)
  if (ip !== null) {
    whole('ip.maxFailures', ip?.maxFailures, 1, Number.MAX_SAFE_INTEGER)
    whole('ip.windowMs', ip?.windowMs, 1, Number.MAX_SAFE_INTEGER)
  }
  if (setup !== undefined) {
    whole('setup.maxStarts', setup.maxStarts, 1, Number.MAX_SAFE_INTEGER)
    whole('setup.windowMs', setup.windowMs, 1, Number.MAX_SAFE_INTEGER)
  }
  return policy
}
