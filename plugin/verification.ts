import type { FastifyReply, FastifyRequest } from 'fastify'
import { lockOf, type TotpContext } from './context.js'
import { open } from './crypto/seal.js'
import {
  TotpAlreadyEnabledError, TotpInvalidCodeError, TotpLockedError, TotpNoPendingSetupError, TotpNotEnabledError,
  TotpUnavailableError
} from './errors.js'
import { ipBucket } from './ip.js'
import { recoveryCandidates, recoveryHashes } from './recovery.js'
import { verifyCode } from './totp/index.js'
import type { AttemptResult, CheckState, SecretState, UserRef } from './types.js'

/** The AAD purpose of a sealed TOTP secret. */
export const SECRET_PURPOSE = 'totp-secret'

/** One code check: who, with which request, and what it decides. */
export interface CodeCheck {
  request: FastifyRequest<{ Body: { code: string } }>
  reply: FastifyReply
  ref: UserRef
  /**
   * `verify`: a code of the active secret; `confirm`: the code that activates the pending one;
   * `recover`: a recovery code of the active secret.
   */
  kind: 'verify' | 'confirm' | 'recover'
  /** `confirm`: the new set of recovery codes, stored with the activation; `recover`: the normalized code. */
  recoveryCodes?: string[]
}

/** A decided check: the generation the session is now verified under, the recovery codes left. */
export interface Decided { gen: number; recoveryCodesLeft: number }

// What the gate read on the routes that check a code: kept off `request.totp`, which the app
// may log, because it holds sealed secrets.
const reads = new WeakMap<FastifyRequest, CheckState>()

/** The gate hands its read of a code route over to the check. */
export function keepRead (request: FastifyRequest, read: CheckState): void {
  reads.set(request, read)
}

// Reads of the user's state a check may take while the secret changes under it (revoked or
// replaced between the read and the deciding script), before it gives up with 503.
const MAX_READS = 3

/**
 * Checks the code of `c` and decides it in one atomic store call; resolves with the generation
 * the session is now verified under, or throws the answer (401, 404, 409, 429). The code is
 * checked against the gate's read (made once the body had arrived); when the deciding script
 * finds the secret changed since that read, nothing was consumed nor charged, and the code is
 * checked again against a fresh read.
 */
export async function decideCode (ctx: TotpContext, c: CodeCheck): Promise<Decided> {
  let read = reads.get(c.request) ?? await ctx.store.check(c.ref)
  for (let n = 1; ; n++) {
    const r = await attempt(ctx, c, read)
    if (r.ok) return { gen: r.gen, recoveryCodesLeft: r.recoveryCodesLeft }
    if (r.reason !== 'changed') return refuse(ctx, c, r)
    if (n === MAX_READS) {
      throw new TotpUnavailableError({ cause: new Error('the user\'s secret kept changing during the code check') })
    }
    read = await ctx.store.check(c.ref)
  }
}

// The sealed secret a code is checked against, or the answer when there is none to check.
function secretOf (kind: CodeCheck['kind'], s: SecretState): string {
  if (kind !== 'confirm') {
    if (s.sealed === null) throw new TotpNotEnabledError()
    return s.sealed
  }
  if (s.sealed !== null) throw new TotpAlreadyEnabledError()
  if (s.pending === null) throw new TotpNoPendingSetupError()
  return s.pending
}

