import type { FastifyReply, FastifyRequest } from 'fastify'
import { open, type KeyRing } from './crypto/seal.js'
import { TotpInvalidCodeError, TotpLockedError, TotpUnauthenticatedError, TotpUnavailableError } from './errors.js'
import { DEFAULT_TENANT, type ResolvedOptions, type TotpEvent } from './options.js'
import type { AbilityBuilder } from './policy/abilities.js'
import { RedisSessionStore } from './stores/session-store.js'
import type { AttemptResult, CheckState, GateState, ReadAlong, SecretState, TotpStore, UserRef } from './stores/store.js'
import { verifyCode } from './totp/index.js'
import type { TotpRequestState } from './augment.js'

/** Everything the gate, the routes and the operator API share. */
export interface TotpContext {
  opts: ResolvedOptions
  store: TotpStore
  keyRing: KeyRing
  abilities: AbilityBuilder
  emit: (request: FastifyRequest | null, event: TotpEvent) => void
  /** Session stores seen by the gate, and whether each reads the gate's state along (see `linked`). */
  links: WeakMap<object, boolean>
}

const unavailable = (err: unknown): never => { throw new TotpUnavailableError({ cause: err }) }

/** Runs a store call; a store that cannot answer fails closed (S6). A native promise whatever the store returned. */
export const guarded = <T>(op: Promise<T>): Promise<T> => Promise.resolve(op).catch(unavailable)

// What the gate read for the routes that check a code; kept off `request.totp`, which the
// app may log, because it holds sealed secrets. `ipBlockedMs` null: the IP was not read yet.
const checks = new WeakMap<FastifyRequest, CheckState | (ReadAlong & { secret: SecretState; ipBlockedMs: null })>()

/**
 * Whether the request's session store reads the gate's state along with the session: a
 * RedisSessionStore on the TOTP store's own standalone client, linked on first sight.
 */
export function linked (ctx: TotpContext, request: FastifyRequest): boolean {
  const sessions = request.sessionStore as object | undefined
  if (sessions === undefined || sessions === null) return false
  let ok = ctx.links.get(sessions)
  if (ok === undefined) {
    const reader = ctx.store.sessionReader?.() ?? null
    ok = reader !== null && sessions instanceof RedisSessionStore && sessions.link(reader)
    ctx.links.set(sessions, ok)
  }
  return ok
}

/**
 * The gate's one read: what the session store read along with the session when it could
 * (returned as is, no promise), else one store call. On the routes that check a code
 * (`readCode`) it also reads what `checkCode` needs.
 */
