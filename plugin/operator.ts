import type { FastifyRequest } from 'fastify'
import { lockOf, type TotpContext } from './context.js'
import type { TotpAbility } from './policy/abilities.js'
import { DEFAULT_TENANT, type TenantSettings, type TotpUser } from './types.js'

export interface TotpUserStatus {
  userId: string
  enabled: boolean
  /** The per-user flag (R5). */
  enforced: boolean
  /** No active secret while enforced for the user or the whole tenant: the next sign-in must set TOTP up. */
  setupRequired: boolean
  /** Locked out of code checks now (R10: possibly until unlocked). */
  locked: boolean
  /** ISO time the lock ends; null when not locked or locked until unlocked. */
  lockedUntil: string | null
  /** Unused recovery codes (R9); 0 when recovery codes are off or none were made. */
  recoveryCodesLeft: number
}

/** Where an operation applies and who asked, for the audit log. */
export interface OperatorScope {
  /** @default 'default' */
  tenant?: string
  /** Who did it (audit). */
  actorId?: string
  /** Logs the audit event with this request's logger instead of the app's. */
  request?: FastifyRequest
}

/**
 * `fastify.totp`: the admin operations for operators and scripts. It checks no
 * abilities — it is how a root user, who has no parent, gets reset. A store that
 * cannot answer rejects with 503 `FST_TOTP_UNAVAILABLE`.
 */
export interface TotpOperator {
  status: (userId: string, scope?: OperatorScope) => Promise<TotpUserStatus>
  /**
   * R4 effects at once: secret, pending setup, recovery codes, replay and lock state; verified
   * sessions end.
   * Returns whether a secret or setup existed.
   */
  revoke: (userId: string, scope?: OperatorScope) => Promise<boolean>
  /** R10: ends the user's lock and failure count; returns whether there was either. */
  unlock: (userId: string, scope?: OperatorScope) => Promise<boolean>
  setEnforced: (userId: string, enforced: boolean, scope?: OperatorScope) => Promise<void>
  getSettings: (scope?: OperatorScope) => Promise<TenantSettings>
  setSettings: (settings: TenantSettings, scope?: OperatorScope) => Promise<void>
  /** The ability the plugin uses for this user (default rules or `defineAbilities`). */
  abilityFor: (user: TotpUser) => TotpAbility
}

export function createOperator (ctx: TotpContext): TotpOperator {
  const { store } = ctx
  return {
    async status (userId, { tenant = DEFAULT_TENANT } = {}) {
      const ref = { tenant, userId }
      const [s, recoveryCodesLeft] = await Promise.all([store.gate(ref), store.recoveryCodesLeft(ref)])
      return {
        userId,
        enabled: s.enabled,
        enforced: s.enforced,
        setupRequired: !s.enabled && (s.enforced || s.enforceAll),
        ...lockOf(s),
        recoveryCodesLeft: s.enabled ? recoveryCodesLeft : 0
      }
    },
    async unlock (userId, { tenant = DEFAULT_TENANT, actorId, request } = {}) {
      const had = await store.unlock({ tenant, userId })
      ctx.emit(request ?? null, { type: 'unlocked', tenant, userId, actorId, ...(had ? {} : { reason: 'not locked' }) })
      return had
    },
    async revoke (userId, { tenant = DEFAULT_TENANT, actorId, request } = {}) {
      const had = await store.revoke({ tenant, userId })
      ctx.emit(request ?? null, {
        type: 'secret.revoked',
        tenant,
        userId,
        actorId,
        ...(had ? {} : { reason: 'nothing to revoke' })
      })
      return had
    },
    async setEnforced (userId, enforced, { tenant = DEFAULT_TENANT, actorId, request } = {}) {
      await store.setEnforced({ tenant, userId }, enforced)
      ctx.emit(request ?? null, { type: 'enforcement.changed', tenant, userId, actorId, enforced })
    },
    getSettings: async ({ tenant = DEFAULT_TENANT } = {}) => store.getSettings(tenant),
    async setSettings (settings, { tenant = DEFAULT_TENANT, actorId, request } = {}) {
      await store.setSettings(tenant, { enforceAll: settings.enforceAll })
      ctx.emit(request ?? null, { type: 'settings.changed', tenant, actorId, enforceAll: settings.enforceAll })
    },
    abilityFor: (user) => ctx.abilities(user)
  }
}
