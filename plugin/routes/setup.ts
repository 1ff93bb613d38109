import type { FastifyInstance, FastifyReply } from 'fastify'
import QRCode from 'qrcode'
import { requireUser, type TotpContext } from '../context.js'
import { seal } from '../crypto/seal.js'
import {
  TotpAlreadyEnabledError, TotpBadRequestError, TotpSetupThrottledError, TotpUnavailableError
} from '../errors.js'
import { generateRecoveryCodes } from '../recovery.js'
import { markVerified } from '../sessions.js'
import { encodeSecret, generateSecret, keyUri } from '../totp/index.js'
import type { SetupResult, TotpUser } from '../types.js'
import { decideCode, openSecret, SECRET_PURPOSE } from '../verification.js'
import { BODY_LIMIT, codeBody, confirmAnswer, documented, errorAnswers, setupAnswer } from './schemas.js'

/** POST /setup and POST /setup/confirm: self-enrolment. */
export function setupRoutes (scope: FastifyInstance, ctx: TotpContext): void {
  const { totp, issuer, setupTtlMs } = ctx.opts

  // the key URI of `base32` for `user`; an account name it cannot carry is the caller's 400
  const uriFor = (user: TotpUser, base32: string): string => {
    try {
      return keyUri({ issuer, account: user.label ?? user.id, secret: base32, params: totp })
    } catch (err) {
      throw new TotpBadRequestError((err as Error).message)
    }
  }

  scope.post('/setup', {
    schema: documented('Start enrolment: a new secret, its key URI and QR code', {
      201: setupAnswer,
      ...errorAnswers([400, 401, 403, 409, 413, 429, 500, 503], {
        403: 'FST_TOTP_CROSS_SITE',
        409: 'FST_TOTP_ALREADY_ENABLED: a secret is active (only revocation clears it)',
        429: 'FST_TOTP_SETUP_THROTTLED: too many new secrets in the `setupLimit` window; Retry-After (s)'
      })
    }),
    config: { totp: { allowSetupRequired: true } }
  }, async (request, reply) => {
    const { user, ref, state } = requireUser(request)
    if (state.enabled) throw new TotpAlreadyEnabledError()
    // a pending setup is answered again (same secret, same QR code): drawing one costs ~10 ms
    let r = await ctx.store.startSetup(ref, null)
    if (r.status === 'none') {
      const secret = generateSecret()
      const base32 = encodeSecret(secret)
      // everything that can fail on the user's input is done before anything is stored
      const uri = uriFor(user, base32)
      const qr = await QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, scale: 6 })
        .catch((err: Error) => { throw new TotpBadRequestError(`no QR code for this account: ${err.message}`) })
      const sealed = seal(ctx.keyRing, secret, { ...ref, purpose: SECRET_PURPOSE })
      r = await ctx.store.startSetup(ref, { sealed, qr, ttlMs: setupTtlMs })
      if (r.status === 'started') {
        ctx.emit(request, { type: 'setup.started', ...ref, ip: request.ip })
        reply.code(201)
        return { secret: base32, uri, qr, expiresAt: new Date(r.expiresAt).toISOString() }
      }
    }
    // a look answers no start, and a start is answered 'started' or a refusal
    if (r.status === 'none' || r.status === 'started') {
      throw new TotpUnavailableError({ cause: new Error(`setup: ${r.status}`) })
    }
    return answerPending(reply, r)
  })

  function answerPending (reply: FastifyReply, r: Exclude<SetupResult, { status: 'started' | 'none' }>) {
    const request = reply.request
    if (r.status === 'already-enabled') throw new TotpAlreadyEnabledError()
    if (r.status === 'throttled') {
      const seconds = Math.max(1, Math.ceil(r.retryAfterMs / 1000))
      reply.header('retry-after', String(seconds))
      throw new TotpSetupThrottledError(seconds)
    }
    const { user, ref } = requireUser(request)
    const base32 = encodeSecret(openSecret(ctx, request, r.sealed, ref))
    reply.code(201)
    return { secret: base32, uri: uriFor(user, base32), qr: r.qr, expiresAt: new Date(r.expiresAt).toISOString() }
  }

  scope.post<{ Body: { code: string } }>('/setup/confirm', {
    bodyLimit: BODY_LIMIT,
    schema: {
      body: codeBody(totp.digits),
      ...documented('Confirm enrolment with a code from the authenticator', {
        200: confirmAnswer,
        ...errorAnswers([400, 401, 403, 404, 409, 413, 429, 500, 503], {
          401: 'FST_TOTP_UNAUTHENTICATED, FST_TOTP_REQUIRED or FST_TOTP_INVALID_CODE (wrong or reused; counted)',
          403: 'FST_TOTP_CROSS_SITE',
          404: 'FST_TOTP_NO_PENDING_SETUP: no setup, or it expired',
          409: 'FST_TOTP_ALREADY_ENABLED'
        })
      })
    },
    config: { totp: { allowSetupRequired: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    // R9: the first set of recovery codes is stored with the secret's activation, in one step
    const recoveryCodes = ctx.opts.recoveryCodes === null ? undefined : generateRecoveryCodes(ctx.opts.recoveryCodes)
    const { gen } = await decideCode(ctx, { request, reply, ref, kind: 'confirm', recoveryCodes })
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'setup.confirmed', ...ref, ip: request.ip })
    if (recoveryCodes !== undefined) {
      ctx.emit(request, { type: 'recovery.generated', ...ref, ip: request.ip, recoveryCodesLeft: recoveryCodes.length })
      return { enabled: true, verified: true, recoveryCodes }
    }
    return { enabled: true, verified: true }
  })
}
