import {
  AbilityBuilder, createMongoAbility, ForbiddenError, subject, type ForcedSubject, type MongoAbility
} from '@casl/ability'
import { DEFAULT_TENANT, type TotpUser } from '../types.js'

export const ROLE_ADMIN = 'ROLE_USER_MANAGEMENT_ADMIN'
export const ROLE_CREATE = 'ROLE_USER_MANAGEMENT_CREATE'
export const ROLE_READ = 'ROLE_USER_MANAGEMENT_READ'

/** The fields a rule may match: the target user and the tenant. */
export interface TargetFields { tenant: string; userId: string; parentId: string | null; ancestorIds: string[] }
export type TotpAction = 'read' | 'revoke' | 'update'
export type TotpSubjectType = 'TotpStatus' | 'TotpSecret' | 'TotpEnforcement' | 'TotpSettings'
export type TargetSubject =
  | (TargetFields & ForcedSubject<'TotpStatus'>)
  | (TargetFields & ForcedSubject<'TotpSecret'>)
  | (TargetFields & ForcedSubject<'TotpEnforcement'>)
export type SettingsSubject = { tenant: string } & ForcedSubject<'TotpSettings'>
export type TotpAbility = MongoAbility<[TotpAction, TotpSubjectType | TargetSubject | SettingsSubject]>
/** The refusals no ability lifts (the admin routes check them too, whatever `defineAbilities` returns). */
export const SELF_REVOKE = 'R4: nobody revokes their own secret'
export const SELF_ENFORCE = 'R5: nobody changes their own enforcement'
export const SELF_UNLOCK = 'R10: nobody unlocks themselves'

/** Builds a user's ability. Replace it with the `defineAbilities` option. */
export type AbilityBuilderFn = (user: TotpUser) => TotpAbility
export type { AbilityBuilderFn as AbilityBuilder }

/**
 * The default rules (SPEC R4–R8). Later rules win in CASL, so the `cannot`
 * rules, each with the reason a 403 shows, come after the grants; `extend`
 * adds an app's rules after the role/parent refusals and before the hard
 * ones (never oneself, never another tenant).
 */
export function defineTotpAbilities (
  user: TotpUser,
  extend?: (b: AbilityBuilder<TotpAbility>, user: TotpUser) => void
): TotpAbility {
  const b = new AbilityBuilder<TotpAbility>(createMongoAbility)
  const tenant = user.tenant ?? DEFAULT_TENANT
  const admin = user.roles.includes(ROLE_ADMIN)
  const create = user.roles.includes(ROLE_CREATE)
  const read = user.roles.includes(ROLE_READ)

  // R8 status: oneself; READ or ADMIN; CREATE for one's children
  b.can('read', 'TotpStatus', { tenant, userId: user.id })
  if (read || admin) b.can('read', 'TotpStatus', { tenant })
  if (create) b.can('read', 'TotpStatus', { tenant, parentId: user.id })
  // R4 revocation: the parent holding ADMIN or CREATE
  if (admin || create) b.can('revoke', 'TotpSecret', { tenant, parentId: user.id })
  // R5 enforcement: ADMIN
  if (admin) b.can('update', 'TotpEnforcement', { tenant })
  // R7 tenant settings: read by READ or ADMIN, changed by ADMIN
  if (read || admin) b.can('read', 'TotpSettings', { tenant })
  if (admin) b.can('update', 'TotpSettings', { tenant })

  if (!admin && !create) {
    b.cannot('revoke', 'TotpSecret').because('R4: revoking needs ADMIN or CREATE on User management')
  } else {
    b.cannot('revoke', 'TotpSecret', { parentId: { $ne: user.id } })
      .because('R4: only the parent user may revoke a secret')
  }
  if (!admin) b.cannot('update', 'TotpEnforcement').because('R5: enforcing TOTP needs ADMIN on User management')
  if (!admin) b.cannot('update', 'TotpSettings').because('R7: tenant settings need ADMIN on User management')
  if (!read && !admin) {
    const others = create ? { userId: { $ne: user.id }, parentId: { $ne: user.id } } : { userId: { $ne: user.id } }
    b.cannot('read', 'TotpStatus', others)
      .because('R8: reading another user\'s status needs READ or ADMIN on User management, or CREATE as their parent')
  }
  if (!read && !admin) {
    b.cannot('read', 'TotpSettings').because('R7: reading tenant settings needs READ or ADMIN on User management')
  }
  // an app's own rules go here: they can lift the refusals above (e.g. let ancestors revoke), not the ones below
  extend?.(b, user)
  b.cannot('revoke', 'TotpSecret', { userId: user.id }).because(SELF_REVOKE)
  b.cannot('update', 'TotpEnforcement', { userId: user.id }).because(SELF_ENFORCE)
  for (const s of ['TotpStatus', 'TotpSecret', 'TotpEnforcement', 'TotpSettings'] as const) {
    b.cannot(['read', 'revoke', 'update'], s, { tenant: { $ne: tenant } }).because('another tenant')
  }
  return b.build()
}

/** A subject CASL can match (a plain object without `subject()` is always denied). */
export function targetSubject (type: Exclude<TotpSubjectType, 'TotpSettings'>, target: TotpUser): TargetSubject {
  return subject(type, {
    tenant: target.tenant ?? DEFAULT_TENANT,
    userId: target.id,
    parentId: target.parentId ?? null,
    ancestorIds: target.ancestorIds ?? []
  }) as TargetSubject
}

export function settingsSubject (tenant: string): SettingsSubject {
  return subject('TotpSettings', { tenant })
}

/** Why `ability` refuses, or null when it allows. */
export function refusal (
  ability: TotpAbility,
  action: TotpAction,
  target: TargetSubject | SettingsSubject
): string | null {
  const err = ForbiddenError.from(ability).setMessage('').unlessCan(action, target)
  if (err === undefined) return null
  return err.message !== '' ? err.message : `not allowed to ${action} ${target.__caslSubjectType__}`
}
