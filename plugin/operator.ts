import type { FastifyRequest } from 'fastify'
import { lockOf, userRef, type TotpContext } from './context.js'
import { TotpBadRequestError } from './errors.js'
import type { TotpAbility } from './policy/abilities.js'
import { DEFAULT_TENANT, type TenantSettings, type TotpUser } from './types.js'

export interface TotpUserStatus {
  userId: string
  enabled: boolean
  /** The per-user flag (R5). */
  enforced: boolean
  /**
   * No active secret while enforced for the user, the whole tenant or (given a `TotpUser`) one of
   * their roles: the next sign-in must set TOTP up.
   */
  setupRequired: boolean
  /** ISO time until which an enforced user without TOTP may still work (R14 grace period), or null. */
  setupDeadline: string | null
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
/** A user by id, or the user itself (then their roles count for the tenant's `enforceRoles`). */
export type UserOrId = string | Pick<TotpUser, 'id' | 'roles'>

export interface TotpOperator {
  status: (user: UserOrId, scope?: OperatorScope) => Promise<TotpUserStatus>
  /** Many users at once, in pipelined round trips (the order of `users`). */
  statuses: (users: UserOrId[], scope?: OperatorScope) => Promise<TotpUserStatus[]>
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
  /** Changes the settings given; the others keep their values. */
  setSettings: (settings: Partial<TenantSettings>, scope?: OperatorScope) => Promise<void>
  /** The ability the plugin uses for this user (default rules or `defineAbilities`). */
  abilityFor: (user: TotpUser) => TotpAbility
}

function checkSettings (s: TenantSettings): void {
  if (typeof s.enforceAll !== 'boolean') throw new TotpBadRequestError('enforceAll must be a boolean')
  if (!Array.isArray(s.enforceRoles) || !s.enforceRoles.every((r) => typeof r === 'string' && r !== '' &&
    !r.includes('\n') && Buffer.byteLength(r) <= 256)) {
    throw new TotpBadRequestError('enforceRoles must be role names (1 to 256 bytes, no newline)')
  }
  if (!Number.isSafeInteger(s.gracePeriod) || s.gracePeriod < 0 || s.gracePeriod > 31_536_000) {
    throw new TotpBadRequestError('gracePeriod must be whole seconds from 0 to 31536000')
  }
}

export function createOperator (ctx: TotpContext): TotpOperator {
  const { store } = ctx
  const statuses: TotpOperator['statuses'] = async (users, { tenant = DEFAULT_TENANT } = {}) => {
    // ids and tenant checked as the gate checks them (FST_TOTP_BAD_USER)
    const items = users.map((u) => typeof u === 'string'
      ? { ref: userRef({ id: u, tenant }), roles: [] }
      : { ref: userRef({ id: u.id, tenant }), roles: Array.isArray(u.roles) ? u.roles : [] })
    const looks = await store.looks(items)
    return looks.map(({ state: s, recoveryCodesLeft }, i) => ({
      userId: items[i].ref.userId,
      enabled: s.enabled,
      enforced: s.enforced,
      setupRequired: !s.enabled && (s.enforced || s.enforceAll || s.roleEnforced),
      setupDeadline: !s.enabled && (s.enforced || s.enforceAll || s.roleEnforced) && s.setupDeadline > 0
        ? new Date(s.setupDeadline).toISOString()
        : null,
      ...lockOf(s),
      recoveryCodesLeft: s.enabled ? recoveryCodesLeft : 0
    }))
  }
  return {
    status: async (user, scope) => (await statuses([user], scope))[0],
    statuses,
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
      const next = { ...await store.getSettings(tenant), ...settings }
      checkSettings(next)
      await store.setSettings(tenant, next)
      ctx.emit(request ?? null, { type: 'settings.changed', tenant, actorId, ...next })
    },
    abilityFor: (user) => ctx.abilities(user)
  }
}
