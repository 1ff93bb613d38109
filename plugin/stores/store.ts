import type {
  AttemptInput, AttemptResult, CheckState, GateState, SetupOffer, SetupResult, StorePolicy, TenantSettings, UserRef
} from '../types.js'

export type { StorePolicy }

/**
 * The state behind the plugin: what it calls, nothing more. Every method that changes
 * security state is atomic (one Lua script in Redis). A store that throws or rejects cannot
 * answer: the plugin fails closed with 503 (see `failClosed`).
 */
export interface TotpStore {
  /** The gate's read: one Redis command. */
  gate(ref: UserRef): Promise<GateState>
  /** The gate's read on the routes that check a code: also the sealed secrets and last step. */
  check(ref: UserRef): Promise<CheckState>
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
  /** Deletes secret, pending setup, replay and lock state at once; returns whether a secret or setup existed. */
  revoke(ref: UserRef): Promise<boolean>
  setEnforced(ref: UserRef, enforced: boolean): Promise<void>
  getSettings(tenant: string): Promise<TenantSettings>
  setSettings(tenant: string, settings: TenantSettings): Promise<void>
  /** Checks at registration (key layout, eviction policy); throwing refuses to start. */
  prepare?(opts: { allowNewKeyPrefix: boolean; warn: (message: string) => void }): Promise<void>
}

/** The methods `failClosed` bounds: every method of the contract. */
export const STORE_METHODS = [
  'gate', 'check', 'startSetup', 'attempt', 'revoke', 'setEnforced', 'getSettings', 'setSettings'
] as const satisfies ReadonlyArray<keyof TotpStore>
