import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { open, type KeyRing } from './crypto/seal.js'
import { TotpInvalidCodeError, TotpLockedError, TotpUnauthenticatedError, TotpUnavailableError } from './errors.js'
import { DEFAULT_TENANT, type ResolvedOptions, type TotpEvent } from './options.js'
import type { AbilityBuilder } from './policy/abilities.js'
import type { AttemptResult, GateState, SecretState, TotpStore, UserRef } from './stores/store.js'
import { verifyCode } from './totp/index.js'
import type { TotpRequestState } from './augment.js'

/** Everything the gate, the routes and the operator API share. */
export interface TotpContext {
  opts: ResolvedOptions
  store: TotpStore
  keyRing: KeyRing
  abilities: AbilityBuilder
  emit: (request: FastifyRequest | null, event: TotpEvent) => void
}

/** Runs a store call; a store that cannot answer fails closed (S6). */
export async function guarded<T> (op: Promise<T>): Promise<T> {
  try {
    return await op
  } catch (err) {
    throw new TotpUnavailableError({ cause: err })
  }
}

export const SECRET_PURPOSE = 'totp-secret'

/** Opens a sealed secret; one that does not open (unknown key id, tampered or copied record) fails closed. */
export function openSecret (ctx: TotpContext, request: FastifyRequest, sealed: string, ref: UserRef): Buffer {
  try {
    return open(ctx.keyRing, sealed, { ...ref, purpose: SECRET_PURPOSE })
  } catch (err) {
    request.log.error({ err, totp: { tenant: ref.tenant, userId: ref.userId } }, 'fastify-totp: a sealed secret did not open (missing key or tampered record)')
    throw new TotpUnavailableError({ cause: err })
  }
}

export function requireUser (request: FastifyRequest): TotpRequestState {
  if (request.totp === null) throw new TotpUnauthenticatedError()
  return request.totp
}

export function locked (reply: FastifyReply, ms: number): never {
  const seconds = Math.max(1, Math.ceil(ms / 1000))
  reply.header('retry-after', String(seconds))
  throw new TotpLockedError(seconds)
}

/** ISO time until which the user is locked out, or null. */
export const lockedUntilIso = (state: GateState): string | null =>
  state.lockedUntil > Date.now() ? new Date(state.lockedUntil).toISOString() : null

/**
 * The common first half of /verify and /setup/confirm: read the user's state (and the
 * IP's budget) in one round trip, let `pick` choose the sealed secret to check (or throw),
 * answer 429 without checking while locked (S4), check the code against steps newer than
 * `afterTimeStep`, and charge a failure for a wrong code. Returns the state and the matched step.
 */
export async function checkCode (
  ctx: TotpContext, request: FastifyRequest<{ Body: { code: string } }>, reply: FastifyReply, ref: UserRef,
  failedType: 'verify.failed' | 'setup.failed',
  pick: (st: SecretState) => { sealed: string; afterTimeStep: number }
): Promise<{ st: SecretState; sealed: string; timeStep: number }> {
  const [ipMs, st] = await guarded(Promise.all([ctx.store.ipBlocked(request.ip), ctx.store.load(ref)]))
  const { sealed, afterTimeStep } = pick(st)
  if (st.lockedForMs > 0) locked(reply, st.lockedForMs)
  if (ipMs > 0) locked(reply, ipMs)
  const secret = openSecret(ctx, request, sealed, ref)
  const v = verifyCode(secret, request.body.code, ctx.opts.totp, { afterTimeStep: afterTimeStep >= 0 ? afterTimeStep : undefined })
  if (!v.valid) return failure(ctx, request, reply, ref, failedType)
  return { st, sealed, timeStep: v.timeStep }
}

/** A wrong or reused code: charge the user and the IP, audit, answer 401 (or 429 when already locked). */
export async function failure (ctx: TotpContext, request: FastifyRequest, reply: FastifyReply, ref: UserRef, type: 'verify.failed' | 'setup.failed', charged?: AttemptResult): Promise<never> {
  const [r, ipMs] = await guarded(Promise.all([
    charged ?? ctx.store.fail(ref),
    ctx.store.failIp(request.ip)
  ]))
  if (ipMs > 0) ctx.emit(request, { type: 'ip.locked', ...ref, ip: request.ip, lockedForMs: ipMs })
  if (!r.ok && r.reason === 'locked') locked(reply, r.retryAfterMs)
  if (!r.ok && r.reason === 'failed') {
    ctx.emit(request, { type, ...ref, ip: request.ip, failures: r.failures })
    if (r.lockedForMs > 0) ctx.emit(request, { type: 'locked', ...ref, ip: request.ip, failures: r.failures, lockedForMs: r.lockedForMs })
  }
  throw new TotpInvalidCodeError()
}

/**
 * Who is consuming a time step: a digest of the session id the request came with (before S5
 * changes it). Lets that session, and only it, complete a verification whose answer it never
 * got (a timeout, a 503) with the same code.
 */
export const consumerToken = (request: FastifyRequest): string =>
  createHash('sha256').update(String(request.session.sessionId)).digest('base64url').slice(0, 16)

/** S5: a new session id once a code is verified; the app's own session data is carried over. */
export async function markVerified (request: FastifyRequest, ref: UserRef, gen: number): Promise<void> {
  const keep = Object.keys(request.session).filter((k) => k !== 'cookie' && k !== 'totp')
  await request.session.regenerate(keep)
  request.session.totp = { t: ref.tenant, u: ref.userId, g: gen }
}

export const userRef = (user: { id: string; tenant?: string }): UserRef =>
  ({ tenant: user.tenant ?? DEFAULT_TENANT, userId: user.id })
