import type { FastifyRequest } from 'fastify'
import type { KeyRing } from './crypto/seal.js'
import { TotpBadUserError, TotpForbiddenError, TotpUnauthenticatedError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import type { AbilityBuilder } from './policy/abilities.js'
import type { TotpStore } from './stores/store.js'
import {
  DEFAULT_TENANT, LOCKED_UNTIL_UNLOCK, type GateState, type TotpEvent, type TotpRequestState, type UserRef
} from './types.js'

/** Everything the gate, the routes and the operator API share. */
export interface TotpContext {
  opts: ResolvedOptions
  /** Every call bounded and failing closed (see `failClosed`). */
  store: TotpStore
  keyRing: KeyRing
  abilities: AbilityBuilder
  emit: (request: FastifyRequest | null, event: TotpEvent) => void
}

/** The gate's answer for a signed-in user; 401 when nobody is signed in. */
export function requireUser (request: FastifyRequest): TotpRequestState {
  if (request.totp === null) throw new TotpUnauthenticatedError()
  return request.totp
}

/** Longest tenant or user id, in UTF-8 bytes: each is part of every key name of the user. */
export const MAX_ID_BYTES = 256

const checkId = (name: string, v: unknown): string => {
  if (typeof v !== 'string' || v === '') throw new TotpBadUserError(`${name} must be a non-empty string`)
  if (Buffer.byteLength(v) > MAX_ID_BYTES) throw new TotpBadUserError(`${name} is over ${MAX_ID_BYTES} bytes`)
  return v
}

/** Where a user's records live; an id or tenant that is not a string of 1 to 256 bytes is refused. */
export const userRef = (user: { id: string; tenant?: string }): UserRef =>
  ({ tenant: checkId('tenant', user.tenant ?? DEFAULT_TENANT), userId: checkId('id', user.id) })

/** Whether the user is locked now, and the ISO time it ends (null: not locked, or until unlocked). */
export function lockOf (state: GateState): { locked: boolean; lockedUntil: string | null } {
  const locked = state.lockedUntil > Date.now()
  const ends = locked && state.lockedUntil < LOCKED_UNTIL_UNLOCK
  return { locked, lockedUntil: ends ? new Date(state.lockedUntil).toISOString() : null }
}

/**
 * The 403 for a refusal: the rule id a reason starts with ("R4: …") goes to the log, the
 * client sees only the reason.
 */
export function forbidden (request: FastifyRequest, why: string): Error {
  const m = /^([RS]\d+): (.*)$/s.exec(why)
  request.log.info({ totp: { rule: m?.[1] ?? null, reason: why } }, 'fastify-totp-gate: forbidden')
  return new TotpForbiddenError(m?.[2] ?? why)
}
