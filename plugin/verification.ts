import type { FastifyReply, FastifyRequest } from 'fastify'
import type { TotpContext } from './context.js'
import { open } from './crypto/seal.js'
import {
  TotpAlreadyEnabledError, TotpInvalidCodeError, TotpLockedError, TotpNoPendingSetupError, TotpNotEnabledError,
  TotpUnavailableError
} from './errors.js'
import { ipBucket } from './ip.js'
import { verifyCode } from './totp/index.js'
import type { AttemptResult, CheckState, SecretState, UserRef } from './types.js'

/** The AAD purpose of a sealed TOTP secret. */
export const SECRET_PURPOSE = 'totp-secret'

/** One code check: who, with which request, and what it decides. */
export interface CodeCheck {
  request: FastifyRequest<{ Body: { code: string } }>
  reply: FastifyReply
  ref: UserRef
  /** `verify`: a code of the active secret; `confirm`: the code that activates the pending one. */
  kind: 'verify' | 'confirm'
}

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
export async function decideCode (ctx: TotpContext, c: CodeCheck): Promise<number> {
  let read = reads.get(c.request) ?? await ctx.store.check(c.ref)
  for (let n = 1; ; n++) {
    const r = await attempt(ctx, c, read)
    if (r.ok) return r.gen
    if (r.reason !== 'changed') return refuse(ctx, c, r)
    if (n === MAX_READS) {
      throw new TotpUnavailableError({ cause: new Error('the user\'s secret kept changing during the code check') })
    }
    read = await ctx.store.check(c.ref)
  }
}

// The sealed secret a code is checked against, or the answer when there is none to check.
function secretOf (kind: CodeCheck['kind'], s: SecretState): string {
  if (kind === 'verify') {
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
  const lockedFor = gate.lockedUntil - Date.now()
  if (lockedFor > 0) return { ok: false, reason: 'locked', retryAfterMs: lockedFor }
  const key = openSecret(ctx, c.request, sealed, c.ref)
  const afterTimeStep = secret.lastStep >= 0 ? secret.lastStep : undefined
  const v = verifyCode(key, c.request.body.code, ctx.opts.totp, { afterTimeStep })
  // a right and a wrong code cost the same: one deciding call, which refuses a locked user first
  return ctx.store.attempt(c.ref, {
    kind: c.kind,
    gen: gate.gen,
    step: v.valid ? v.timeStep : null,
    pending: c.kind === 'confirm' ? sealed : undefined,
    ip: ipOf(ctx, c.request)
  })
}

/** Opens a sealed secret; one that does not open (unknown key id, tampered or copied record) fails closed. */
export function openSecret (ctx: TotpContext, request: FastifyRequest, sealed: string, ref: UserRef): Buffer {
  try {
    return open(ctx.keyRing, sealed, { ...ref, purpose: SECRET_PURPOSE })
  } catch (err) {
    request.log.error({ err, totp: { tenant: ref.tenant, userId: ref.userId } },
      'fastify-totp: a sealed secret did not open (missing key or tampered record)')
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
    request.log.warn({ ip: request.ip }, 'fastify-totp: a request without an IP address skips the per-IP budget ' +
      '(behind a proxy or on a unix socket, set trustProxy)')
  }
  return bucket
}

/** 429 with `Retry-After` (whole seconds, at least 1). */
export function locked (reply: FastifyReply, ms: number): never {
  const seconds = Math.max(1, Math.ceil(ms / 1000))
  reply.header('retry-after', String(seconds))
  throw new TotpLockedError(seconds)
}

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
      ctx.emit(request, {
        type: kind === 'verify' ? 'verify.failed' : 'setup.failed', ...ref, ip, failures: r.failures
      })
      if (r.lockedForMs > 0) {
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