async function attempt (ctx: TotpContext, c: CodeCheck, { gate, secret }: CheckState): Promise<AttemptResult> {
  const sealed = secretOf(c.kind, secret)
  // locked when read: refused without checking the code (no oracle, nothing charged)
  const { locked, lockedUntil } = lockOf(gate)
  if (locked) {
    return { ok: false, reason: 'locked', retryAfterMs: lockedUntil === null ? null : gate.lockedUntil - Date.now() }
  }
  let step: number | null = null
  if (c.kind !== 'recover') {
    const key = openSecret(ctx, c.request, sealed, c.ref)
    const afterTimeStep = secret.lastStep >= 0 ? secret.lastStep : undefined
    const v = verifyCode(key, c.request.body.code.replaceAll(' ', ''), ctx.opts.totp, { afterTimeStep })
    step = v.valid ? v.timeStep : null
  }
  // recovery codes are bound to the secret's generation: a confirmation makes the next one
  const codes = c.recoveryCodes
  let recovery: string[] | undefined
  if (codes !== undefined && c.kind === 'confirm') recovery = recoveryHashes(ctx.keyRing, c.ref, gate.gen + 1, codes)
  if (codes !== undefined && c.kind === 'recover') recovery = recoveryCandidates(ctx.keyRing, c.ref, gate.gen, codes[0])
  // a right and a wrong code cost the same: one deciding call, which refuses a locked user first
  return ctx.store.attempt(c.ref, {
    kind: c.kind,
    gen: gate.gen,
    step,
    pending: c.kind === 'confirm' ? sealed : undefined,
    ip: ipOf(ctx, c.request),
    recovery
  })
}

/** Opens a sealed secret; one that does not open (unknown key id, tampered or copied record) fails closed. */
export function openSecret (ctx: TotpContext, request: FastifyRequest, sealed: string, ref: UserRef): Buffer {
  try {
    return open(ctx.keyRing, sealed, { ...ref, purpose: SECRET_PURPOSE })
  } catch (err) {
    request.log.error({ err, totp: { tenant: ref.tenant, userId: ref.userId } },
      'fastify-totp-gate: a sealed secret did not open (missing key or tampered record)')
    throw new TotpUnavailableError({ cause: err })
  }
}

let warnedNoIp = false

/**
 * The IP bucket a failure is charged to (an IPv6 address by its network), or null when no IP
 * budget applies. A request without an IP (a unix socket without `trustProxy`) skips the budget:
 * sharing one key would let one account's failures lock everyone out.
 */
function ipOf (ctx: TotpContext, request: FastifyRequest): string | null {
  if (ctx.opts.ip === null) return null
  const bucket = ipBucket(request.ip, ctx.opts.ipv6PrefixLength)
  if (bucket === null && !warnedNoIp) {
    warnedNoIp = true
    request.log.warn({ ip: request.ip }, 'fastify-totp-gate: a request without an IP address skips the per-IP budget ' +
      '(behind a proxy or on a unix socket, set trustProxy)')
  }
  return bucket
}

/** 429 with `Retry-After` (whole seconds, at least 1); none for a lock that lasts until unlocked (null). */
export function locked (reply: FastifyReply, ms: number | null): never {
  if (ms === null) throw new TotpLockedError('an administrator must unlock this account')
  const seconds = Math.max(1, Math.ceil(ms / 1000))
  reply.header('retry-after', String(seconds))
  throw new TotpLockedError(`retry in ${seconds} seconds`)
}

const FAILED = { verify: 'verify.failed', confirm: 'setup.failed', recover: 'recovery.failed' } as const

function refuse (
  ctx: TotpContext,
  { request, reply, ref, kind }: CodeCheck,
  r: Exclude<AttemptResult, { ok: true }>
): never {
  const ip = request.ip
  switch (r.reason) {
    case 'locked':
    case 'ip-locked':
      ctx.emit(request, { type: 'attempt.refused', ...ref, ip, reason: r.reason })
      return locked(reply, r.retryAfterMs)
    case 'failed':
      ctx.emit(request, { type: FAILED[kind], ...ref, ip, failures: r.failures })
      if (r.lockedForMs === null) {
        ctx.emit(request, { type: 'locked', ...ref, ip, failures: r.failures, untilUnlock: true })
      } else if (r.lockedForMs > 0) {
        ctx.emit(request, { type: 'locked', ...ref, ip, failures: r.failures, lockedForMs: r.lockedForMs })
      }
      if (r.ipLockedForMs > 0) ctx.emit(request, { type: 'ip.locked', ...ref, ip, lockedForMs: r.ipLockedForMs })
      throw new TotpInvalidCodeError()
    case 'not-enabled': throw new TotpNotEnabledError()
    case 'already-enabled': throw new TotpAlreadyEnabledError()
    case 'no-pending': throw new TotpNoPendingSetupError()
    case 'changed': throw new TotpUnavailableError()
  }
}