export function readGate (ctx: TotpContext, request: FastifyRequest, ref: UserRef, readCode: boolean): GateState | Promise<GateState> {
  const along = ctx.store.readAlong?.(ref, request.session, readCode) ?? null
  if (along !== null) {
    if (readCode && along.secret !== null) checks.set(request, { gate: along.gate, secret: along.secret, ipBlockedMs: null })
    return along.gate
  }
  if (!readCode) return guarded(ctx.store.gate(ref))
  return guarded(ctx.store.check(ref, request.ip)).then((check) => {
    checks.set(request, check)
    return check.gate
  })
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

/** What `checkCode` found: the state read, the secret checked, the matched step. */
export interface Checked { st: SecretState; sealed: string; timeStep: number; ip: string | undefined }

// A deciding call's answer when the user's secret changed under the read (see `decideOnCurrent`).
const CHANGED: AttemptResult = { ok: false, reason: 'changed' }

/**
 * The common first half of /verify and /setup/confirm: take the user's state and the IP's
 * budget the gate read (see `readGate`), let `pick` choose the sealed secret to check (or throw),
 * answer 429 without checking while locked (S4), check the code against steps newer than
 * `afterTimeStep`, and charge a failure for a wrong code (which refuses an IP over its budget).
 * Returns the state, the matched step and `ip`: when the read came along with the session, the
 * IP's budget was not read, and the caller's deciding call (consume, confirm) checks it with `ip`.
 * Null: the code was wrong for a secret revoked or replaced since the read, and nobody was charged.
 * `fresh`: read the state again rather than take the gate's (which the request's headers brought,
 * maybe long before its body).
 */
export async function checkCode (
  ctx: TotpContext, request: FastifyRequest<{ Body: { code: string } }>, reply: FastifyReply, ref: UserRef,
  failedType: 'verify.failed' | 'setup.failed',
  pick: (st: SecretState) => { sealed: string; afterTimeStep: number },
  fresh = false
): Promise<Checked | null> {
  // a route without `readsCode` (none of the plugin's) reads here instead
  const read = (fresh ? undefined : checks.get(request)) ?? await guarded(ctx.store.check(ref, request.ip))
  const st = read.secret
  const { sealed, afterTimeStep } = pick(st)
  if (st.lockedForMs > 0) locked(reply, st.lockedForMs)
  if (read.ipBlockedMs !== null && read.ipBlockedMs > 0) locked(reply, read.ipBlockedMs)
  const secret = openSecret(ctx, request, sealed, ref)
  const v = verifyCode(secret, request.body.code, ctx.opts.totp, { afterTimeStep: afterTimeStep >= 0 ? afterTimeStep : undefined })
  if (!v.valid) {
    // behind a trusted proxy, each read of request.ip parses X-Forwarded-For
    const ip = request.ip
    const { user, ipBlockedMs } = await guarded(ctx.store.failAttempt(ref, ip, st.gen))
    if (!user.ok && user.reason === 'changed') return null
    return answerFailure(ctx, request, reply, ref, failedType, ip, user, ipBlockedMs)
  }
  return { st, sealed, timeStep: v.timeStep, ip: read.ipBlockedMs === null ? request.ip : undefined }
}

/**
 * Runs a code check and its deciding call (`attempt`) on the gate's read, then on fresh reads
 * while the user's secret changed under it (revoked or replaced since the read: 'changed',
 * nothing consumed nor charged), at most three reads in all; then fails closed with 503.
 */
export async function decideOnCurrent (attempt: (fresh: boolean) => Promise<AttemptResult | null>): Promise<AttemptResult> {
  for (let reads = 1; ; reads++) {
    const r = await attempt(reads > 1) ?? CHANGED
    if (r.ok || r.reason !== 'changed') return r
    if (reads === 3) throw new TotpUnavailableError({ cause: new Error('the user\'s secret kept changing during the code check') })
  }
}

/** A reused code the deciding script charged already: charge the IP, audit, answer 401 (or 429). */
export async function failure (ctx: TotpContext, request: FastifyRequest, reply: FastifyReply, ref: UserRef, type: 'verify.failed' | 'setup.failed', charged: AttemptResult): Promise<never> {
  const ip = request.ip
  return answerFailure(ctx, request, reply, ref, type, ip, charged, await guarded(ctx.store.failIp(ip)))
}

function answerFailure (ctx: TotpContext, request: FastifyRequest, reply: FastifyReply, ref: UserRef, type: 'verify.failed' | 'setup.failed', ip: string, r: AttemptResult, ipMs: number): never {
  if (ipMs > 0) ctx.emit(request, { type: 'ip.locked', ...ref, ip, lockedForMs: ipMs })
  if (!r.ok && (r.reason === 'locked' || r.reason === 'ip-locked')) locked(reply, r.retryAfterMs)
  if (!r.ok && r.reason === 'failed') {
    ctx.emit(request, { type, ...ref, ip, failures: r.failures })
    if (r.lockedForMs > 0) ctx.emit(request, { type: 'locked', ...ref, ip, failures: r.failures, lockedForMs: r.lockedForMs })
  }
  throw new TotpInvalidCodeError()
}

/** S5: a new session id once a code is verified; the app's own session data is carried over. */
export async function markVerified (request: FastifyRequest, ref: UserRef, gen: number): Promise<void> {
  // the mark goes in with the new session's first write (the save on send then has nothing new)
  request.session.totp = { t: ref.tenant, u: ref.userId, g: gen }
  const keep = Object.keys(request.session).filter((k) => k !== 'cookie')
  try {
    await request.session.regenerate(keep)
  } catch (err) {
    // fail closed: whichever session the request is left with is saved unverified
    if (request.session) request.session.totp = undefined
    throw err
  }
}

export const userRef = (user: { id: string; tenant?: string }): UserRef =>
  ({ tenant: user.tenant ?? DEFAULT_TENANT, userId: user.id })
